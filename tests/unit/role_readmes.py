"""The roles and the playbooks their READMEs show under "Use it alone" (issue 17), for the tests that check them."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROLES = REPO / "roles"
ROLE_NAMES = sorted(p.name for p in ROLES.iterdir() if (p / "tasks" / "main.yml").exists())
PREFIX = "llmops.ray_vllm."


def use_it_alone(role):
    """The ```yaml blocks of the README's "Use it alone" section (one per platform where they differ), as text."""
    readme = (ROLES / role / "README.md").read_text(encoding="utf-8")
    section = re.search(r"^## Use it alone\n(.*?)(?=^## |\Z)", readme, re.M | re.S)
    assert section, f"roles/{role}/README.md has no '## Use it alone' section"
    blocks = re.findall(r"^```yaml\n(.*?)^```", section.group(1), re.M | re.S)
    assert blocks, f"roles/{role}/README.md: 'Use it alone' shows no ```yaml playbook"
    return blocks
