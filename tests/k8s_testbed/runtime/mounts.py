# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Host mounts the runtime makes: a container's overlay root, Memory emptyDirs as tmpfs; and removing them all.

Every mount the runtime makes lies below its own root directory, so ``unmount_below`` can find and remove them all
(deepest first) from /proc/self/mountinfo, also those a crashed earlier runtime left behind.
"""

from __future__ import annotations

import os
import subprocess


class MountError(RuntimeError):
    """A mount or unmount failed; the message has the command and the kernel's answer."""


def _mount(*args: str) -> None:
    completed = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise MountError(f"mount {' '.join(args)} failed: {completed.stderr.strip()}")


def mount_overlay(lower_dirs: list, upper: str, work: str, target: str) -> None:
    """An overlayfs at ``target``: ``lower_dirs`` bottom layer first (overlayfs lists the top one first)."""
    for path in (upper, work, target):
        os.makedirs(path, exist_ok=True)
    options = f"lowerdir={':'.join(reversed(list(lower_dirs)))},upperdir={upper},workdir={work}"
    _mount("-t", "overlay", "overlay", "-o", options, target)


def mount_tmpfs(target: str, size_bytes: int | None, mode: str = "1777") -> None:
    os.makedirs(target, exist_ok=True)
    options = f"mode={mode}" + (f",size={int(size_bytes)}" if size_bytes else "")
    _mount("-t", "tmpfs", "-o", options, "tmpfs", target)


def mount_points_below(root: str) -> list:
    """Mount points at or below ``root``, deepest first."""
    prefix = os.path.realpath(root).rstrip("/") + "/"
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        for line in handle:
            point = line.split()[4].replace("\\040", " ")
            if point == prefix.rstrip("/") or point.startswith(prefix):
                found.append(point)
    return sorted(set(found), key=lambda p: p.count("/"), reverse=True)


def unmount(target: str) -> None:
    """Unmount one mount point; lazily when busy, so a process that still has it open cannot keep it."""
    completed = subprocess.run(["umount", target], capture_output=True, text=True, check=False)
    if completed.returncode != 0 and target in mount_points_below(target):
        subprocess.run(["umount", "-l", target], capture_output=True, text=True, check=False)


def unmount_below(root: str) -> None:
    for point in mount_points_below(root):
        unmount(point)
