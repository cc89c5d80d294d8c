"""make bench's per-phase table (tests/bench/phases.py) on the task profile of a real cold deploy and re-run of
site.yml -i inventories/local (every task, PROFILE_TASKS_TASK_OUTPUT_LIMIT=all, recorded on this machine)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "bench"))

import phases  # noqa: E402

RECORDED = ROOT / "tests" / "fixtures" / "bench"


def test_the_phases_of_a_cold_deploy():
    rows = dict(phases.site_phases((RECORDED / "site-local-cold-profile.txt").read_text(), total_s=73.2))
    assert rows["Ray head"] == 8.07 and rows["Ray workers"] == 7.11 and rows["Ray gate"] == 3.13
    assert rows["vLLM started"] == 3.00 and rows["vLLM gate"] == 31.13
    assert rows[phases.OTHER] == pytest.approx(73.2 - 8.07 - 7.11 - 3.13 - 3.00 - 31.13)


def test_a_phase_whose_tasks_did_not_run_is_named():
    output = (RECORDED / "site-local-cold-profile.txt").read_text().replace("Start the Ray workers", "Start workers")
    with pytest.raises(phases.ProfileError, match="'Ray workers'"):
        phases.site_phases(output, total_s=73.2)


def test_an_output_without_the_profile_is_refused():
    with pytest.raises(phases.ProfileError, match="profile_tasks"):
        phases.task_seconds("PLAY RECAP ***\nhost : ok=1 changed=0\n")


def test_the_table_sets_the_floor_beside_site_yml():
    site = phases.site_phases((RECORDED / "site-local-rerun-profile.txt").read_text(), total_s=24.7)
    lines = phases.table({"Ray head": 2.0, "vLLM gate": 1.0}, site, "re-run").splitlines()
    assert lines[2] == "| Ray head | ray start --head | 2.0 | %.1f | %+.1f |" % (0.57, 0.57 - 2.0)
    assert lines[-1].startswith("| total | | 3.0 | 24.7 |")


def test_everything_else_is_split_by_role_and_ansible_between_tasks():
    output = (RECORDED / "site-local-rerun-profile.txt").read_text()
    parts = {part: (count, seconds) for part, count, seconds in phases.other_parts(output, total_s=24.7)}
    # 157 tasks ran, 5 of them in the phases.
    assert sum(count for count, _seconds in parts.values()) == 152
    assert parts["llmops.ray_vllm.vllm_serve"][0] == 59 and parts["llmops.ray_vllm.monitoring"][0] == 22
    assert parts[phases.PLAYBOOK_TASKS][0] == 14
    other = dict(phases.site_phases(output, total_s=24.7))[phases.OTHER]
    assert sum(seconds for _count, seconds in parts.values()) == pytest.approx(other)
    lines = phases.other_table(phases.other_parts(output, total_s=24.7), "re-run").splitlines()
    assert lines[2].startswith("| llmops.ray_vllm.vllm_serve | 59 | 6.3 | 0.11 |")


def test_every_phase_task_is_a_task_of_the_roles():
    """The phases name tasks by the names the roles give them; a renamed task must fail here, not in make bench."""
    names = set()
    for path in (ROOT / "roles").glob("*/tasks/*.yml"):
        role = path.parts[-3]
        text = path.read_text()
        names |= {f"llmops.ray_vllm.{role} : {name}" for name in re.findall(r"^\s*- name: (.+)$", text, re.M)}
    for phase, _step, tasks in phases.PHASES:
        assert set(tasks) <= names, f"{phase}: {sorted(set(tasks) - names)} are no task of the roles"


def test_a_goal_not_met_names_what_holds_it_back():
    output = (RECORDED / "site-local-rerun-profile.txt").read_text()
    site, parts = phases.site_phases(output, total_s=24.7), phases.other_parts(output, total_s=24.7)
    note = phases.holding_back(site, parts, excess_s=19.7)
    assert note.startswith(
        "19.7 s over the goal. The phase furthest over the floor is vLLM started + vLLM gate (+2.6 s);"
    )
    assert "in 152 task runs" in note and "most of it in llmops.ray_vllm.vllm_serve (59 task runs, 6.3 s)." in note
    cold = (RECORDED / "site-local-cold-profile.txt").read_text()
    floor = {"Ray head": 6.2, "Ray workers": 3.6, "vLLM started": 29.8, "vLLM gate": 0.5}
    site = phases.site_phases(cold, total_s=73.2)
    note = phases.holding_back(site, phases.other_parts(cold, total_s=73.2), excess_s=26.9, floor=floor)
    assert "The phase furthest over the floor is vLLM started + vLLM gate (+3.8 s)" in note


def test_a_re_run_whose_look_stood_is_the_look_and_the_rest():
    # Recorded: site.yml -i inventories/local again on a deployment that stood (README: Re-runs), 3.67 s in all.
    output = (RECORDED / "site-local-look-profile.txt").read_text()
    assert phases.site_phases(output, total_s=3.67) == [
        ("The look", 1.92),
        (phases.OTHER, pytest.approx(3.67 - 1.92)),
    ]
    parts = {part: (count, seconds) for part, count, seconds in phases.other_parts(output, total_s=3.67)}
    assert parts[phases.PLAYBOOK_TASKS] == (4, pytest.approx(0.39 + 0.31 + 0.10 + 0.07))
    note = phases.holding_back(phases.site_phases(output, total_s=3.67), phases.other_parts(output, 3.67), 0.5)
    assert note.startswith("0.5 s over the goal. The phase furthest over the floor is The look (+1.9 s);"), note


def test_the_look_task_is_a_task_of_site_yml():
    assert "- name: %s\n" % phases.LOOK[2][0] in (ROOT / "playbooks" / "hosts.yml").read_text()
