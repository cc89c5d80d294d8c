"""make bench's Ansible floor (tests/bench/ansible_floor.py): Ansible's own cost per task run, measured by a generated
playbook, and a deploy's task runs sorted into the same kinds by the llmops_task_runs callback.

The recordings are real, from this machine: the floor playbook's output on inventories/local (12.32 s wall), and a
cold deploy's output and llmops_task_runs record from make bench-deploy. The playbook and the callback run for real
in tests/integration/test_bench_ansible_floor.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "bench"))

import ansible_floor  # noqa: E402
import phases  # noqa: E402

RECORDED = ROOT / "tests" / "fixtures" / "bench"
FLOOR_OUTPUT = (RECORDED / "ansible-floor-profile.txt").read_text()
FLOOR_WALL_S = 12.32


def cold_runs():
    return json.loads((RECORDED / "site-local-cold-task-runs.json").read_text())


def test_the_floor_prices_each_kind_from_its_profile():
    costs = ansible_floor.costs(FLOOR_OUTPUT, FLOOR_WALL_S)
    lines = phases.profile_lines(FLOOR_OUTPUT)
    modules = [seconds for name, seconds in lines if name.startswith("module call ")]
    assert len(lines) == 3 * ansible_floor.COUNT and len(modules) == ansible_floor.COUNT
    assert costs[ansible_floor.MODULE] == pytest.approx(sum(modules) / len(modules))
    # A module call runs Python on each node; the other two never leave the controller.
    assert costs[ansible_floor.MODULE] > 5 * costs[ansible_floor.CONTROLLER] > 0
    assert costs[ansible_floor.SKIPPED] > 0
    assert costs[ansible_floor.START_AND_END] == pytest.approx(FLOOR_WALL_S - sum(s for _n, s in lines))


def test_a_floor_profile_without_a_kind_or_with_another_task_is_refused():
    without_skips = "\n".join(line for line in FLOOR_OUTPUT.splitlines() if not line.startswith("skipped task"))
    with pytest.raises(phases.ProfileError, match="lacks a kind: \\['skipped task'\\]"):
        ansible_floor.costs(without_skips, FLOOR_WALL_S)
    foreign = FLOOR_OUTPUT.replace("module call 3 -", "Start the Ray head -")
    with pytest.raises(phases.ProfileError, match="'Start the Ray head'"):
        ansible_floor.costs(foreign, FLOOR_WALL_S)


@pytest.mark.parametrize(
    ("run", "kind"),
    [
        ({"action": "llmops.ray_vllm.deployment_plan", "ran": ["h"], "skipped": []}, ansible_floor.MODULE),
        ({"action": "ansible.builtin.slurp", "ran": ["h", "w"], "skipped": []}, ansible_floor.MODULE),
        ({"action": "ansible.builtin.set_fact", "ran": ["h"], "skipped": ["w"]}, ansible_floor.CONTROLLER),
        ({"action": "assert", "ran": ["h"], "skipped": []}, ansible_floor.CONTROLLER),
        ({"action": "llmops.ray_vllm.validate_role_arguments", "ran": ["h"], "skipped": []}, ansible_floor.CONTROLLER),
        ({"action": "llmops.ray_vllm.ray_node", "ran": [], "skipped": ["h", "w"]}, ansible_floor.SKIPPED),
        ({"action": "ansible.builtin.include_tasks", "ran": [], "skipped": ["h"]}, ansible_floor.SKIPPED),
    ],
)
def test_each_task_run_has_one_kind(run, kind):
    assert ansible_floor.kind_of(dict(run, name="a task")) == kind


def test_a_cold_deploys_task_runs_outside_the_phases():
    output = (RECORDED / "site-local-cold-profile-with-runs.txt").read_text()
    runs = cold_runs()
    in_phases = phases.phase_tasks(output, total_s=60.0)
    counts = ansible_floor.kind_counts(runs, leave_out=in_phases)
    # Every task the callback saw is one the profile timed, and the phases' five tasks are left out.
    assert sum(counts.values()) == len(runs) - 5 == len(phases.profile_lines(output)) - 5
    plan = next(run for run in runs if run["name"] == "Plan the Ray cluster and vLLM's parallelism")
    assert ansible_floor.kind_of(plan) == ansible_floor.MODULE
    assert counts[ansible_floor.MODULE] >= 15 and counts[ansible_floor.CONTROLLER] > counts[ansible_floor.MODULE]


def test_the_task_runs_furthest_above_the_floor():
    costs = ansible_floor.costs(FLOOR_OUTPUT, FLOOR_WALL_S)
    output = (RECORDED / "site-local-cold-profile-with-runs.txt").read_text()
    in_phases = phases.phase_tasks(output, total_s=60.0)
    rows = ansible_floor.above_floor(cold_runs(), costs, leave_out=in_phases, top=5)
    assert len(rows) == 5 and not {row[0] for row in rows} & in_phases
    assert [row[3] for row in rows] == sorted((row[3] for row in rows), reverse=True)
    for _task, kind, seconds, above in rows:
        assert above == pytest.approx(seconds - costs[kind])
    # The callback's seconds are the profile's: the same task runs, timed from one task's start to the next's.
    profiled = sorted(seconds for _name, seconds in phases.profile_lines(output))
    recorded = sorted(run["seconds"] for run in cold_runs())
    assert recorded == pytest.approx(profiled, abs=0.011)
    lines = ansible_floor.above_table(rows, "cold").splitlines()
    task, kind, seconds, above = rows[0]
    assert lines[2] == f"| {task} | {kind} | {seconds:.2f} | {above:+.2f} |"


def test_the_priced_table_and_why_it_cannot_fit():
    costs = ansible_floor.costs(FLOOR_OUTPUT, FLOOR_WALL_S)
    counts = {ansible_floor.MODULE: 20, ansible_floor.CONTROLLER: 80, ansible_floor.SKIPPED: 10}
    rows = ansible_floor.priced_rows(costs, counts)
    total = sum(row[3] for row in rows)
    assert rows[0] == (ansible_floor.MODULE, costs[ansible_floor.MODULE], 20, 20 * costs[ansible_floor.MODULE])
    assert rows[-1] == (ansible_floor.START_AND_END, None, None, costs[ansible_floor.START_AND_END])
    lines = ansible_floor.table(rows, other_s=16.0, title="cold").splitlines()
    assert lines[-2] == f"| Ansible alone, for these task runs | | | {total:.1f} |"
    assert lines[-1] == f"| the rest: our modules' and templates' own work | | | {16.0 - total:+.1f} |"
    note = ansible_floor.why(rows, other_s=16.0, budget_s=5.6, phases_over_s=6.3)
    fits = int(5.6 // costs[ansible_floor.MODULE])
    assert f"needs {total:.1f} s of those 16.0 s" in note and f"which is {fits} module calls at" in note
    assert note.endswith("the phases' own tasks are +6.3 s over the floor's steps already.")
