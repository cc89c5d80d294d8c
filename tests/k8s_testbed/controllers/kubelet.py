# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The ``kubelet`` controller: kube-scheduler and the kubelets of every node.

Binds Pending pods to a node that is Ready, schedulable, matches nodeSelector / required node affinity
(matchExpressions and matchFields), tolerates the NoSchedule/NoExecute taints and has room for the requests (cpu,
memory, ephemeral-storage, extended resources such as nvidia.com/gpu, pod count; requests default to limits; init
containers counted as the scheduler does). Unplaceable pods get PodScheduled=False/Unschedulable with
kube-scheduler's message and one FailedScheduling Event whose count rises (at most once a minute while the message
stays the same). Bound pods go Pending(ContainerCreating) -> Running in the next round (once their claims are
Bound), with full status, and a log line per container. Crash-looping (``state.crashlooping_pods``) and pods on
NotReady nodes lose readiness.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import Counter
from typing import TYPE_CHECKING

from .. import defaults
from ..images.store import image_ref
from ..jsondata import json_copy
from ..quantity import parse_quantity
from ..store import ApiError
from ..timestamps import now_rfc3339
from . import base
from .base import (
    Controller,
    deleting,
    labels_of,
    pod_claims,
    pod_terminal,
    set_pod_condition,
    terminated_state,
)
from .kubelet_containers import ContainerPods, runs_as_containers
from .nodes import node_index, node_internal_ip, node_ready

if TYPE_CHECKING:
    from ..state import TestBedState

SCHEDULER = "default-scheduler"
EVENT_REPEAT_SECONDS = 60.0  # a repeated FailedScheduling bumps its Event's count at most this often
CRASH_RESTART_SECONDS = 1.0  # a crash-looping container restarts this often
_CONDITION_ORDER = ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")


# ---- scheduling predicates (the DaemonSet controller uses them too) ---------------------------------------------


def tolerates(tolerations: list, taint: dict) -> bool:
    for toleration in tolerations or []:
        if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
            continue
        operator = toleration.get("operator") or "Equal"
        if not toleration.get("key"):
            if operator == "Exists":
                return True
            continue
        if toleration["key"] != taint.get("key"):
            continue
        if operator == "Exists" or (toleration.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


def untolerated_taint(node: dict, tolerations: list, effects=("NoSchedule", "NoExecute")) -> dict | None:
    for taint in (node.get("spec") or {}).get("taints") or []:
        if taint.get("effect") in effects and not tolerates(tolerations, taint):
            return taint
    return None


def required_node_terms(spec: dict) -> list:
    """The nodeSelectorTerms of a pod spec's required node affinity."""
    affinity = (spec.get("affinity") or {}).get("nodeAffinity") or {}
    return (affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms") or []


def node_matches_affinity(node: dict, spec: dict) -> bool:
    """nodeSelector, and one of the required node affinity's terms (an empty term matches no node)."""
    labels = labels_of(node)
    for key, value in (spec.get("nodeSelector") or {}).items():
        if labels.get(key) != value:
            return False
    terms = required_node_terms(spec)
    if not terms:
        return True
    fields = {"metadata.name": node["metadata"]["name"]}
    return any(_term_matches(term, labels, fields) for term in terms)


def _term_matches(term: dict, labels: dict, fields: dict) -> bool:
    expressions, field_expressions = term.get("matchExpressions") or [], term.get("matchFields") or []
    if not expressions and not field_expressions:
        return False
    return _all_match(expressions, labels) and _all_match(field_expressions, fields)


def _all_match(expressions: list, values: dict) -> bool:
    return all(_match_expression(e, values.get(e.get("key")), e.get("key") in values) for e in expressions)


def _match_expression(expression: dict, value, present: bool) -> bool:
    """A NodeSelectorRequirement (In, NotIn, Exists, DoesNotExist, Gt, Lt) against one label or field."""
    operator = expression.get("operator")
    values = [str(v) for v in expression.get("values") or []]
    if operator == "In":
        return present and value in values
    if operator == "NotIn":
        return not present or value not in values
    if operator == "Exists":
        return present
    if operator == "DoesNotExist":
        return not present
    if operator in ("Gt", "Lt") and present and values:
        try:
            left, right = int(value), int(values[0])
        except ValueError:
            return False
        return left > right if operator == "Gt" else left < right
    return False


def container_requests(container: dict) -> dict:
    resources = container.get("resources") or {}
    requests = {k: parse_quantity(v) for k, v in (resources.get("limits") or {}).items()}
    requests.update({k: parse_quantity(v) for k, v in (resources.get("requests") or {}).items()})
    return requests


def pod_requests(spec: dict) -> dict:
    """What the scheduler counts: the sum over containers, at least the largest init container, plus overhead."""
    total: dict = {}
    for container in spec.get("containers") or []:
        _add_into(total, container_requests(container))
    for container in spec.get("initContainers") or []:
        for key, value in container_requests(container).items():
            total[key] = max(total.get(key, 0), value)
    _add_into(total, {key: parse_quantity(value) for key, value in (spec.get("overhead") or {}).items()})
    return total


def _add_into(total: dict, amounts: dict) -> None:
    for key, value in amounts.items():
        total[key] = total.get(key, 0) + value


def _fit(node: dict, spec: dict, requests: dict, used: dict, count: int) -> tuple:
    """(reasons the pod does not fit on the node, whether preemption could help)."""
    if (node.get("spec") or {}).get("unschedulable") and not tolerates(
        spec.get("tolerations"), {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}
    ):
        return ["node(s) were unschedulable"], False
    taint = untolerated_taint(node, spec.get("tolerations"))
    if taint is not None:
        return [f"node(s) had untolerated taint {{{taint.get('key')}: {taint.get('value') or ''}}}"], False
    if not node_matches_affinity(node, spec):
        return ["node(s) didn't match Pod's node affinity/selector"], False
    allocatable = (node.get("status") or {}).get("allocatable") or {}
    reasons = []
    if count + 1 > int(parse_quantity(allocatable.get("pods", 110))):
        reasons.append("Too many pods")
    for key in sorted(requests):
        if requests[key] <= 0:
            continue
        if key not in allocatable and key not in ("cpu", "memory", "ephemeral-storage"):
            reasons.append(f"Insufficient {key}")
            continue
        if requests[key] > parse_quantity(allocatable.get(key, 0)) - used.get(key, 0):
            reasons.append(f"Insufficient {key}")
    return reasons, True


def _free_score(node: dict, used: dict, requests: dict) -> tuple:
    """Least allocated first: the node with the most free of cpu and memory after the pod, then by name."""
    allocatable = (node.get("status") or {}).get("allocatable") or {}
    score = 0
    for key in ("cpu", "memory"):
        capacity = parse_quantity(allocatable.get(key, 0))
        if capacity:
            score += (capacity - used.get(key, 0) - requests.get(key, 0)) / capacity
    return (-score, node["metadata"]["name"])


def _unavailable_message(total: int, reasons, preemption) -> str:
    """kube-scheduler's FailedScheduling text: how many nodes failed for what, and why preemption does not help."""
    first = ", ".join(sorted(f"{count} {reason}" for reason, count in reasons.items()))
    second = ", ".join(sorted(f"{count} {reason}" for reason, count in preemption.items()))
    return f"0/{total} nodes are available: {first}. preemption: 0/{total} nodes are available: {second}."


# ---- container statuses -----------------------------------------------------------------------------------------


def _image_id(image: str) -> str:
    ref = image_ref(image)
    repository = ref.split("@", 1)[0].rsplit(":", 1)[0] if "@" not in ref else ref.split("@", 1)[0]
    return f"{repository}@sha256:{hashlib.sha256(ref.encode()).hexdigest()}"


def _container_id() -> str:
    return f"containerd://{uuid.uuid4().hex}{uuid.uuid4().hex}"


def _waiting_status(container: dict, reason: str) -> dict:
    """A container the runtime has not created yet."""
    return {
        "name": container["name"],
        "image": container.get("image", ""),
        "imageID": "",
        "ready": False,
        "restartCount": 0,
        "started": False,
        "state": {"waiting": {"reason": reason}},
        "lastState": {},
    }


def _created_status(container: dict, container_id: str, started: bool, state: dict) -> dict:
    """A container the runtime created: its image resolved and pinned, its ID."""
    return {
        "name": container["name"],
        "image": image_ref(container.get("image", "")),
        "imageID": _image_id(container.get("image", "")),
        "containerID": container_id,
        "ready": True,
        "restartCount": 0,
        "started": started,
        "state": state,
        "lastState": {},
    }


def _completed_init_status(container: dict, stamp: str) -> dict:
    container_id = _container_id()
    return _created_status(container, container_id, False, terminated_state(0, "Completed", stamp, stamp, container_id))


def _running_status(container: dict, stamp: str) -> dict:
    return _created_status(container, _container_id(), True, {"running": {"startedAt": stamp}})


def _names(containers: list) -> str:
    return ", ".join(c["name"] for c in containers)


def _unready_message(names: str) -> str:
    return f"containers with unready status: [{names}]"


def _back_off(restart_count: int) -> str:
    """The kubelet's crash loop back-off after that many restarts: 10s doubling up to 5m, as Go prints it."""
    delay = min(10 * 2 ** (restart_count - 1), 300)
    return f"{delay // 60}m{delay % 60}s" if delay >= 60 else f"{delay}s"


def _container_creating(spec: dict, status: dict, stamp: str) -> None:
    """The first round after binding (or while volumes are not bound): containers wait in ContainerCreating."""
    status["phase"] = "Pending"
    status["containerStatuses"] = [_waiting_status(c, "ContainerCreating") for c in spec["containers"]]
    init = spec.get("initContainers")
    if init:
        status["initContainerStatuses"] = [_waiting_status(c, "PodInitializing") for c in init]
    status.setdefault("startTime", stamp)
    conditions = set_pod_condition(status["conditions"], "PodReadyToStartContainers", "False")
    if init:
        message = f"containers with incomplete status: [{_names(init)}]"
        conditions = set_pod_condition(conditions, "Initialized", "False", "ContainersNotInitialized", message)
    else:
        conditions = set_pod_condition(conditions, "Initialized", "True")
    for kind in ("Ready", "ContainersReady"):
        conditions = set_pod_condition(
            conditions, kind, "False", "ContainersNotReady", _unready_message(_names(spec["containers"]))
        )
    status["conditions"] = conditions


def _readiness_conditions(conditions: list, statuses: list, node: dict | None) -> list:
    """ContainersReady from the containers; Ready from them and from the node (a NotReady node's pods are not)."""
    unready = ("ContainersNotReady", _unready_message(", ".join(e["name"] for e in statuses if not e.get("ready"))))
    containers_ready = all(e.get("ready") for e in statuses)
    if containers_ready:
        conditions = set_pod_condition(conditions, "ContainersReady", "True")
    else:
        conditions = set_pod_condition(conditions, "ContainersReady", "False", *unready)
    if node is not None and not node_ready(node):
        return set_pod_condition(conditions, "Ready", "False")
    if containers_ready:
        return set_pod_condition(conditions, "Ready", "True")
    return set_pod_condition(conditions, "Ready", "False", *unready)


def _order_conditions(conditions: list) -> list:
    rank = {kind: index for index, kind in enumerate(_CONDITION_ORDER)}
    return sorted(conditions, key=lambda c: rank.get(c.get("type"), 99))


class KubeletController(Controller):
    """kube-scheduler and the kubelets of every node."""

    name = "kubelet"

    def __init__(self, state: TestBedState):
        super().__init__(state)
        self._crash = {}  # (namespace, name) -> monotonic time of the last emulated restart
        self.containers = ContainerPods(self)

    def reconcile(self) -> None:
        nodes = {n["metadata"]["name"]: n for n in self.objects("v1", "Node")}
        pods = list(self.objects("v1", "Pod"))
        usage, counts = _node_usage(nodes, pods)
        for pod in _pending(pods):
            self._schedule(pod, nodes, usage, counts)
        pods = list(self.objects("v1", "Pod"))
        for pod in pods:
            node_name = (pod.get("spec") or {}).get("nodeName")
            if not node_name:
                continue
            if deleting(pod):
                self._finish_deletion(pod)
            elif runs_as_containers(pod, self.state.runtime, self.state.images):
                self.containers.sync(pod, nodes.get(node_name))
            else:
                self._run(pod, nodes.get(node_name))
        if self.state.runtime is not None:
            self.containers.sync_shared(list(self.objects("v1", "Pod")))
        for key in list(self._crash):
            if key not in self.state.crashlooping_pods:
                del self._crash[key]

    def _finish_deletion(self, pod: dict) -> None:
        """A deleted pod on a node goes once its containers have stopped (at once for a record)."""
        if self.containers.stopped(pod):
            self.remove_terminated_pod(pod)

    def remove_terminated_pod(self, pod: dict) -> None:
        metadata = pod["metadata"]
        try:
            self.store.delete(self.rtype("v1", "Pod"), metadata["namespace"], metadata["name"], grace_period=0)
        except ApiError as error:
            if error.code != 404:
                raise

    # -- scheduler --
    def _schedule(self, pod: dict, nodes: dict, usage: dict, counts: dict) -> None:
        requests = pod_requests(pod["spec"])
        chosen, message = self._choose_node(pod, nodes, usage, counts, requests)
        if chosen is None:
            self._unschedulable(pod, message)
            return
        self._bind(pod, chosen)
        counts[chosen] += 1
        _add_into(usage[chosen], requests)

    def _choose_node(self, pod: dict, nodes: dict, usage: dict, counts: dict, requests: dict) -> tuple:
        """(the node to bind to, "") or (None, why no node fits)."""
        total = len(nodes)
        if not nodes:
            return None, "no nodes available to schedule pods"
        problem = self._volume_problem(pod)
        if problem:
            return None, (
                f"0/{total} nodes are available: {problem}. preemption: 0/{total} nodes are "
                f"available: {total} Preemption is not helpful for scheduling."
            )
        reasons, preemption, fitting = Counter(), Counter(), []
        for name in sorted(nodes):
            node_reasons, resolvable = _fit(nodes[name], pod["spec"], requests, usage[name], counts[name])
            if not node_reasons:
                fitting.append(name)
                continue
            reasons.update(node_reasons)
            why = (
                "No preemption victims found for incoming pod"
                if resolvable
                else "Preemption is not helpful for scheduling"
            )
            preemption[why] += 1
        if not fitting:
            return None, _unavailable_message(total, reasons, preemption)
        return min(fitting, key=lambda name: _free_score(nodes[name], usage[name], requests)), ""

    def _volume_problem(self, pod: dict) -> str:
        namespace = pod["metadata"]["namespace"]
        for claim_name in pod_claims(pod):
            claim = self.peek("v1", "PersistentVolumeClaim", namespace, claim_name)
            if claim is None:
                return f'persistentvolumeclaim "{claim_name}" not found'
            if deleting(claim):
                return f'persistentvolumeclaim "{claim_name}" is being deleted'
            if (claim.get("status") or {}).get("phase") == "Bound" or (claim.get("spec") or {}).get("volumeName"):
                continue
            class_name = (claim.get("spec") or {}).get("storageClassName")
            storage_class = self.peek("storage.k8s.io/v1", "StorageClass", None, class_name) if class_name else None
            if (storage_class or {}).get("volumeBindingMode") != "WaitForFirstConsumer":
                return "pod has unbound immediate PersistentVolumeClaims"
        return ""

    def _unschedulable(self, pod: dict, message: str) -> None:
        status = json_copy(pod.get("status") or {})
        status["phase"] = "Pending"
        status["conditions"] = set_pod_condition(
            status.get("conditions"), "PodScheduled", "False", "Unschedulable", message
        )
        status.setdefault("qosClass", defaults.qos_class(pod["spec"]))
        pod = self.write_status(pod, status)
        self.event(pod, "FailedScheduling", message, "Warning", SCHEDULER, repeat_after=EVENT_REPEAT_SECONDS)

    def _bind(self, pod: dict, node_name: str) -> None:
        new = json_copy(pod)
        new["spec"]["nodeName"] = node_name
        pod = self.update(new)
        status = json_copy(pod.get("status") or {})
        status["phase"] = "Pending"
        status["conditions"] = set_pod_condition(status.get("conditions"), "PodScheduled", "True")
        status.setdefault("qosClass", defaults.qos_class(pod["spec"]))
        pod = self.write_status(pod, status)
        self.event(
            pod,
            "Scheduled",
            f"Successfully assigned {pod['metadata']['namespace']}/{pod['metadata']['name']} to {node_name}",
            "Normal",
            SCHEDULER,
        )

    # -- kubelet --
    def _claims_bound(self, pod: dict) -> bool:
        for claim_name in pod_claims(pod):
            claim = self.peek("v1", "PersistentVolumeClaim", pod["metadata"]["namespace"], claim_name)
            if claim is None or (claim.get("status") or {}).get("phase") != "Bound":
                return False
        return True

    def pod_ip(self, pod: dict, node: dict | None) -> str:
        host_ip = node_internal_ip(node) if node else "10.0.0.250"
        if (pod.get("spec") or {}).get("hostNetwork"):
            return host_ip
        index = node_index(node) if node else 250
        used = {
            (p.get("status") or {}).get("podIP")
            for p in self.objects("v1", "Pod")
            if (p.get("spec") or {}).get("nodeName") == pod["spec"].get("nodeName")
        }
        for host in range(2, 255):
            candidate = f"10.244.{index}.{host}"
            if candidate not in used:
                return candidate
        return f"10.244.{index}.254"

    def _run(self, pod: dict, node: dict | None) -> None:
        status = json_copy(pod.get("status") or {})
        phase = status.get("phase") or "Pending"
        if phase in ("Succeeded", "Failed"):
            return
        spec = pod["spec"]
        stamp = now_rfc3339()
        host_ip = node_internal_ip(node) if node else ""
        status.setdefault("qosClass", defaults.qos_class(spec))
        status["conditions"] = set_pod_condition(status.get("conditions"), "PodScheduled", "True")
        if host_ip:
            status["hostIP"] = host_ip
            status["hostIPs"] = [{"ip": host_ip}]
        started = phase == "Running" and status.get("containerStatuses")
        if not started and (
            not self._claims_bound(pod) or (phase == "Pending" and not status.get("containerStatuses"))
        ):
            _container_creating(spec, status, stamp)
        else:
            if not started:
                status = self._start(pod, status, spec["nodeName"], stamp)
            status = self._readiness(pod, status, node)
        status["conditions"] = _order_conditions(status["conditions"])
        self.write_status(pod, status)

    def _start(self, pod: dict, status: dict, node_name: str, stamp: str) -> dict:
        """Init containers complete and the containers run, each with a log line."""
        spec = pod["spec"]
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        ip = self.pod_ip(pod, self.peek("v1", "Node", None, node_name))
        status["phase"] = "Running"
        status["podIP"] = ip
        status["podIPs"] = [{"ip": ip}]
        status.setdefault("startTime", stamp)
        if spec.get("initContainers"):
            status["initContainerStatuses"] = [_completed_init_status(c, stamp) for c in spec["initContainers"]]
            for entry in status["initContainerStatuses"]:
                self.state.append_log(
                    namespace, name, entry["name"], f"emulated init container {entry['name']} completed on {node_name}"
                )
        status["containerStatuses"] = [_running_status(c, stamp) for c in spec["containers"]]
        for container in spec["containers"]:
            self.state.append_log(
                namespace, name, container["name"], f"emulated container {container['name']} started on {node_name}"
            )
            self.state.append_log(
                namespace,
                name,
                container["name"],
                f"image {container.get('image', '')}; command {container.get('command') or []} "
                f"args {container.get('args') or []}",
            )
        for kind in ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready"):
            status["conditions"] = set_pod_condition(status["conditions"], kind, "True")
        return status

    def _readiness(self, pod: dict, status: dict, node: dict | None) -> dict:
        statuses = status.get("containerStatuses") or []
        stamp = now_rfc3339()
        if (pod["metadata"]["namespace"], pod["metadata"]["name"]) in self.state.crashlooping_pods:
            self._crash_loop(pod, statuses, stamp)
        else:
            self._keep_running(pod, statuses, stamp)
        status["conditions"] = _readiness_conditions(status["conditions"], statuses, node)
        return status

    def _crash_loop(self, pod: dict, statuses: list, stamp: str) -> None:
        """Every CRASH_RESTART_SECONDS the containers exit with an error and wait in CrashLoopBackOff."""
        key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
        last = self._crash.get(key)
        if last is not None and base.clock() - last < CRASH_RESTART_SECONDS:
            return
        self._crash[key] = base.clock()
        reason = self.state.crashlooping_pods.get(key) or "Error"
        for entry in statuses:
            started_at = ((entry.get("state") or {}).get("running") or {}).get("startedAt") or stamp
            entry["restartCount"] = int(entry.get("restartCount") or 0) + 1
            entry["lastState"] = terminated_state(1, "Error", started_at, stamp, entry.get("containerID"))
            who = f"container={entry['name']} pod={key[1]}_{key[0]}({pod['metadata'].get('uid')})"
            message = f"back-off {_back_off(entry['restartCount'])} restarting failed {who}"
            entry["state"] = {"waiting": {"reason": "CrashLoopBackOff", "message": message}}
            entry["ready"] = False
            entry["started"] = False
            self.state.append_log(key[0], key[1], entry["name"], f"emulated crash: {reason}")

    def _keep_running(self, pod: dict, statuses: list, stamp: str) -> None:
        """Containers that are not running (a crash loop ended) start again."""
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        for entry in statuses:
            if "running" in (entry.get("state") or {}):
                continue
            entry["state"] = {"running": {"startedAt": stamp}}
            entry["containerID"] = _container_id()
            entry["ready"] = True
            entry["started"] = True
            self.state.append_log(
                namespace,
                name,
                entry["name"],
                f"emulated container {entry['name']} restarted on {pod['spec']['nodeName']}",
            )


def _node_usage(nodes: dict, pods: list) -> tuple:
    """What the pods bound to each node request, and how many there are."""
    usage = {name: {} for name in nodes}
    counts = {name: 0 for name in nodes}
    for pod in pods:
        node_name = (pod.get("spec") or {}).get("nodeName")
        if node_name in usage and not pod_terminal(pod):
            counts[node_name] += 1
            _add_into(usage[node_name], pod_requests(pod["spec"]))
    return usage, counts


def _pending(pods: list) -> list:
    """The pods the default scheduler has to place, in its order: priority, then age, then name."""
    pending = [
        p
        for p in pods
        if not (p.get("spec") or {}).get("nodeName")
        and not deleting(p)
        and not pod_terminal(p)
        and (p["spec"].get("schedulerName") or SCHEDULER) == SCHEDULER
    ]
    return sorted(
        pending,
        key=lambda p: (
            -int(p["spec"].get("priority") or 0),
            p["metadata"].get("creationTimestamp", ""),
            p["metadata"]["name"],
        ),
    )
