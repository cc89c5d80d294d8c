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

import copy
import hashlib
import uuid
from typing import TYPE_CHECKING

from .. import defaults
from ..quantity import parse_quantity
from ..timestamps import now_rfc3339
from . import base
from .base import Controller, deleting, pod_claims, pod_terminal, set_condition
from .nodes import node_index, node_internal_ip, node_ready

if TYPE_CHECKING:
    from ..state import TestBedState

SCHEDULER = "default-scheduler"
EVENT_REPEAT_SECONDS = 60.0  # a repeated FailedScheduling bumps its Event's count at most this often
CRASH_RESTART_SECONDS = 1.0  # a crash-looping container restarts this often


def _match_expression(expression: dict, value, present: bool) -> bool:
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


def _image_ref(image: str) -> str:
    """The image as containerd reports it: with registry and tag."""
    name = image or "busybox"
    if "@" not in name and ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    first = name.split("/", 1)[0]
    if "/" not in name:
        name = "docker.io/library/" + name
    elif "." not in first and ":" not in first and first != "localhost":
        name = "docker.io/" + name
    return name


def _image_id(image: str) -> str:
    ref = _image_ref(image)
    repository = ref.split("@", 1)[0].rsplit(":", 1)[0] if "@" not in ref else ref.split("@", 1)[0]
    return f"{repository}@sha256:{hashlib.sha256(ref.encode()).hexdigest()}"


def container_requests(container: dict) -> dict:
    resources = container.get("resources") or {}
    requests = {k: parse_quantity(v) for k, v in (resources.get("limits") or {}).items()}
    requests.update({k: parse_quantity(v) for k, v in (resources.get("requests") or {}).items()})
    return requests


def pod_requests(spec: dict) -> dict:
    """What the scheduler counts: the sum over containers, at least the largest init container, plus overhead."""
    total: dict = {}
    for container in spec.get("containers") or []:
        for key, value in container_requests(container).items():
            total[key] = total.get(key, 0) + value
    for container in spec.get("initContainers") or []:
        for key, value in container_requests(container).items():
            total[key] = max(total.get(key, 0), value)
    for key, value in (spec.get("overhead") or {}).items():
        total[key] = total.get(key, 0) + parse_quantity(value)
    return total


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


def node_matches_affinity(node: dict, spec: dict) -> bool:
    labels = node["metadata"].get("labels") or {}
    for key, value in (spec.get("nodeSelector") or {}).items():
        if labels.get(key) != value:
            return False
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms") or []
    if not terms:
        return True
    fields = {"metadata.name": node["metadata"]["name"]}
    for term in terms:
        expressions = term.get("matchExpressions") or []
        field_expressions = term.get("matchFields") or []
        if not expressions and not field_expressions:
            continue
        if all(_match_expression(e, labels.get(e.get("key")), e.get("key") in labels) for e in expressions) and all(
            _match_expression(e, fields.get(e.get("key")), e.get("key") in fields) for e in field_expressions
        ):
            return True
    return False


class KubeletController(Controller):
    """kube-scheduler and the kubelets of every node."""

    name = "kubelet"

    def __init__(self, state: TestBedState):
        super().__init__(state)
        self._crash = {}  # (namespace, name) -> monotonic time of the last emulated restart

    def reconcile(self) -> None:
        nodes = {n["metadata"]["name"]: n for n in self.objects("v1", "Node")}
        pods = list(self.objects("v1", "Pod"))
        usage = {name: {} for name in nodes}
        counts = {name: 0 for name in nodes}
        for pod in pods:
            node_name = (pod.get("spec") or {}).get("nodeName")
            if node_name in usage and not pod_terminal(pod):
                counts[node_name] += 1
                for key, value in pod_requests(pod["spec"]).items():
                    usage[node_name][key] = usage[node_name].get(key, 0) + value
        pending = [
            p
            for p in pods
            if not (p.get("spec") or {}).get("nodeName")
            and not deleting(p)
            and not pod_terminal(p)
            and (p["spec"].get("schedulerName") or SCHEDULER) == SCHEDULER
        ]
        pending.sort(
            key=lambda p: (
                -int(p["spec"].get("priority") or 0),
                p["metadata"].get("creationTimestamp", ""),
                p["metadata"]["name"],
            )
        )
        for pod in pending:
            self._schedule(pod, nodes, usage, counts)
        for pod in list(self.objects("v1", "Pod")):
            node_name = (pod.get("spec") or {}).get("nodeName")
            if node_name and not deleting(pod):
                self._run(pod, nodes.get(node_name))
        for key in list(self._crash):
            if key not in self.state.crashlooping_pods:
                del self._crash[key]

    # -- scheduler --
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

    def _schedule(self, pod: dict, nodes: dict, usage: dict, counts: dict) -> None:
        spec = pod["spec"]
        total = len(nodes)
        requests = pod_requests(spec)
        problem = self._volume_problem(pod)
        if not nodes:
            self._unschedulable(pod, "no nodes available to schedule pods")
            return
        if problem:
            self._unschedulable(
                pod,
                f"0/{total} nodes are available: {problem}. preemption: 0/{total} nodes are "
                f"available: {total} Preemption is not helpful for scheduling.",
            )
            return
        reasons, preemption, fitting = {}, {}, []
        for name in sorted(nodes):
            node = nodes[name]
            node_reasons, resolvable = self._fit(node, spec, requests, usage[name], counts[name])
            if not node_reasons:
                fitting.append(name)
                continue
            for reason in node_reasons:
                reasons[reason] = reasons.get(reason, 0) + 1
            why = (
                "No preemption victims found for incoming pod"
                if resolvable
                else "Preemption is not helpful for scheduling"
            )
            preemption[why] = preemption.get(why, 0) + 1
        if not fitting:
            first = ", ".join(sorted(f"{count} {reason}" for reason, count in reasons.items()))
            second = ", ".join(sorted(f"{count} {reason}" for reason, count in preemption.items()))
            self._unschedulable(
                pod, f"0/{total} nodes are available: {first}. preemption: 0/{total} nodes are available: {second}."
            )
            return

        # least allocated: the node with the most free of what the pod asks for most
        def free_score(name):
            node = nodes[name]
            allocatable = (node.get("status") or {}).get("allocatable") or {}
            score = 0
            for key in ("cpu", "memory"):
                capacity = parse_quantity(allocatable.get(key, 0))
                if capacity:
                    score += (capacity - usage[name].get(key, 0) - requests.get(key, 0)) / capacity
            return (-score, name)

        chosen = sorted(fitting, key=free_score)[0]
        self._bind(pod, chosen)
        counts[chosen] += 1
        for key, value in requests.items():
            usage[chosen][key] = usage[chosen].get(key, 0) + value

    def _fit(self, node: dict, spec: dict, requests: dict, used: dict, count: int) -> tuple:
        """(reasons the pod does not fit, whether preemption could help)."""
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

    def _unschedulable(self, pod: dict, message: str) -> None:
        status = copy.deepcopy(pod.get("status") or {})
        status["phase"] = "Pending"
        status["conditions"] = set_condition(
            status.get("conditions"), "PodScheduled", "False", "Unschedulable", message, probe_time=True
        )
        status.setdefault("qosClass", defaults.qos_class(pod["spec"]))
        pod = self.write_status(pod, status)
        self.event(pod, "FailedScheduling", message, "Warning", SCHEDULER, repeat_after=EVENT_REPEAT_SECONDS)

    def _bind(self, pod: dict, node_name: str) -> None:
        new = copy.deepcopy(pod)
        new["spec"]["nodeName"] = node_name
        pod = self.update(new)
        status = copy.deepcopy(pod.get("status") or {})
        status["phase"] = "Pending"
        status["conditions"] = set_condition(status.get("conditions"), "PodScheduled", "True", probe_time=True)
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

    def _pod_ip(self, pod: dict, node: dict | None) -> str:
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
        status = copy.deepcopy(pod.get("status") or {})
        phase = status.get("phase") or "Pending"
        if phase in ("Succeeded", "Failed"):
            return
        spec = pod["spec"]
        stamp = now_rfc3339()
        node_name = spec["nodeName"]
        host_ip = node_internal_ip(node) if node else ""
        status.setdefault("qosClass", defaults.qos_class(spec))
        status["conditions"] = set_condition(status.get("conditions"), "PodScheduled", "True", probe_time=True)
        if host_ip:
            status["hostIP"] = host_ip
            status["hostIPs"] = [{"ip": host_ip}]
        started = phase == "Running" and status.get("containerStatuses")
        if not started:
            if not self._claims_bound(pod) or (phase == "Pending" and not status.get("containerStatuses")):
                # first round after binding (or volumes not ready): ContainerCreating
                status["phase"] = "Pending"
                status["containerStatuses"] = [self._waiting_status(c, "ContainerCreating") for c in spec["containers"]]
                if spec.get("initContainers"):
                    status["initContainerStatuses"] = [
                        self._waiting_status(c, "PodInitializing") for c in spec["initContainers"]
                    ]
                status.setdefault("startTime", stamp)
                for kind in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady"):
                    reason = "ContainersNotReady" if kind in ("Ready", "ContainersReady") else ""
                    message = ""
                    if kind in ("Ready", "ContainersReady"):
                        names = ", ".join(c["name"] for c in spec["containers"])
                        message = f"containers with unready status: [{names}]"
                    if kind == "Initialized" and spec.get("initContainers"):
                        reason = "ContainersNotInitialized"
                        names = ", ".join(c["name"] for c in spec["initContainers"])
                        message = f"containers with incomplete status: [{names}]"
                    value = "True" if kind == "Initialized" and not spec.get("initContainers") else "False"
                    status["conditions"] = set_condition(
                        status["conditions"], kind, value, reason, message, probe_time=True
                    )
                status["conditions"] = _order_conditions(status["conditions"])
                self.write_status(pod, status)
                return
            status = self._start(pod, status, node_name, stamp)
        status = self._readiness(pod, status, node)
        status["conditions"] = _order_conditions(status["conditions"])
        self.write_status(pod, status)

    @staticmethod
    def _waiting_status(container: dict, reason: str) -> dict:
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

    def _start(self, pod: dict, status: dict, node_name: str, stamp: str) -> dict:
        spec = pod["spec"]
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        ip = self._pod_ip(pod, self.peek("v1", "Node", None, node_name))
        status["phase"] = "Running"
        status["podIP"] = ip
        status["podIPs"] = [{"ip": ip}]
        status.setdefault("startTime", stamp)
        if spec.get("initContainers"):
            status["initContainerStatuses"] = [
                {
                    "name": c["name"],
                    "image": _image_ref(c.get("image", "")),
                    "imageID": _image_id(c.get("image", "")),
                    "containerID": f"containerd://{uuid.uuid4().hex}{uuid.uuid4().hex}",
                    "ready": True,
                    "restartCount": 0,
                    "started": False,
                    "state": {
                        "terminated": {
                            "exitCode": 0,
                            "reason": "Completed",
                            "startedAt": stamp,
                            "finishedAt": stamp,
                            "containerID": "",
                        }
                    },
                    "lastState": {},
                }
                for c in spec["initContainers"]
            ]
            for entry in status["initContainerStatuses"]:
                entry["state"]["terminated"]["containerID"] = entry["containerID"]
                self.state.append_log(
                    namespace, name, entry["name"], f"emulated init container {entry['name']} completed on {node_name}"
                )
        status["containerStatuses"] = []
        for container in spec["containers"]:
            status["containerStatuses"].append(
                {
                    "name": container["name"],
                    "image": _image_ref(container.get("image", "")),
                    "imageID": _image_id(container.get("image", "")),
                    "containerID": f"containerd://{uuid.uuid4().hex}{uuid.uuid4().hex}",
                    "ready": True,
                    "restartCount": 0,
                    "started": True,
                    "state": {"running": {"startedAt": stamp}},
                    "lastState": {},
                }
            )
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
            status["conditions"] = set_condition(status["conditions"], kind, "True", probe_time=True)
        return status

    def _readiness(self, pod: dict, status: dict, node: dict | None) -> dict:
        key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
        crashing = key in self.state.crashlooping_pods
        stamp = now_rfc3339()
        statuses = status.get("containerStatuses") or []
        if crashing:
            last = self._crash.get(key)
            if last is None or base.clock() - last >= CRASH_RESTART_SECONDS:
                self._crash[key] = base.clock()
                reason = self.state.crashlooping_pods.get(key) or "Error"
                for entry in statuses:
                    started_at = ((entry.get("state") or {}).get("running") or {}).get("startedAt") or stamp
                    entry["restartCount"] = int(entry.get("restartCount") or 0) + 1
                    entry["lastState"] = {
                        "terminated": {
                            "exitCode": 1,
                            "reason": "Error",
                            "startedAt": started_at,
                            "finishedAt": stamp,
                            "containerID": entry.get("containerID"),
                        }
                    }
                    delay = min(10 * 2 ** (entry["restartCount"] - 1), 300)
                    back_off = f"{delay // 60}m{delay % 60}s" if delay >= 60 else f"{delay}s"
                    who = f"container={entry['name']} pod={key[1]}_{key[0]}({pod['metadata'].get('uid')})"
                    entry["state"] = {
                        "waiting": {
                            "reason": "CrashLoopBackOff",
                            "message": f"back-off {back_off} restarting failed {who}",
                        }
                    }
                    entry["ready"] = False
                    entry["started"] = False
                    self.state.append_log(key[0], key[1], entry["name"], f"emulated crash: {reason}")
        else:
            for entry in statuses:
                if "running" not in (entry.get("state") or {}):
                    entry["state"] = {"running": {"startedAt": stamp}}
                    entry["containerID"] = f"containerd://{uuid.uuid4().hex}{uuid.uuid4().hex}"
                    entry["ready"] = True
                    entry["started"] = True
                    self.state.append_log(
                        key[0],
                        key[1],
                        entry["name"],
                        f"emulated container {entry['name']} restarted on {pod['spec']['nodeName']}",
                    )
        containers_ready = all(e.get("ready") for e in statuses)
        names = ", ".join(e["name"] for e in statuses if not e.get("ready"))
        if containers_ready:
            status["conditions"] = set_condition(status["conditions"], "ContainersReady", "True", probe_time=True)
        else:
            status["conditions"] = set_condition(
                status["conditions"],
                "ContainersReady",
                "False",
                "ContainersNotReady",
                f"containers with unready status: [{names}]",
                probe_time=True,
            )
        if node is not None and not node_ready(node):
            status["conditions"] = set_condition(status["conditions"], "Ready", "False", probe_time=True)
        elif containers_ready:
            status["conditions"] = set_condition(status["conditions"], "Ready", "True", probe_time=True)
        else:
            status["conditions"] = set_condition(
                status["conditions"],
                "Ready",
                "False",
                "ContainersNotReady",
                f"containers with unready status: [{names}]",
                probe_time=True,
            )
        return status


_CONDITION_ORDER = ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")


def _order_conditions(conditions: list) -> list:
    rank = {kind: index for index, kind in enumerate(_CONDITION_ORDER)}
    return sorted(conditions, key=lambda c: rank.get(c.get("type"), 99))
