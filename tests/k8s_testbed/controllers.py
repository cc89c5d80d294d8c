# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The emulated cluster's control plane and nodes: what the scheduler, kubelets and operators would write.

Every controller is level-triggered and synchronous: ``reconcile()`` reads the store and writes only what is missing
or stale, so a round with nothing to do writes nothing (the server runs all enabled controllers after every change
and once a second). Delays are measured with ``clock`` (``time.monotonic``; tests may replace it).

What is emulated:

* ``nodes`` (kubelet heartbeat + node lifecycle controller): conditions, addresses, nodeInfo of every node;
  names in ``state.not_ready_nodes`` get Ready=Unknown (NodeStatusUnknown) and the ``node.kubernetes.io/unreachable``
  NoSchedule/NoExecute taints, and get them back when removed. Heartbeats are refreshed at most once a minute.
* ``kubelet`` (kube-scheduler + kubelet): binds Pending pods to a node that is Ready, schedulable, matches
  nodeSelector / required node affinity (matchExpressions and matchFields), tolerates the NoSchedule/NoExecute taints
  and has room for the requests (cpu, memory, ephemeral-storage, extended resources such as nvidia.com/gpu, pod
  count; requests default to limits; init containers counted as the scheduler does). Unplaceable pods get
  PodScheduled=False/Unschedulable with kube-scheduler's message and one FailedScheduling Event whose count rises
  (at most once a minute while the message stays the same). Bound pods go Pending(ContainerCreating) -> Running
  in the next round (once their claims are Bound), with full status, and a log line per container. Crash-looping
  (``state.crashlooping_pods``) and pods on NotReady nodes lose readiness.
* ``workloads``: Deployment -> ReplicaSet (``<name>-<pod-template-hash>``) -> Pods, rolling to a new ReplicaSet on a
  template change (the old one is scaled to 0 once the new one is ready; Recreate scales it at once);
  StatefulSet (ordered or parallel, volumeClaimTemplates, revision labels, template changes replace pods from the
  highest ordinal); DaemonSet (one pod per eligible node, DaemonSet default tolerations); Job (pods run for
  ``JOB_RUN_SECONDS`` then succeed, or fail as ``state.requested_outcomes[("Job", ns, name)]`` asks, retried up
  to backoffLimit; restartPolicy OnFailure is treated like Never); bare pods with restartPolicy Never/OnFailure finish
  only when ``requested_outcomes[("Pod", ns, name)]`` asks. Services get a clusterIP when they lack one and an
  Endpoints object with the ready (and not-ready) pods their selector matches.
* ``storage``: PersistentVolumeClaim binding (pre-bound volumeName, dynamic provisioning from a StorageClass,
  WaitForFirstConsumer, static matching for class "" or kubernetes.io/no-provisioner, ProvisioningFailed for a class
  that does not exist, retroactive default class), PersistentVolume phases (Available, Bound, Released; dynamic
  volumes with reclaimPolicy Delete are deleted with their claim).
* ``kuberay`` (KubeRay operator v1.4.2, active while a kuberay-operator Deployment is available): RayCluster head
  and worker pods named, labelled, annotated and built as KubeRay builds them (generated ``ray start`` command in
  args and KUBERAY_GEN_RAY_START_CMD, injected env, /dev/shm volume, metrics port, probes, the workers'
  ``wait-gcs-ready`` init container), the head Service (headless, as KubeRay >= 1.3 makes it by default), scaling
  (replicas/min/max/numOfHosts/suspend/workersToDelete), and status (state, replicas, desired resources, head,
  endpoints, conditions HeadPodReady / RayClusterProvisioned / RayClusterSuspended / RayClusterSuspending /
  ReplicaFailure). As in KubeRay, ``status.state`` becomes "ready" once all pods are running and ready and then
  stays "ready" (KubeRay never resets it; watch HeadPodReady and readyWorkerReplicas instead); template changes do
  not recreate pods (KubeRay does not either). RayJob and RayService objects are stored but not reconciled.
* ``gpu_operator`` (NVIDIA GPU operator, active while a ClusterPolicy exists): GPU feature discovery labels and
  ``nvidia.com/gpu`` capacity/allocatable on the seed's GPU nodes, ClusterPolicy status ready, and the operand
  DaemonSets (device plugin, GPU feature discovery, DCGM exporter, container toolkit, validator) whose pods the
  workloads controller places. Without the operator no node carries ``nvidia.com/gpu``.

What is not emulated: preemption, pod/node (anti-)affinity between pods, topology spread, host ports, resource
quotas, evictions (NoExecute taints do not evict), container restarts other than requested crash loops, probes,
image pulls, volume attachment, Deployment surge/unavailability maths, ReplicaSet history pruning, HPA, CronJobs,
EndpointSlices, RayJob/RayService, KubeRay autoscaling and GCS fault tolerance.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
import random
import re
import time
import uuid
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from . import defaults, selectors
from .store import ApiError

if TYPE_CHECKING:
    from .state import TestBedState

HERE = Path(__file__).resolve().parent
SEED_DIR = HERE / "seeds"
CRD_DIR = HERE / "crds"

clock = time.monotonic  # tests may replace it to move time forward

KUBELET_VERSION = "v1.33.0"
CONTAINER_RUNTIME = "containerd://2.0.5"
OS_IMAGE = "Ubuntu 24.04.2 LTS"
KERNEL_VERSION = "6.8.0-60-generic"
KUBERAY_VERSION = "v1.4.2"
KUBERAY_IMAGE = "quay.io/kuberay/operator:v1.4.2"
GPU_OPERATOR_VERSION = "v25.10.0"
HEARTBEAT_SECONDS = 60.0  # a node's unchanged status is re-posted at most this often
EVENT_REPEAT_SECONDS = 60.0  # a repeated FailedScheduling bumps its Event's count at most this often
JOB_RUN_SECONDS = 0.3  # how long a Job's pod runs before it finishes
CRASH_RESTART_SECONDS = 1.0  # a crash-looping container restarts this often
RAND_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # what Kubernetes uses for generated name suffixes
SCHEDULER = "default-scheduler"


# ---- small helpers -------------------------------------------------------------------------------------------


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: str | None) -> float:
    if not text:
        return 0.0
    try:
        moment = datetime.datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return 0.0
    return moment.replace(tzinfo=datetime.timezone.utc).timestamp()


def rand5() -> str:
    return "".join(random.choice(RAND_ALPHABET) for dummy in range(5))


def _safe_hash(data, length: int = 10) -> str:
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).digest()
    return "".join(RAND_ALPHABET[b % len(RAND_ALPHABET)] for b in digest[:length])


_SUFFIXES = {
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
    "Pi": 1024**5,
    "Ei": 1024**6,
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 1000),
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
}
_QUANTITY_RE = re.compile(r"^([+-]?[0-9.]+)(?:([eE][+-]?[0-9]+)|(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E))?$")


def parse_quantity(value) -> Fraction:
    """A Kubernetes quantity ("500m", "8Gi", 2, "1e3") as an exact number."""
    if value is None:
        return Fraction(0)
    if isinstance(value, (int, float)):
        return Fraction(value)
    match = _QUANTITY_RE.match(str(value).strip())
    if not match:
        raise ValueError(f"bad quantity {value!r}")
    number, exponent, suffix = match.groups()
    result = Fraction(number)
    if exponent:
        result *= Fraction(10) ** int(exponent[1:])
    return result * _SUFFIXES[suffix or ""]


def format_quantity(value: Fraction, binary: bool = False) -> str:
    """Canonical form the way resource.Quantity prints a sum: binary suffixes when asked and exact, else decimal."""
    value = Fraction(value)
    if value == 0:
        return "0"
    if binary and value.denominator == 1 and value >= 1024:
        for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
            if value % _SUFFIXES[suffix] == 0:
                return f"{value // _SUFFIXES[suffix]}{suffix}"
    if value.denominator == 1:
        for suffix, factor in (("E", 10**18), ("P", 10**15), ("T", 10**12), ("G", 10**9), ("M", 10**6), ("k", 1000)):
            if value % factor == 0:
                return f"{value // factor}{suffix}"
        return str(value.numerator)
    for suffix, factor in (("m", 1000), ("u", 10**6), ("n", 10**9)):
        scaled = value * factor
        if scaled.denominator == 1:
            return f"{scaled.numerator}{suffix}"
    return f"{int(value * 10**9 + 1)}n"


def _is_binary(value) -> bool:
    return isinstance(value, str) and value.strip().endswith("i")


def set_condition(
    conditions: list,
    kind: str,
    status: str,
    reason: str = "",
    message: str = "",
    *,
    stamp: str | None = None,
    extra: dict | None = None,
    probe_time: bool = False,
    meta: bool = False,
) -> list:
    """Set one condition in a list, keeping lastTransitionTime while the status does not change.

    meta: a metav1.Condition (custom resources), whose reason and message are required even when empty."""
    stamp = stamp or now_rfc3339()
    result = [dict(c) for c in conditions or []]
    for condition in result:
        if condition.get("type") == kind:
            if condition.get("status") != status:
                condition["lastTransitionTime"] = stamp
            condition["status"] = status
            for key, value in (("reason", reason), ("message", message)):
                if value or meta:
                    condition[key] = value
                else:
                    condition.pop(key, None)
            condition.update(extra or {})
            return result
    condition = {"type": kind, "status": status}
    if probe_time:
        condition["lastProbeTime"] = None
    condition["lastTransitionTime"] = stamp
    if reason or meta:
        condition["reason"] = reason
    if message or meta:
        condition["message"] = message
    condition.update(extra or {})
    result.append(condition)
    return result


def _condition(obj: dict, kind: str) -> dict | None:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return condition
    return None


def owner_reference(owner: dict, controller: bool = True) -> dict:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": controller,
        "blockOwnerDeletion": True,
    }


def is_owned_by(obj: dict, owner: dict) -> bool:
    uid = owner["metadata"]["uid"]
    return any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or [])


def pod_ready(pod: dict) -> bool:
    condition = _condition(pod, "Ready")
    return bool(condition and condition.get("status") == "True")


def pod_running_and_ready(pod: dict) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running" and pod_ready(pod)


def pod_terminal(pod: dict) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def deleting(obj: dict) -> bool:
    return bool(obj["metadata"].get("deletionTimestamp"))


def _match_selector(selector: dict | None, labels: dict | None) -> bool:
    """A LabelSelector (matchLabels + matchExpressions) against labels; an empty selector matches nothing here."""
    if not selector:
        return False
    labels = labels or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        if not _match_expression(expression, labels.get(expression.get("key")), expression.get("key") in labels):
            return False
    return bool(selector.get("matchLabels") or selector.get("matchExpressions"))


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


# ---- store access ----------------------------------------------------------------------------------------------


class Controller:
    """One control loop; subclasses implement reconcile()."""

    name = ""

    def __init__(self, state: TestBedState):
        self.state = state
        self.store = state.objects

    def reconcile(self) -> None:
        return None

    # -- helpers shared by the loops --
    def rtype(self, api_version: str, kind: str):
        return self.state.registry.for_kind(api_version, kind)

    def objects(self, api_version: str, kind: str, namespace: str | None = None) -> list:
        resource_type = self.rtype(api_version, kind)
        if resource_type is None:
            return []
        items = self.store.iter_objects(resource_type)
        if namespace is not None:
            items = [o for o in items if o["metadata"].get("namespace") == namespace]
        return items

    def peek(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict | None:
        resource_type = self.rtype(api_version, kind)
        return None if resource_type is None else self.store.peek(resource_type, namespace, name)

    def create(self, obj: dict, keep_status: bool = False) -> dict | None:
        resource_type = self.rtype(obj["apiVersion"], obj["kind"])
        namespace = obj["metadata"].get("namespace") if resource_type.namespaced else None
        created, dummy = self.store.create(resource_type, namespace, obj, manager=self.name, keep_status=keep_status)
        return created

    def update(self, obj: dict) -> dict:
        resource_type = self.rtype(obj["apiVersion"], obj["kind"])
        metadata = obj["metadata"]
        new = copy.deepcopy(obj)
        new["metadata"].pop("resourceVersion", None)
        updated, dummy = self.store.update(
            resource_type, metadata.get("namespace"), metadata["name"], new, manager=self.name
        )
        return updated

    def write_status(self, obj: dict, status: dict) -> dict:
        """Write status when it differs from the stored one."""
        if obj.get("status") == status:
            return obj
        resource_type = self.rtype(obj["apiVersion"], obj["kind"])
        metadata = obj["metadata"]
        if not resource_type.has_status:
            new = copy.deepcopy(obj)
            new["status"] = status
            return self.update(new)
        updated, dummy = self.store.update(
            resource_type,
            metadata.get("namespace"),
            metadata["name"],
            {"metadata": {"name": metadata["name"]}, "status": status},
            subresource="status",
            manager=self.name,
        )
        return updated

    def delete(self, obj: dict) -> None:
        resource_type = self.rtype(obj["apiVersion"], obj["kind"])
        metadata = obj["metadata"]
        try:
            self.store.delete(resource_type, metadata.get("namespace"), metadata["name"])
        except ApiError as error:
            if error.code != 404:
                raise

    def event(
        self,
        involved: dict,
        reason: str,
        message: str,
        kind: str = "Normal",
        component: str = "",
        repeat_after: float | None = None,
    ) -> None:
        """Record a core/v1 Event; the same reason and message for the same object bump its count instead
        (only when ``repeat_after`` seconds have passed since the last bump; None: never bump)."""
        event_type = self.rtype("v1", "Event")
        metadata = involved["metadata"]
        namespace = metadata.get("namespace") or "default"
        for existing in self.store.iter_objects(event_type):
            ref = existing.get("involvedObject") or {}
            if (
                ref.get("uid") == metadata.get("uid")
                and existing.get("reason") == reason
                and existing.get("message") == message
            ):
                if repeat_after is None or clock() - _EVENT_BUMPS.get(existing["metadata"]["uid"], 0) < repeat_after:
                    return
                _EVENT_BUMPS[existing["metadata"]["uid"]] = clock()
                bumped = copy.deepcopy(existing)
                bumped["count"] = int(existing.get("count") or 1) + 1
                bumped["lastTimestamp"] = now_rfc3339()
                self.update(bumped)
                return
        stamp = now_rfc3339()
        component = component or self.name
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{metadata['name']}.{time.time_ns():x}", "namespace": namespace},
            "involvedObject": {
                "apiVersion": involved.get("apiVersion"),
                "kind": involved.get("kind"),
                "name": metadata["name"],
                "namespace": metadata.get("namespace") or "",
                "uid": metadata.get("uid"),
                "resourceVersion": metadata.get("resourceVersion"),
            },
            "reason": reason,
            "message": message,
            "source": {"component": component},
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
            "type": kind,
            "eventTime": None,
            "reportingComponent": component,
            "reportingInstance": "",
        }
        if not metadata.get("namespace"):
            body["involvedObject"].pop("namespace")
        try:
            created = self.create(body)
        except ApiError:
            return
        _EVENT_BUMPS[created["metadata"]["uid"]] = clock()


_EVENT_BUMPS: dict = {}


# ---- seeds ---------------------------------------------------------------------------------------------------


def load_seed(name_or_path: str) -> dict:
    """A seed by name (``seeds/<name>.yaml``) or by path."""
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = SEED_DIR / f"{name_or_path}.yaml"
    with open(path, encoding="utf-8") as handle:
        seed = yaml.safe_load(handle) or {}
    seed.setdefault("name", path.stem)
    return seed


def _gpu_info(group: dict) -> dict | None:
    gpu = group.get("gpu")
    if not gpu or not int(gpu.get("count", 0)):
        return None
    return gpu


def seed_nodes(seed: dict) -> list:
    """(name, group, index in the cluster) for every node the seed describes."""
    nodes = []
    for group in seed.get("node_groups") or []:
        name_format = group.get("name_format") or (group.get("name_prefix", "node") + "-{index}")
        for index in range(1, int(group.get("count", 1)) + 1):
            nodes.append((name_format.format(index=index), group, len(nodes)))
    return nodes


def seed_gpu_nodes(seed: dict) -> dict:
    return {name: _gpu_info(group) for name, group, dummy in seed_nodes(seed) if _gpu_info(group)}


def _ki(quantity) -> str:
    return f"{int(parse_quantity(quantity) // 1024)}Ki"


def _build_node(name: str, group: dict, index: int) -> dict:
    labels = {
        "beta.kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
    }
    taints = [dict(t) for t in group.get("taints") or []]
    if group.get("role") == "control-plane":
        labels["node-role.kubernetes.io/control-plane"] = ""
        labels["node.kubernetes.io/exclude-from-external-load-balancers"] = ""
    labels.update({k: str(v) for k, v in (group.get("labels") or {}).items()})
    memory = parse_quantity(group.get("memory", "16Gi"))
    storage = parse_quantity(group.get("ephemeral_storage", "100Gi"))
    capacity = {
        "cpu": str(group.get("cpu", "4")),
        "ephemeral-storage": _ki(storage),
        "hugepages-1Gi": "0",
        "hugepages-2Mi": "0",
        "memory": _ki(memory),
        "pods": str(group.get("pods", 110)),
    }
    allocatable = dict(capacity)
    allocatable["memory"] = _ki(memory - 100 * 1024**2)  # the default hard eviction threshold
    allocatable["ephemeral-storage"] = str(int(storage * 9 // 10))  # nodefs.available<10%
    spec = {"podCIDR": f"10.244.{index}.0/24", "podCIDRs": [f"10.244.{index}.0/24"]}
    if taints:
        spec["taints"] = taints
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
        },
        "spec": spec,
        "status": {"capacity": capacity, "allocatable": allocatable},
    }


def _crd_documents() -> list:
    cached = _CRD_CACHE.get("all")
    if cached is None:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        cached = []
        for path in sorted(CRD_DIR.glob("*.yaml")):
            with open(path, encoding="utf-8") as handle:
                for document in yaml.load_all(handle, Loader=loader):
                    if isinstance(document, dict) and document.get("kind") == "CustomResourceDefinition":
                        cached.append(document)
        _CRD_CACHE["all"] = cached
    return copy.deepcopy(cached)


_CRD_CACHE: dict = {}

_MINIMAL_CLUSTERPOLICY_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "clusterpolicies.nvidia.com"},
    "spec": {
        "group": "nvidia.com",
        "names": {
            "kind": "ClusterPolicy",
            "listKind": "ClusterPolicyList",
            "plural": "clusterpolicies",
            "singular": "clusterpolicy",
        },
        "scope": "Cluster",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
            }
        ],
    },
}


def crds_for_group(group: str) -> list:
    found = [c for c in _crd_documents() if (c.get("spec") or {}).get("group") == group]
    if not found and group == "nvidia.com":
        found = [copy.deepcopy(_MINIMAL_CLUSTERPOLICY_CRD)]
    return found


def _ensure(controller: Controller, obj: dict, keep_status: bool = False) -> dict:
    resource_type = controller.rtype(obj["apiVersion"], obj["kind"])
    existing = controller.store.peek(resource_type, obj["metadata"].get("namespace"), obj["metadata"]["name"])
    if existing is not None:
        return existing
    return controller.create(obj, keep_status=keep_status)


def _kuberay_operator_deployment(namespace: str) -> dict:
    labels = {
        "app.kubernetes.io/name": "kuberay-operator",
        "helm.sh/chart": "kuberay-operator-1.4.2",
        "app.kubernetes.io/instance": "kuberay-operator",
        "app.kubernetes.io/managed-by": "Helm",
    }
    selector = {"app.kubernetes.io/name": "kuberay-operator", "app.kubernetes.io/instance": "kuberay-operator"}
    template_labels = dict(selector, **{"app.kubernetes.io/component": "kuberay-operator"})
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "kuberay-operator",
            "namespace": namespace,
            "labels": labels,
            "annotations": {
                "meta.helm.sh/release-name": "kuberay-operator",
                "meta.helm.sh/release-namespace": namespace,
            },
        },
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": template_labels},
                "spec": {
                    "serviceAccountName": "kuberay-operator",
                    "containers": [
                        {
                            "name": "kuberay-operator",
                            "image": KUBERAY_IMAGE,
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["/manager"],
                            "args": [
                                "--feature-gates=RayClusterStatusConditions=true",
                                "--enable-leader-election=true",
                            ],
                            "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                            "resources": {
                                "limits": {"cpu": "100m", "memory": "512Mi"},
                                "requests": {"cpu": "100m", "memory": "512Mi"},
                            },
                        }
                    ],
                },
            },
        },
    }


def _gpu_operator_deployment(namespace: str) -> dict:
    labels = {
        "app": "gpu-operator",
        "app.kubernetes.io/component": "gpu-operator",
        "app.kubernetes.io/managed-by": "Helm",
        "helm.sh/chart": f"gpu-operator-{GPU_OPERATOR_VERSION}",
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "gpu-operator",
            "namespace": namespace,
            "labels": labels,
            "annotations": {"meta.helm.sh/release-name": "gpu-operator", "meta.helm.sh/release-namespace": namespace},
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "gpu-operator", "app.kubernetes.io/component": "gpu-operator"}},
            "template": {
                "metadata": {"labels": {"app": "gpu-operator", "app.kubernetes.io/component": "gpu-operator"}},
                "spec": {
                    "serviceAccountName": "gpu-operator",
                    "tolerations": [
                        {
                            "key": "node-role.kubernetes.io/control-plane",
                            "operator": "Equal",
                            "value": "",
                            "effect": "NoSchedule",
                        }
                    ],
                    "containers": [
                        {
                            "name": "gpu-operator",
                            "image": f"nvcr.io/nvidia/gpu-operator:{GPU_OPERATOR_VERSION}",
                            "command": ["gpu-operator"],
                            "args": ["--leader-elect", "--zap-time-encoding=epoch", "--zap-log-level=info"],
                            "resources": {
                                "limits": {"cpu": "500m", "memory": "350Mi"},
                                "requests": {"cpu": "200m", "memory": "100Mi"},
                            },
                        }
                    ],
                },
            },
        },
    }


def _cluster_policy(seed: dict) -> dict:
    mig = (seed.get("platform") or {}).get("mig_strategy", "single")
    return {
        "apiVersion": "nvidia.com/v1",
        "kind": "ClusterPolicy",
        "metadata": {"name": "cluster-policy", "labels": {"app.kubernetes.io/component": "gpu-operator"}},
        "spec": {
            "operator": {"defaultRuntime": "containerd"},
            "daemonsets": {"updateStrategy": "RollingUpdate"},
            "driver": {"enabled": False},
            "toolkit": {"enabled": True},
            "devicePlugin": {"enabled": True},
            "dcgm": {"enabled": False},
            "dcgmExporter": {"enabled": True},
            "gfd": {"enabled": True},
            "migManager": {"enabled": False},
            "nodeStatusExporter": {"enabled": False},
            "validator": {"plugin": {"env": [{"name": "WITH_WORKLOAD", "value": "false"}]}},
            "mig": {"strategy": mig},
        },
    }


def apply_seed(state: TestBedState) -> None:
    """Create what the seed describes: namespaces, nodes, storage classes, and the installed operators."""
    seed = state.seed or {}
    helper = Controller(state)
    helper.name = "testbed-seed"
    platform = seed.get("platform") or {}
    kuberay_ns = platform.get("kuberay_operator_namespace", "kuberay-system")
    gpu_ns = platform.get("gpu_operator_namespace", "gpu-operator")
    namespaces = ["default", "kube-system", "kube-public", "kube-node-lease"]
    namespaces += [n for n in seed.get("namespaces") or [] if n not in namespaces]
    if platform.get("kuberay_operator") == "installed" and kuberay_ns not in namespaces:
        namespaces.append(kuberay_ns)
    if platform.get("gpu_operator") == "installed" and gpu_ns not in namespaces:
        namespaces.append(gpu_ns)
    for namespace in namespaces:
        _ensure(helper, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    for name, group, index in seed_nodes(seed):
        node = _build_node(name, group, index)
        node["status"].update(_node_status_fields(node, index, ready=True))
        _ensure(helper, node, keep_status=True)
    for storage_class in seed.get("storage_classes") or []:
        body = {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": storage_class["name"]},
            "provisioner": storage_class["provisioner"],
            "reclaimPolicy": storage_class.get("reclaim_policy", "Delete"),
            "volumeBindingMode": storage_class.get("volume_binding_mode", "Immediate"),
            "allowVolumeExpansion": bool(storage_class.get("allow_volume_expansion", False)),
        }
        if storage_class.get("default"):
            body["metadata"]["annotations"] = {"storageclass.kubernetes.io/is-default-class": "true"}
        if storage_class.get("parameters"):
            body["parameters"] = {k: str(v) for k, v in storage_class["parameters"].items()}
        _ensure(helper, body)
    if platform.get("kuberay_operator") == "installed":
        for crd in crds_for_group("ray.io"):
            _ensure(helper, crd)
        _ensure(
            helper,
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": "kuberay-operator", "namespace": kuberay_ns},
            },
        )
        _ensure(helper, _kuberay_operator_deployment(kuberay_ns))
    if platform.get("gpu_operator") == "installed":
        for crd in crds_for_group("nvidia.com"):
            _ensure(helper, crd)
        _ensure(
            helper,
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "gpu-operator", "namespace": gpu_ns}},
        )
        _ensure(helper, _gpu_operator_deployment(gpu_ns))
        _ensure(helper, _cluster_policy(seed))


# ---- nodes ---------------------------------------------------------------------------------------------------

_NODE_CONDITIONS = (
    ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
    ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
)
UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"


def _node_index(node: dict) -> int:
    cidr = (node.get("spec") or {}).get("podCIDR") or ""
    match = re.match(r"^10\.244\.(\d+)\.0/24$", cidr)
    if match:
        return int(match.group(1))
    return int(hashlib.sha256(node["metadata"]["name"].encode()).hexdigest(), 16) % 200 + 50


def _node_status_fields(node: dict, index: int, ready: bool, previous: dict | None = None) -> dict:
    """conditions, addresses, nodeInfo, daemonEndpoints for a node (previous: its stored status)."""
    name = node["metadata"]["name"]
    stamp = now_rfc3339()
    previous = previous or {}
    conditions = previous.get("conditions") or []
    for kind, status, reason, message in _NODE_CONDITIONS:
        extra = {}
        if ready:
            old = next((c for c in conditions if c.get("type") == kind), None)
            heartbeat = (old or {}).get("lastHeartbeatTime")
            fresh = old and old.get("status") == status and time.time() - _parse_time(heartbeat) < HEARTBEAT_SECONDS
            extra["lastHeartbeatTime"] = heartbeat if fresh else stamp
            conditions = set_condition(conditions, kind, status, reason, message, stamp=stamp, extra=extra)
        else:
            old = next((c for c in conditions if c.get("type") == kind), None)
            extra["lastHeartbeatTime"] = (old or {}).get("lastHeartbeatTime") or stamp
            conditions = set_condition(
                conditions,
                kind,
                "Unknown",
                "NodeStatusUnknown",
                "Kubelet stopped posting node status.",
                stamp=stamp,
                extra=extra,
            )
    ordered = []
    for kind, *_dummy in _NODE_CONDITIONS:
        condition = next(c for c in conditions if c["type"] == kind)
        ordered.append(
            {
                key: condition[key]
                for key in ("type", "status", "lastHeartbeatTime", "lastTransitionTime", "reason", "message")
                if key in condition
            }
        )
    digest = hashlib.sha256(name.encode()).hexdigest()
    return {
        "conditions": ordered,
        "addresses": [{"type": "InternalIP", "address": f"10.0.0.{10 + index}"}, {"type": "Hostname", "address": name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
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
        },
    }


def node_ready(node: dict) -> bool:
    condition = _condition(node, "Ready")
    return bool(condition and condition.get("status") == "True")


def node_internal_ip(node: dict) -> str:
    for address in (node.get("status") or {}).get("addresses") or []:
        if address.get("type") == "InternalIP":
            return address["address"]
    return f"10.0.0.{10 + _node_index(node)}"


class NodesController(Controller):
    name = "node-controller"

    def reconcile(self) -> None:
        for node in list(self.objects("v1", "Node")):
            name = node["metadata"]["name"]
            ready = name not in self.state.not_ready_nodes
            spec = node.get("spec") or {}
            taints = [t for t in spec.get("taints") or [] if t.get("key") != UNREACHABLE_TAINT]
            if not ready:
                old = {t.get("effect"): t for t in spec.get("taints") or [] if t.get("key") == UNREACHABLE_TAINT}
                taints.append(old.get("NoSchedule") or {"key": UNREACHABLE_TAINT, "effect": "NoSchedule"})
                taints.append(
                    old.get("NoExecute")
                    or {"key": UNREACHABLE_TAINT, "effect": "NoExecute", "timeAdded": now_rfc3339()}
                )
            if taints != (spec.get("taints") or []):
                new = copy.deepcopy(node)
                if taints:
                    new["spec"]["taints"] = taints
                else:
                    new.setdefault("spec", {}).pop("taints", None)
                node = self.update(new)
            status = copy.deepcopy(node.get("status") or {})
            status.update(_node_status_fields(node, _node_index(node), ready, node.get("status")))
            status.setdefault("capacity", {})
            status.setdefault("allocatable", dict(status["capacity"]))
            self.write_status(node, status)


# ---- scheduling + kubelet ------------------------------------------------------------------------------------


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


def _pod_claims(pod: dict) -> list:
    return [
        v["persistentVolumeClaim"]["claimName"]
        for v in (pod.get("spec") or {}).get("volumes") or []
        if (v.get("persistentVolumeClaim") or {}).get("claimName")
    ]


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
        for claim_name in _pod_claims(pod):
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
        for claim_name in _pod_claims(pod):
            claim = self.peek("v1", "PersistentVolumeClaim", pod["metadata"]["namespace"], claim_name)
            if claim is None or (claim.get("status") or {}).get("phase") != "Bound":
                return False
        return True

    def _pod_ip(self, pod: dict, node: dict | None) -> str:
        host_ip = node_internal_ip(node) if node else "10.0.0.250"
        if (pod.get("spec") or {}).get("hostNetwork"):
            return host_ip
        index = _node_index(node) if node else 250
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
            if last is None or clock() - last >= CRASH_RESTART_SECONDS:
                self._crash[key] = clock()
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


# ---- workloads -------------------------------------------------------------------------------------------------


def pod_template_hash(template: dict, collision_count: int = 0) -> str:
    return _safe_hash([template, collision_count], 10)


def _pod_from_template(template: dict, namespace: str, name: str, owner: dict, extra_labels: dict) -> dict:
    template = copy.deepcopy(template or {})
    metadata = template.get("metadata") or {}
    labels = dict(metadata.get("labels") or {})
    labels.update(extra_labels)
    pod_metadata = {"name": name, "namespace": namespace, "labels": labels, "ownerReferences": [owner_reference(owner)]}
    if metadata.get("annotations"):
        pod_metadata["annotations"] = dict(metadata["annotations"])
    if metadata.get("finalizers"):
        pod_metadata["finalizers"] = list(metadata["finalizers"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_metadata, "spec": template.get("spec") or {}}


def _owned(items: list, owner: dict) -> list:
    return [item for item in items if is_owned_by(item, owner)]


def _deletion_order(pod: dict) -> tuple:
    """Which pods a scale-down removes first: unscheduled, pending, not ready, then the newest."""
    status = pod.get("status") or {}
    return (
        bool(pod["spec"].get("nodeName")),
        status.get("phase") == "Running",
        pod_ready(pod),
        "".join(chr(255 - ord(c)) for c in pod["metadata"].get("creationTimestamp", "")),
    )


class WorkloadsController(Controller):
    name = "workload-controllers"

    def reconcile(self) -> None:
        for deployment in list(self.objects("apps/v1", "Deployment")):
            if not deleting(deployment):
                self._deployment(deployment)
        for replica_set in list(self.objects("apps/v1", "ReplicaSet")):
            if not deleting(replica_set):
                self._replica_set(replica_set)
        for deployment in list(self.objects("apps/v1", "Deployment")):
            if not deleting(deployment):
                self._deployment_status(deployment)
        for stateful_set in list(self.objects("apps/v1", "StatefulSet")):
            if not deleting(stateful_set):
                self._stateful_set(stateful_set)
        for daemon_set in list(self.objects("apps/v1", "DaemonSet")):
            if not deleting(daemon_set):
                self._daemon_set(daemon_set)
        for job in list(self.objects("batch/v1", "Job")):
            if not deleting(job):
                self._job(job)
        self._bare_pods()
        for service in list(self.objects("v1", "Service")):
            if not deleting(service):
                self._service(service)

    # -- Deployment / ReplicaSet --
    def _deployment(self, deployment: dict) -> None:
        spec = deployment.get("spec") or {}
        namespace, name = deployment["metadata"]["namespace"], deployment["metadata"]["name"]
        collision = int((deployment.get("status") or {}).get("collisionCount") or 0)
        template_hash = pod_template_hash(spec.get("template"), collision)
        replicas = int(spec.get("replicas", 1))
        owned = [rs for rs in _owned(self.objects("apps/v1", "ReplicaSet", namespace), deployment) if not deleting(rs)]
        new_rs = _new_replica_set(owned, template_hash)
        revisions = [
            int((rs["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision", 0)) for rs in owned
        ]
        if spec.get("paused"):
            return
        if new_rs is None:
            template = copy.deepcopy(spec.get("template") or {})
            template.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = template_hash
            selector = copy.deepcopy(spec.get("selector") or {})
            selector.setdefault("matchLabels", {})["pod-template-hash"] = template_hash
            body = {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {
                    "name": f"{name}-{template_hash}",
                    "namespace": namespace,
                    "labels": dict(template["metadata"]["labels"]),
                    "annotations": {
                        "deployment.kubernetes.io/desired-replicas": str(replicas),
                        "deployment.kubernetes.io/max-replicas": str(replicas + max(1, -(-replicas // 4))),
                        "deployment.kubernetes.io/revision": str(max(revisions, default=0) + 1),
                    },
                    "ownerReferences": [owner_reference(deployment)],
                },
                "spec": {
                    "replicas": replicas,
                    "minReadySeconds": int(spec.get("minReadySeconds") or 0),
                    "selector": selector,
                    "template": template,
                },
            }
            new_rs = self.create(body)
            self.event(
                deployment,
                "ScalingReplicaSet",
                f"Scaled up replica set {new_rs['metadata']['name']} from 0 to {replicas}",
                component="deployment-controller",
            )
        elif int((new_rs.get("spec") or {}).get("replicas", 0)) != replicas:
            scaled = copy.deepcopy(new_rs)
            scaled["spec"]["replicas"] = replicas
            annotations = scaled["metadata"].setdefault("annotations", {})
            annotations["deployment.kubernetes.io/desired-replicas"] = str(replicas)
            new_rs = self.update(scaled)
        recreate = (spec.get("strategy") or {}).get("type") == "Recreate"
        new_ready = int((new_rs.get("status") or {}).get("readyReplicas") or 0) >= replicas
        for old in owned:
            if old["metadata"]["uid"] == new_rs["metadata"]["uid"]:
                continue
            if int((old.get("spec") or {}).get("replicas", 0)) != 0 and (recreate or new_ready):
                scaled = copy.deepcopy(old)
                scaled["spec"]["replicas"] = 0
                self.update(scaled)

    def _replica_set(self, replica_set: dict) -> None:
        spec = replica_set.get("spec") or {}
        namespace, name = replica_set["metadata"]["namespace"], replica_set["metadata"]["name"]
        pods = [
            p
            for p in _owned(self.objects("v1", "Pod", namespace), replica_set)
            if not deleting(p) and not pod_terminal(p)
        ]
        wanted = int(spec.get("replicas", 1))
        for _dummy in range(wanted - len(pods)):
            self.create(_pod_from_template(spec.get("template"), namespace, f"{name}-{rand5()}", replica_set, {}))
        if len(pods) > wanted:
            for pod in sorted(pods, key=_deletion_order)[: len(pods) - wanted]:
                self.delete(pod)
        pods = [
            p
            for p in _owned(self.objects("v1", "Pod", namespace), replica_set)
            if not deleting(p) and not pod_terminal(p)
        ]
        ready = sum(1 for p in pods if pod_running_and_ready(p))
        status = {
            "replicas": len(pods),
            "fullyLabeledReplicas": len(pods),
            "observedGeneration": replica_set["metadata"].get("generation", 1),
        }
        if ready:
            status["readyReplicas"] = ready
            status["availableReplicas"] = ready
        self.write_status(replica_set, status)

    def _deployment_status(self, deployment: dict) -> None:
        spec = deployment.get("spec") or {}
        namespace = deployment["metadata"]["namespace"]
        replicas = int(spec.get("replicas", 1))
        collision = int((deployment.get("status") or {}).get("collisionCount") or 0)
        template_hash = pod_template_hash(spec.get("template"), collision)
        owned = [rs for rs in _owned(self.objects("apps/v1", "ReplicaSet", namespace), deployment) if not deleting(rs)]
        new_rs = _new_replica_set(owned, template_hash)
        total = sum(int((rs.get("status") or {}).get("replicas") or 0) for rs in owned)
        ready = sum(int((rs.get("status") or {}).get("readyReplicas") or 0) for rs in owned)
        available = sum(int((rs.get("status") or {}).get("availableReplicas") or 0) for rs in owned)
        updated = int(((new_rs or {}).get("status") or {}).get("replicas") or 0)
        old = deployment.get("status") or {}
        status = {"observedGeneration": deployment["metadata"].get("generation", 1)}
        if total:
            status["replicas"] = total
        if updated:
            status["updatedReplicas"] = updated
        if ready:
            status["readyReplicas"] = ready
        if available:
            status["availableReplicas"] = available
        if total - available > 0:
            status["unavailableReplicas"] = total - available
        stamp = now_rfc3339()
        conditions = old.get("conditions") or []
        max_unavailable = replicas // 4 if (spec.get("strategy") or {}).get("type") != "Recreate" else replicas
        minimum = available >= replicas - max_unavailable
        conditions = _deployment_condition(
            conditions,
            "Available",
            "True" if minimum else "False",
            "MinimumReplicasAvailable" if minimum else "MinimumReplicasUnavailable",
            "Deployment has minimum availability." if minimum else "Deployment does not have minimum availability.",
            stamp,
        )
        rs_name = (new_rs or {}).get("metadata", {}).get("name", "")
        complete = new_rs is not None and updated == replicas and available >= replicas and total == replicas
        if complete:
            conditions = _deployment_condition(
                conditions,
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                f'ReplicaSet "{rs_name}" has successfully progressed.',
                stamp,
            )
        elif new_rs is not None:
            conditions = _deployment_condition(
                conditions, "Progressing", "True", "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.', stamp
            )
        status["conditions"] = conditions
        if old.get("collisionCount"):
            status["collisionCount"] = old["collisionCount"]
        self.write_status(deployment, status)

    # -- StatefulSet --
    def _stateful_set(self, stateful_set: dict) -> None:
        spec = stateful_set.get("spec") or {}
        namespace, name = stateful_set["metadata"]["namespace"], stateful_set["metadata"]["name"]
        replicas = int(spec.get("replicas", 1))
        revision = f"{name}-{pod_template_hash(spec.get('template'))}"
        pods = {p["metadata"]["name"]: p for p in _owned(self.objects("v1", "Pod", namespace), stateful_set)}
        ordered = spec.get("podManagementPolicy", "OrderedReady") == "OrderedReady"
        for ordinal in range(replicas):
            pod_name = f"{name}-{ordinal}"
            pod = pods.get(pod_name)
            if pod is not None and pod_terminal(pod) and not deleting(pod):
                self.delete(pod)
                pod = None
            if pod is None:
                if ordered and any(
                    not pod_running_and_ready(pods.get(f"{name}-{i}") or {"metadata": {}}) for i in range(ordinal)
                ):
                    break
                self._create_stateful_pod(stateful_set, ordinal, revision)
                if ordered:
                    break
        for pod_name, pod in pods.items():
            ordinal = int(pod_name.rsplit("-", 1)[-1]) if pod_name.rsplit("-", 1)[-1].isdigit() else -1
            if ordinal >= replicas and not deleting(pod):
                self.delete(pod)
        # roll: replace the highest-ordinal pod of an old revision once all are ready
        live = [p for p in _owned(self.objects("v1", "Pod", namespace), stateful_set) if not deleting(p)]
        if len(live) == replicas and all(pod_running_and_ready(p) for p in live):
            stale = [p for p in live if (p["metadata"].get("labels") or {}).get("controller-revision-hash") != revision]
            if stale and (spec.get("updateStrategy") or {}).get("type", "RollingUpdate") == "RollingUpdate":
                self.delete(max(stale, key=lambda p: int(p["metadata"]["name"].rsplit("-", 1)[-1])))
        live = [p for p in _owned(self.objects("v1", "Pod", namespace), stateful_set) if not deleting(p)]
        ready = sum(1 for p in live if pod_running_and_ready(p))
        updated = sum(
            1 for p in live if (p["metadata"].get("labels") or {}).get("controller-revision-hash") == revision
        )
        old = stateful_set.get("status") or {}
        current_revision = old.get("currentRevision") or revision
        if updated == len(live) == replicas:
            current_revision = revision
        current = sum(
            1 for p in live if (p["metadata"].get("labels") or {}).get("controller-revision-hash") == current_revision
        )
        status = {
            "observedGeneration": stateful_set["metadata"].get("generation", 1),
            "replicas": len(live),
            "readyReplicas": ready,
            "currentReplicas": current,
            "updatedReplicas": updated,
            "availableReplicas": ready,
            "currentRevision": current_revision,
            "updateRevision": revision,
            "collisionCount": 0,
        }
        self.write_status(stateful_set, status)

    def _create_stateful_pod(self, stateful_set: dict, ordinal: int, revision: str) -> None:
        spec = stateful_set["spec"]
        namespace, name = stateful_set["metadata"]["namespace"], stateful_set["metadata"]["name"]
        pod_name = f"{name}-{ordinal}"
        extra = {
            "controller-revision-hash": revision,
            "statefulset.kubernetes.io/pod-name": pod_name,
            "apps.kubernetes.io/pod-index": str(ordinal),
        }
        pod = _pod_from_template(spec.get("template"), namespace, pod_name, stateful_set, extra)
        pod["spec"]["hostname"] = pod_name
        if spec.get("serviceName"):
            pod["spec"]["subdomain"] = spec["serviceName"]
        volumes = pod["spec"].setdefault("volumes", [])
        for claim_template in spec.get("volumeClaimTemplates") or []:
            template_name = claim_template["metadata"]["name"]
            claim_name = f"{template_name}-{pod_name}"
            if self.peek("v1", "PersistentVolumeClaim", namespace, claim_name) is None:
                claim = {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": {
                        "name": claim_name,
                        "namespace": namespace,
                        "labels": dict((spec.get("selector") or {}).get("matchLabels") or {}),
                    },
                    "spec": copy.deepcopy(claim_template.get("spec") or {}),
                }
                self.create(claim)
            volumes[:] = [v for v in volumes if v.get("name") != template_name]
            volumes.append({"name": template_name, "persistentVolumeClaim": {"claimName": claim_name}})
        if not volumes:
            pod["spec"].pop("volumes")
        self.create(pod)

    # -- DaemonSet --
    def _daemon_set(self, daemon_set: dict) -> None:
        spec = daemon_set.get("spec") or {}
        namespace, name = daemon_set["metadata"]["namespace"], daemon_set["metadata"]["name"]
        template = copy.deepcopy(spec.get("template") or {})
        template_spec = template.setdefault("spec", {})
        tolerations = list(template_spec.get("tolerations") or [])
        for key, effect in (
            ("node.kubernetes.io/not-ready", "NoExecute"),
            ("node.kubernetes.io/unreachable", "NoExecute"),
            ("node.kubernetes.io/disk-pressure", "NoSchedule"),
            ("node.kubernetes.io/memory-pressure", "NoSchedule"),
            ("node.kubernetes.io/pid-pressure", "NoSchedule"),
            ("node.kubernetes.io/unschedulable", "NoSchedule"),
        ):
            if not any(t.get("key") == key and t.get("effect") == effect for t in tolerations):
                tolerations.append({"key": key, "operator": "Exists", "effect": effect})
        template_spec["tolerations"] = tolerations
        revision = pod_template_hash(spec.get("template"))
        generation = str(daemon_set["metadata"].get("generation", 1))
        pods = [p for p in _owned(self.objects("v1", "Pod", namespace), daemon_set) if not deleting(p)]
        by_node: dict = {}
        for pod in pods:
            by_node.setdefault(_ds_pod_node(pod), []).append(pod)
        desired = 0
        for node in self.objects("v1", "Node"):
            node_name = node["metadata"]["name"]
            present = by_node.pop(node_name, [])
            eligible = node_matches_affinity(node, template_spec)
            place = eligible and untolerated_taint(node, tolerations) is None
            keep = eligible and untolerated_taint(node, tolerations, ("NoExecute",)) is None
            if place or (keep and present):
                desired += 1
            else:
                for pod in present:
                    self.delete(pod)
                continue
            keep_pods = []
            for pod in present:
                labels = pod["metadata"].get("labels") or {}
                if labels.get("controller-revision-hash") != revision or pod_terminal(pod) or keep_pods:
                    self.delete(pod)
                else:
                    keep_pods.append(pod)
            if not keep_pods and place:
                pod_spec = copy.deepcopy(template)
                affinity = pod_spec["spec"].setdefault("affinity", {})
                affinity["nodeAffinity"] = {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node_name]}]}
                        ]
                    }
                }
                extra = {"controller-revision-hash": revision, "pod-template-generation": generation}
                self.create(_pod_from_template(pod_spec, namespace, f"{name}-{rand5()}", daemon_set, extra))
        for leftovers in by_node.values():
            for pod in leftovers:
                self.delete(pod)
        pods = [p for p in _owned(self.objects("v1", "Pod", namespace), daemon_set) if not deleting(p)]
        scheduled = [p for p in pods if p["spec"].get("nodeName") or _ds_pod_node(p)]
        ready = sum(1 for p in pods if pod_running_and_ready(p))
        updated = sum(
            1 for p in pods if (p["metadata"].get("labels") or {}).get("controller-revision-hash") == revision
        )
        status = {
            "currentNumberScheduled": len(scheduled),
            "desiredNumberScheduled": desired,
            "numberMisscheduled": 0,
            "numberReady": ready,
            "observedGeneration": daemon_set["metadata"].get("generation", 1),
            "updatedNumberScheduled": updated,
            "numberAvailable": ready,
        }
        if desired - ready > 0:
            status["numberUnavailable"] = desired - ready
        if not ready:
            status.pop("numberAvailable")
        self.write_status(daemon_set, status)

    # -- Job --
    def _job(self, job: dict) -> None:
        spec = job.get("spec") or {}
        namespace, name = job["metadata"]["namespace"], job["metadata"]["name"]
        status = copy.deepcopy(job.get("status") or {})
        finished = any(
            c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
        pods = [p for p in _owned(self.objects("v1", "Pod", namespace), job) if not deleting(p)]
        completions = int(spec.get("completions", 1) if spec.get("completions") is not None else 1)
        parallelism = int(spec.get("parallelism", 1) if spec.get("parallelism") is not None else 1)
        backoff_limit = int(spec.get("backoffLimit", 6) if spec.get("backoffLimit") is not None else 6)
        outcome = self.state.requested_outcomes.get(("Job", namespace, name)) or {}
        stamp = now_rfc3339()
        for pod in pods:
            if (pod.get("status") or {}).get("phase") == "Running" and not finished:
                self._finish_pod(pod, outcome)
        pods = [p for p in _owned(self.objects("v1", "Pod", namespace), job) if not deleting(p)]
        succeeded = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Succeeded")
        failed = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Failed")
        active = [p for p in pods if not pod_terminal(p)]
        conditions = status.get("conditions") or []
        if not finished and succeeded >= completions:
            message = "Reached expected number of succeeded pods"
            conditions = set_condition(
                conditions,
                "SuccessCriteriaMet",
                "True",
                "CompletionsReached",
                message,
                stamp=stamp,
                probe_time=True,
                extra={"lastProbeTime": stamp},
            )
            conditions = set_condition(
                conditions,
                "Complete",
                "True",
                "CompletionsReached",
                message,
                stamp=stamp,
                probe_time=True,
                extra={"lastProbeTime": stamp},
            )
            status["completionTime"] = stamp
            finished = True
        elif not finished and failed > backoff_limit:
            message = "Job has reached the specified backoff limit"
            conditions = set_condition(
                conditions,
                "FailureTarget",
                "True",
                "BackoffLimitExceeded",
                message,
                stamp=stamp,
                probe_time=True,
                extra={"lastProbeTime": stamp},
            )
            conditions = set_condition(
                conditions,
                "Failed",
                "True",
                "BackoffLimitExceeded",
                message,
                stamp=stamp,
                probe_time=True,
                extra={"lastProbeTime": stamp},
            )
            finished = True
            for pod in active:
                self.delete(pod)
            active = []
        elif not finished and not spec.get("suspend"):
            wanted = min(parallelism, completions - succeeded) - len(active)
            for _dummy in range(max(0, wanted)):
                extra = {
                    "batch.kubernetes.io/controller-uid": job["metadata"]["uid"],
                    "batch.kubernetes.io/job-name": name,
                    "controller-uid": job["metadata"]["uid"],
                    "job-name": name,
                }
                pod = _pod_from_template(spec.get("template"), namespace, f"{name}-{rand5()}", job, extra)
                pod["metadata"].setdefault("annotations", {})["batch.kubernetes.io/job-tracking"] = ""
                created = self.create(pod)
                active.append(created)
                status.setdefault("startTime", stamp)
        status["conditions"] = conditions
        if not conditions:
            status.pop("conditions")
        status["active"] = len(active)
        if not active:
            status.pop("active")
        ready = sum(1 for p in active if pod_ready(p))
        status["ready"] = ready
        status["terminating"] = 0
        status["uncountedTerminatedPods"] = {}
        for key, value in (("succeeded", succeeded), ("failed", failed)):
            if value:
                status[key] = value
            else:
                status.pop(key, None)
        self.write_status(job, status)

    def _finish_pod(self, pod: dict, outcome: dict) -> bool:
        """A running Job (or bare) pod ends after JOB_RUN_SECONDS, as the requested outcome says."""
        status = copy.deepcopy(pod.get("status") or {})
        started = [
            ((c.get("state") or {}).get("running") or {}).get("startedAt")
            for c in status.get("containerStatuses") or []
        ]
        key = ("pod-start", pod["metadata"]["uid"])
        first_seen = _RUN_CLOCK.setdefault(key, clock())
        if not all(started) or clock() - first_seen < JOB_RUN_SECONDS:
            return False
        _RUN_CLOCK.pop(key, None)
        failed = (outcome.get("outcome") or "Succeeded") == "Failed"
        stamp = now_rfc3339()
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        for line in (outcome.get("log") or "").splitlines():
            if status.get("containerStatuses"):
                self.state.append_log(namespace, name, status["containerStatuses"][0]["name"], line)
        for entry in status.get("containerStatuses") or []:
            started_at = entry["state"]["running"]["startedAt"]
            reason = "Error" if failed else "Completed"
            entry["state"] = {
                "terminated": {
                    "exitCode": 1 if failed else 0,
                    "reason": reason,
                    "startedAt": started_at,
                    "finishedAt": stamp,
                    "containerID": entry.get("containerID", ""),
                }
            }
            entry["ready"] = False
            entry["started"] = False
        status["phase"] = "Failed" if failed else "Succeeded"
        reason = "PodFailed" if failed else "PodCompleted"
        for kind in ("Ready", "ContainersReady"):
            status["conditions"] = set_condition(status.get("conditions"), kind, "False", reason, probe_time=True)
        status["conditions"] = set_condition(
            status["conditions"], "PodReadyToStartContainers", "False", probe_time=True
        )
        self.write_status(pod, status)
        return True

    def _bare_pods(self) -> None:
        for (kind, namespace, name), outcome in list(self.state.requested_outcomes.items()):
            if kind != "Pod":
                continue
            pod = self.peek("v1", "Pod", namespace, name)
            if pod is None or deleting(pod) or (pod.get("status") or {}).get("phase") != "Running":
                continue
            if (pod.get("spec") or {}).get("restartPolicy", "Always") in ("Never", "OnFailure"):
                self._finish_pod(pod, outcome)

    # -- Services / Endpoints --
    def _service(self, service: dict) -> None:
        spec = service.get("spec") or {}
        namespace, name = service["metadata"]["namespace"], service["metadata"]["name"]
        if spec.get("type") != "ExternalName" and not spec.get("clusterIP"):
            new = copy.deepcopy(service)
            ip = _allocate_cluster_ip(self.objects("v1", "Service"))
            new["spec"]["clusterIP"] = ip
            new["spec"]["clusterIPs"] = [ip]
            service = self.update(new)
            spec = service["spec"]
        selector = spec.get("selector")
        if not selector:
            return
        pods = [
            p
            for p in self.objects("v1", "Pod", namespace)
            if selectors.labels_match([(k, "=", {v}) for k, v in selector.items()], p["metadata"].get("labels"))
            and (p.get("status") or {}).get("podIP")
            and not deleting(p)
            and not pod_terminal(p)
        ]
        ready, not_ready = [], []
        for pod in sorted(pods, key=lambda p: p["status"]["podIP"]):
            address = {
                "ip": pod["status"]["podIP"],
                "nodeName": pod["spec"].get("nodeName"),
                "targetRef": {
                    "kind": "Pod",
                    "namespace": namespace,
                    "name": pod["metadata"]["name"],
                    "uid": pod["metadata"]["uid"],
                },
            }
            if pod["spec"].get("hostname"):
                address["hostname"] = pod["spec"]["hostname"]
            (ready if pod_ready(pod) or spec.get("publishNotReadyAddresses") else not_ready).append(address)
        ports = []
        for port in spec.get("ports") or []:
            target = port.get("targetPort", port.get("port"))
            if isinstance(target, str) and not target.isdigit():
                number = None
                for pod in pods:
                    for container in pod["spec"].get("containers") or []:
                        for container_port in container.get("ports") or []:
                            if container_port.get("name") == target:
                                number = container_port.get("containerPort")
                target = number
            if target is None:
                continue
            entry = {"port": int(target), "protocol": port.get("protocol", "TCP")}
            if port.get("name"):
                entry["name"] = port["name"]
            if port.get("appProtocol"):
                entry["appProtocol"] = port["appProtocol"]
            ports.append(entry)
        subsets = []
        if ready or not_ready:
            subset = {}
            if ready:
                subset["addresses"] = ready
            if not_ready:
                subset["notReadyAddresses"] = not_ready
            if ports:
                subset["ports"] = ports
            subsets.append(subset)
        labels = dict(service["metadata"].get("labels") or {})
        if spec.get("clusterIP") == "None":
            labels["service.kubernetes.io/headless"] = ""
        existing = self.peek("v1", "Endpoints", namespace, name)
        body = {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
        }
        if subsets:
            body["subsets"] = subsets
        if existing is None:
            self.create(body)
            return
        if existing.get("subsets") != body.get("subsets") or (existing["metadata"].get("labels") or {}) != labels:
            new = copy.deepcopy(existing)
            new["metadata"]["labels"] = labels
            new.pop("subsets", None)
            if subsets:
                new["subsets"] = subsets
            self.update(new)


_RUN_CLOCK: dict = {}


def _ds_pod_node(pod: dict) -> str:
    if pod["spec"].get("nodeName"):
        return pod["spec"]["nodeName"]
    terms = (
        ((pod["spec"].get("affinity") or {}).get("nodeAffinity") or {}).get(
            "requiredDuringSchedulingIgnoredDuringExecution"
        )
        or {}
    ).get("nodeSelectorTerms") or []
    for term in terms:
        for field in term.get("matchFields") or []:
            if field.get("key") == "metadata.name" and field.get("values"):
                return field["values"][0]
    return ""


def _new_replica_set(owned: list, template_hash: str) -> dict | None:
    for replica_set in owned:
        if (replica_set["metadata"].get("labels") or {}).get("pod-template-hash") == template_hash:
            return replica_set
    return None


def _allocate_cluster_ip(services: list) -> str:
    used = {(s.get("spec") or {}).get("clusterIP") for s in services}
    for index in range(10, 65000):
        candidate = f"10.96.{index // 250}.{index % 250 + 1}"
        if candidate not in used:
            return candidate
    raise RuntimeError("service IP range exhausted")


def _deployment_condition(conditions: list, kind: str, status: str, reason: str, message: str, stamp: str) -> list:
    result = [dict(c) for c in conditions]
    for condition in result:
        if condition["type"] == kind:
            if (condition.get("status"), condition.get("reason"), condition.get("message")) != (
                status,
                reason,
                message,
            ):
                if condition.get("status") != status:
                    condition["lastTransitionTime"] = stamp
                condition.update(status=status, reason=reason, message=message, lastUpdateTime=stamp)
            return result
    result.append(
        {
            "type": kind,
            "status": status,
            "lastUpdateTime": stamp,
            "lastTransitionTime": stamp,
            "reason": reason,
            "message": message,
        }
    )
    return result


# ---- storage ---------------------------------------------------------------------------------------------------

NO_PROVISIONER = "kubernetes.io/no-provisioner"


class StorageController(Controller):
    name = "persistentvolume-controller"

    def reconcile(self) -> None:
        classes = {c["metadata"]["name"]: c for c in self.objects("storage.k8s.io/v1", "StorageClass")}
        default = next(
            (
                n
                for n, c in sorted(classes.items())
                if (c["metadata"].get("annotations") or {}).get("storageclass.kubernetes.io/is-default-class") == "true"
            ),
            None,
        )
        for claim in list(self.objects("v1", "PersistentVolumeClaim")):
            if not deleting(claim):
                self._claim(claim, classes, default)
        claims = {c["metadata"]["uid"]: c for c in self.objects("v1", "PersistentVolumeClaim")}
        for volume in list(self.objects("v1", "PersistentVolume")):
            if not deleting(volume):
                self._volume(volume, claims)

    def _claim(self, claim: dict, classes: dict, default: str | None) -> None:
        spec = claim.get("spec") or {}
        if "storageClassName" not in spec and default and not spec.get("volumeName"):
            new = copy.deepcopy(claim)
            new["spec"]["storageClassName"] = default
            claim = self.update(new)
            spec = claim["spec"]
        status = claim.get("status") or {}
        if status.get("phase") == "Bound":
            volume = self.peek("v1", "PersistentVolume", None, spec.get("volumeName") or "")
            if volume is None:
                self.write_status(claim, dict(status, phase="Lost"))
            return
        if status.get("phase") == "Lost":
            return
        class_name = spec.get("storageClassName") or ""
        if spec.get("volumeName"):
            volume = self.peek("v1", "PersistentVolume", None, spec["volumeName"])
            if volume is not None and self._matches(volume, claim, class_name, prebound=True):
                self._bind(claim, volume)
            elif not status.get("phase"):
                self.write_status(claim, {"phase": "Pending"})
            return
        storage_class = classes.get(class_name) if class_name else None
        if class_name and storage_class is None:
            self.write_status(claim, dict(status, phase="Pending"))
            self.event(claim, "ProvisioningFailed", f'storageclass.storage.k8s.io "{class_name}" not found', "Warning")
            return
        waits = (storage_class or {}).get("volumeBindingMode") == "WaitForFirstConsumer"
        consumer = self._scheduled_consumer(claim) if waits else None
        if waits and consumer is None:
            self.write_status(claim, dict(status, phase="Pending"))
            self.event(claim, "WaitForFirstConsumer", "waiting for first consumer to be created before binding")
            return
        static = not class_name or storage_class.get("provisioner") == NO_PROVISIONER
        if static:
            candidates = [
                v for v in self.objects("v1", "PersistentVolume") if self._matches(v, claim, class_name, prebound=False)
            ]
            if not candidates:
                self.write_status(claim, dict(status, phase="Pending"))
                message = (
                    "no persistent volumes available for this claim and no storage class is set"
                    if not class_name
                    else f'storageclass.storage.k8s.io "{class_name}" has no available persistent volumes'
                )
                self.event(claim, "FailedBinding", message)
                return
            volume = min(candidates, key=lambda v: parse_quantity((v["spec"].get("capacity") or {}).get("storage")))
            self._bind(claim, volume)
            return
        volume = self._provision(claim, storage_class, consumer)
        self._bind(claim, volume)

    def _scheduled_consumer(self, claim: dict) -> dict | None:
        for pod in self.objects("v1", "Pod", claim["metadata"]["namespace"]):
            if pod["spec"].get("nodeName") and claim["metadata"]["name"] in _pod_claims(pod):
                return pod
        return None

    @staticmethod
    def _matches(volume: dict, claim: dict, class_name: str, prebound: bool) -> bool:
        spec, claim_spec = volume.get("spec") or {}, claim.get("spec") or {}
        ref = spec.get("claimRef") or {}
        if ref and not (
            ref.get("name") == claim["metadata"]["name"]
            and ref.get("namespace") == claim["metadata"]["namespace"]
            and ref.get("uid") in (None, "", claim["metadata"]["uid"])
        ):
            return False
        if not prebound and not ref and (volume.get("status") or {}).get("phase", "Available") != "Available":
            return False
        if (spec.get("storageClassName") or "") != class_name:
            return False
        if spec.get("volumeMode", "Filesystem") != claim_spec.get("volumeMode", "Filesystem"):
            return False
        if not set(claim_spec.get("accessModes") or []) <= set(spec.get("accessModes") or []):
            return False
        wanted = parse_quantity(((claim_spec.get("resources") or {}).get("requests") or {}).get("storage", 0))
        return parse_quantity((spec.get("capacity") or {}).get("storage", 0)) >= wanted

    def _provision(self, claim: dict, storage_class: dict, consumer: dict | None) -> dict:
        spec = claim["spec"]
        name = f"pvc-{claim['metadata']['uid']}"
        existing = self.peek("v1", "PersistentVolume", None, name)
        if existing is not None:
            return existing
        provisioner = storage_class["provisioner"]
        volume_spec = {
            "accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
            "capacity": {"storage": str(((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi"))},
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "name": claim["metadata"]["name"],
                "namespace": claim["metadata"]["namespace"],
                "uid": claim["metadata"]["uid"],
                "resourceVersion": claim["metadata"].get("resourceVersion"),
            },
            "persistentVolumeReclaimPolicy": storage_class.get("reclaimPolicy", "Delete"),
            "storageClassName": storage_class["metadata"]["name"],
            "volumeMode": spec.get("volumeMode", "Filesystem"),
            "csi": {
                "driver": provisioner,
                "volumeHandle": f"{name}-handle",
                "volumeAttributes": {
                    "storage.kubernetes.io/csiProvisionerIdentity": f"{provisioner}-emulated",
                    **{k: str(v) for k, v in (storage_class.get("parameters") or {}).items()},
                },
            },
        }
        if storage_class.get("mountOptions"):
            volume_spec["mountOptions"] = list(storage_class["mountOptions"])
        if consumer is not None:
            volume_spec["nodeAffinity"] = {
                "required": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {
                                    "key": "kubernetes.io/hostname",
                                    "operator": "In",
                                    "values": [consumer["spec"]["nodeName"]],
                                }
                            ]
                        }
                    ]
                }
            }
        body = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {
                "name": name,
                "annotations": {
                    "pv.kubernetes.io/provisioned-by": provisioner,
                    "volume.kubernetes.io/provisioner-deletion-secret-name": "",
                    "volume.kubernetes.io/provisioner-deletion-secret-namespace": "",
                },
            },
            "spec": volume_spec,
            "status": {"phase": "Bound"},
        }
        volume = self.create(body, keep_status=True)
        self.event(claim, "ProvisioningSucceeded", f"Successfully provisioned volume {name}", component=provisioner)
        return volume

    def _bind(self, claim: dict, volume: dict) -> None:
        ref = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "name": claim["metadata"]["name"],
            "namespace": claim["metadata"]["namespace"],
            "uid": claim["metadata"]["uid"],
            "resourceVersion": claim["metadata"].get("resourceVersion"),
        }
        old_ref = (volume.get("spec") or {}).get("claimRef") or {}
        if old_ref.get("uid") != claim["metadata"]["uid"]:
            new = copy.deepcopy(volume)
            new["spec"]["claimRef"] = ref
            volume = self.update(new)
        self.write_status(volume, {"phase": "Bound"})
        new_claim = copy.deepcopy(claim)
        annotations = new_claim["metadata"].setdefault("annotations", {})
        annotations["pv.kubernetes.io/bind-completed"] = "yes"
        if not claim["spec"].get("volumeName"):
            annotations["pv.kubernetes.io/bound-by-controller"] = "yes"
        provisioner = (volume["metadata"].get("annotations") or {}).get("pv.kubernetes.io/provisioned-by")
        if provisioner:
            annotations["volume.beta.kubernetes.io/storage-provisioner"] = provisioner
            annotations["volume.kubernetes.io/storage-provisioner"] = provisioner
        consumer = self._scheduled_consumer(claim)
        if consumer is not None and (volume["spec"].get("nodeAffinity") or provisioner):
            annotations["volume.kubernetes.io/selected-node"] = consumer["spec"]["nodeName"]
        new_claim["spec"]["volumeName"] = volume["metadata"]["name"]
        claim = self.update(new_claim)
        self.write_status(
            claim,
            {
                "phase": "Bound",
                "accessModes": list(volume["spec"].get("accessModes") or []),
                "capacity": dict(volume["spec"].get("capacity") or {}),
            },
        )

    def _volume(self, volume: dict, claims: dict) -> None:
        spec = volume.get("spec") or {}
        ref = spec.get("claimRef")
        phase = (volume.get("status") or {}).get("phase")
        if not ref:
            if phase != "Available":
                self.write_status(volume, {"phase": "Available"})
            return
        claim = claims.get(ref.get("uid")) if ref.get("uid") else None
        if claim is None and not ref.get("uid"):
            return  # pre-bound to a claim that is not there yet
        if claim is None:
            if spec.get("persistentVolumeReclaimPolicy", "Retain") == "Delete":
                self.delete(volume)
            elif phase != "Released":
                self.write_status(volume, {"phase": "Released"})


# ---- KubeRay ---------------------------------------------------------------------------------------------------

RAY_DEFAULT_PORTS = {"client": 10001, "dashboard": 8265, "gcs-server": 6379, "metrics": 8080, "serve": 8000}
_INT32_MAX = 2147483647


def _ray_param_string(params: dict) -> str:
    flags = ""
    for key in sorted(params):
        value = str(params[key])
        if value.lower() in ("true", "false") and key not in ("log-color", "include-dashboard"):
            if value.lower() == "true":
                flags += f" --{key} "
        else:
            flags += f" --{key}={value} "
    return flags


def _quantity_value(value) -> int:
    """resource.Quantity.Value(): rounded up to an integer."""
    number = parse_quantity(value)
    return -(-number.numerator // number.denominator)


def ray_start_command(node_type: str, params: dict, resources: dict) -> str:
    params = dict(params)
    limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
    if "num-cpus" not in params:
        if parse_quantity(limits.get("cpu", 0)):
            params["num-cpus"] = str(_quantity_value(limits["cpu"]))
        elif parse_quantity(requests.get("cpu", 0)):
            params["num-cpus"] = str(_quantity_value(requests["cpu"]))
    if "memory" not in params and parse_quantity(limits.get("memory", 0)):
        params["memory"] = str(_quantity_value(limits["memory"]))
    if "num-gpus" not in params:
        for key in sorted(limits):
            if (key.endswith("gpu") or re.search(r"nvidia\.com/mig-\d+g\.\d+gb$", key)) and parse_quantity(limits[key]):
                params["num-gpus"] = str(_quantity_value(limits[key]))
                break
    prefix = "ray start --head" if node_type == "head" else "ray start"
    return f"{prefix} {_ray_param_string(params)}"


def _worker_groups(cluster: dict) -> list:
    groups = []
    for group in (cluster.get("spec") or {}).get("workerGroupSpecs") or []:
        group = dict(group)
        group.setdefault("replicas", 0)
        group.setdefault("minReplicas", 0)
        group.setdefault("maxReplicas", _INT32_MAX)
        group["numOfHosts"] = max(1, int(group.get("numOfHosts") or 1))
        groups.append(group)
    return groups


def desired_worker_pods(group: dict) -> int:
    if group.get("suspend"):
        return 0
    minimum, maximum = int(group["minReplicas"]), int(group["maxReplicas"])
    replicas = group.get("replicas")
    if minimum > maximum:
        count = maximum
    elif replicas is None or int(replicas) < minimum:
        count = minimum
    elif int(replicas) > maximum:
        count = maximum
    else:
        count = int(replicas)
    return count * group["numOfHosts"]


def _pod_resources(pod_spec: dict) -> dict:
    """KubeRay's CalculatePodResource: requests, falling back to limits, per container, summed; raw values kept."""
    total: dict = {}
    binary: dict = {}
    for container in pod_spec.get("containers") or []:
        resources = container.get("resources") or {}
        merged = dict(resources.get("requests") or {})
        for key, value in (resources.get("limits") or {}).items():
            merged.setdefault(key, value)
        for key, value in merged.items():
            total[key] = total.get(key, 0) + parse_quantity(value)
            binary.setdefault(key, _is_binary(value))
    return {"total": total, "binary": binary}


class KubeRayController(Controller):
    name = "kuberay-operator"

    def _operator_available(self) -> bool:
        for deployment in self.objects("apps/v1", "Deployment"):
            labels = deployment["metadata"].get("labels") or {}
            if labels.get("app.kubernetes.io/name") == "kuberay-operator" and not deleting(deployment):
                if int((deployment.get("status") or {}).get("availableReplicas") or 0) >= 1:
                    return True
        return False

    def reconcile(self) -> None:
        if self.rtype("ray.io/v1", "RayCluster") is None or not self._operator_available():
            return
        for cluster in list(self.objects("ray.io/v1", "RayCluster")):
            if not deleting(cluster):
                self._cluster(cluster)

    def _service_name(self, cluster: dict) -> str:
        head_service = ((cluster.get("spec") or {}).get("headGroupSpec") or {}).get("headService") or {}
        return (head_service.get("metadata") or {}).get("name") or f"{cluster['metadata']['name']}-head-svc"

    def _cluster(self, cluster: dict) -> None:
        spec = cluster.get("spec") or {}
        namespace, name = cluster["metadata"]["namespace"], cluster["metadata"]["name"]
        failure = None
        try:
            self._head_service(cluster)
        except ApiError as error:
            failure = ("FailedCreateHeadService", error.message)
        pods = [
            p
            for p in self.objects("v1", "Pod", namespace)
            if (p["metadata"].get("labels") or {}).get("ray.io/cluster") == name and is_owned_by(p, cluster)
        ]
        live = [p for p in pods if not deleting(p)]
        suspend = bool(spec.get("suspend"))
        if suspend:
            for pod in live:
                self.delete(pod)
        else:
            failure = self._reconcile_pods(cluster, live) or failure
        pods = [
            p
            for p in self.objects("v1", "Pod", namespace)
            if (p["metadata"].get("labels") or {}).get("ray.io/cluster") == name
            and is_owned_by(p, cluster)
            and not deleting(p)
        ]
        self._status(cluster, pods, failure)

    def _head_service(self, cluster: dict) -> None:
        namespace, name = cluster["metadata"]["namespace"], cluster["metadata"]["name"]
        service_name = self._service_name(cluster)
        if self.peek("v1", "Service", namespace, service_name) is not None:
            return
        head_spec = (cluster.get("spec") or {}).get("headGroupSpec") or {}
        containers = ((head_spec.get("template") or {}).get("spec") or {}).get("containers") or [{}]
        ports = {}
        for port in containers[0].get("ports") or []:
            ports[port.get("name") or f"{port.get('containerPort')}-port"] = int(port["containerPort"])
        if not ports:
            ports = dict(RAY_DEFAULT_PORTS)
        ports.setdefault("metrics", RAY_DEFAULT_PORTS["metrics"])
        labels = {
            "ray.io/cluster": name,
            "ray.io/node-type": "head",
            "ray.io/identifier": f"{name}-head",
            "app.kubernetes.io/name": "kuberay",
            "app.kubernetes.io/created-by": "kuberay-operator",
        }
        custom = head_spec.get("headService") or {}
        service_type = head_spec.get("serviceType") or ""
        body = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": service_name,
                "namespace": namespace,
                "labels": dict((custom.get("metadata") or {}).get("labels") or {}, **labels),
                "ownerReferences": [owner_reference(cluster)],
            },
            "spec": dict(copy.deepcopy(custom.get("spec") or {})),
        }
        if (custom.get("metadata") or {}).get("annotations"):
            body["metadata"]["annotations"] = dict(custom["metadata"]["annotations"])
        service_ports = list(body["spec"].get("ports") or [])
        service_ports += [
            {"name": port_name, "port": number, "appProtocol": "tcp"} for port_name, number in sorted(ports.items())
        ]
        body["spec"]["ports"] = sorted(service_ports, key=lambda p: p.get("name", ""))
        body["spec"]["selector"] = dict(labels)
        if service_type:
            body["spec"]["type"] = service_type
        if not custom and service_type in ("", "ClusterIP"):
            body["spec"]["clusterIP"] = "None"  # headless by default since KubeRay v1.3
            body["spec"]["publishNotReadyAddresses"] = True
        self.create(body)

    def _reconcile_pods(self, cluster: dict, live: list) -> tuple | None:
        spec = cluster.get("spec") or {}
        heads = [p for p in live if (p["metadata"].get("labels") or {}).get("ray.io/node-type") == "head"]
        try:
            for pod in live:
                if pod_terminal(pod) and pod["spec"].get("restartPolicy", "Always") != "Always":
                    self.delete(pod)
            heads = [p for p in heads if not pod_terminal(p)]
            if not heads:
                self.create(self._build_pod(cluster, "head", spec.get("headGroupSpec") or {}))
        except ApiError as error:
            return ("FailedCreateHeadPod", error.message)
        for group in _worker_groups(cluster):
            group_name = group.get("groupName", "")
            workers = [
                p
                for p in live
                if (p["metadata"].get("labels") or {}).get("ray.io/node-type") == "worker"
                and (p["metadata"].get("labels") or {}).get("ray.io/group") == group_name
                and not pod_terminal(p)
            ]
            try:
                to_delete = set((group.get("scaleStrategy") or {}).get("workersToDelete") or [])
                for pod in [p for p in workers if p["metadata"]["name"] in to_delete]:
                    self.delete(pod)
                workers = [p for p in workers if p["metadata"]["name"] not in to_delete]
                diff = desired_worker_pods(group) - len(workers)
                for _dummy in range(max(0, diff)):
                    self.create(self._build_pod(cluster, "worker", group))
                if diff < 0:
                    for pod in sorted(workers, key=_deletion_order)[:-diff]:
                        self.delete(pod)
            except ApiError as error:
                return ("FailedCreateWorkerPod", error.message)
        return None

    def _build_pod(self, cluster: dict, node_type: str, group: dict) -> dict:
        namespace, name = cluster["metadata"]["namespace"], cluster["metadata"]["name"]
        template = copy.deepcopy(group.get("template") or {})
        template_meta = template.get("metadata") or {}
        pod_spec = template.get("spec") or {}
        group_name = "headgroup" if node_type == "head" else group.get("groupName", "")
        service_name = self._service_name(cluster)
        fqdn = f"{service_name}.{namespace}.svc.cluster.local"
        params = {
            k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in (group.get("rayStartParams") or {}).items()
        }
        head_params = ((cluster.get("spec") or {}).get("headGroupSpec") or {}).get("rayStartParams") or {}
        head_port = str(head_params.get("port", "6379"))
        if node_type == "worker":
            params.setdefault("address", f"{fqdn}:{head_port}")
        else:
            params.setdefault("dashboard-host", "0.0.0.0")
        params.setdefault("metrics-export-port", "8080")
        params["block"] = "true"
        params.setdefault("dashboard-agent-listen-port", "52365")
        prefix = name if node_type == "head" else f"{name}-{group_name}"
        pod_name = f"{prefix[:50]}-{node_type}-{rand5()}".lower()
        labels = {
            "ray.io/is-ray-node": "yes",
            "ray.io/cluster": name,
            "ray.io/node-type": node_type,
            "ray.io/group": group_name,
            "ray.io/identifier": f"{name}-{node_type}",
            "app.kubernetes.io/name": "kuberay",
            "app.kubernetes.io/created-by": "kuberay-operator",
        }
        for key, value in (template_meta.get("labels") or {}).items():
            if key not in ("ray.io/node-type", "ray.io/group", "ray.io/cluster"):
                labels[key] = value
        annotations = dict(template_meta.get("annotations") or {})
        cluster_annotations = cluster["metadata"].get("annotations") or {}
        overwrite = str(cluster_annotations.get("ray.io/overwrite-container-cmd", "")).lower() == "true"
        if overwrite:
            annotations["ray.io/overwrite-container-cmd"] = "true"
        if node_type == "head":
            annotations["ray.io/ft-enabled"] = (
                "true" if (cluster.get("spec") or {}).get("gcsFaultToleranceOptions") else "false"
            )
        containers = pod_spec.setdefault("containers", [{"name": "ray"}])
        ray = containers[0]
        original_env = copy.deepcopy(ray.get("env") or [])
        ports = ray.setdefault("ports", [])
        if not any(p.get("name") == "metrics" for p in ports):
            ports.append({"name": "metrics", "containerPort": 8080, "protocol": "TCP"})
        # /dev/shm for the object store
        volumes = pod_spec.setdefault("volumes", [])
        mounts = ray.setdefault("volumeMounts", [])
        if not any(m.get("mountPath") == "/dev/shm" for m in mounts):
            resources = ray.get("resources") or {}
            memory = (resources.get("requests") or {}).get("memory") or (resources.get("limits") or {}).get("memory")
            empty_dir = {"medium": "Memory"}
            if memory:
                empty_dir["sizeLimit"] = str(memory)
            if not any(v.get("name") == "shared-mem" for v in volumes):
                volumes.append({"name": "shared-mem", "emptyDir": empty_dir})
            mounts.append({"name": "shared-mem", "mountPath": "/dev/shm"})
        start = ray_start_command(node_type, params, ray.get("resources") or {})
        existing_cmd = "".join(f" {c} " for c in (ray.get("command") or []) + (ray.get("args") or []))
        if not overwrite and "ray start" not in existing_cmd:
            generated = f"ulimit -n 65536; {start}"
            ray["command"] = ["/bin/bash", "-c", "--"]
            ray["args"] = [f"{existing_cmd} && {generated}" if existing_cmd else generated]
        if node_type == "worker":
            wait_script = (
                f"until ray health-check --address {fqdn}:{head_port} > /dev/null 2>&1; do "
                f'echo "Waiting for GCS to be ready."; sleep 5; done; echo "GCS is ready."'
            )
            init = {
                "name": "wait-gcs-ready",
                "image": ray.get("image"),
                "command": ["/bin/bash", "-c", "--"],
                "args": [wait_script],
                "env": original_env,
                "resources": {
                    "limits": {"cpu": "200m", "memory": "256Mi"},
                    "requests": {"cpu": "200m", "memory": "256Mi"},
                },
            }
            if ray.get("imagePullPolicy"):
                init["imagePullPolicy"] = ray["imagePullPolicy"]
            if ray.get("volumeMounts"):
                init["volumeMounts"] = copy.deepcopy(ray["volumeMounts"])
            if ray.get("securityContext"):
                init["securityContext"] = copy.deepcopy(ray["securityContext"])
            pod_spec.setdefault("initContainers", []).append(init)
        for init_container in pod_spec.get("initContainers") or []:
            init_container.setdefault("env", [])
            init_container["env"] += [{"name": "FQ_RAY_IP", "value": fqdn}, {"name": "RAY_IP", "value": service_name}]
        env = ray.setdefault("env", [])

        def has(env_name):
            return any(e.get("name") == env_name for e in env)

        ip = "127.0.0.1"
        if node_type == "worker":
            ip = fqdn
            env += [{"name": "FQ_RAY_IP", "value": fqdn}, {"name": "RAY_IP", "value": service_name}]
        env.append(
            {"name": "RAY_CLUSTER_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['ray.io/cluster']"}}}
        )
        env.append({"name": "RAY_CLOUD_INSTANCE_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})
        env.append(
            {"name": "RAY_NODE_TYPE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['ray.io/group']"}}}
        )
        env.append({"name": "KUBERAY_GEN_RAY_START_CMD", "value": start})
        if not has("RAY_PORT"):
            env.append({"name": "RAY_PORT", "value": head_port})
        if not has("RAY_ADDRESS"):
            env.append({"name": "RAY_ADDRESS", "value": f"{ip}:{head_port}"})
        if not has("RAY_USAGE_STATS_KUBERAY_IN_USE"):
            env.append({"name": "RAY_USAGE_STATS_KUBERAY_IN_USE", "value": "1"})
        if node_type == "head":
            env.append(
                {
                    "name": "RAY_USAGE_STATS_EXTRA_TAGS",
                    "value": f"kuberay_version={KUBERAY_VERSION};kuberay_crd=RayCluster",
                }
            )
        if not has("RAY_DASHBOARD_ENABLE_K8S_DISK_USAGE"):
            env.append({"name": "RAY_DASHBOARD_ENABLE_K8S_DISK_USAGE", "value": "1"})
        raylet = "wget --tries 1 -T 2 -q -O- http://localhost:52365/api/local_raylet_healthz | grep success"
        gcs = "wget --tries 1 -T 10 -q -O- http://localhost:8265/api/gcs_healthz | grep success"
        command = " && ".join([raylet, gcs] if node_type == "head" else [raylet])
        timeout = 5 if node_type == "head" else 2
        if not ray.get("livenessProbe"):
            ray["livenessProbe"] = {
                "exec": {"command": ["bash", "-c", command]},
                "initialDelaySeconds": 30,
                "timeoutSeconds": timeout,
                "periodSeconds": 5,
                "successThreshold": 1,
                "failureThreshold": 120,
            }
        if not ray.get("readinessProbe"):
            ray["readinessProbe"] = {
                "exec": {"command": ["bash", "-c", command]},
                "initialDelaySeconds": 10,
                "timeoutSeconds": timeout,
                "periodSeconds": 5,
                "successThreshold": 1,
                "failureThreshold": 10,
            }
        metadata = {
            "name": pod_name,
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": [owner_reference(cluster)],
        }
        if annotations:
            metadata["annotations"] = annotations
        return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod_spec}

    def _status(self, cluster: dict, pods: list, failure: tuple | None) -> None:
        spec = cluster.get("spec") or {}
        namespace = cluster["metadata"]["namespace"]
        old = cluster.get("status") or {}
        status = copy.deepcopy(old)
        stamp = now_rfc3339()
        groups = _worker_groups(cluster)
        workers = [p for p in pods if (p["metadata"].get("labels") or {}).get("ray.io/node-type") == "worker"]
        heads = [p for p in pods if (p["metadata"].get("labels") or {}).get("ray.io/node-type") == "head"]
        desired = sum(desired_worker_pods(g) for g in groups)
        status["readyWorkerReplicas"] = sum(1 for p in workers if pod_running_and_ready(p))
        status["availableWorkerReplicas"] = sum(1 for p in workers if (p.get("status") or {}).get("phase") == "Running")
        status["desiredWorkerReplicas"] = desired
        status["minWorkerReplicas"] = sum(
            int(g["minReplicas"]) * g["numOfHosts"] for g in groups if not g.get("suspend")
        )
        status["maxWorkerReplicas"] = sum(
            int(g["maxReplicas"]) * g["numOfHosts"] for g in groups if not g.get("suspend")
        )
        totals, binary = {}, {}
        head_resources = _pod_resources(((spec.get("headGroupSpec") or {}).get("template") or {}).get("spec") or {})
        parts = [(head_resources, 1)]
        for group in groups:
            if not group.get("suspend"):
                parts.append(
                    (
                        _pod_resources((group.get("template") or {}).get("spec") or {}),
                        int(group["replicas"] or 0) * group["numOfHosts"],
                    )
                )
        for resources, times in parts:
            for key, value in resources["total"].items():
                totals[key] = totals.get(key, 0) + value * times
                binary.setdefault(key, resources["binary"][key])
        status["desiredCPU"] = format_quantity(totals.get("cpu", 0), binary.get("cpu", False))
        status["desiredMemory"] = format_quantity(totals.get("memory", 0), binary.get("memory", False))
        gpus = sum((v for k, v in totals.items() if k.endswith("gpu")), Fraction(0))
        status["desiredGPU"] = format_quantity(gpus)
        status["desiredTPU"] = format_quantity(totals.get("google.com/tpu", 0))
        status["observedGeneration"] = cluster["metadata"].get("generation", 1)
        all_running = bool(pods) and all(
            (p.get("status") or {}).get("phase") == "Running"
            and (_condition(p, "Ready") is None or _condition(p, "Ready").get("status") == "True")
            for p in pods
        )
        conditions = old.get("conditions") or []
        if failure:
            conditions = set_condition(
                conditions, "ReplicaFailure", "True", failure[0], failure[1], stamp=stamp, meta=True
            )
        else:
            conditions = [c for c in conditions if c.get("type") != "ReplicaFailure"]
            if len(pods) == desired + 1 and all_running:
                status["state"] = "ready"
                status.pop("reason", None)
        head = heads[0] if heads else None
        if head is None:
            conditions = set_condition(
                conditions, "HeadPodReady", "False", "HeadPodNotFound", "Head Pod not found", stamp=stamp, meta=True
            )
        else:
            ready_condition = _condition(head, "Ready") or {}
            value = ready_condition.get("status") or "False"
            reason = ready_condition.get("reason") or ("HeadPodRunningAndReady" if value == "True" else "Unknown")
            conditions = set_condition(
                conditions, "HeadPodReady", value, reason, ready_condition.get("message", ""), stamp=stamp, meta=True
            )
        provisioned = _condition({"status": {"conditions": conditions}}, "RayClusterProvisioned")
        if not provisioned or provisioned.get("status") != "True":
            if all_running:
                message = "All Ray Pods are ready for the first time"
                reason = "AllPodRunningAndReadyFirstTime"
                conditions = set_condition(
                    conditions, "RayClusterProvisioned", "True", reason, message, stamp=stamp, meta=True
                )
            else:
                conditions = set_condition(
                    conditions,
                    "RayClusterProvisioned",
                    "False",
                    "RayClusterPodsProvisioning",
                    "RayCluster Pods are being provisioned for first time",
                    stamp=stamp,
                    meta=True,
                )
        suspended = _condition({"status": {"conditions": conditions}}, "RayClusterSuspended") or {}
        suspending = _condition({"status": {"conditions": conditions}}, "RayClusterSuspending") or {}
        if suspending.get("status") == "True":
            if not pods:
                conditions = set_condition(
                    conditions,
                    "RayClusterProvisioned",
                    "False",
                    "RayClusterPodsProvisioning",
                    "RayCluster has been suspended",
                    stamp=stamp,
                    meta=True,
                )
                conditions = set_condition(
                    conditions, "RayClusterSuspending", "False", "RayClusterSuspending", stamp=stamp, meta=True
                )
                conditions = set_condition(
                    conditions, "RayClusterSuspended", "True", "RayClusterSuspended", stamp=stamp, meta=True
                )
        elif suspended.get("status") == "True":
            if not spec.get("suspend"):
                conditions = set_condition(
                    conditions, "RayClusterSuspended", "False", "RayClusterSuspended", stamp=stamp, meta=True
                )
        else:
            conditions = set_condition(
                conditions, "RayClusterSuspended", "False", "RayClusterSuspended", stamp=stamp, meta=True
            )
            conditions = set_condition(
                conditions,
                "RayClusterSuspending",
                "True" if spec.get("suspend") else "False",
                "RayClusterSuspending",
                stamp=stamp,
                meta=True,
            )
        if spec.get("suspend") and not pods:
            status["state"] = "suspended"
        status["conditions"] = conditions
        service_name = self._service_name(cluster)
        service = self.peek("v1", "Service", namespace, service_name)
        endpoints = dict(status.get("endpoints") or {})
        for port in ((service or {}).get("spec") or {}).get("ports") or []:
            if not port.get("name"):
                continue
            if port.get("nodePort"):
                endpoints[port["name"]] = str(port["nodePort"])
            else:
                endpoints[port["name"]] = str(port.get("targetPort") or port.get("port"))
        if endpoints:
            status["endpoints"] = endpoints
        head_info = {}
        if head is not None:
            head_info["podIP"] = (head.get("status") or {}).get("podIP", "")
            head_info["podName"] = head["metadata"]["name"]
        if service is not None:
            cluster_ip = (service.get("spec") or {}).get("clusterIP") or ""
            head_info["serviceIP"] = head_info.get("podIP", "") if cluster_ip == "None" else cluster_ip
            head_info["serviceName"] = service_name
        status["head"] = {k: v for k, v in head_info.items() if v}
        if old.get("state") != status.get("state") and status.get("state"):
            status.setdefault("stateTransitionTimes", {})[status["state"]] = stamp
        if status != old:
            status["lastUpdateTime"] = stamp
            self.write_status(cluster, status)


# ---- NVIDIA GPU operator ---------------------------------------------------------------------------------------

_OPERANDS = (
    # name, app label, image, deploy label
    (
        "nvidia-device-plugin-daemonset",
        "nvidia-device-plugin-daemonset",
        "nvcr.io/nvidia/k8s-device-plugin:v0.18.0",
        "device-plugin",
    ),
    (
        "gpu-feature-discovery",
        "gpu-feature-discovery",
        "nvcr.io/nvidia/k8s-device-plugin:v0.18.0",
        "gpu-feature-discovery",
    ),
    (
        "nvidia-dcgm-exporter",
        "nvidia-dcgm-exporter",
        "nvcr.io/nvidia/k8s/dcgm-exporter:4.4.1-4.6.0-ubuntu22.04",
        "dcgm-exporter",
    ),
    (
        "nvidia-container-toolkit-daemonset",
        "nvidia-container-toolkit-daemonset",
        "nvcr.io/nvidia/k8s/container-toolkit:v1.18.0",
        "container-toolkit",
    ),
    (
        "nvidia-operator-validator",
        "nvidia-operator-validator",
        f"nvcr.io/nvidia/cloud-native/gpu-operator-validator:{GPU_OPERATOR_VERSION}",
        "operator-validator",
    ),
)
_FAMILIES = {"7": "volta", "8": "ampere", "9": "hopper", "10": "blackwell", "12": "blackwell"}


def gfd_labels(gpu: dict, mig_strategy: str = "single") -> dict:
    """The labels GPU feature discovery, NFD and the GPU operator put on a GPU node."""
    driver = str(gpu.get("driver_version", "580.95.05")).split(".")
    runtime = str(gpu.get("cuda_runtime", "13.0")).split(".")
    compute = str(gpu.get("compute_capability", "8.0")).split(".")
    driver += ["0"] * (3 - len(driver))
    runtime += ["0"] * (2 - len(runtime))
    family = gpu.get("family") or _FAMILIES.get(compute[0], "unknown")
    labels = {
        "feature.node.kubernetes.io/pci-10de.present": "true",
        "nvidia.com/gpu.present": "true",
        "nvidia.com/gpu.product": str(gpu.get("product", "NVIDIA-A100-SXM4-80GB")).replace(" ", "-"),
        "nvidia.com/gpu.memory": str(gpu.get("memory_mib", 81920)),
        "nvidia.com/gpu.count": str(gpu.get("count", 1)),
        "nvidia.com/gpu.family": family,
        "nvidia.com/gpu.compute.major": compute[0],
        "nvidia.com/gpu.compute.minor": compute[1] if len(compute) > 1 else "0",
        "nvidia.com/gpu.machine": str(gpu.get("machine", "emulated")),
        "nvidia.com/gpu.mode": "compute",
        "nvidia.com/gpu.replicas": "1",
        "nvidia.com/gpu.sharing-strategy": "none",
        "nvidia.com/cuda.driver.major": driver[0],
        "nvidia.com/cuda.driver.minor": driver[1],
        "nvidia.com/cuda.driver.rev": driver[2],
        "nvidia.com/cuda.driver-version.major": driver[0],
        "nvidia.com/cuda.driver-version.minor": driver[1],
        "nvidia.com/cuda.driver-version.revision": driver[2],
        "nvidia.com/cuda.driver-version.full": ".".join(driver[:3]),
        "nvidia.com/cuda.runtime.major": runtime[0],
        "nvidia.com/cuda.runtime.minor": runtime[1],
        "nvidia.com/cuda.runtime-version.major": runtime[0],
        "nvidia.com/cuda.runtime-version.minor": runtime[1],
        "nvidia.com/cuda.runtime-version.full": ".".join(runtime[:2]),
        "nvidia.com/mig.capable": "true" if gpu.get("mig_capable") else "false",
        "nvidia.com/mig.strategy": mig_strategy,
        "nvidia.com/mps.capable": "false",
        "nvidia.com/vgpu.present": "false",
        "nvidia.com/gpu.deploy.container-toolkit": "true",
        "nvidia.com/gpu.deploy.dcgm": "true",
        "nvidia.com/gpu.deploy.dcgm-exporter": "true",
        "nvidia.com/gpu.deploy.device-plugin": "true",
        "nvidia.com/gpu.deploy.driver": "pre-installed",
        "nvidia.com/gpu.deploy.gpu-feature-discovery": "true",
        "nvidia.com/gpu.deploy.node-status-exporter": "true",
        "nvidia.com/gpu.deploy.operator-validator": "true",
    }
    if gpu.get("mig_capable"):
        labels["nvidia.com/gpu.deploy.mig-manager"] = "true"
    return labels


def _is_gpu_label(key: str) -> bool:
    return key.startswith("nvidia.com/") or key == "feature.node.kubernetes.io/pci-10de.present"


class GpuOperatorController(Controller):
    name = "gpu-operator"

    def reconcile(self) -> None:
        policy_type = self.rtype("nvidia.com/v1", "ClusterPolicy")
        policies = [p for p in self.store.iter_objects(policy_type) if not deleting(p)] if policy_type else []
        installed = bool(policies)
        gpu_nodes = seed_gpu_nodes(self.state.seed or {})
        mig = ((policies[0].get("spec") or {}).get("mig") or {}).get("strategy", "single") if policies else "single"
        for node in list(self.objects("v1", "Node")):
            gpu = gpu_nodes.get(node["metadata"]["name"]) if installed else None
            self._node(node, gpu, mig)
        namespace = self._namespace()
        for policy in policies:
            if namespace:
                for operand in _OPERANDS:
                    self._operand(policy, namespace, *operand)
            status = copy.deepcopy(policy.get("status") or {})
            status["state"] = "ready"
            status["namespace"] = namespace or ""
            status["conditions"] = set_condition(
                status.get("conditions"),
                "Ready",
                "True",
                "Reconciled",
                "ClusterPolicy is ready as all resources have been successfully reconciled",
                meta=True,
            )
            status["conditions"] = set_condition(status["conditions"], "Error", "False", "Ready", meta=True)
            self.write_status(policy, status)

    def _namespace(self) -> str:
        wanted = (self.state.seed.get("platform") or {}).get("gpu_operator_namespace") if self.state.seed else None
        for deployment in self.objects("apps/v1", "Deployment"):
            labels = deployment["metadata"].get("labels") or {}
            if labels.get("app") == "gpu-operator" or labels.get("app.kubernetes.io/component") == "gpu-operator":
                return deployment["metadata"]["namespace"]
        if wanted and self.peek("v1", "Namespace", None, wanted) is not None:
            return wanted
        return ""

    def _node(self, node: dict, gpu: dict | None, mig: str) -> None:
        labels = dict(node["metadata"].get("labels") or {})
        wanted = {k: v for k, v in labels.items() if not _is_gpu_label(k)}
        if gpu is not None:
            wanted.update(gfd_labels(gpu, mig))
        if wanted != labels:
            new = copy.deepcopy(node)
            new["metadata"]["labels"] = wanted
            node = self.update(new)
        status = copy.deepcopy(node.get("status") or {})
        for key in ("capacity", "allocatable"):
            resources = status.setdefault(key, {})
            if gpu is not None:
                resources["nvidia.com/gpu"] = str(gpu.get("count", 1))
            else:
                resources.pop("nvidia.com/gpu", None)
        self.write_status(node, status)

    def _operand(self, policy: dict, namespace: str, name: str, app: str, image: str, deploy: str) -> None:
        if self.peek("apps/v1", "DaemonSet", namespace, name) is not None:
            return
        body = {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {
                    "app": app,
                    "app.kubernetes.io/managed-by": "gpu-operator",
                    "app.kubernetes.io/part-of": "nvidia-gpu",
                },
                "ownerReferences": [owner_reference(policy)],
            },
            "spec": {
                "selector": {"matchLabels": {"app": app}},
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                "template": {
                    "metadata": {
                        "labels": {
                            "app": app,
                            "app.kubernetes.io/managed-by": "gpu-operator",
                            "app.kubernetes.io/part-of": "nvidia-gpu",
                        }
                    },
                    "spec": {
                        "nodeSelector": {f"nvidia.com/gpu.deploy.{deploy}": "true"},
                        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                        "priorityClassName": "system-node-critical",
                        "serviceAccountName": app.replace("-daemonset", ""),
                        "containers": [{"name": deploy.replace("operator-", ""), "image": image}],
                    },
                },
            },
        }
        self.create(body)


CONTROLLERS: dict = {
    "nodes": NodesController,
    "kubelet": KubeletController,
    "workloads": WorkloadsController,
    "storage": StorageController,
    "kuberay": KubeRayController,
    "gpu_operator": GpuOperatorController,
}
