"""Every role's documentation renders: `ansible-doc -t role llmops.ray_vllm.<role>` names its entry point and options.

One ansible-doc call renders every role; when it fails (one broken meta/argument_specs.yml stops the whole call),
each role's test renders that role alone, so only the broken role's test fails, with ansible's own error. (The
READMEs' "Use it alone" playbooks are syntax-checked in tests/integration/test_role_readme_playbooks.py, where the
collections they name are installed.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import lru_cache

import pytest
import yaml

from ansible_collections.llmops.ray_vllm.tests.unit.role_readmes import PREFIX, REPO, ROLE_NAMES, ROLES


def collections_path():
    """Where ansible finds llmops.ray_vllm: the tree ansible-test runs in, else the Makefile's .build/collections."""
    if REPO.parent.name == "llmops" and REPO.parent.parent.name == "ansible_collections":
        return REPO.parents[2]
    path = REPO / ".build" / "collections"
    link = path / "ansible_collections" / "llmops" / "ray_vllm"
    assert link.is_dir(), f"{link} is missing: run `make setup` (it links the repository there for ansible)"
    return path


def ansible(tool, *args):
    """Run an ansible command by its CLI module (`python -m ansible.cli.<tool>`): the interpreter running the tests
    is the one used, and ansible-test's units venv, which has ansible-core on its path but not its entry points
    (so `python -m ansible doc` finds no `doc` there), runs it too."""
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections_path()), ANSIBLE_NOCOLOR="1")
    env["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")
    command = [sys.executable, "-m", f"ansible.cli.{tool}", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, check=False)


def ansible_doc(*args):
    return ansible("doc", "-t", "role", *args)


@lru_cache(maxsize=None)
def rendered(roles):
    """(rc, stderr, {role: text}, {role: json doc}) for the roles, rendered in one text and one JSON call."""
    names = [PREFIX + role for role in roles]
    text = ansible_doc(*names)
    data = ansible_doc("--json", *names)
    rc = text.returncode or data.returncode
    sections = {}
    for chunk in text.stdout.split("> ROLE: ")[1:]:
        # Without colour, ansible-doc marks names as *bold*: "> ROLE: *llmops.ray_vllm.x* (path)".
        sections[chunk.split(None, 1)[0].strip("*").removeprefix(PREFIX)] = chunk.replace("*", "")
    docs = {}
    if data.returncode == 0:
        docs = {name.removeprefix(PREFIX): doc for name, doc in json.loads(data.stdout).items()}
    return rc, text.stderr + data.stderr, sections, docs


def test_the_roles_are_found():
    assert {"gpu_operator", "kuberay_operator", "awx_config", "vllm_serve"} <= set(ROLE_NAMES)


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_ansible_doc_renders_the_role(role):
    rc, stderr, sections, docs = rendered(tuple(ROLE_NAMES))
    if rc != 0:
        # The combined call failed: render this role alone, so the failure names the broken role.
        rc, stderr, sections, docs = rendered((role,))
    assert rc == 0, f"ansible-doc -t role {PREFIX}{role} failed (rc {rc}):\n{stderr[-3000:]}"
    assert "[WARNING]" not in stderr and "[ERROR]" not in stderr, stderr[-3000:]
    with open(ROLES / role / "meta" / "argument_specs.yml", encoding="utf-8") as handle:
        spec = yaml.safe_load(handle)["argument_specs"]
    options = sorted(spec["main"]["options"])
    assert options, f"{role}: meta/argument_specs.yml documents no option"

    text = sections.get(role)
    assert text is not None, f"ansible-doc rendered no section for {PREFIX}{role}:\n{stderr[-3000:]}"
    assert "ENTRY POINT: main - " + " ".join(spec["main"]["short_description"].split()) in " ".join(text.split())
    missing = [name for name in options if name not in text]
    assert not missing, f"{role}: options documented in argument_specs but not rendered by ansible-doc: {missing}"

    doc = docs[role]
    assert doc["collection"] == "llmops.ray_vllm"
    assert set(doc["entry_points"]) == set(spec), (role, sorted(doc["entry_points"]))
    assert sorted(doc["entry_points"]["main"]["options"]) == options
