"""Every role can be picked up alone (issue 17): it has a molecule scenario of its own, molecule/<role>, that runs
converge, idempotence, verify and destroy in that order; make molecule runs it; its converge is the playbook that the
role's README shows under "Use it alone" (the scenario may add only settings of its own environment)."""

from __future__ import annotations

import re

import pytest
import yaml

from ansible_collections.llmops.ray_vllm.tests.unit.role_readmes import REPO as ROOT
from ansible_collections.llmops.ray_vllm.tests.unit.role_readmes import ROLE_NAMES, use_it_alone

REQUIRED_ORDER = ["converge", "idempotence", "verify", "destroy"]


def makefile_variable(name):
    """The words of a `NAME := ...` line of the Makefile (with its continuation lines)."""
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    found = re.search(rf"^{name} :?= (.*)$", text, re.M)
    assert found, f"the Makefile has no {name} variable"
    words = []
    for word in found.group(1).split():
        reference = re.fullmatch(r"\$\((\w+)\)", word)
        words += makefile_variable(reference.group(1)) if reference else [word]
    return words


def readme_playbooks(role):
    """The YAML playbooks of the README's "Use it alone" section (one per platform where they differ)."""
    return [yaml.safe_load(block) for block in use_it_alone(role)]


def role_entries(playbook, role):
    """Each play's entry for llmops.ray_vllm.<role>, as (play without roles, the entry's vars)."""
    entries = []
    for play in playbook:
        for entry in play.get("roles", []):
            name = entry if isinstance(entry, str) else entry.get("role") or entry.get("name")
            if name == f"llmops.ray_vllm.{role}":
                rest = {key: value for key, value in play.items() if key != "roles"}
                entries.append((rest, {} if isinstance(entry, str) else entry.get("vars", {})))
    return entries


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_the_role_has_its_own_scenario_in_make_molecule(role):
    scenario = ROOT / "molecule" / role / "molecule.yml"
    assert scenario.is_file(), f"{scenario.relative_to(ROOT)} is missing: every role gets a scenario of its own"
    sequence = yaml.safe_load(scenario.read_text())["scenario"]["test_sequence"]
    steps = [step for step in sequence if step in REQUIRED_ORDER]
    assert steps[-len(REQUIRED_ORDER) :] == REQUIRED_ORDER, f"{role}: test_sequence {sequence}"
    assert role in makefile_variable("MOLECULE_SCENARIOS"), f"make molecule does not run molecule/{role}"


def differences(shown, converge):
    """Why the converge's uses of the role are not the README playbook's (empty: they are)."""
    if len(converge) != len(shown):
        return [f"it uses the role {len(converge)} times, the README {len(shown)}"]
    found = []
    for (play, variables), (converge_play, converge_variables) in zip(shown, converge):
        if converge_play != play:
            found.append(f"its play {converge_play} is not the README's {play}")
        differing = {k: v for k, v in variables.items() if converge_variables.get(k) != v}
        if differing:
            found.append(f"it does not pass the README's {differing}")
    return found


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_converge_is_a_readme_playbook(role):
    converge = role_entries(yaml.safe_load((ROOT / "molecule" / role / "converge.yml").read_text()), role)
    shown = [role_entries(playbook, role) for playbook in readme_playbooks(role)]
    assert all(shown), f"roles/{role}/README.md: a 'Use it alone' playbook does not use llmops.ray_vllm.{role}"
    why = [differences(entries, converge) for entries in shown]
    assert [] in why, f"molecule/{role}/converge.yml is none of the README's playbooks: {why}"
