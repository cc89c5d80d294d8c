"""Run this repository's playbooks for real with ansible-playbook, and read their recap."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RECAP_LINE = re.compile(
    r"^(?P<host>\S+)\s*:\s*ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)\s+"
    r"failed=(?P<failed>\d+)\s+skipped=(?P<skipped>\d+)\s+rescued=(?P<rescued>\d+)\s+ignored=(?P<ignored>\d+)",
    re.MULTILINE,
)


def collections_path():
    """A collections dir holding ansible_collections/llmops/ray_vllm -> this checkout (made by make setup)."""
    path = REPO / ".build" / "collections"
    link = path / "ansible_collections" / "llmops" / "ray_vllm"
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(REPO)
    return path


def run_playbook(playbook, inventory="inventories/local", extra_args=(), env=None, timeout=1500, log_path=None):
    """Run ansible-playbook from the repository root; returns (returncode, output, recap)."""
    bin_dir = Path(sys.executable).parent
    command = [str(bin_dir / "ansible-playbook"), playbook, "-i", inventory, *extra_args]
    run_env = dict(os.environ)
    run_env.update(
        {
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "ANSIBLE_COLLECTIONS_PATH": str(collections_path()),
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_NOCOLOR": "1",
            "PATH": "%s:%s" % (bin_dir, run_env.get("PATH", "")),
            "PYTHONUNBUFFERED": "1",
        }
    )
    run_env.update(env or {})
    completed = subprocess.run(
        command,
        cwd=REPO,
        env=run_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )
    if log_path is not None:
        Path(log_path).write_text(completed.stdout)
    recap = {
        m.group("host"): {k: int(v) for k, v in m.groupdict().items() if k != "host"}
        for m in RECAP_LINE.finditer(completed.stdout)
    }
    return completed.returncode, completed.stdout, recap
