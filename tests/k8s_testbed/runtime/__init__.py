# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The test bed's container runtime: pods whose images exist locally run as real runc containers.

PodRuntime is what the kubelet controller drives: ``run(plan)`` starts a pod's worker (pod_worker.py), ``status``
reads it back, ``stop`` ends it; it also owns what all pods share: the pod network (network.py), the Service
forwarders (services.py), the memory cgroups (cgroups.py) and runc's state. Host side:

- ``/var/lib/llmops-k8s-testbed/`` (``RUNTIME_ROOT``): runc's state, and per pod its directory (containers' overlay
  root filesystems and writable layers, emptyDirs and tmpfs mounts, /etc files). Swept when a runtime starts
  (what a crashed one left) and when it stops.
- the test bed's state dir: ``logs/`` (container logs, logs.py), ``volumes/<pv>/`` (PersistentVolumes' data) and
  ``node-fs/<node>/`` (hostPath volumes): kept after the test bed stops, for a look afterwards.

One runtime per machine: the pod network's lock (network.py) guards it; a second test bed with the runtime fails to
start, saying which one holds it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
from dataclasses import dataclass

from . import cgroups, logs, mounts
from .network import PodNetwork
from .pod_worker import PodWorker
from .runc import Runc, runc_binary
from .services import ServiceRouter

RUNTIME_ROOT = "/var/lib/llmops-k8s-testbed"
STOP_GRACE_SECONDS = 2.0  # what containers get when the whole test bed stops


class RuntimeUnavailable(RuntimeError):
    """This machine cannot run containers (no runc, not root, no memory cgroup); the message says which."""


def unavailable_reason() -> str:
    """Why pods cannot run as containers here, or "" when they can."""
    if os.geteuid() != 0:
        return "the runtime needs root (runc, mounts, network namespaces)"
    if runc_binary() is None:
        return "runc is not installed (Debian package runc; make system-packages installs it)"
    if not cgroups.available():
        return "no cgroup v1 memory controller at /sys/fs/cgroup/memory"
    return ""


@dataclass
class RuntimeEnv:
    """What every pod worker shares."""

    runc: Runc
    cgroups: cgroups.MemoryCgroups
    network: PodNetwork
    pods_root: str
    logs_root: str
    poke: object


class PodRuntime:
    def __init__(self, state_dir: str, poke, root: str = RUNTIME_ROOT):
        self.root = root
        self.state_dir = state_dir
        self.volume_root = os.path.join(state_dir, "volumes")
        self.host_path_root = os.path.join(state_dir, "node-fs")
        self.router = None
        self.env = RuntimeEnv(
            runc=Runc(os.path.join(root, "runc")),
            cgroups=cgroups.MemoryCgroups(),
            network=PodNetwork(),
            pods_root=os.path.join(root, "pods"),
            logs_root=os.path.join(state_dir, "logs"),
            poke=poke,
        )
        self._workers = {}
        self._lock = threading.Lock()

    # -- life of the runtime --
    def start(self) -> None:
        reason = unavailable_reason()
        if reason:
            raise RuntimeUnavailable(reason)
        self.env.network.start()  # takes the machine's lock; fails when another runtime holds it
        self._sweep()
        os.makedirs(self.env.pods_root, exist_ok=True)
        with open(os.path.join(self.root, "runtime.json"), "w") as handle:
            json.dump({"pid": os.getpid(), "state_dir": self.state_dir, "cgroup": self.env.cgroups.base}, handle)
        self.router = ServiceRouter()

    def stop(self) -> None:
        with self._lock:
            workers = list(self._workers.values())
        for worker in workers:
            worker.stop(STOP_GRACE_SECONDS)
        for worker in workers:
            worker.join(timeout=60)
        if self.router is not None:
            self.router.stop()
        self._sweep()
        self.env.network.stop()

    def _sweep(self) -> None:
        """Remove every container, mount, cgroup and pod directory a runtime (this one, or a crashed one) left."""
        for container_id in self.env.runc.list_ids():
            self.env.runc.kill(container_id, "KILL")
            with contextlib.suppress(Exception):
                self.env.runc.delete(container_id)
        for base in {self.env.cgroups.base, _recorded_cgroup(self.root)} - {None}:
            cgroups.MemoryCgroups(os.path.dirname(base)).remove_all()
        mounts.unmount_below(self.root)
        shutil.rmtree(self.env.pods_root, ignore_errors=True)

    # -- pods --
    def run(self, plan) -> None:
        with self._lock:
            if plan.uid in self._workers:
                return
            worker = PodWorker(plan, self.env)
            self._workers[plan.uid] = worker
        worker.start()

    def manages(self, uid: str) -> bool:
        return uid in self._workers

    def uids(self) -> list:
        return list(self._workers)

    def status(self, uid: str):
        worker = self._workers.get(uid)
        return worker.snapshot() if worker else None

    def stop_pod(self, uid: str, grace: float) -> None:
        worker = self._workers.get(uid)
        if worker is not None:
            worker.stop(grace)

    def forget(self, uid: str) -> None:
        """Drop a pod whose worker has stopped."""
        with self._lock:
            worker = self._workers.get(uid)
            if worker is not None and not worker.is_alive():
                del self._workers[uid]

    def kill_container(self, uid: str, container: str) -> None:
        worker = self._workers.get(uid)
        if worker is not None:
            worker.kill_container(container)

    def exec_argv(self, uid: str, container: str, command: list) -> list | None:
        """The argv that runs ``command`` in the pod's running container; None when it does not run here."""
        worker = self._workers.get(uid)
        instance = worker.running_instance(container) if worker else None
        return instance.exec_argv(command) if instance else None

    def log_lines(self, uid: str, container: str, previous: bool) -> list | None:
        """``[(stamp, text)]`` of the container's current instance, or of the one before it; None when the pod does
        not run here. LookupError (the kubelet's message) when there is no previous instance."""
        worker = self._workers.get(uid)
        if worker is None:
            return None
        directory = worker.log_dir(container)
        found = logs.instances(directory)
        if previous:
            if len(found) < 2:
                raise LookupError(f'previous terminated container "{container}" in pod "{worker.plan.name}" not found')
            return logs.read_instance(directory, found[-2])
        return logs.read_instance(directory, found[-1]) if found else []

    def update_hosts(self, uid: str, text: str) -> None:
        worker = self._workers.get(uid)
        if worker is not None:
            worker.update_hosts(text)

    def sync_services(self, routes: list) -> None:
        if self.router is not None:
            self.router.sync(routes)


def _recorded_cgroup(root: str):
    with contextlib.suppress(OSError, ValueError, KeyError):
        with open(os.path.join(root, "runtime.json")) as handle:
            return json.load(handle)["cgroup"]
    return None
