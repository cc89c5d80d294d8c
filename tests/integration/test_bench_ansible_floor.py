"""make bench's Ansible floor for real: the generated playbook and the llmops_task_runs callback on
inventories/local's two nodes, with ansible-playbook (tests/bench/ansible_floor.py; its pure parts are unit-tested
on recordings in tests/unit/test_bench_ansible_floor.py)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from playbook_runner import run_playbook

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import ansible_floor

pytestmark = pytest.mark.integration


def test_the_floor_playbook_and_the_callback(tmp_path):
    """Two tasks of each kind: the profile prices each kind, and the callback sorts the runs as the playbook meant."""
    playbook = tmp_path / "floor.yml"
    playbook.write_text(ansible_floor.playbook(count=2))
    env = dict(ansible_floor.callback_env("unit"), LLMOPS_TASK_RUNS_FILE=str(tmp_path / "runs.json"))
    env["PROFILE_TASKS_TASK_OUTPUT_LIMIT"] = "all"
    start = time.monotonic()
    rc, out, recap = run_playbook(str(playbook), env=env)
    assert rc == 0, out[-3000:]
    costs = ansible_floor.costs(out, time.monotonic() - start)
    assert set(costs) == {*ansible_floor.KINDS, ansible_floor.START_AND_END}
    assert costs[ansible_floor.MODULE] > costs[ansible_floor.CONTROLLER] > 0
    assert sorted(recap) == ["ray-head-local", "ray-worker-local"]
    runs = json.loads((tmp_path / "runs.json").read_text())
    assert [run["name"] for run in runs[:3]] == ["module call 0", "task on the controller only 0", "skipped task 0"]
    assert ansible_floor.kind_counts(runs) == {kind: 2 for kind in ansible_floor.KINDS}
    assert sorted(runs[0]["ran"]) == sorted(runs[2]["skipped"]) == ["ray-head-local", "ray-worker-local"]
    assert all(run["seconds"] > 0 for run in runs)
