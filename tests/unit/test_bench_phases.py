"""make bench's per-phase table (tests/bench/phases.py) on the task profile of a real cold deploy and re-run of
site.yml -i inventories/local (make demo's output, recorded on this project's CI kind of machine)."""

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
    rows = dict(phases.site_phases((RECORDED / "site-local-cold-profile.txt").read_text(), total_s=88.2))
    assert rows["Ray head"] == 8.18 and rows["Ray workers"] == 8.67 and rows["Ray gate"] == 1.84
    assert rows["vLLM started"] == 13.66 and rows["vLLM gate"] == 30.37
    assert rows[phases.OTHER] == pytest.approx(88.2 - 8.18 - 8.67 - 1.84 - 13.66 - 30.37)


def test_a_phase_whose_tasks_did_not_run_is_named():
    output = (RECORDED / "site-local-cold-profile.txt").read_text().replace("Start the Ray workers", "Start workers")
    with pytest.raises(phases.ProfileError, match="'Ray workers'"):
        phases.site_phases(output, total_s=88.2)


def test_an_output_without_the_profile_is_refused():
    with pytest.raises(phases.ProfileError, match="profile_tasks"):
        phases.task_seconds("PLAY RECAP ***\nhost : ok=1 changed=0\n")


def test_the_table_sets_the_floor_beside_site_yml():
    site = phases.site_phases((RECORDED / "site-local-rerun-profile.txt").read_text(), total_s=36.2)
    lines = phases.table({"Ray head": 2.0, "vLLM gate": 1.0}, site, "re-run").splitlines()
    assert lines[2] == "| Ray head | ray start --head | 2.0 | %.1f | %+.1f |" % (0.85, 0.85 - 2.0)
    assert lines[-1].startswith("| total | | 3.0 | 36.2 |")


def test_every_phase_task_is_a_task_of_the_roles():
    """The phases name tasks by the names the roles give them; a renamed task must fail here, not in make bench."""
    names = set()
    for path in (ROOT / "roles").glob("*/tasks/*.yml"):
        role = path.parts[-3]
        text = path.read_text()
        names |= {f"llmops.ray_vllm.{role} : {name}" for name in re.findall(r"^\s*- name: (.+)$", text, re.M)}
    for phase, _step, tasks in phases.PHASES:
        assert set(tasks) <= names, f"{phase}: {sorted(set(tasks) - names)} are no task of the roles"
