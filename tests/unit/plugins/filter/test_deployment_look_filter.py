# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The deployment_look filter: site.yml's reading of one node's look (the logic: test_deployment_stamp.py)."""

from __future__ import annotations

from ansible_collections.llmops.ray_vllm.plugins.filter.deployment_look import FilterModule

deployment_look = FilterModule().filters()["deployment_look"]
STOOD = {"changed": False, "current": True, "differences": [], "controller_files": [], "written": False}


def test_a_node_whose_look_found_nothing_stands_without_differing_hosts():
    assert deployment_look(STOOD)["standing"] is True
    assert deployment_look(STOOD, [])["standing"] is True


def test_a_node_does_not_stand_while_another_differs():
    result = deployment_look(STOOD, ["ray-worker-1"])
    assert result["standing"] is False and result["lines"][0].endswith("differs on ray-worker-1.")


def test_a_skipped_look_does_not_stand():
    result = deployment_look({"changed": False, "skipped": True, "skip_reason": "Conditional result was False"})
    assert result["standing"] is False and result["lines"][1] == "no look (ray_vllm_fast_rerun is off)"
