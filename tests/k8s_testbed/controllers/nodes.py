# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The ``nodes`` controller (kubelet heartbeat + node lifecycle controller).

Conditions, addresses and nodeInfo of every node; names in ``state.not_ready_nodes`` get what the node lifecycle
controller gives a node whose kubelet stopped posting (``pkg/controller/nodelifecycle``, Kubernetes v1.33): every
condition Unknown (NodeStatusUnknown, "Kubelet stopped posting node status."), the ``node.kubernetes.io/unreachable``
NoSchedule and NoExecute taints, each with its ``timeAdded`` (``SwapNodeControllerTaint``), the node's Normal event
NodeNotReady and, on each of its pods still Ready, the Warning event NodeNotReady "Node is not ready"
(``MarkPodsNotReady``; the kubelet controller turns their Ready condition False, leaving ContainersReady). Removed
from the set, the node gets its conditions back and loses the taints. Heartbeats are refreshed at most once a minute.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid

from ..jsondata import json_copy
from ..timestamps import epoch_seconds, now_rfc3339
from .base import Controller, condition_in, condition_true, set_condition

KUBELET_VERSION = "v1.33.0"
CONTAINER_RUNTIME = "containerd://2.0.5"
OS_IMAGE = "Ubuntu 24.04.2 LTS"
KERNEL_VERSION = "6.8.0-60-generic"
HEARTBEAT_SECONDS = 60.0  # a node's unchanged status is re-posted at most this often


_NODE_CONDITIONS = (
    ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
    ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
)
UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"


def node_index(node: dict) -> int:
    cidr = (node.get("spec") or {}).get("podCIDR") or ""
    match = re.match(r"^10\.244\.(\d+)\.0/24$", cidr)
    if match:
        return int(match.group(1))
    return int(hashlib.sha256(node["metadata"]["name"].encode()).hexdigest(), 16) % 200 + 50


def node_status_fields(node: dict, ready: bool, previous: dict | None = None) -> dict:
    """conditions, addresses, nodeInfo, daemonEndpoints for a node (previous: its stored status)."""
    name = node["metadata"]["name"]
    conditions = _node_conditions((previous or {}).get("conditions") or [], ready, now_rfc3339())
    return {
        "conditions": conditions,
        "addresses": [
            {"type": "InternalIP", "address": f"10.0.0.{10 + node_index(node)}"},
            {"type": "Hostname", "address": name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": _node_info(name),
    }


def _node_conditions(conditions: list, ready: bool, stamp: str) -> list:
    """The kubelet's four conditions, in its order. Heartbeats move at most every HEARTBEAT_SECONDS while nothing
    changes; a node that stopped posting keeps its last heartbeat and has every condition Unknown."""
    for kind, status, reason, message in _NODE_CONDITIONS:
        heartbeat = (condition_in(conditions, kind) or {}).get("lastHeartbeatTime")
        if ready:
            old_status = (condition_in(conditions, kind) or {}).get("status")
            fresh = old_status == status and time.time() - epoch_seconds(heartbeat) < HEARTBEAT_SECONDS
            extra = {"lastHeartbeatTime": heartbeat if fresh else stamp}
        else:
            status, reason, message = "Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status."
            extra = {"lastHeartbeatTime": heartbeat or stamp}
        conditions = set_condition(conditions, kind, status, reason, message, stamp=stamp, extra=extra)
    keys = ("type", "status", "lastHeartbeatTime", "lastTransitionTime", "reason", "message")
    ordered = [condition_in(conditions, kind) for kind, *_dummy in _NODE_CONDITIONS]
    return [{key: condition[key] for key in keys if key in condition} for condition in ordered]


def _node_info(name: str) -> dict:
    """nodeInfo with machine, system and boot IDs derived from the name, so they stay put across restarts."""
    digest = hashlib.sha256(name.encode()).hexdigest()
    return {
        "machineID": digest[:32],
        "systemUUID": str(uuid.UUID(digest[32:64])),
        "bootID": str(uuid.UUID(hashlib.sha256((name + "boot").encode()).hexdigest()[:32])),
        "kernelVersion": KERNEL_VERSION,
        "osImage": OS_IMAGE,
        "containerRuntimeVersion": CONTAINER_RUNTIME,
        "kubeletVersion": KUBELET_VERSION,
        "kubeProxyVersion": KUBELET_VERSION,
        "operatingSystem": "linux",
        "architecture": "amd64",
    }


def node_ready(node: dict) -> bool:
    return condition_true(node, "Ready")


def node_internal_ip(node: dict) -> str:
    for address in (node.get("status") or {}).get("addresses") or []:
        if address.get("type") == "InternalIP":
            return address["address"]
    return f"10.0.0.{10 + node_index(node)}"


def _taints(spec: dict, ready: bool) -> list:
    """The node's taints, with the unreachable NoSchedule and NoExecute ones while it is NotReady."""
    taints = [t for t in spec.get("taints") or [] if t.get("key") != UNREACHABLE_TAINT]
    if ready:
        return taints
    old = {t.get("effect"): t for t in spec.get("taints") or [] if t.get("key") == UNREACHABLE_TAINT}
    for effect in ("NoSchedule", "NoExecute"):
        taints.append(old.get(effect) or {"key": UNREACHABLE_TAINT, "effect": effect, "timeAdded": now_rfc3339()})
    return taints


class NodesController(Controller):
    name = "node-controller"

    def reconcile(self) -> None:
        for node in list(self.objects("v1", "Node")):
            ready = node["metadata"]["name"] not in self.state.not_ready_nodes
            if node_ready(node) and not ready:
                self._record_not_ready(node)
            node = self._set_taints(node, _taints(node.get("spec") or {}, ready))
            status = json_copy(node.get("status") or {})
            status.update(node_status_fields(node, ready, node.get("status")))
            status.setdefault("capacity", {})
            status.setdefault("allocatable", dict(status["capacity"]))
            self.write_status(node, status)

    def _record_not_ready(self, node: dict) -> None:
        """The events of a node's Ready -> Unknown transition: RecordNodeStatusChange's on the node, and
        MarkPodsNotReady's on each of its pods whose Ready condition it turns False."""
        name = node["metadata"]["name"]
        self.event(node, "NodeNotReady", f"Node {name} status is now: NodeNotReady", repeat_after=0)
        for pod in self.objects("v1", "Pod"):
            ready = condition_in((pod.get("status") or {}).get("conditions"), "Ready")
            if (pod.get("spec") or {}).get("nodeName") == name and ready and ready.get("status") != "False":
                self.event(pod, "NodeNotReady", "Node is not ready", "Warning", repeat_after=0)

    def _set_taints(self, node: dict, taints: list) -> dict:
        if taints == ((node.get("spec") or {}).get("taints") or []):
            return node
        new = json_copy(node)
        if taints:
            new["spec"]["taints"] = taints
        else:
            new.setdefault("spec", {}).pop("taints", None)
        return self.update(new)
