"""The cuda_check role with a real H200's nvidia-smi outputs, replayed by a script standing in for the card.

The role, the accelerator_facts module and its parser all run for real; only the GPU is absent here, so a
script prints what nvidia-smi printed on the H200 machine (../shared/fixtures/gpu/h200-1x) for each command.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from playbook_runner import run_playbook

from ansible_collections.llmops.ray_vllm.tests.unit.shared_fixtures import shared_fixtures

pytestmark = pytest.mark.integration

REPLAY = Path(__file__).resolve().parents[2] / "molecule" / "cuda_check" / "nvidia-smi-h200"


@pytest.fixture()
def replayed_nvidia_smi():
    """molecule/cuda_check's stand-in for nvidia-smi (it fails naming any command not recorded)."""
    assert os.path.isdir(os.path.join(shared_fixtures(), "gpu", "h200-1x"))
    return str(REPLAY)


def run_role(tmp_path, nvidia_smi, *extra):
    facts_out = tmp_path / "facts.json"
    rc, out, _recap = run_playbook(
        "tests/integration/playbooks/cuda_check.yml",
        inventory="localhost,",
        extra_args=[
            "-c", "local",
            "-e", "ansible_python_interpreter=%s" % sys.executable,
            "-e", "facts_out=%s" % facts_out,
            "-e", "cuda_check_nvidia_smi=%s" % nvidia_smi,
            *extra,
        ],
    )  # fmt: skip
    return rc, out, (json.loads(facts_out.read_text()) if facts_out.exists() else None)


def test_the_h200_passes_and_feeds_the_plan(tmp_path, replayed_nvidia_smi):
    rc, out, facts = run_role(tmp_path, replayed_nvidia_smi)
    assert rc == 0, out[-4000:]
    assert facts["mode"] == "gpu"
    assert facts["gpu_count"] == 1
    assert facts["gpu_product"] == "NVIDIA H200"
    assert facts["gpu_memory_mib"] == 143771
    assert facts["driver_version"] == "580.159.04"
    assert facts["cuda_version"] == "13.0"
    assert "1 x NVIDIA H200 (143771 MiB), driver 580.159.04, CUDA 13.0" in out


def test_more_gpus_than_the_node_has_fail_with_the_count(tmp_path, replayed_nvidia_smi):
    rc, out, _facts = run_role(tmp_path, replayed_nvidia_smi, "-e", "cuda_check_min_gpus=2")
    assert rc != 0
    assert "found 1 GPU(s)" in out and "(0: NVIDIA H200), min_gpus is 2" in out


def test_a_driver_older_than_the_vllm_build_needs_is_refused(tmp_path, replayed_nvidia_smi):
    rc, out, _facts = run_role(tmp_path, replayed_nvidia_smi, "-e", "cuda_check_min_driver_version=590.1")
    assert rc != 0
    assert "driver 580.159.04 < 590.1 required by the vLLM build" in out and "upgrade the driver" in out
