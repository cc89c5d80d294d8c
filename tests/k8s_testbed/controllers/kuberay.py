# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The ``kuberay`` controller: the KubeRay operator v1.7.0, active while a kuberay-operator Deployment is available.

Follows ``ray-operator/controllers/ray/raycluster_controller.go`` (``rayClusterReconcile``) at v1.7.0 with the
feature gates its Helm chart turns on (RayClusterStatusConditions, RayMultiHostIndexing): the spec checks of
``utils/validation.go`` (an invalid RayCluster gets a Warning event and nothing else), the head Service and, for
multi-host worker groups, the headless worker Service (``common/service.go``), the head and worker pods as
``common/pod.go`` builds them (``kuberay_pods``), scaling (replicas/min/max, numOfHosts replica groups with their
index labels, suspend, workersToDelete, unhealthy pods, upgradeStrategy Recreate) and the status (state, replica
counts, desired resources, head, endpoints, conditions HeadPodReady / RayClusterProvisioned / RayClusterSuspended
/ RayClusterSuspending / ReplicaFailure), written only when KubeRay would write it (``utils/consistency.go``).
``status.state`` becomes "ready" once all pods run and are ready and then stays "ready" (watch HeadPodReady and
readyWorkerReplicas instead); template changes do not recreate pods unless upgradeStrategy is Recreate. RayJob and
RayService objects are stored but not reconciled; no autoscaler, Ingress, serve Service or Redis cleanup Job.
"""

from __future__ import annotations

import base64
import re
import secrets
from fractions import Fraction

from ..jsondata import json_copy
from ..quantity import format_quantity, is_binary, parse_quantity
from ..store import ApiError
from ..timestamps import now_rfc3339
from .base import (
    Controller,
    condition_in,
    deleting,
    deletion_order,
    find_condition,
    labels_of,
    owner_reference,
    phase_of,
    pod_running_and_ready,
    rand5,
    set_condition,
)
from .kuberay_pods import (
    DEFAULT_PORTS,
    auth_secret_name,
    build_pod,
    check_label,
    cluster_spec_hash,
    creator_crd_type,
    head_service_name,
    is_gpu_resource,
    ray_start_command,
    ray_version_at_least,
    token_auth_enabled,
)

__all__ = ["KubeRayController", "desired_worker_pods", "ray_start_command"]

_INT32_MAX = 2147483647
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_MAX_CLUSTER_NAME = 53  # utils/constant.go:375 MaxRayClusterNameLength


class ReconcileError(Exception):
    """A reconcile step that failed; reason is the ReplicaFailure reason ("" when KubeRay sets none)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        # errors.Join(utils.ErrFailed..., err): the reason, a newline, the API error (utils/constant.go:410-424)
        self.message = f"{reason}\n{message}" if reason else message


class KubeRayController(Controller):
    name = "kuberay-operator"

    def reconcile(self) -> None:
        if self.rtype("ray.io/v1", "RayCluster") is None or not self._operator_available():
            return
        for cluster in self.live("ray.io/v1", "RayCluster"):
            self._cluster(cluster)

    def _operator_available(self) -> bool:
        for deployment in self.objects("apps/v1", "Deployment"):
            if labels_of(deployment).get("app.kubernetes.io/name") == "kuberay-operator" and not deleting(deployment):
                if int((deployment.get("status") or {}).get("availableReplicas") or 0) >= 1:
                    return True
        return False

    def _cluster(self, cluster: dict) -> None:
        """raycluster_controller.go:154 rayClusterReconcile: validate, then the services and the pods, stopping at
        the first failure (:391-398), then the status."""
        if (cluster.get("spec") or {}).get("managedBy") not in (None, "", "ray.io/kuberay-operator"):
            return  # :158-161: another controller (e.g. MultiKueue) owns it
        if self._invalid(cluster):
            return
        error = None
        try:
            self._auth_secret(cluster)
            self._head_service(cluster)
            self._headless_service(cluster)
            self._reconcile_pods(cluster)
        except ReconcileError as failure:
            error = failure
        self._status(cluster, self._pods(cluster), error)

    def _invalid(self, cluster: dict) -> bool:
        """:165-212: an invalid RayCluster gets a Warning event and is not reconciled."""
        problem = spec_problem(cluster)
        if problem is None:
            return False
        reason, what, message = problem
        namespace, name = cluster["metadata"]["namespace"], cluster["metadata"]["name"]
        self.event(cluster, reason, f"The RayCluster {what} is invalid {namespace}/{name}: {message}", "Warning")
        return True

    # ---- pods -----------------------------------------------------------------------------------------------

    def _pods(self, cluster: dict) -> list:
        """The cluster's pods that are not being deleted (common/association.go: the ray.io/cluster label)."""
        name = cluster["metadata"]["name"]
        return [p for p in self.owned("v1", "Pod", cluster) if labels_of(p).get("ray.io/cluster") == name]

    def _create_pod(self, cluster: dict, pod: dict, node_type: str) -> None:
        """raycluster_controller.go:1636-1715: create, with a Created/FailedToCreate event."""
        where = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
        try:
            self.create(pod)
        except ApiError as error:
            if node_type == "head":
                self.event(
                    cluster, "FailedToCreateHeadPod", f"Failed to create head Pod {where}, {error.message}", "Warning"
                )
                raise ReconcileError("FailedCreateHeadPod", error.message) from None
            cluster_ref = f"{cluster['metadata']['namespace']}/{cluster['metadata']['name']}"
            message = f"Failed to create worker Pod for the cluster {cluster_ref}, {error.message}"
            self.event(cluster, "FailedToCreateWorkerPod", message, "Warning")
            raise ReconcileError("FailedCreateWorkerPod", error.message) from None
        reason, text = ("CreatedHeadPod", "head Pod") if node_type == "head" else ("CreatedWorkerPod", "worker Pod")
        self.event(cluster, reason, f"Created {text} {where}")

    def _delete_pods(self, cluster: dict, pods: list, reason: str = "DeletedWorkerPod") -> None:
        for pod in pods:
            self.delete(pod)
            self.event(cluster, reason, f"Deleted Pod {pod['metadata']['namespace']}/{pod['metadata']['name']}")

    def _reconcile_pods(self, cluster: dict) -> None:
        """raycluster_controller.go:931 reconcilePods."""
        live = self._pods(cluster)
        suspend = _suspend_status(cluster)
        if suspend == "RayClusterSuspending":  # :942-956: delete every pod, then report Suspended
            self._delete_pods(cluster, live, "DeletedPod")
            return
        if suspend == "RayClusterSuspended" or (cluster.get("spec") or {}).get("suspend"):
            return  # :958-966
        if _should_recreate(cluster, live):  # :968-982 (upgradeStrategy Recreate)
            self._delete_pods(cluster, live, "DeletedPod")
            return
        self._reconcile_head(cluster, [p for p in live if _node_type(p) == "head"])
        for group in _worker_groups(cluster):
            workers = [
                p for p in live if _node_type(p) == "worker" and labels_of(p).get("ray.io/group") == group["groupName"]
            ]
            if group.get("suspend"):  # :1086-1097
                self._delete_pods(cluster, workers)
            elif int(group["numOfHosts"]) > 1:  # :1099-1106 (RayMultiHostIndexing)
                self._reconcile_replica_groups(cluster, group, workers)
            else:
                self._reconcile_workers(cluster, group, workers)

    def _reconcile_head(self, cluster: dict, heads: list) -> None:
        """:1003-1073: delete a head pod that cannot restart; create one when there is none; more than one is an
        error."""
        if len(heads) > 1:
            names = [p["metadata"]["name"] for p in heads]
            raise ReconcileError("", f"{len(heads)} head pods found {names}. Please delete extra head pods")
        if heads and should_delete_pod(heads[0]):
            self._delete_pods(cluster, heads, "DeletedHeadPod")
            raise ReconcileError("", f"The head Pod {heads[0]['metadata']['name']} cannot restart: deleted it")
        if heads:
            return
        annotations = cluster["metadata"].get("annotations") or {}
        provisioned = condition_in((cluster.get("status") or {}).get("conditions"), "RayClusterProvisioned") or {}
        if provisioned.get("status") == "True" and annotations.get("ray.io/disable-provisioned-head-restart") == "true":
            return  # :1034-1053
        head_group = (cluster.get("spec") or {}).get("headGroupSpec") or {}
        self._create_pod(cluster, build_pod(cluster, "head", head_group), "head")

    def _reconcile_workers(self, cluster: dict, group: dict, workers: list) -> None:
        """:1108-1260: unhealthy pods go first (nothing is created in that round), then workersToDelete; then the
        group is scaled to its desired count with the lowest free replica indices; a scale-down removes the
        newest and unready pods first (KubeRay takes the list order)."""
        unhealthy = [p for p in workers if should_delete_pod(p)]
        if unhealthy:
            self._delete_pods(cluster, unhealthy)
            raise ReconcileError("", f"delete {len(unhealthy)} unhealthy worker Pods")
        to_delete = set((group.get("scaleStrategy") or {}).get("workersToDelete") or [])
        self._delete_pods(cluster, [p for p in workers if p["metadata"]["name"] in to_delete])
        workers = [p for p in workers if p["metadata"]["name"] not in to_delete]
        diff = desired_worker_pods(group) - len(workers)
        used = {_replica_index(p) for p in workers}
        for index in _free_indices(used, max(0, diff)):
            self._create_pod(cluster, build_pod(cluster, "worker", group, (index, "", 0)), "worker")
        if diff < 0:
            self._delete_pods(cluster, sorted(workers, key=deletion_order)[:-diff])

    def _reconcile_replica_groups(self, cluster: dict, group: dict, workers: list) -> None:
        """:1287 reconcileMultiHostWorkerGroup: numOfHosts pods a replica, created, scaled and deleted together."""
        hosts = int(group["numOfHosts"])
        replicas = _by_replica(workers)
        incomplete = [pods for pods in replicas.values() if len(pods) < hosts]
        if incomplete:  # :1298-1307
            self._delete_pods(cluster, incomplete[0])
            raise ReconcileError("", "cleaned up an incomplete replica group, requeueing")
        doomed = {name for name, pods in replicas.items() if any(should_delete_pod(p) for p in pods)}
        to_delete = set((group.get("scaleStrategy") or {}).get("workersToDelete") or [])
        requested = {name for name, pods in replicas.items() if any(p["metadata"]["name"] in to_delete for p in pods)}
        for name in sorted(doomed | requested):  # :1309-1368
            self._delete_pods(cluster, replicas.pop(name))
        if requested - doomed:
            raise ReconcileError("", "deleted worker Pods based on ScaleStrategy, requeueing")
        self._scale_replica_groups(cluster, group, replicas)

    def _scale_replica_groups(self, cluster: dict, group: dict, replicas: dict) -> None:
        """:1370-1455: create whole replica groups at the lowest free indices; a scale-down removes whole groups."""
        hosts = int(group["numOfHosts"])
        desired = desired_worker_pods(group)
        if desired % hosts:
            raise ReconcileError("", f"desired worker pods ({desired}) is not a multiple of NumOfHosts ({hosts})")
        diff = desired // hosts - len(replicas)
        used = {_replica_index(pods[0]) for pods in replicas.values()}
        for index in _free_indices(used, max(0, diff)):
            replica_name = f"{group['groupName']}-{rand5()}"  # util.go:380 GenerateRayWorkerReplicaGroupName
            for host in range(hosts):
                self._create_pod(cluster, build_pod(cluster, "worker", group, (index, replica_name, host)), "worker")
        newest_first = sorted(replicas.values(), key=lambda pods: min(deletion_order(p) for p in pods))
        for pods in newest_first[: max(0, -diff)]:
            self._delete_pods(cluster, pods)

    # ---- services -------------------------------------------------------------------------------------------

    def _auth_secret(self, cluster: dict) -> None:
        """raycluster_controller.go:422-480 reconcileAuthSecret: with token auth and no secretName, a Secret of a
        random token, owned by the RayCluster; a Secret of that name is kept as it is."""
        auth = (cluster.get("spec") or {}).get("authOptions") or {}
        if not token_auth_enabled(cluster) or auth.get("enableK8sTokenAuth") or auth.get("secretName"):
            return
        namespace, name = cluster["metadata"]["namespace"], auth_secret_name(cluster)
        if any(s["metadata"]["name"] == name for s in self.objects("v1", "Secret", namespace)):
            return
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {"ray.io/cluster": cluster["metadata"]["name"]},
                "ownerReferences": [owner_reference(cluster)],
            },
            # Go's StringData, folded into data as the API server stores it: the token is itself base64 text.
            "data": {"auth_token": base64.b64encode(base64.b64encode(secrets.token_bytes(32))).decode()},
        }
        try:
            self.create(secret)
        except ApiError as error:
            raise ReconcileError("", error.message) from None

    def _services(self, cluster: dict, selector: dict) -> list:
        namespace = cluster["metadata"]["namespace"]
        return [
            s
            for s in self.objects("v1", "Service", namespace)
            if not deleting(s) and all(labels_of(s).get(k) == v for k, v in selector.items())
        ]

    def _create_service(self, cluster: dict, service: dict) -> None:
        """raycluster_controller.go:1620 createService: KubeRay owns it; a failure ends the reconcile."""
        service["metadata"]["ownerReferences"] = [owner_reference(cluster)]
        where = f"{service['metadata']['namespace']}/{service['metadata']['name']}"
        try:
            self.create(service)
        except ApiError as error:
            self.event(cluster, "FailedToCreateService", f"Failed creating service {where}, {error.message}", "Warning")
            raise ReconcileError("", error.message) from None
        self.event(cluster, "CreatedService", f"Created service {where}")

    def _head_service(self, cluster: dict) -> None:
        """raycluster_controller.go:609 reconcileHeadService: one Service with the head's labels."""
        found = self._services(cluster, _head_selector_labels(cluster))
        if len(found) > 1:
            raise ReconcileError("", f"{len(found)} head service found")
        if not found:
            self._create_service(cluster, head_service_body(cluster))

    def _headless_service(self, cluster: dict) -> None:
        """raycluster_controller.go:898 reconcileHeadlessService: for multi-host worker groups."""
        if not any(int(g["numOfHosts"]) > 1 for g in _worker_groups(cluster)):
            return
        name = cluster["metadata"]["name"]
        if not self._services(cluster, {"ray.io/headless-worker-svc": name}):
            self._create_service(cluster, headless_service_body(cluster))

    # ---- status ---------------------------------------------------------------------------------------------

    def _status(self, cluster: dict, pods: list, error: ReconcileError | None) -> None:
        """raycluster_controller.go:1970 calculateStatus, written when utils/consistency.go:16 says it changed."""
        old = cluster.get("status") or {}
        status = json_copy(old)
        stamp = now_rfc3339()
        groups = _worker_groups(cluster)
        status.update(_replica_counts(groups, [p for p in pods if _node_type(p) == "worker"]))
        status.update(_desired_resources(cluster.get("spec") or {}, groups))
        status["observedGeneration"] = cluster["metadata"].get("generation", 1)
        conditions = _replica_failure(old.get("conditions") or [], error, stamp)
        if error is None and len(pods) == status["desiredWorkerReplicas"] + 1 and _all_running(pods):
            status["state"] = "ready"
            status.pop("reason", None)
        head = next((p for p in pods if _node_type(p) == "head"), None)
        conditions = _head_pod_ready(conditions, head, stamp)
        conditions = _provisioned(conditions, _all_running(pods), stamp)
        suspend = bool((cluster.get("spec") or {}).get("suspend"))
        status["conditions"] = _suspension(conditions, suspend, bool(pods), stamp)
        if suspend and not pods:
            status["state"] = "suspended"
        service = next(iter(self._services(cluster, _head_selector_labels(cluster))), None)
        endpoints = _endpoints(status.get("endpoints"), service)
        if endpoints:
            status["endpoints"] = endpoints
        status["head"] = _head_info(head, service)
        if old.get("state") != status.get("state") and status.get("state"):
            status.setdefault("stateTransitionTimes", {})[status["state"]] = stamp
        if _inconsistent(old, status):
            status["lastUpdateTime"] = stamp
            self.write_status(cluster, status)


# ---- validation (utils/validation.go) -----------------------------------------------------------------------


def spec_problem(cluster: dict) -> tuple | None:
    """(event reason, "metadata"/"spec", message) for what utils/validation.go refuses, as far as the test bed
    checks: the name (:32), containers, replica bounds, resources and labels (:103-160), upgradeStrategy (:42)."""
    name = cluster["metadata"]["name"]
    if len(name) > _MAX_CLUSTER_NAME:
        return (
            "InvalidRayClusterMetadata",
            "metadata",
            f"RayCluster name should be no more than {_MAX_CLUSTER_NAME} characters",
        )
    if not _DNS1035.match(name):
        return ("InvalidRayClusterMetadata", "metadata", "RayCluster name should be a valid DNS1035 label")
    problem = _groups_problem(cluster.get("spec") or {}) or _upgrade_problem(cluster) or _auth_problem(cluster)
    return ("InvalidRayClusterSpec", "spec", problem) if problem else None


def _auth_problem(cluster: dict) -> str | None:
    """validation.go:285-317: token auth needs Ray 2.52.0 or later (Kubernetes token auth is not emulated)."""
    if not token_auth_enabled(cluster):
        return None
    ray_version = (cluster.get("spec") or {}).get("rayVersion") or ""
    if not ray_version:
        return "authOptions.mode is 'token' but RayVersion was not specified. Ray version 2.52.0 or later is required"
    if not ray_version_at_least(ray_version, (2, 52, 0)):
        return f"authOptions.mode is 'token' but minimum Ray version is 2.52.0, got {ray_version}"
    return None


def _groups_problem(spec: dict) -> str | None:
    head = spec.get("headGroupSpec") or {}
    if not ((head.get("template") or {}).get("spec") or {}).get("containers"):
        return "headGroupSpec should have at least one container"
    problem = _group_params_problem("Head", head)
    for group in spec.get("workerGroupSpecs") or []:
        if problem:
            break
        problem = _worker_group_problem(group)
    return problem


def _worker_group_problem(group: dict) -> str | None:
    name = group.get("groupName", "")
    if not ((group.get("template") or {}).get("spec") or {}).get("containers"):
        return "workerGroupSpec should have at least one container"
    minimum, maximum = group.get("minReplicas", 0), group.get("maxReplicas", _INT32_MAX)
    if minimum < 0 or maximum < 0:
        which, value = ("minReplicas", minimum) if minimum < 0 else ("maxReplicas", maximum)
        return f"worker group {name} has negative {which} {value}"
    if minimum > maximum:
        return f"worker group {name} has minReplicas {minimum} greater than maxReplicas {maximum}"
    return _group_params_problem(name, group)


def _group_params_problem(name: str, group: dict) -> str | None:
    """validation.go:60 validateRayGroupResources and :72 validateRayGroupLabels (the rayStartParams part)."""
    params = group.get("rayStartParams") or {}
    if any(params.get(k) for k in ("num-cpus", "num-gpus", "memory", "resources")) and group.get("resources"):
        return (
            f"resource fields should not be set in both rayStartParams and Resources for {name} group; "
            "please use only one"
        )
    if "labels" in params:
        return (
            f"rayStartParams['labels'] is not supported for {name} group; please use the top-level Labels field instead"
        )
    return None


def _upgrade_problem(cluster: dict) -> str | None:
    kind = ((cluster.get("spec") or {}).get("upgradeStrategy") or {}).get("type")
    if kind is None:
        return None
    if kind not in ("Recreate", "None"):
        return (
            f"The RayCluster spec is invalid: Spec.UpgradeStrategy.Type value {kind} is invalid, "
            "valid options are Recreate or None"
        )
    if creator_crd_type(cluster) != "RayCluster":
        return f"upgradeStrategy cannot be set when RayCluster is created by {creator_crd_type(cluster)}"
    return None


# ---- worker groups and pods ---------------------------------------------------------------------------------


def _worker_groups(cluster: dict) -> list:
    """The worker groups with the CRD's defaults (replicas/minReplicas 0, maxReplicas int32 max, numOfHosts 1)."""
    groups = []
    for group in (cluster.get("spec") or {}).get("workerGroupSpecs") or []:
        group = dict(group)
        for key, default in (("replicas", 0), ("minReplicas", 0), ("maxReplicas", _INT32_MAX), ("numOfHosts", 1)):
            group[key] = int(group[key]) if group.get(key) is not None else default
        group.setdefault("groupName", "")
        groups.append(group)
    return groups


def desired_worker_pods(group: dict) -> int:
    """util.go:389 GetWorkerGroupDesiredReplicas: replicas clamped to [min, max], times numOfHosts; 0 suspended."""
    if group.get("suspend"):
        return 0
    minimum, maximum = int(group.get("minReplicas", 0)), int(group.get("maxReplicas", _INT32_MAX))
    replicas = group.get("replicas")
    if replicas is None or int(replicas) < minimum:
        count = minimum
    else:
        count = min(int(replicas), maximum)
    return count * int(group.get("numOfHosts", 1))


def should_delete_pod(pod: dict) -> bool:
    """raycluster_controller.go:1512 shouldDeletePod: a terminal pod, or a running one whose Ray container has
    terminated and cannot restart (restartPolicy Never)."""
    if phase_of(pod) in ("Failed", "Succeeded"):
        return True
    if phase_of(pod) != "Running" or (pod.get("spec") or {}).get("restartPolicy") != "Never":
        return False
    ray_name = ((pod.get("spec") or {}).get("containers") or [{}])[0].get("name")
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return any(s.get("name") == ray_name and (s.get("state") or {}).get("terminated") for s in statuses)


def _should_recreate(cluster: dict, pods: list) -> bool:
    """raycluster_controller.go:1463 shouldRecreatePodsForUpgrade: with upgradeStrategy Recreate, a head pod of
    this KubeRay version whose spec hash differs."""
    if ((cluster.get("spec") or {}).get("upgradeStrategy") or {}).get("type") != "Recreate":
        return False
    heads = [p for p in pods if _node_type(p) == "head"]
    annotations = (heads[0]["metadata"].get("annotations") or {}) if heads else {}
    seen = annotations.get("ray.io/upgrade-strategy-recreate-hash", "")
    return bool(seen) and seen != cluster_spec_hash(cluster.get("spec") or {})


def _suspend_status(cluster: dict) -> str:
    """util.go:156 FindRayClusterSuspendStatus."""
    for condition in (cluster.get("status") or {}).get("conditions") or []:
        if (
            condition.get("type") in ("RayClusterSuspending", "RayClusterSuspended")
            and condition.get("status") == "True"
        ):
            return condition["type"]
    return ""


def _node_type(pod: dict) -> str | None:
    return labels_of(pod).get("ray.io/node-type")


def _replica_index(pod: dict) -> int | None:
    try:
        return int(labels_of(pod).get("ray.io/worker-group-replica-index", ""))
    except ValueError:
        return None


def _free_indices(used: set, count: int) -> list:
    """The lowest replica indices not in use (raycluster_controller.go:1200-1212)."""
    found, index = [], 0
    while len(found) < count:
        if index not in used:
            found.append(index)
        index += 1
    return found


def _by_replica(pods: list) -> dict:
    """Replica name -> its pods (pods without the replica-name label are not in any group, as in KubeRay)."""
    replicas: dict = {}
    for pod in pods:
        name = labels_of(pod).get("ray.io/worker-group-replica-name")
        if name:
            replicas.setdefault(name, []).append(pod)
    return replicas


# ---- the Services (common/service.go) -------------------------------------------------------------------------


def _head_selector_labels(cluster: dict) -> dict:
    """service.go:25 HeadServiceLabels, with app.kubernetes.io/name from the head template's labels
    (raycluster_controller.go:630-633 and service.go:46-54)."""
    name = cluster["metadata"]["name"]
    labels = {
        "ray.io/cluster": name,
        "ray.io/node-type": "head",
        "ray.io/identifier": check_label(f"{name}-head"),
        "app.kubernetes.io/name": "kuberay",
        "app.kubernetes.io/created-by": "kuberay-operator",
    }
    template_labels = ((_head_group(cluster).get("template") or {}).get("metadata") or {}).get("labels") or {}
    if "app.kubernetes.io/name" in template_labels:
        labels["app.kubernetes.io/name"] = template_labels["app.kubernetes.io/name"]
    return labels


def _head_group(cluster: dict) -> dict:
    return (cluster.get("spec") or {}).get("headGroupSpec") or {}


def service_ports(cluster: dict) -> list:
    """service.go:403 getServicePorts: the head container's ports (unnamed ones as <port>-port), Ray's defaults
    when it has none, metrics always; each with appProtocol tcp (service.go:71-78)."""
    containers = ((_head_group(cluster).get("template") or {}).get("spec") or {}).get("containers") or [{}]
    ports = {
        (p.get("name") or f"{p.get('containerPort')}-port"): int(p["containerPort"])
        for p in containers[0].get("ports") or []
    }
    if not ports:
        ports = dict(DEFAULT_PORTS)
    ports.setdefault("metrics", DEFAULT_PORTS["metrics"])
    return [{"name": name, "port": number, "appProtocol": "tcp"} for name, number in sorted(ports.items())]


def head_service_body(cluster: dict) -> dict:
    """service.go:37 BuildServiceForHeadPod: the user's headService completed, or KubeRay's own, headless unless its
    type says otherwise (ENABLE_RAY_HEAD_CLUSTER_IP_SERVICE unset, service.go:127-131)."""
    head = _head_group(cluster)
    if head.get("headService") is not None:
        return _custom_head_service(cluster)
    selector = _head_selector_labels(cluster)
    spec = {"selector": dict(selector), "ports": service_ports(cluster)}
    if head.get("serviceType"):
        spec["type"] = head["serviceType"]
    if head.get("serviceType") in (None, "", "ClusterIP"):
        spec["clusterIP"] = "None"
        spec["publishNotReadyAddresses"] = True
    metadata = {"name": head_service_name(cluster), "namespace": cluster["metadata"]["namespace"]}
    metadata["labels"] = dict(selector)
    annotations = (cluster.get("spec") or {}).get("headServiceAnnotations")
    if annotations:
        metadata["annotations"] = dict(annotations)
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": spec}


def _custom_head_service(cluster: dict) -> dict:
    """service.go:79-111: the user's headService with KubeRay's selector and labels (which win), its annotations
    under headServiceAnnotations, its ports followed by KubeRay's, its type or serviceType."""
    head = _head_group(cluster)
    selector = _head_selector_labels(cluster)
    body = json_copy(head["headService"])
    metadata = body.setdefault("metadata", {})
    metadata.update(name=head_service_name(cluster), namespace=cluster["metadata"]["namespace"])
    metadata["labels"] = {**(metadata.get("labels") or {}), **selector}
    annotations = {
        **(metadata.get("annotations") or {}),
        **((cluster.get("spec") or {}).get("headServiceAnnotations") or {}),
    }
    metadata.pop("annotations", None)
    if annotations:
        metadata["annotations"] = annotations
    spec = body.setdefault("spec", {})
    spec["selector"] = dict(selector)
    spec["ports"] = list(spec.get("ports") or []) + service_ports(cluster)
    if not spec.get("type") and head.get("serviceType"):
        spec["type"] = head["serviceType"]
    return {"apiVersion": "v1", "kind": "Service", **body}


def headless_service_body(cluster: dict) -> dict:
    """service.go:299 BuildHeadlessServiceForRayCluster: the multi-host workers' peer Service."""
    name = cluster["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": f"{name}-headless",
            "namespace": cluster["metadata"]["namespace"],
            "labels": {"ray.io/headless-worker-svc": name},
        },
        "spec": {
            "clusterIP": "None",
            "selector": {"ray.io/cluster": name, "ray.io/node-type": "worker"},
            "type": "ClusterIP",
            "publishNotReadyAddresses": True,
        },
    }


# ---- status -----------------------------------------------------------------------------------------------------


def _all_running(pods: list) -> bool:
    """util.go:587 CheckAllPodsRunning: some pods, all Running, none with a Ready condition that is not True."""
    return bool(pods) and all(
        phase_of(p) == "Running" and (find_condition(p, "Ready") or {"status": "True"}).get("status") == "True"
        for p in pods
    )


def _pod_resources(pod_spec: dict) -> dict:
    """util.go:525 CalculatePodResource: requests, falling back to limits, per container, summed; raw values kept."""
    total: dict = {}
    binary: dict = {}
    for container in pod_spec.get("containers") or []:
        resources = container.get("resources") or {}
        merged = dict(resources.get("requests") or {})
        for key, value in (resources.get("limits") or {}).items():
            merged.setdefault(key, value)
        for key, value in merged.items():
            total[key] = total.get(key, 0) + parse_quantity(value)
            binary.setdefault(key, is_binary(value))
    return {"total": total, "binary": binary}


def _replica_counts(groups: list, workers: list) -> dict:
    """util.go:410-477: desired/min/max over the groups (suspended ones count for desired only as 0)."""
    active = [g for g in groups if not g.get("suspend")]
    return {
        "readyWorkerReplicas": sum(1 for p in workers if pod_running_and_ready(p)),
        "availableWorkerReplicas": sum(1 for p in workers if phase_of(p) == "Running"),
        "desiredWorkerReplicas": sum(desired_worker_pods(g) for g in groups),
        "minWorkerReplicas": sum(int(g["minReplicas"]) * int(g["numOfHosts"]) for g in active),
        "maxWorkerReplicas": min(sum(int(g["maxReplicas"]) * int(g["numOfHosts"]) for g in active), _INT32_MAX),
    }


def _desired_resources(spec: dict, groups: list) -> dict:
    """util.go:479 CalculateDesiredResources (the head pod plus replicas x numOfHosts workers) and
    raycluster_controller.go:2409 sumGPUs, printed as resource.Quantity sums."""
    head_template = ((spec.get("headGroupSpec") or {}).get("template") or {}).get("spec") or {}
    parts = [(_pod_resources(head_template), 1)]
    for group in groups:
        if not group.get("suspend"):
            parts.append(
                (
                    _pod_resources((group.get("template") or {}).get("spec") or {}),
                    group["replicas"] * group["numOfHosts"],
                )
            )
    totals, binary = {}, {}
    for resources, times in parts:
        for key, value in resources["total"].items():
            totals[key] = totals.get(key, 0) + value * times
            binary.setdefault(key, resources["binary"][key])
    gpus = sum((v for k, v in totals.items() if is_gpu_resource(k) and v), Fraction(0))
    return {
        "desiredCPU": format_quantity(totals.get("cpu", 0), binary.get("cpu", False)),
        "desiredMemory": format_quantity(totals.get("memory", 0), binary.get("memory", False)),
        "desiredGPU": format_quantity(gpus),
        "desiredTPU": format_quantity(totals.get("google.com/tpu", 0)),
    }


def _inconsistent(old: dict, new: dict) -> bool:
    """utils/consistency.go:16 InconsistentRayClusterStatus: what makes KubeRay write the status."""
    keys = (
        "state",
        "reason",
        "readyWorkerReplicas",
        "availableWorkerReplicas",
        "desiredWorkerReplicas",
        "minWorkerReplicas",
        "maxWorkerReplicas",
        "endpoints",
        "head",
        "conditions",
    )
    return any(old.get(key) != new.get(key) for key in keys)


def _cr_condition(conditions: list, kind: str, status: str, reason: str, message: str, stamp: str) -> list:
    return set_condition(conditions, kind, status, reason, message, stamp=stamp, meta=True)


def _replica_failure(conditions: list, error: ReconcileError | None, stamp: str) -> list:
    """:1980-1995: a replica failure sets ReplicaFailure; a clean reconcile removes it; other errors leave it."""
    if error is None:
        return [c for c in conditions if c.get("type") != "ReplicaFailure"]
    if error.reason:
        return _cr_condition(conditions, "ReplicaFailure", "True", error.reason, error.message, stamp)
    return conditions


def _head_pod_ready(conditions: list, head: dict | None, stamp: str) -> list:
    """util.go:84 FindHeadPodReadyCondition: the head pod's Ready condition; ContainersNotReady is replaced by
    the first waiting or terminated container's reason."""
    if head is None:
        return _cr_condition(conditions, "HeadPodReady", "False", "HeadPodNotFound", "Head Pod not found", stamp)
    ready = find_condition(head, "Ready")
    if ready is None:
        return _cr_condition(conditions, "HeadPodReady", "False", "Unknown", "", stamp)
    value = ready.get("status") or "False"
    reason = ready.get("reason") or ("HeadPodRunningAndReady" if value == "True" else "")
    message = ready.get("message", "")
    if reason == "ContainersNotReady":
        reason, message = _not_ready_container(head, reason, message)
    return _cr_condition(conditions, "HeadPodReady", value, reason or "Unknown", message, stamp)


def _not_ready_container(pod: dict, reason: str, message: str) -> tuple:
    """util.go:129 firstNotReadyContainerStatus, appended to the Ready condition's message."""
    for container in (pod.get("status") or {}).get("containerStatuses") or []:
        state = container.get("state") or {}
        detail = state.get("waiting") or state.get("terminated")
        if detail:
            text = f"{container.get('name')}: {detail.get('message', '')}"
            return detail.get("reason", ""), f"{message}; {text}" if message else text
    return reason, message


def _provisioned(conditions: list, all_running: bool, stamp: str) -> list:
    """RayClusterProvisioned turns True once all pods ran and were ready, and then stays True."""
    provisioned = condition_in(conditions, "RayClusterProvisioned")
    suspended = condition_in(conditions, "RayClusterSuspended") or {}
    if (provisioned and provisioned.get("status") == "True") or suspended.get("status") == "True":
        return conditions
    if all_running:
        message = "All Ray Pods are ready for the first time"
        return _cr_condition(
            conditions, "RayClusterProvisioned", "True", "AllPodRunningAndReadyFirstTime", message, stamp
        )
    message = "RayCluster Pods are being provisioned for first time"
    return _cr_condition(conditions, "RayClusterProvisioned", "False", "RayClusterPodsProvisioning", message, stamp)


def _suspension(conditions: list, suspend: bool, has_pods: bool, stamp: str) -> list:
    """RayClusterSuspending while spec.suspend deletes the pods, then RayClusterSuspended until it is unset."""
    suspended = condition_in(conditions, "RayClusterSuspended") or {}
    suspending = condition_in(conditions, "RayClusterSuspending") or {}
    if suspending.get("status") == "True":
        if not has_pods:
            message = "RayCluster has been suspended"
            conditions = _cr_condition(
                conditions, "RayClusterProvisioned", "False", "RayClusterPodsProvisioning", message, stamp
            )
            conditions = _cr_condition(conditions, "RayClusterSuspending", "False", "RayClusterSuspending", "", stamp)
            conditions = _cr_condition(conditions, "RayClusterSuspended", "True", "RayClusterSuspended", "", stamp)
        return conditions
    if suspended.get("status") == "True":
        if not suspend:
            conditions = _cr_condition(conditions, "RayClusterSuspended", "False", "RayClusterSuspended", "", stamp)
        return conditions
    conditions = _cr_condition(conditions, "RayClusterSuspended", "False", "RayClusterSuspended", "", stamp)
    value = "True" if suspend else "False"
    return _cr_condition(conditions, "RayClusterSuspending", value, "RayClusterSuspending", "", stamp)


def _endpoints(endpoints: dict | None, service: dict | None) -> dict:
    """raycluster_controller.go:2165 updateEndpoints: the head Service's named ports, node ports where it has
    them, else target ports (the port itself where no API server defaulted targetPort)."""
    endpoints = dict(endpoints or {})
    for port in ((service or {}).get("spec") or {}).get("ports") or []:
        if not port.get("name"):
            continue
        if port.get("nodePort"):
            endpoints[port["name"]] = str(port["nodePort"])
        else:
            endpoints[port["name"]] = str(port.get("targetPort") or port.get("port"))
    return endpoints


def _head_info(head: dict | None, service: dict | None) -> dict:
    """raycluster_controller.go:2203 updateHeadInfo and :2139: a headless Service's IP is the head pod's."""
    head_info = {}
    if head is not None:
        head_info["podIP"] = (head.get("status") or {}).get("podIP", "")
        head_info["podName"] = head["metadata"]["name"]
    if service is not None:
        cluster_ip = (service.get("spec") or {}).get("clusterIP") or ""
        head_info["serviceIP"] = head_info.get("podIP", "") if cluster_ip == "None" else cluster_ip
        head_info["serviceName"] = service["metadata"]["name"]
    return {k: v for k, v in head_info.items() if v}
