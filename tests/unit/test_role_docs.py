"""Every role's documentation renders: `ansible-doc -t role llmops.ray_vllm.<role>` names its entry point and options;
the playbook of its README's "Use it alone" section passes `ansible-playbook --syntax-check`.

One ansible-doc call renders every role (one syntax check checks every playbook); when it fails (one broken
meta/argument_specs.yml stops the whole call), each role's test runs that role alone, so only the broken role's test
fails, with ansible's own error.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ROLES = REPO / "roles"
ROLE_NAMES = sorted(p.name for p in ROLES.iterdir() if (p / "tasks" / "main.yml").exists())
PREFIX = "llmops.ray_vllm."


def collections_path():
    """Where ansible finds llmops.ray_vllm: the tree ansible-test runs in, else the Makefile's .build/collections."""
    if REPO.parent.name == "llmops" and REPO.parent.parent.name == "ansible_collections":
        return REPO.parents[2]
    path = REPO / ".build" / "collections"
    link = path / "ansible_collections" / "llmops" / "ray_vllm"
    assert link.is_dir(), f"{link} is missing: run `make setup` (it links the repository there for ansible)"
    return path


def ansible(tool, *args):
    """Run an ansible command (`python -m ansible <tool>`: the interpreter running the tests is the one used)."""
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections_path()), ANSIBLE_NOCOLOR="1")
    env["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")
    command = [sys.executable, "-m", "ansible", tool, *args]
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


def use_it_alone(role):
    """The YAML block of the README's "Use it alone" section, or None when the README has no such section."""
    text = (ROLES / role / "README.md").read_text(encoding="utf-8")
    section = re.search(r"^## Use it alone\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    if not section:
        return None
    block = re.search(r"^```yaml\n(.*?)^```", section.group(1), re.M | re.S)
    assert block, f"{role}: the README's Use it alone section shows no ```yaml playbook"
    # A block may start its document with "---"; the syntax check joins the blocks into one document.
    return block.group(1).removeprefix("---\n")


ALONE = [role for role in ROLE_NAMES if use_it_alone(role) is not None]


@lru_cache(maxsize=None)
def syntax_check(roles, directory):
    """(rc, output) of one `ansible-playbook --syntax-check` of the roles' Use it alone playbooks, one after another."""
    path = Path(directory) / ("alone-" + "-".join(roles) + ".yml")
    path.write_text("---\n" + "".join(use_it_alone(role) for role in roles), encoding="utf-8")
    result = ansible("playbook", "--syntax-check", "-i", "localhost,", str(path))
    return result.returncode, result.stdout + result.stderr


@pytest.fixture(scope="module")
def alone_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("use-it-alone"))


@pytest.mark.parametrize("role", ALONE)
def test_the_use_it_alone_playbook_parses(role, alone_dir):
    rc, output = syntax_check(tuple(ALONE), alone_dir)
    if rc != 0:
        rc, output = syntax_check((role,), alone_dir)
    assert rc == 0, (
        f"{role}: the README's Use it alone playbook fails ansible-playbook --syntax-check:\n{output[-3000:]}"
    )
    assert f"role: {PREFIX}{role}" in use_it_alone(role), (
        f"{role}: the Use it alone playbook does not run {PREFIX}{role}"
    )
