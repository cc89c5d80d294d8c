# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Stopping a test bed whose pods run as containers leaves nothing on the machine.

A module of its own: one runtime owns the machine's pod bridge at a time, so this bed starts only after
test_runtime_pods.py's module bed has stopped.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from k8s_testbed.harness import RunningTestBed
from k8s_testbed.images.build import ensure_images
from k8s_testbed.runtime import RUNTIME_ROOT
from k8s_testbed.runtime.cgroups import MEMORY_ROOT, MemoryCgroups
from test_runtime_pods import IMAGE, create, pod, ready


def test_nothing_is_left_behind_after_stop(tmp_path):
    ensure_images([IMAGE])
    with RunningTestBed(tmp_path / "bed", runtime="runc") as running:
        status, _body = running.request("POST", "/api/v1/namespaces", {"metadata": {"name": "left"}})
        assert status == 201
        create(running, "left", pod("sleeper", command=["sleep", "3600"], grace=30))
        ready(running, "left", "sleeper")
        assert _processes_in_container_cgroups(), "the container's processes run on this machine"
    assert not _processes_in_container_cgroups(), "no container process is left"
    assert (
        subprocess.run(
            ["runc", "--root", os.path.join(RUNTIME_ROOT, "runc"), "list", "-q"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        == ""
    )
    assert not [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if RUNTIME_ROOT in line]
    assert "llmtb-" not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    bridge = subprocess.run(["ip", "link", "show", "llmtb0"], capture_output=True, check=False)
    assert bridge.returncode != 0, "the bridge is gone"
    assert not Path(MEMORY_ROOT + MemoryCgroups().base).exists(), "no container cgroup is left"


def _processes_in_container_cgroups():
    """Host pids in a cgroup of the runtime's (every container process runs in one)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if "/llmops-k8s-testbed/" in (entry / "cgroup").read_text():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found
