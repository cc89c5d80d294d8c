# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""One container instance: its root filesystem, cgroup and bundle, the runc process, its log, and its end.

Every start of a container (the first, and each restart) is a new instance with a fresh writable layer over the
image's layers and a new container ID, as with containerd; the pod's volumes and network stay.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import uuid
from dataclasses import dataclass

from ..timestamps import now_rfc3339
from . import bundle, logs, mounts

TERMINATION_MESSAGE_BYTES = 4096  # the kubelet reads at most this much of terminationMessagePath
FALLBACK_LOG_LINES, FALLBACK_LOG_BYTES = 80, 2048  # FallbackToLogsOnError: the log's tail, at most this much


@dataclass
class Ending:
    """How an instance ended: the kubelet's terminated state."""

    exit_code: int
    reason: str
    message: str
    started_at: str
    finished_at: str
    container_id: str


@dataclass(frozen=True)
class InstanceContext:
    """Where an instance lives and what it joins."""

    pod_dir: str
    netns: str
    hostname: str
    volume_dirs: dict
    pod_files: dict
    log_dir: str
    restart_count: int


class ContainerInstance:
    def __init__(self, plan, context: InstanceContext, runc, cgroups):
        self.plan = plan
        self.context = context
        self.runc = runc
        self.cgroups = cgroups
        self.id = uuid.uuid4().hex + uuid.uuid4().hex
        self.dir = os.path.join(context.pod_dir, "containers", self.id)
        self.process = None
        self.started_at = ""
        self.log = None
        self._readers = []

    @property
    def container_id(self) -> str:
        return f"containerd://{self.id}"

    def start(self) -> None:
        """Create the root filesystem, cgroup and bundle, and start runc; the log starts with it."""
        rootfs = os.path.join(self.dir, "rootfs")
        mounts.mount_overlay(
            self.plan.image.layer_dirs, os.path.join(self.dir, "upper"), os.path.join(self.dir, "work"), rootfs
        )
        termination = os.path.join(self.dir, "termination-log")
        open(termination, "w").close()
        config = bundle.runtime_config(
            self.plan,
            rootfs=rootfs,
            hostname=self.context.hostname,
            netns=self.context.netns,
            cgroups_path=self.cgroups.create(self.id, self.plan.memory_limit),
            mounts=bundle.container_mounts(self.plan, self.context.volume_dirs, self.context.pod_files, termination),
        )
        bundle.write_bundle(self.dir, config)
        self.log = logs.LogWriter(self.context.log_dir, self.context.restart_count)
        self.started_at = now_rfc3339()
        self.process = self.runc.run(self.dir, self.id)
        for stream, name in ((self.process.stdout, "stdout"), (self.process.stderr, "stderr")):
            reader = threading.Thread(target=logs.pump_stream, args=(stream, self.log, name), daemon=True)
            reader.start()
            self._readers.append(reader)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, name: str) -> bool:
        return self.runc.kill(self.id, name)

    def exec_argv(self, command: list) -> list:
        return self.runc.exec_argv(self.id, command)

    def finish(self) -> Ending:
        """After the process ended: the terminated state, then everything of the instance removed but its log."""
        code = self.process.wait()
        for reader in self._readers:
            reader.join(timeout=5)
        self.log.close()
        code = 128 - code if code < 0 else code  # runc itself killed by a signal
        oom = code == 137 and self.cgroups.hit_limit(self.id)
        reason = "OOMKilled" if oom else "Completed" if code == 0 else "Error"
        ending = Ending(code, reason, self._message(code), self.started_at, now_rfc3339(), self.container_id)
        self.remove()
        return ending

    def _message(self, code: int) -> str:
        with contextlib.suppress(OSError), open(os.path.join(self.dir, "termination-log"), "rb") as handle:
            text = handle.read(TERMINATION_MESSAGE_BYTES).decode("utf-8", "replace")
            if text:
                return text
        if self.plan.fallback_to_logs and code != 0:
            lines = [text for dummy, text in logs.read_instance(self.context.log_dir, self.context.restart_count)]
            return "\n".join(lines[-FALLBACK_LOG_LINES:])[-FALLBACK_LOG_BYTES:]
        return ""

    def remove(self) -> None:
        """Forget the container in runc, unmount its root filesystem, drop its cgroup and directory."""
        with contextlib.suppress(Exception):
            self.runc.delete(self.id)
        mounts.unmount_below(self.dir)
        self.cgroups.remove(self.id)
        shutil.rmtree(self.dir, ignore_errors=True)
