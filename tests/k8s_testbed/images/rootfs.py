# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""A root filesystem made of stored layers, mounted for a build step or a command, and processes chrooted into it.

The one copy of this mount logic: the builder runs its steps with it, and ``run_in_image`` runs a command in a
stored image (tests, checks). The layers are stacked with overlayfs under an upper dir that keeps what the
processes write (a build step's new layer, or a throwaway dir). While mounted, the root also has /proc, /sys
(read-only), a /dev of its own (null, zero, full, random, urandom, tty, shm), a tmpfs /tmp, the host's
/etc/resolv.conf and /etc/hosts, and any host paths the caller names, read-only at the path it names. None of
these reach the upper dir: their mount points come from a scaffold dir stacked below every layer, so an image
that lacks /proc or /etc/pip.conf gets an empty one to mount on, and an image that has it keeps its own.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
NETWORK_FILES = ("/etc/resolv.conf", "/etc/hosts")
SCAFFOLD_DIRS = ("/proc", "/sys", "/dev", "/tmp")
SYMLINK_HOPS = 40


class RootfsError(RuntimeError):
    pass


@dataclass(frozen=True)
class HostPath:
    source: str  # a file or directory of the host
    target: str  # absolute path inside the root where it shows, read-only


@dataclass(frozen=True)
class RootfsView:
    layers: tuple  # layer dirs, bottom first
    upper: str | None = None  # keeps what the processes write; None: a throwaway dir
    host_paths: tuple = ()  # HostPath, shown read-only


@contextlib.contextmanager
def mounted(view: RootfsView, work_dir: Path):
    """Mount ``view`` under ``work_dir`` (on the upper dir's filesystem); yields the root. Every mount is undone on
    the way out, also when the body fails."""
    work_dir = Path(work_dir)
    mounts = []
    try:
        root = _mount_layers(view, work_dir, mounts)
        _mount_kernel_filesystems(root, mounts)
        network = [HostPath(path, path) for path in NETWORK_FILES if os.path.exists(path)]
        for host_path in network + sorted(view.host_paths, key=lambda h: h.target):
            _bind_read_only(root, host_path, mounts)
        yield root
    finally:
        unmount_all(mounts)


def _mount_layers(view: RootfsView, work_dir: Path, mounts: list) -> Path:
    scaffold, root, overlay_work = work_dir / "scaffold", work_dir / "root", work_dir / "work"
    upper = Path(view.upper) if view.upper else work_dir / "upper"
    for folder in (root, overlay_work, upper):
        folder.mkdir(parents=True, exist_ok=True)
    _make_scaffold(scaffold, view.host_paths)
    lower = [*reversed([str(layer) for layer in view.layers]), str(scaffold)]
    for path in [*lower, str(upper), str(overlay_work)]:
        if "," in path or ":" in path:
            raise RootfsError(f"overlayfs cannot stack {path}: its options take no ',' or ':' in a path; move it")
    # Plain upper-dir semantics: a renamed directory is copied, never recorded as a redirect xattr, so the upper
    # dir converts to an OCI layer tar exactly.
    options = (
        f"lowerdir={':'.join(lower)},upperdir={upper},workdir={overlay_work},redirect_dir=off,metacopy=off,index=off"
    )
    _mount(["-t", "overlay", "-o", options, "overlay"], root, mounts)
    # Private, so nothing mounted inside is seen elsewhere, whatever this namespace's propagation.
    subprocess.run(["mount", "--make-private", str(root)], check=True)
    return root


def _make_scaffold(scaffold: Path, host_paths) -> None:
    """The bottom layer: empty mount points, for an image that lacks them."""
    for folder in SCAFFOLD_DIRS:
        (scaffold / folder.lstrip("/")).mkdir(parents=True, exist_ok=True)
    files = list(NETWORK_FILES)
    for host_path in host_paths:
        if not os.path.isabs(host_path.target):
            raise RootfsError(f"a host path's target must be absolute inside the image, got {host_path.target!r}")
        if os.path.isdir(host_path.source):
            (scaffold / host_path.target.lstrip("/")).mkdir(parents=True, exist_ok=True)
        else:
            files.append(host_path.target)
    for file in files:
        (scaffold / file.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (scaffold / file.lstrip("/")).touch()


def _mount_kernel_filesystems(root: Path, mounts: list) -> None:
    _mount(["-t", "proc", "-o", "nosuid,nodev,noexec", "proc"], inside(root, "/proc"), mounts)
    _mount(["-t", "sysfs", "-o", "ro,nosuid,nodev,noexec", "sysfs"], inside(root, "/sys"), mounts)
    dev = inside(root, "/dev")
    _mount(["-t", "tmpfs", "-o", "nosuid,mode=0755,size=1m", "tmpfs"], dev, mounts)
    for device in DEVICES:
        (dev / device).touch()
        _mount(["--bind", f"/dev/{device}"], dev / device, mounts)
    (dev / "shm").mkdir()
    _mount(["-t", "tmpfs", "-o", "nosuid,nodev,mode=1777", "tmpfs"], dev / "shm", mounts)
    (dev / "pts").mkdir()
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "fd/0"), ("stdout", "fd/1"), ("stderr", "fd/2")):
        (dev / name).symlink_to(target)
    _mount(["-t", "tmpfs", "-o", "nosuid,nodev,mode=1777", "tmpfs"], inside(root, "/tmp"), mounts)


def _bind_read_only(root: Path, host_path: HostPath, mounts: list) -> None:
    target = inside(root, host_path.target)
    if not target.exists() and _on_scratch(root, target):
        # Under the /tmp or /dev this module mounted: the scaffold's mount point is hidden, make it there.
        if os.path.isdir(host_path.source):
            target.mkdir(parents=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch()
    _mount(["--bind", "-o", "ro", os.path.realpath(host_path.source)], target, mounts)


def _on_scratch(root: Path, target: Path) -> bool:
    return any(target.is_relative_to(inside(root, scratch)) for scratch in ("/tmp", "/dev"))


def _mount(arguments: list, target: Path, mounts: list) -> None:
    completed = subprocess.run(["mount", *arguments, str(target)], capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RootfsError(
            f"mount {' '.join(arguments)} {target} failed (exit {completed.returncode}): {completed.stderr.strip()}. "
            "Building and running local images needs root (mount, overlayfs, chroot)."
        )
    mounts.append(target)


def unmount_all(mounts: list) -> None:
    """Unmount in reverse order; a busy mount is detached lazily (it goes once its last user exits)."""
    while mounts:
        target = mounts.pop()
        if subprocess.run(["umount", str(target)], capture_output=True, check=False).returncode != 0:
            lazy = subprocess.run(["umount", "-l", str(target)], capture_output=True, text=True, check=False)
            if lazy.returncode != 0:
                print(f"images: could not unmount {target}: {lazy.stderr.strip()}", file=sys.stderr)


def processes_inside(directory: Path) -> list:
    """The processes whose root directory lies under ``directory`` (chrooted into a rootfs mounted there)."""
    prefix = str(directory).rstrip("/") + "/"
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):  # gone meanwhile, or a kernel thread
            if os.readlink(f"/proc/{pid}/root").startswith(prefix):
                found.append(int(pid))
    return found


def kill_processes_inside(directory: Path, timeout: float = 10) -> list:
    """Kill what still runs chrooted under ``directory`` (a killed build's step) so its mounts can go."""
    killed = processes_inside(directory)
    for pid in killed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while processes_inside(directory) and time.monotonic() < deadline:
        time.sleep(0.05)
    return killed


def inside(root: Path, path: str) -> Path:
    """``path`` as a process chrooted into ``root`` sees it: symlinks resolved against root, never leading out."""
    parts = [part for part in path.split("/") if part not in ("", ".")]
    resolved, hops = [], 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            resolved = resolved[:-1]
            continue
        candidate = root.joinpath(*resolved, part)
        if not candidate.is_symlink():
            resolved.append(part)
            continue
        hops += 1
        if hops > SYMLINK_HOPS:
            raise RootfsError(f"{path} inside {root}: more than {SYMLINK_HOPS} symlinks (a loop?)")
        link = os.readlink(candidate)
        if link.startswith("/"):
            resolved = []
        parts = [part for part in link.split("/") if part not in ("", ".")] + parts
    return root.joinpath(*resolved)


def environment(config: dict) -> dict:
    """The process environment an image's config gives (HOME=/root unless it says otherwise, as runtimes do)."""
    env = {"HOME": "/root"}
    env.update(item.split("=", 1) for item in config.get("Env") or [] if "=" in item)
    return env


def entering(root: Path, cwd: str = "/"):
    """A preexec_fn that chroots the child into ``root`` and changes to ``cwd`` there, before it executes."""

    def enter():
        os.chroot(root)
        os.chdir(cwd)

    return enter


def run_in_image(image, argv: list, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``argv`` as root in a stored image (``images.store.LocalImage``) with its Env and WorkingDir; what it
    writes is thrown away. Returns the finished process, its output captured as text."""
    with tempfile.TemporaryDirectory(prefix="llmops-image-run-") as work:
        with mounted(RootfsView(layers=tuple(image.layer_dirs)), Path(work)) as root:
            return subprocess.run(
                argv,
                env=dict(environment(image.config), **(env or {})),
                preexec_fn=entering(root, image.config.get("WorkingDir") or "/"),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
