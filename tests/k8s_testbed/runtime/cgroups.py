# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Memory limits: one cgroup (v1 memory controller, as on these machines) per container, below the runtime's own.

The runtime creates ``<its memory cgroup>/llmops-k8s-testbed/<container id>`` with the container's memory limit and
gives runc the child ``.../ctr`` as the container's cgroupsPath. runc removes its own cgroup when the container
ends; the parent stays until the runtime removes it, so its ``memory.failcnt`` still says whether the container hit
its limit. A container killed by SIGKILL after hitting it is reported OOMKilled, as the kubelet reports the
kernel's OOM kill. CPU limits are not enforced (two cores for a whole cluster).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

MEMORY_ROOT = "/sys/fs/cgroup/memory"
GROUP = "llmops-k8s-testbed"
_CONTROLLERS_ROOT = "/sys/fs/cgroup"


def own_memory_cgroup() -> str:
    """This process's memory cgroup path (``/`` or, in a sandbox, its own group)."""
    with open("/proc/self/cgroup", encoding="utf-8") as handle:
        for line in handle:
            parts = line.rstrip("\n").split(":", 2)
            if len(parts) == 3 and "memory" in parts[1].split(","):
                return parts[2] or "/"
    return "/"


def available() -> bool:
    return os.path.isdir(MEMORY_ROOT)


class MemoryCgroups:
    def __init__(self, base: str | None = None):
        self.base = os.path.join(base or own_memory_cgroup(), GROUP).replace("//", "/")

    def _dir(self, container_id: str) -> str:
        return MEMORY_ROOT + os.path.join(self.base, container_id)

    def create(self, container_id: str, limit_bytes: int | None) -> str:
        """The parent cgroup of a container, with its limit; returns runc's cgroupsPath (its child)."""
        path = self._dir(container_id)
        os.makedirs(path, exist_ok=True)
        if limit_bytes:
            with open(os.path.join(path, "memory.limit_in_bytes"), "w") as handle:
                handle.write(str(int(limit_bytes)))
        return os.path.join(self.base, container_id, "ctr")

    def hit_limit(self, container_id: str) -> bool:
        try:
            with open(os.path.join(self._dir(container_id), "memory.failcnt")) as handle:
                return int(handle.read().strip() or 0) > 0
        except (OSError, ValueError):
            return False

    def remove(self, container_id: str) -> None:
        _remove_tree(self._dir(container_id))
        for controller in _other_controllers():
            _remove_tree(os.path.join(_CONTROLLERS_ROOT, controller) + os.path.join(self.base, container_id))

    def remove_all(self) -> None:
        """Every container cgroup of this runtime, killing what still runs in one (a crashed runtime's leftovers)."""
        for controller in ["memory", *_other_controllers()]:
            _remove_tree(os.path.join(_CONTROLLERS_ROOT, controller) + self.base)


def _other_controllers() -> list:
    try:
        names = os.listdir(_CONTROLLERS_ROOT)
    except OSError:
        return []
    return [name for name in names if name != "memory" and os.path.isdir(os.path.join(_CONTROLLERS_ROOT, name))]


def _remove_tree(path: str) -> None:
    """rmdir a cgroup and its children, deepest first, killing their tasks first."""
    if not os.path.isdir(path):
        return
    for current, _dirs, _files in sorted(os.walk(path), key=lambda entry: entry[0].count("/"), reverse=True):
        for _attempt in range(40):  # a killed task leaves its cgroup a moment later
            _kill_tasks(current)
            try:
                os.rmdir(current)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.05)


def _kill_tasks(path: str) -> None:
    with contextlib.suppress(OSError), open(os.path.join(path, "cgroup.procs")) as handle:
        for pid in handle.read().split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
