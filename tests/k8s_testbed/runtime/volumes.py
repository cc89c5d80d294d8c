# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""A pod's volumes on this machine, made from its VolumePlans before its first container starts.

emptyDir: a directory in the pod's directory (mode 0777, as the kubelet makes it); medium Memory: a tmpfs there,
sized by sizeLimit (the kernel's default, half the RAM, without one). directory: a PersistentVolume's or a hostPath's
directory under the test bed's state dir, created when missing and kept after the pod. files: configMap, secret,
downwardAPI and projected volumes written as files with their modes (not refreshed when the objects change later).
With the pod's fsGroup, emptyDir and directory volumes are handed to that group (group-writable, setgid), as the
kubelet does.
"""

from __future__ import annotations

import os
import shutil

from . import mounts


def prepare_volumes(plan, pod_dir: str) -> dict:
    """{volume name: host directory} for every volume of the pod."""
    return {volume.name: _prepare(volume, pod_dir, plan.fs_group) for volume in plan.volumes}


def _prepare(volume, pod_dir: str, fs_group) -> str:
    if volume.kind == "directory":
        os.makedirs(volume.host_dir, exist_ok=True)
        _apply_fs_group(volume.host_dir, fs_group)
        return volume.host_dir
    path = os.path.join(pod_dir, "volumes", volume.name)
    if volume.kind == "files":
        _write_files(path, volume.files)
        return path
    if volume.kind == "memory" and path not in mounts.mount_points_below(path):
        mounts.mount_tmpfs(path, volume.size_bytes, mode="0777")
    os.makedirs(path, exist_ok=True)
    os.chmod(path, 0o777)
    _apply_fs_group(path, fs_group)
    return path


def _write_files(directory: str, files: tuple) -> None:
    if os.path.isdir(directory):
        shutil.rmtree(directory)
    os.makedirs(directory)
    for relative, data, mode in files:
        target = os.path.join(directory, os.path.normpath(relative).lstrip("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as handle:
            handle.write(data)
        os.chmod(target, int(mode))


def _apply_fs_group(path: str, fs_group) -> None:
    if fs_group is None:
        return
    for current, dirs, files in os.walk(path):
        os.chown(current, -1, int(fs_group))
        os.chmod(current, os.stat(current).st_mode | 0o2070)
        for name in files:
            target = os.path.join(current, name)
            os.chown(target, -1, int(fs_group), follow_symlinks=False)
            os.chmod(target, os.stat(target).st_mode | 0o060)
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(current, d))]


def release_volumes(pod_dir: str) -> None:
    """Unmount the pod's tmpfs volumes and remove its own volume directories (PersistentVolumes stay)."""
    mounts.unmount_below(os.path.join(pod_dir, "volumes"))
    shutil.rmtree(os.path.join(pod_dir, "volumes"), ignore_errors=True)
