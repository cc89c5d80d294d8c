# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The cluster_look filter: site.yml's reading of the cluster's look (the logic: test_cluster_stamp.py)."""

from __future__ import annotations

import json
from pathlib import Path

from ansible_collections.llmops.ray_vllm.plugins.filter.cluster_look import FilterModule
from ansible_collections.llmops.ray_vllm.plugins.module_utils._vllm_health import parse_completion

cluster_look = FilterModule().filters()["cluster_look"]
CHAT = Path(__file__).resolve().parents[3] / "fixtures" / "vllm" / "chat-200.json"
HEADING = "A full run follows; the cluster differs from the last full run's record:"


def stood():
    """cluster_stamp's look where nothing differed: vLLM's answer is the recorded chat completion's."""
    assert CHAT.is_file(), f"missing recording {CHAT} (see the README.md beside it)"
    chat = json.loads(CHAT.read_text())
    text, tokens = parse_completion(chat["body"])
    return {
        "changed": False,
        "current": True,
        "differences": [],
        "written": False,
        "answer": {"text": text, "latency_s": chat["elapsed_s"], "completion_tokens": tokens},
        "endpoint": {
            "url": "Service llm/llm-vllm:8000",
            "endpoint": "http://llm-vllm.llm.svc:8000/v1",
            "model": "smollm2-135m-instruct",
            "question": "Say hello.",
        },
    }


def test_the_filter_is_registered_under_its_name():
    assert list(FilterModule().filters()) == ["cluster_look"]


def test_a_look_that_found_nothing_stands_and_prints_the_answer():
    result = cluster_look(stood())
    assert result["standing"] is True
    assert result["lines"][0].startswith("The deployment stands as the last full run left it:")
    assert result["lines"][1:] == [
        "Endpoint: http://llm-vllm.llm.svc:8000/v1 (model smollm2-135m-instruct)",
        "Q: Say hello.",
        "A: I'm glad you're enjoying the service. I'm here to help with any (2.177 s)",
    ]


def test_a_skipped_look_does_not_stand():
    result = cluster_look({"changed": False, "skipped": True, "skip_reason": "Conditional result was False"})
    assert result == {"standing": False, "lines": [HEADING, "no look (ray_vllm_fast_rerun is off)"]}


def test_a_look_that_could_not_finish_does_not_stand():
    # What cluster_stamp returns where the API server refused a list (no answer, no endpoint without a record).
    look = {
        "changed": False,
        "current": False,
        "written": False,
        "differences": ["the look could not finish: the API server answered 403 to GET /api/v1/nodes: forbidden"],
    }
    assert cluster_look(look) == {
        "standing": False,
        "lines": [HEADING, "the look could not finish: the API server answered 403 to GET /api/v1/nodes: forbidden"],
    }


def test_only_a_look_that_asked_vllm_says_the_ray_nodes_are_alive_and_vllm_answers():
    # A record without a head: cluster_stamp's look compared the cluster only, and returns no answer or endpoint.
    cluster_only = {key: value for key, value in stood().items() if key not in ("answer", "endpoint")}
    assert cluster_look(cluster_only) == {
        "standing": True,
        "lines": [
            "The deployment stands as the last full run left it: the same settings and collection, the same nodes, "
            "the objects the roles made unchanged and ready. The roles are skipped (ray_vllm_fast_rerun=false runs "
            "them all)."
        ],
    }
    assert ", the same Ray nodes alive and vLLM answering. " in cluster_look(stood())["lines"][0]
