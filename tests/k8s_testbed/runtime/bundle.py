# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The OCI runtime bundle (config.json) of one container instance, from its ContainerPlan.

Namespaces: the pod's network namespace (shared by its containers, as the pause container's is); a mount, PID, IPC
and UTS namespace of its own (Kubernetes shares IPC within a pod; here each container has its own, so shared memory
between a pod's containers goes through a shared Memory emptyDir, as KubeRay's /dev/shm does). The hostname is the
pod's. Mounts: runc's defaults (/proc, /dev, /dev/pts, /dev/shm 64 MiB, /dev/mqueue, /sys read-only, cgroups), the
pod's /etc/hosts, /etc/hostname and /etc/resolv.conf, the termination-message file, then the volume mounts (a mount
at /dev/shm replaces the default one). No seccomp or AppArmor profile is applied; capabilities and
no_new_privileges are.
"""

from __future__ import annotations

import json
import os
import resource

OCI_VERSION = "1.0.2"
_MASKED = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
)
_READ_ONLY = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
_DEFAULT_SHM_BYTES = 64 * 1024 * 1024


def _base_mounts(shm_from_volume: bool) -> list:
    mounts = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755"]},
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        },
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
        },
    ]
    if not shm_from_volume:
        mounts.append(
            {
                "destination": "/dev/shm",
                "type": "tmpfs",
                "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={_DEFAULT_SHM_BYTES}"],
            }
        )
    return mounts


def _bind(source: str, destination: str, read_only: bool) -> dict:
    options = ["rbind", "rprivate"] + (["ro"] if read_only else [])
    return {"destination": destination, "type": "bind", "source": source, "options": options}


def container_mounts(container, volume_dirs: dict, pod_files: dict, termination_file: str) -> list:
    """The container's mounts: runc's defaults, the pod's files, the termination-message file, its volumes."""
    shm_from_volume = any(os.path.normpath(m.path) == "/dev/shm" for m in container.mounts)
    mounts = _base_mounts(shm_from_volume)
    for destination, source in sorted(pod_files.items()):
        mounts.append(_bind(source, destination, False))
    mounts.append(_bind(termination_file, container.termination_message_path, False))
    for mount in container.mounts:
        source = volume_dirs[mount.volume]
        if mount.sub_path:
            source = os.path.join(source, mount.sub_path)
            if not os.path.exists(source):
                os.makedirs(source, exist_ok=True)  # the kubelet creates a missing subPath as a directory
        mounts.append(_bind(source, mount.path, mount.read_only))
    return mounts


def runtime_config(container, *, rootfs: str, hostname: str, netns: str, cgroups_path: str, mounts: list) -> dict:
    """config.json for one container instance."""
    capabilities = list(container.capabilities)
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": False,
            "user": {"uid": container.uid, "gid": container.gid, "additionalGids": list(container.extra_gids)},
            "args": list(container.argv),
            "env": list(container.env),
            "cwd": container.cwd or "/",
            "capabilities": {key: capabilities for key in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": _open_files_limit(), "soft": _open_files_limit()}],
            "noNewPrivileges": container.no_new_privileges,
        },
        "root": {"path": rootfs, "readonly": container.read_only_root},
        "hostname": hostname,
        "mounts": mounts,
        "linux": {
            "cgroupsPath": cgroups_path,
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [
                {"type": "pid"},
                {"type": "ipc"},
                {"type": "uts"},
                {"type": "mount"},
                {"type": "network", "path": netns},
            ],
            "maskedPaths": list(_MASKED),
            "readonlyPaths": list(_READ_ONLY),
        },
    }


def _open_files_limit() -> int:
    """containerd gives 1048576; a container cannot get more than this process's own hard limit (20000 in some
    sandboxes), so it gets that: KubeRay's ``ulimit -n 65536`` then prints a warning and Ray starts anyway."""
    return min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 1048576)


def write_bundle(directory: str, config: dict) -> str:
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "config.json"), "w", encoding="utf-8") as handle:
        json.dump(config, handle, indent=1)
    return directory
