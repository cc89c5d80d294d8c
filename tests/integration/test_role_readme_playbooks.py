"""Every role's "Use it alone" playbook (its README, issue 17) passes `ansible-playbook --syntax-check`, with the
collections it names (awx.awx, kubernetes.core: the `ansible` package installs them) beside this one.

One check covers every playbook; when it fails, each role's test checks its own alone, so only the broken playbook's
test fails, with ansible's own error."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pytest
from playbook_runner import run_playbook

from ansible_collections.llmops.ray_vllm.tests.unit.role_readmes import PREFIX, ROLE_NAMES, use_it_alone

pytestmark = pytest.mark.integration


@lru_cache(maxsize=None)
def syntax_check(roles, directory):
    """(rc, output) of one syntax check of the roles' Use it alone playbooks, one after another."""
    path = Path(directory) / ("alone-" + "-".join(roles) + ".yml")
    # A block may start its document with "---"; the check joins the blocks into one document.
    plays = [block.removeprefix("---\n") for role in roles for block in use_it_alone(role)]
    path.write_text("---\n" + "".join(plays), encoding="utf-8")
    rc, output, _recap = run_playbook(str(path), inventory="localhost,", extra_args=["--syntax-check"], timeout=300)
    return rc, output


@pytest.fixture(scope="module")
def alone_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("use-it-alone"))


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_the_use_it_alone_playbook_parses(role, alone_dir):
    rc, output = syntax_check(tuple(ROLE_NAMES), alone_dir)
    if rc != 0:
        rc, output = syntax_check((role,), alone_dir)
    assert rc == 0, f"{role}: the README's Use it alone playbook fails the syntax check:\n{output[-3000:]}"
    assert any(f"role: {PREFIX}{role}" in block for block in use_it_alone(role)), (
        f"{role}: no Use it alone playbook runs {PREFIX}{role}"
    )
