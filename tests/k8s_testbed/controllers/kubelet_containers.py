# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The kubelet's part for pods that run as containers (``runtime/``): what it hands the runtime, what it writes back.

A bound pod runs as containers when the test bed has a runtime, every image of the pod is in the local image store
and the pod does not ask for the host network; every other pod stays a record (kubelet.py). For a running pod this
module builds its PodPlan (runtime/podspec.py) once, starts its worker, and on every round turns the worker's
snapshot into the pod's status (phase, conditions, container statuses, IPs) and its events. It also keeps what the
pods share current: every pod's /etc/hosts and the Service forwarders, from the Services and Endpoints; and it
applies the admin API's faults for real: a crash loop kills the container's process each time it runs, a Job asked
to fail runs a failing command instead of its own.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

from ..jsondata import json_copy
from ..runtime import podspec, services
from ..timestamps import now_rfc3339
from .base import set_pod_condition
from .nodes import node_internal_ip, node_ready

FAILING_COMMAND = ("/bin/sh", "-c", 'printf "%s\\n" "$LLMOPS_TESTBED_FAILURE_LOG" >&2; exit 1')
_REASON_FOR_PHASE = {"Succeeded": "PodCompleted", "Failed": "PodFailed"}


def runs_as_containers(pod: dict, runtime, images) -> bool:
    if runtime is None or (pod.get("spec") or {}).get("hostNetwork"):
        return False
    return runtime.manages(pod["metadata"]["uid"]) or podspec.images_present(pod, images)


class ContainerPods:
    """The kubelet controller's helper for pods that run as containers."""

    def __init__(self, kubelet):
        self.kubelet = kubelet
        self.state = kubelet.state
        self._plan_failures = {}  # uid -> the message last reported, so an event is written once per message
        self._shared_fingerprint = ""

    @property
    def runtime(self):
        return self.state.runtime

    # -- one pod --
    def sync(self, pod: dict, node: dict | None) -> None:
        uid = pod["metadata"]["uid"]
        if not self.runtime.manages(uid) and not self._start(pod, node):
            return
        snapshot = self.runtime.status(uid)
        if snapshot is None:
            return
        self._apply_crash_loop(pod, snapshot)
        for kind, reason, message in snapshot.events:
            self.kubelet.event(pod, reason, message, kind, "kubelet")
        self.kubelet.write_status(pod, pod_status(pod, snapshot, node))

    def _start(self, pod: dict, node: dict | None) -> bool:
        uid = pod["metadata"]["uid"]
        ip = (pod.get("status") or {}).get("podIP") or self.kubelet.pod_ip(pod, node)
        try:
            seen = self._with_ip(pod, ip)
            plan = podspec.build_pod_plan(seen, ip, self._context(seen))
        except podspec.PlanError as error:
            self._report_plan_failure(pod, error)
            return False
        self._plan_failures.pop(uid, None)
        self.runtime.run(self._with_requested_outcome(pod, plan))
        return True

    @staticmethod
    def _with_ip(pod: dict, ip: str) -> dict:
        """The pod as its containers see it through the downward API once the sandbox has its IP."""
        seen = json_copy(pod)
        seen.setdefault("status", {})["podIP"] = ip
        seen["status"]["podIPs"] = [{"ip": ip}]
        return seen

    def _context(self, seen: dict) -> podspec.PlanContext:
        shared = self._shared_objects()
        return podspec.PlanContext(
            lookup=self._lookup,
            images=self.state.images,
            volume_root=self.runtime.volume_root,
            host_path_root=self.runtime.host_path_root,
            hosts=services.hosts_file(seen, *shared),
            resolv=services.resolv_conf(seen["metadata"]["namespace"]),
        )

    def _lookup(self, kind: str, namespace: str, name: str):
        api_version = "v1"
        found = self.kubelet.peek(api_version, kind, namespace if kind != "PersistentVolume" else None, name)
        return json_copy(found) if found else None

    def _report_plan_failure(self, pod: dict, error: podspec.PlanError) -> None:
        uid = pod["metadata"]["uid"]
        message = str(error)
        status = json_copy(pod.get("status") or {})
        waiting = {"reason": error.reason if error.reason != "FailedMount" else "ContainerCreating"}
        if error.reason != "FailedMount":
            waiting["message"] = message
        status["phase"] = "Pending"
        status["containerStatuses"] = [
            {
                "name": c["name"],
                "image": c.get("image", ""),
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "started": False,
                "state": {"waiting": dict(waiting)},
                "lastState": {},
            }
            for c in pod["spec"]["containers"]
        ]
        self.kubelet.write_status(pod, status)
        if self._plan_failures.get(uid) != message:
            self._plan_failures[uid] = message
            if error.reason == "FailedMount":
                self.kubelet.event(pod, "FailedMount", message, "Warning", "kubelet")
            else:
                self.kubelet.event(pod, "Failed", f"Error: {message}", "Warning", "kubelet")

    def _with_requested_outcome(self, pod: dict, plan):
        """A Job the admin API asked to fail runs a failing command that prints the requested log."""
        owner = next((ref for ref in pod["metadata"].get("ownerReferences") or [] if ref.get("kind") == "Job"), None)
        outcome = self.state.requested_outcomes.get(("Job", pod["metadata"]["namespace"], (owner or {}).get("name")))
        if not owner or (outcome or {}).get("outcome") != "Failed":
            return plan
        log = f"LLMOPS_TESTBED_FAILURE_LOG={outcome.get('log') or 'the test bed was asked to fail this Job'}"
        failing = tuple(
            replace(container, argv=FAILING_COMMAND, env=container.env + (log,)) for container in plan.containers
        )
        return replace(plan, containers=failing)

    def _apply_crash_loop(self, pod: dict, snapshot) -> None:
        key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
        if key not in self.state.crashlooping_pods:
            return
        for container in snapshot.containers:
            if "running" in container.state:
                self.runtime.kill_container(pod["metadata"]["uid"], container.name)

    # -- deletion --
    def stopped(self, pod: dict) -> bool:
        """Stop a deleted pod's containers (its grace period, then SIGKILL); True once everything is gone."""
        uid = pod["metadata"]["uid"]
        if not self.runtime or not self.runtime.manages(uid):
            return True
        grace = pod["metadata"].get("deletionGracePeriodSeconds")
        self.runtime.stop_pod(uid, float(grace if grace is not None else 30))
        snapshot = self.runtime.status(uid)
        if snapshot is None or snapshot.stopped:
            self.runtime.forget(uid)
            return True
        return False

    # -- what all pods share --
    def sync_shared(self, pods: list) -> None:
        """Stop pods that are gone from the store; refresh every pod's /etc/hosts and the Service forwarders."""
        present = {p["metadata"]["uid"]: p for p in pods}
        for uid in self.runtime.uids():
            if uid not in present:
                self.runtime.stop_pod(uid, 0)
                snapshot = self.runtime.status(uid)
                if snapshot is not None and snapshot.stopped:
                    self.runtime.forget(uid)
        shared = self._shared_objects()
        fingerprint = _fingerprint(shared, present)
        if fingerprint == self._shared_fingerprint:
            return
        self._shared_fingerprint = fingerprint
        self.runtime.sync_services(services.service_routes(*shared))
        for uid, pod in present.items():
            if self.runtime.manages(uid):
                self.runtime.update_hosts(uid, services.hosts_file(pod, *shared))

    def _shared_objects(self) -> tuple:
        return (self.kubelet.objects("v1", "Service"), self.kubelet.objects("v1", "Endpoints"))


def _fingerprint(shared: tuple, pods: dict) -> str:
    versions = [o["metadata"].get("resourceVersion") for group in shared for o in group]
    versions += sorted((uid, (p.get("status") or {}).get("podIP") or "") for uid, p in pods.items())
    return hashlib.sha256(json.dumps(versions, default=str).encode()).hexdigest()


# ---- the pod's status from the worker's snapshot ------------------------------------------------------------


def pod_status(pod: dict, snapshot, node: dict | None) -> dict:
    status = json_copy(pod.get("status") or {})
    stamp = now_rfc3339()
    status["phase"] = snapshot.phase
    status["podIP"], status["podIPs"] = snapshot.pod_ip, [{"ip": snapshot.pod_ip}]
    if node is not None:
        status["hostIP"] = node_internal_ip(node)
        status["hostIPs"] = [{"ip": status["hostIP"]}]
    status.setdefault("startTime", stamp)
    containers = [_container_status(c) for c in snapshot.containers]
    status["containerStatuses"] = containers
    if snapshot.init_containers:
        status["initContainerStatuses"] = [_container_status(c) for c in snapshot.init_containers]
    status["conditions"] = _conditions(status.get("conditions"), snapshot, containers, node)
    return status


def _container_status(container) -> dict:
    entry = {
        "name": container.name,
        "image": container.image,
        "imageID": container.image_id if container.container_id else "",
        "ready": container.ready,
        "restartCount": container.restart_count,
        "started": container.started,
        "state": json_copy(container.state),
        "lastState": json_copy(container.last_state),
    }
    if container.container_id:
        entry["containerID"] = container.container_id
    return entry


def _conditions(conditions, snapshot, containers: list, node: dict | None) -> list:
    conditions = set_pod_condition(conditions, "PodScheduled", "True")
    conditions = set_pod_condition(
        conditions, "PodReadyToStartContainers", "True" if snapshot.sandbox_ready and not snapshot.stopped else "False"
    )
    if snapshot.initialized:
        conditions = set_pod_condition(conditions, "Initialized", "True")
    else:
        waiting = ", ".join(c.name for c in snapshot.init_containers if "terminated" not in c.state)
        message = f"containers with incomplete status: [{waiting}]"
        conditions = set_pod_condition(conditions, "Initialized", "False", "ContainersNotInitialized", message)
    if snapshot.phase in _REASON_FOR_PHASE:
        reason = _REASON_FOR_PHASE[snapshot.phase]
        for kind in ("ContainersReady", "Ready"):
            conditions = set_pod_condition(conditions, kind, "False", reason)
        return conditions
    unready = [c["name"] for c in containers if not c["ready"]]
    if unready:
        message = f"containers with unready status: [{' '.join(unready)}]"
        for kind in ("ContainersReady", "Ready"):
            conditions = set_pod_condition(conditions, kind, "False", "ContainersNotReady", message)
        return conditions
    conditions = set_pod_condition(conditions, "ContainersReady", "True")
    ready = node is None or node_ready(node)
    return set_pod_condition(conditions, "Ready", "True" if ready else "False")
