# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""One pod's life on its node, in its own thread, as the kubelet's pod worker lives it.

Sandbox (network namespace, volumes, /etc files), then the init containers one after another (each must exit 0;
a failed one is retried unless restartPolicy is Never, which fails the pod), then every container. A container that
ends is restarted as restartPolicy says (Always; OnFailure after a non-zero exit; Never not), after the kubelet's
back-off: at once the first time, then 10 s doubling up to 5 minutes, reset once a container ran 10 minutes. While
it waits its state is CrashLoopBackOff. Probes run on their periods: a failed startup or liveness probe kills the
container (its grace period, then SIGKILL), which then restarts as above; readiness decides ``ready``. Stopping
(the pod deleted, or the test bed stopping) sends SIGTERM, waits the grace period, then SIGKILL, and removes
every container, mount and the network namespace.

The worker never reads the object store: it works from its PodPlan and publishes PodStatus snapshots, which the
kubelet controller turns into the pod's status; ``poke()`` asks the controllers for a round when something changed.
"""

from __future__ import annotations

import copy
import os
import shutil
import threading
import time
from dataclasses import dataclass, field

from . import probes, volumes
from .containers import ContainerInstance, InstanceContext

TICK_SECONDS = 0.25
BACKOFF_START, BACKOFF_MAX, BACKOFF_RESET = 10.0, 300.0, 600.0


def backoff_seconds(failures: int) -> float:
    """Wait before restart number ``failures`` (1-based): none the first time, then 10 s doubling, at most 5 min."""
    return 0.0 if failures <= 1 else min(BACKOFF_START * 2 ** (failures - 2), BACKOFF_MAX)


@dataclass
class ContainerStatus:
    """One container as the kubelet reports it (the fields of a containerStatuses entry)."""

    name: str
    image: str
    image_id: str
    init: bool = False
    state: dict = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: dict = field(default_factory=dict)
    restart_count: int = 0
    ready: bool = False
    started: bool = False
    container_id: str = ""


@dataclass
class PodStatus:
    """A snapshot of the pod as its worker sees it."""

    pod_ip: str = ""
    sandbox_ready: bool = False
    initialized: bool = False
    phase: str = "Pending"  # Pending, Running, Succeeded, Failed
    containers: list = field(default_factory=list)
    init_containers: list = field(default_factory=list)
    events: list = field(default_factory=list)  # (type, reason, message) not yet reported
    stopped: bool = False  # everything torn down (after a stop)


class _Slot:
    """A container of the pod across its instances: the current one, restarts, back-off, probes."""

    def __init__(self, plan, status: ContainerStatus):
        self.plan = plan
        self.status = status
        self.instance = None
        self.failures = 0
        self.not_before = 0.0
        self.running_since = 0.0
        self.done = False  # ended and not to be restarted
        self.exit_code = None
        self.trackers = {}


class PodWorker(threading.Thread):
    def __init__(self, plan, env):
        super().__init__(name=f"pod-{plan.namespace}-{plan.name}", daemon=True)
        self.plan = plan
        self.env = env  # runtime services: runc, cgroups, network, paths, poke
        self.pod_dir = os.path.join(env.pods_root, plan.uid)
        self._lock = threading.Lock()
        # The newest /etc/hosts the kubelet gave; kept for a sandbox set up after an update.
        self._hosts = plan.hosts
        self._wake = threading.Event()
        self._stop_grace = None
        self._kill_requests = set()
        self.status = PodStatus(pod_ip=plan.ip)
        self.slots = [_Slot(c, _new_status(c)) for c in plan.init_containers + plan.containers]
        self.status.init_containers = [s.status for s in self.slots if s.plan.init]
        self.status.containers = [s.status for s in self.slots if not s.plan.init]
        self.volume_dirs = {}
        self.netns = ""

    # -- what the kubelet calls (any thread) --
    def snapshot(self) -> PodStatus:
        with self._lock:
            copied = copy.deepcopy(self.status)
            self.status.events = []
            return copied

    def stop(self, grace: float) -> None:
        with self._lock:
            self._stop_grace = grace if self._stop_grace is None else min(grace, self._stop_grace)
        self._wake.set()

    def kill_container(self, name: str) -> None:
        """Kill the container's process, as a crash would (a fault the admin API injects)."""
        with self._lock:
            self._kill_requests.add(name)
        self._wake.set()

    def running_instance(self, name: str):
        for slot in self.slots:
            if slot.plan.name == name and slot.instance is not None and slot.instance.running():
                return slot.instance
        return None

    def log_dir(self, name: str) -> str:
        return os.path.join(self.env.logs_root, f"{self.plan.namespace}_{self.plan.name}_{self.plan.uid}", name)

    # -- the worker thread --
    def run(self) -> None:
        try:
            if self._set_up_sandbox():
                while self._stop_grace is None:
                    self._step()
                    self._wake.wait(TICK_SECONDS)
                    self._wake.clear()
        finally:
            self._tear_down()

    def _changed(self) -> None:
        self.env.poke()

    def _event(self, kind: str, reason: str, message: str) -> None:
        with self._lock:
            self.status.events.append((kind, reason, message))
        self._changed()

    def _set_up_sandbox(self) -> bool:
        try:
            os.makedirs(self.pod_dir, exist_ok=True)
            self.netns = self.env.network.add_pod(self.plan.uid, self.plan.ip)
            self.volume_dirs = volumes.prepare_volumes(self.plan, self.pod_dir)
            self.pod_files = self._write_pod_files()
        except Exception as error:  # reported as the kubelet does; not retried here (README: not emulated)
            self._event("Warning", "FailedCreatePodSandBox", f"Failed to create pod sandbox: {error}")
            self._stop_grace = 0
            return False
        with self._lock:
            self.status.sandbox_ready = True
        self._changed()
        return True

    def _write_pod_files(self) -> dict:
        etc = os.path.join(self.pod_dir, "etc")
        os.makedirs(etc, exist_ok=True)
        written = {}
        with self._lock:  # update_hosts skips a file that does not exist yet: write the newest one
            files = {
                "/etc/hosts": self._hosts,
                "/etc/hostname": self.plan.hostname + "\n",
                "/etc/resolv.conf": self.plan.resolv,
            }
            for target, text in files.items():
                path = os.path.join(etc, os.path.basename(target))
                with open(path, "w", encoding="utf-8") as handle:
                    handle.write(text)
                written[target] = path
        return written

    def update_hosts(self, text: str) -> None:
        """Rewrite the pod's /etc/hosts in place (containers see it through a bind mount of the same file)."""
        path = os.path.join(self.pod_dir, "etc", "hosts")
        with self._lock:
            self._hosts = text
            if not os.path.exists(path):
                return  # the sandbox writes it
            with open(path, encoding="utf-8") as handle:
                if handle.read() == text:
                    return
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(text)

    def _step(self) -> None:
        self._apply_kill_requests()
        if not self.status.initialized:
            self._step_init()
        else:
            for slot in self.slots:
                if not slot.plan.init:
                    self._step_container(slot)
            self._update_phase()

    def _apply_kill_requests(self) -> None:
        with self._lock:
            names, self._kill_requests = self._kill_requests, set()
        for slot in self.slots:
            if slot.plan.name in names and slot.instance is not None:
                slot.instance.signal("KILL")

    def _step_init(self) -> None:
        for slot in (s for s in self.slots if s.plan.init):
            if slot.done and slot.exit_code == 0:
                continue
            if slot.done:  # failed with restartPolicy Never: the pod fails
                self._set_phase("Failed")
                return
            self._step_container(slot)
            return
        with self._lock:
            self.status.initialized = True
        self._changed()

    def _step_container(self, slot: _Slot) -> None:
        now = time.monotonic()
        if slot.instance is not None:
            if slot.instance.running():
                self._probe(slot, now)
            else:
                self._ended(slot, now)
        elif not slot.done and now >= slot.not_before:
            self._start(slot, now)

    def _start(self, slot: _Slot, now: float) -> None:
        context = InstanceContext(
            pod_dir=self.pod_dir,
            netns=self.netns,
            hostname=self.plan.hostname,
            volume_dirs=self.volume_dirs,
            pod_files=self.pod_files,
            log_dir=self.log_dir(slot.plan.name),
            restart_count=slot.status.restart_count,
        )
        instance = ContainerInstance(slot.plan, context, self.env.runc, self.env.cgroups)
        try:
            instance.start()
        except Exception as error:  # a mount or runc failure: the kubelet reports it and retries later
            instance.remove()
            slot.not_before = now + BACKOFF_START
            self._set_state(slot, {"waiting": {"reason": "CreateContainerError", "message": str(error)}})
            self._event("Warning", "Failed", f"Error: {error}")
            return
        slot.instance, slot.running_since = instance, now
        slot.trackers = {
            kind: probes.ProbeTracker(probe, now)
            for kind, probe in (
                ("startup", slot.plan.startup),
                ("liveness", slot.plan.liveness),
                ("readiness", slot.plan.readiness),
            )
            if probe is not None
        }
        with self._lock:
            slot.status.container_id = instance.container_id
            slot.status.state = {"running": {"startedAt": instance.started_at}}
            slot.status.started = slot.plan.startup is None
            slot.status.ready = slot.plan.readiness is None and slot.plan.startup is None and not slot.plan.init
        self._event("Normal", "Started", f"Started container {slot.plan.name}")

    def _probe(self, slot: _Slot, now: float) -> None:
        startup = slot.trackers.get("startup")
        if startup is not None and startup.result is not True:
            self._run_probe(slot, "startup", startup, now)
            if startup.result is True:
                with self._lock:
                    slot.status.started = True
                    slot.status.ready = slot.plan.readiness is None
                self._changed()
            return
        liveness = slot.trackers.get("liveness")
        if liveness is not None:
            self._run_probe(slot, "liveness", liveness, now)
        readiness = slot.trackers.get("readiness")
        if readiness is not None and self._run_probe(slot, "readiness", readiness, now):
            ready = readiness.result is True
            if ready != slot.status.ready:
                with self._lock:
                    slot.status.ready = ready
                self._changed()

    def _run_probe(self, slot: _Slot, kind: str, tracker, now: float) -> bool:
        """One attempt when due; a failed startup or liveness probe kills the container. True when it ran."""
        if not tracker.due(now):
            return False
        succeeded, message = probes.run_probe(tracker.probe, self.plan.ip, slot.instance.exec_argv)
        tracker.record(succeeded, message, time.monotonic())
        if not succeeded:
            self._event("Warning", "Unhealthy", f"{kind.capitalize()} probe failed: {message}")
        if kind in ("startup", "liveness") and tracker.result is False:
            what = "startup probe" if kind == "startup" else "liveness probe"
            self._event("Normal", "Killing", f"Container {slot.plan.name} failed {what}, will be restarted")
            grace = tracker.probe.termination_grace
            self._kill(slot.instance, self.plan.grace_seconds if grace is None else float(grace))
        return True

    def _ended(self, slot: _Slot, now: float) -> None:
        ending = slot.instance.finish()
        slot.instance = None
        if now - slot.running_since >= BACKOFF_RESET:
            slot.failures = 0
        restart = self._restarts(slot, ending.exit_code)
        terminated = {
            "exitCode": ending.exit_code,
            "reason": ending.reason,
            "startedAt": ending.started_at,
            "finishedAt": ending.finished_at,
            "containerID": ending.container_id,
        }
        if ending.message:
            terminated["message"] = ending.message
        if restart:
            slot.failures += 1
            delay = backoff_seconds(slot.failures)
            slot.not_before = now + delay
            with self._lock:
                slot.status.last_state = {"terminated": terminated}
                slot.status.restart_count += 1
                slot.status.state = _waiting_after_exit(slot, delay, self.plan)
                slot.status.ready = slot.status.started = False
        else:
            slot.done, slot.exit_code = True, ending.exit_code
            with self._lock:
                slot.status.state = {"terminated": terminated}
                slot.status.ready = slot.status.started = False
        self._changed()

    def _restarts(self, slot: _Slot, exit_code: int) -> bool:
        policy = self.plan.restart_policy
        if slot.plan.init:
            return exit_code != 0 and policy != "Never"
        return policy == "Always" or (policy == "OnFailure" and exit_code != 0)

    def _update_phase(self) -> None:
        main = [s for s in self.slots if not s.plan.init]
        if all(s.done for s in main):
            self._set_phase("Succeeded" if all(s.exit_code == 0 for s in main) else "Failed")
        elif self.status.phase == "Pending" and any(s.status.container_id for s in main):
            self._set_phase("Running")

    def _set_phase(self, phase: str) -> None:
        if self.status.phase != phase:
            with self._lock:
                self.status.phase = phase
            self._changed()

    def _set_state(self, slot: _Slot, state: dict) -> None:
        with self._lock:
            slot.status.state = state
        self._changed()

    # -- stopping --
    def _kill(self, instance, grace: float) -> None:
        """SIGTERM, the grace period, then SIGKILL; returns once the process is gone."""
        instance.signal("TERM")
        deadline = time.monotonic() + max(grace, 0)
        while instance.running() and time.monotonic() < deadline:
            time.sleep(0.1)
        if instance.running():
            instance.signal("KILL")
        deadline = time.monotonic() + 10
        while instance.running() and time.monotonic() < deadline:
            time.sleep(0.05)

    def _tear_down(self) -> None:
        grace = self._stop_grace or 0
        running = [s for s in self.slots if s.instance is not None]
        threads = [threading.Thread(target=self._kill, args=(s.instance, grace)) for s in running]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for slot in running:
            slot.instance.finish()
            slot.instance = None
        volumes.release_volumes(self.pod_dir)
        if self.netns:
            self.env.network.remove_pod(self.plan.uid)
        shutil.rmtree(self.pod_dir, ignore_errors=True)
        with self._lock:
            self.status.stopped = True
        self._changed()


def _new_status(plan) -> ContainerStatus:
    image = plan.image
    return ContainerStatus(name=plan.name, image=image.reference, image_id=_image_id(image), init=plan.init)


def _image_id(image) -> str:
    repository = image.reference.split("@", 1)[0]
    if ":" in repository.rsplit("/", 1)[-1]:
        repository = repository.rsplit(":", 1)[0]
    return f"{repository}@{image.manifest_digest}"


def _waiting_after_exit(slot: _Slot, delay: float, plan) -> dict:
    if delay <= 0:
        return {"waiting": {"reason": "ContainerCreating"}}
    who = f"container={slot.plan.name} pod={plan.name}_{plan.namespace}({plan.uid})"
    shown = int(delay)
    text = f"{shown // 60}m{shown % 60}s" if shown >= 60 else f"{shown}s"
    return {"waiting": {"reason": "CrashLoopBackOff", "message": f"back-off {text} restarting failed {who}"}}
