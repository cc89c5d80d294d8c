# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The ``kuberay`` controller: the KubeRay operator v1.4.2, active while a kuberay-operator Deployment is available.

RayCluster head and worker pods named, labelled, annotated and built as KubeRay builds them (generated ``ray start``
command in args and KUBERAY_GEN_RAY_START_CMD, injected env, /dev/shm volume, metrics port, probes, the workers'
``wait-gcs-ready`` init container), the head Service (headless, as KubeRay >= 1.3 makes it by default), scaling
(replicas/min/max/numOfHosts/suspend/workersToDelete), and status (state, replicas, desired resources, head,
endpoints, conditions HeadPodReady / RayClusterProvisioned / RayClusterSuspended / RayClusterSuspending /
ReplicaFailure). As in KubeRay, ``status.state`` becomes "ready" once all pods are running and ready and then stays
"ready" (KubeRay never resets it; watch HeadPodReady and readyWorkerReplicas instead); template changes do not
recreate pods (KubeRay does not either). RayJob and RayService objects are stored but not reconciled.
"""

from __future__ import annotations

import copy
import re
from fractions import Fraction

from ..quantity import format_quantity, is_binary, parse_quantity, quantity_value
from ..seeding import KUBERAY_VERSION
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
    pod_terminal,
    rand5,
    set_condition,
)

RAY_DEFAULT_PORTS = {"client": 10001, "dashboard": 8265, "gcs-server": 6379, "metrics": 8080, "serve": 8000}
_INT32_MAX = 2147483647
_RAYLET_HEALTH = "wget --tries 1 -T 2 -q -O- http://localhost:52365/api/local_raylet_healthz | grep success"
_GCS_HEALTH = "wget --tries 1 -T 10 -q -O- http://localhost:8265/api/gcs_healthz | grep success"


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
        failure = None
        try:
            self._head_service(cluster)
        except ApiError as error:
            failure = ("FailedCreateHeadService", error.message)
        live = self._pods(cluster)
        if (cluster.get("spec") or {}).get("suspend"):
            for pod in live:
                self.delete(pod)
        else:
            failure = self._reconcile_pods(cluster, live) or failure
        self._status(cluster, self._pods(cluster), failure)

    def _pods(self, cluster: dict) -> list:
        """The cluster's pods that are not being deleted."""
        name = cluster["metadata"]["name"]
        return [p for p in self.owned("v1", "Pod", cluster) if labels_of(p).get("ray.io/cluster") == name]

    def _head_service(self, cluster: dict) -> None:
        if self.peek("v1", "Service", cluster["metadata"]["namespace"], _service_name(cluster)) is None:
            self.create(_head_service_body(cluster))

    def _reconcile_pods(self, cluster: dict, live: list) -> tuple | None:
        """Create and delete pods; (reason, message) of the first failure, as ReplicaFailure reports it."""
        try:
            self._reconcile_head(cluster, live)
        except ApiError as error:
            return ("FailedCreateHeadPod", error.message)
        for group in _worker_groups(cluster):
            try:
                self._reconcile_workers(cluster, group, live)
            except ApiError as error:
                return ("FailedCreateWorkerPod", error.message)
        return None

    def _reconcile_head(self, cluster: dict, live: list) -> None:
        for pod in live:
            if pod_terminal(pod) and pod["spec"].get("restartPolicy", "Always") != "Always":
                self.delete(pod)
        if not any(_node_type(p) == "head" and not pod_terminal(p) for p in live):
            self.create(_build_pod(cluster, "head", (cluster.get("spec") or {}).get("headGroupSpec") or {}))

    def _reconcile_workers(self, cluster: dict, group: dict, live: list) -> None:
        """workersToDelete go first; then the group is scaled to its desired count, newest and unready first."""
        group_name = group.get("groupName", "")
        workers = [
            p
            for p in live
            if _node_type(p) == "worker" and labels_of(p).get("ray.io/group") == group_name and not pod_terminal(p)
        ]
        to_delete = set((group.get("scaleStrategy") or {}).get("workersToDelete") or [])
        for pod in [p for p in workers if p["metadata"]["name"] in to_delete]:
            self.delete(pod)
        workers = [p for p in workers if p["metadata"]["name"] not in to_delete]
        diff = desired_worker_pods(group) - len(workers)
        for _dummy in range(max(0, diff)):
            self.create(_build_pod(cluster, "worker", group))
        if diff < 0:
            for pod in sorted(workers, key=deletion_order)[:-diff]:
                self.delete(pod)

    def _status(self, cluster: dict, pods: list, failure: tuple | None) -> None:
        spec = cluster.get("spec") or {}
        old = cluster.get("status") or {}
        status = copy.deepcopy(old)
        stamp = now_rfc3339()
        groups = _worker_groups(cluster)
        desired = sum(desired_worker_pods(g) for g in groups)
        status.update(_replica_counts(groups, [p for p in pods if _node_type(p) == "worker"], desired))
        status.update(_desired_resources(spec, groups))
        status["observedGeneration"] = cluster["metadata"].get("generation", 1)
        all_running = bool(pods) and all(
            phase_of(p) == "Running"
            and (find_condition(p, "Ready") is None or find_condition(p, "Ready").get("status") == "True")
            for p in pods
        )
        conditions = old.get("conditions") or []
        if failure:
            conditions = _cr_condition(conditions, "ReplicaFailure", "True", failure[0], failure[1], stamp)
        else:
            conditions = [c for c in conditions if c.get("type") != "ReplicaFailure"]
            if len(pods) == desired + 1 and all_running:
                status["state"] = "ready"
                status.pop("reason", None)
        head = next((p for p in pods if _node_type(p) == "head"), None)
        conditions = _head_pod_ready(conditions, head, stamp)
        conditions = _provisioned(conditions, all_running, stamp)
        status["conditions"] = _suspension(conditions, bool(spec.get("suspend")), bool(pods), stamp)
        if spec.get("suspend") and not pods:
            status["state"] = "suspended"
        service = self.peek("v1", "Service", cluster["metadata"]["namespace"], _service_name(cluster))
        endpoints = _endpoints(status.get("endpoints"), service)
        if endpoints:
            status["endpoints"] = endpoints
        status["head"] = _head_info(head, service, _service_name(cluster))
        if old.get("state") != status.get("state") and status.get("state"):
            status.setdefault("stateTransitionTimes", {})[status["state"]] = stamp
        if status != old:
            status["lastUpdateTime"] = stamp
            self.write_status(cluster, status)


# ---- the generated ray start command ----------------------------------------------------------------------------


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


def ray_start_command(node_type: str, params: dict, resources: dict) -> str:
    """KubeRay's generated ``ray start``: num-cpus, memory and num-gpus from the container's resources."""
    params = dict(params)
    limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
    if "num-cpus" not in params:
        if parse_quantity(limits.get("cpu", 0)):
            params["num-cpus"] = str(quantity_value(limits["cpu"]))
        elif parse_quantity(requests.get("cpu", 0)):
            params["num-cpus"] = str(quantity_value(requests["cpu"]))
    if "memory" not in params and parse_quantity(limits.get("memory", 0)):
        params["memory"] = str(quantity_value(limits["memory"]))
    if "num-gpus" not in params:
        for key in sorted(limits):
            if (key.endswith("gpu") or re.search(r"nvidia\.com/mig-\d+g\.\d+gb$", key)) and parse_quantity(limits[key]):
                params["num-gpus"] = str(quantity_value(limits[key]))
                break
    prefix = "ray start --head" if node_type == "head" else "ray start"
    return f"{prefix} {_ray_param_string(params)}"


# ---- worker groups ----------------------------------------------------------------------------------------------


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
    """Replicas clamped to [minReplicas, maxReplicas], times numOfHosts; 0 for a suspended group."""
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


# ---- the head Service and the pods ------------------------------------------------------------------------------


def _node_type(pod: dict) -> str | None:
    return labels_of(pod).get("ray.io/node-type")


def _service_name(cluster: dict) -> str:
    head_service = ((cluster.get("spec") or {}).get("headGroupSpec") or {}).get("headService") or {}
    return (head_service.get("metadata") or {}).get("name") or f"{cluster['metadata']['name']}-head-svc"


def _head_port(cluster: dict) -> str:
    head_params = ((cluster.get("spec") or {}).get("headGroupSpec") or {}).get("rayStartParams") or {}
    return str(head_params.get("port", "6379"))


def _head_service_body(cluster: dict) -> dict:
    """The head Service: the head's ports, the template's headService merged in, headless by default."""
    namespace, name = cluster["metadata"]["namespace"], cluster["metadata"]["name"]
    head_spec = (cluster.get("spec") or {}).get("headGroupSpec") or {}
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
            "name": _service_name(cluster),
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
        {"name": port_name, "port": number, "appProtocol": "tcp"}
        for port_name, number in sorted(_head_ports(head_spec).items())
    ]
    body["spec"]["ports"] = sorted(service_ports, key=lambda p: p.get("name", ""))
    body["spec"]["selector"] = dict(labels)
    if service_type:
        body["spec"]["type"] = service_type
    if not custom and service_type in ("", "ClusterIP"):
        body["spec"]["clusterIP"] = "None"  # headless by default since KubeRay v1.3
        body["spec"]["publishNotReadyAddresses"] = True
    return body


def _head_ports(head_spec: dict) -> dict:
    """Port name -> number: the head container's ports (Ray's defaults when it names none), always metrics."""
    containers = ((head_spec.get("template") or {}).get("spec") or {}).get("containers") or [{}]
    ports = {}
    for port in containers[0].get("ports") or []:
        ports[port.get("name") or f"{port.get('containerPort')}-port"] = int(port["containerPort"])
    if not ports:
        ports = dict(RAY_DEFAULT_PORTS)
    ports.setdefault("metrics", RAY_DEFAULT_PORTS["metrics"])
    return ports


def _build_pod(cluster: dict, node_type: str, group: dict) -> dict:
    """A head or worker pod from its group's template, completed as KubeRay completes it."""
    namespace, name = cluster["metadata"]["namespace"], cluster["metadata"]["name"]
    template = copy.deepcopy(group.get("template") or {})
    template_meta = template.get("metadata") or {}
    pod_spec = template.get("spec") or {}
    group_name = "headgroup" if node_type == "head" else group.get("groupName", "")
    service_name = _service_name(cluster)
    fqdn = f"{service_name}.{namespace}.svc.cluster.local"
    head_port = _head_port(cluster)
    cluster_annotations = cluster["metadata"].get("annotations") or {}
    overwrite = str(cluster_annotations.get("ray.io/overwrite-container-cmd", "")).lower() == "true"
    prefix = name if node_type == "head" else f"{name}-{group_name}"
    pod_name = f"{prefix[:50]}-{node_type}-{rand5()}".lower()
    ray = pod_spec.setdefault("containers", [{"name": "ray"}])[0]
    original_env = copy.deepcopy(ray.get("env") or [])
    ports = ray.setdefault("ports", [])
    if not any(p.get("name") == "metrics" for p in ports):
        ports.append({"name": "metrics", "containerPort": 8080, "protocol": "TCP"})
    _mount_shared_memory(pod_spec, ray)
    start = ray_start_command(node_type, _start_params(group, node_type, fqdn, head_port), ray.get("resources") or {})
    if not overwrite:
        _set_ray_command(ray, start)
    if node_type == "worker":
        pod_spec.setdefault("initContainers", []).append(_wait_gcs_ready(ray, original_env, fqdn, head_port))
    for init_container in pod_spec.get("initContainers") or []:
        init_container.setdefault("env", [])
        init_container["env"] += [{"name": "FQ_RAY_IP", "value": fqdn}, {"name": "RAY_IP", "value": service_name}]
    _add_ray_env(ray.setdefault("env", []), node_type, fqdn, service_name, head_port, start)
    _add_probes(ray, node_type)
    metadata = {
        "name": pod_name,
        "namespace": namespace,
        "labels": _pod_labels(name, node_type, group_name, template_meta),
        "ownerReferences": [owner_reference(cluster)],
    }
    annotations = _pod_annotations(cluster, node_type, template_meta, overwrite)
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod_spec}


def _start_params(group: dict, node_type: str, fqdn: str, head_port: str) -> dict:
    """The group's rayStartParams (booleans lower-cased) with the ones KubeRay adds."""
    params = {
        k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in (group.get("rayStartParams") or {}).items()
    }
    if node_type == "worker":
        params.setdefault("address", f"{fqdn}:{head_port}")
    else:
        params.setdefault("dashboard-host", "0.0.0.0")
    params.setdefault("metrics-export-port", "8080")
    params["block"] = "true"
    params.setdefault("dashboard-agent-listen-port", "52365")
    return params


def _pod_labels(name: str, node_type: str, group_name: str, template_meta: dict) -> dict:
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
    return labels


def _pod_annotations(cluster: dict, node_type: str, template_meta: dict, overwrite: bool) -> dict:
    annotations = dict(template_meta.get("annotations") or {})
    if overwrite:
        annotations["ray.io/overwrite-container-cmd"] = "true"
    if node_type == "head":
        fault_tolerant = (cluster.get("spec") or {}).get("gcsFaultToleranceOptions")
        annotations["ray.io/ft-enabled"] = "true" if fault_tolerant else "false"
    return annotations


def _mount_shared_memory(pod_spec: dict, ray: dict) -> None:
    """/dev/shm for the object store: a memory emptyDir as large as the container's memory."""
    volumes = pod_spec.setdefault("volumes", [])
    mounts = ray.setdefault("volumeMounts", [])
    if any(m.get("mountPath") == "/dev/shm" for m in mounts):
        return
    resources = ray.get("resources") or {}
    memory = (resources.get("requests") or {}).get("memory") or (resources.get("limits") or {}).get("memory")
    empty_dir = {"medium": "Memory"}
    if memory:
        empty_dir["sizeLimit"] = str(memory)
    if not any(v.get("name") == "shared-mem" for v in volumes):
        volumes.append({"name": "shared-mem", "emptyDir": empty_dir})
    mounts.append({"name": "shared-mem", "mountPath": "/dev/shm"})


def _set_ray_command(ray: dict, start: str) -> None:
    """Run the generated ``ray start`` after the container's own command, unless that already starts Ray."""
    existing_cmd = "".join(f" {c} " for c in (ray.get("command") or []) + (ray.get("args") or []))
    if "ray start" in existing_cmd:
        return
    generated = f"ulimit -n 65536; {start}"
    ray["command"] = ["/bin/bash", "-c", "--"]
    ray["args"] = [f"{existing_cmd} && {generated}" if existing_cmd else generated]


def _wait_gcs_ready(ray: dict, env: list, fqdn: str, head_port: str) -> dict:
    """The workers' init container that waits until the head's GCS answers."""
    wait_script = (
        f"until ray health-check --address {fqdn}:{head_port} > /dev/null 2>&1; do "
        f'echo "Waiting for GCS to be ready."; sleep 5; done; echo "GCS is ready."'
    )
    init = {
        "name": "wait-gcs-ready",
        "image": ray.get("image"),
        "command": ["/bin/bash", "-c", "--"],
        "args": [wait_script],
        "env": env,
        "resources": {
            "limits": {"cpu": "200m", "memory": "256Mi"},
            "requests": {"cpu": "200m", "memory": "256Mi"},
        },
    }
    if ray.get("imagePullPolicy"):
        init["imagePullPolicy"] = ray["imagePullPolicy"]
    for key in ("volumeMounts", "securityContext"):
        if ray.get(key):
            init[key] = copy.deepcopy(ray[key])
    return init


def _add_ray_env(env: list, node_type: str, fqdn: str, service_name: str, head_port: str, start: str) -> None:
    """The environment KubeRay injects into the Ray container; variables the template sets are kept."""
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
    for env_name, value in (
        ("RAY_PORT", head_port),
        ("RAY_ADDRESS", f"{ip}:{head_port}"),
        ("RAY_USAGE_STATS_KUBERAY_IN_USE", "1"),
    ):
        _env_default(env, env_name, value)
    if node_type == "head":
        tags = f"kuberay_version={KUBERAY_VERSION};kuberay_crd=RayCluster"
        env.append({"name": "RAY_USAGE_STATS_EXTRA_TAGS", "value": tags})
    _env_default(env, "RAY_DASHBOARD_ENABLE_K8S_DISK_USAGE", "1")


def _env_default(env: list, name: str, value: str) -> None:
    if not any(e.get("name") == name for e in env):
        env.append({"name": name, "value": value})


def _add_probes(ray: dict, node_type: str) -> None:
    """Exec probes on the raylet (and, on the head, the GCS) health endpoints, where the template has none."""
    command = " && ".join([_RAYLET_HEALTH, _GCS_HEALTH] if node_type == "head" else [_RAYLET_HEALTH])
    timeout = 5 if node_type == "head" else 2
    if not ray.get("livenessProbe"):
        ray["livenessProbe"] = _exec_probe(command, timeout, initial_delay=30, failure_threshold=120)
    if not ray.get("readinessProbe"):
        ray["readinessProbe"] = _exec_probe(command, timeout, initial_delay=10, failure_threshold=10)


def _exec_probe(command: str, timeout: int, initial_delay: int, failure_threshold: int) -> dict:
    return {
        "exec": {"command": ["bash", "-c", command]},
        "initialDelaySeconds": initial_delay,
        "timeoutSeconds": timeout,
        "periodSeconds": 5,
        "successThreshold": 1,
        "failureThreshold": failure_threshold,
    }


# ---- status -----------------------------------------------------------------------------------------------------


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
            binary.setdefault(key, is_binary(value))
    return {"total": total, "binary": binary}


def _replica_counts(groups: list, workers: list, desired: int) -> dict:
    active = [g for g in groups if not g.get("suspend")]
    return {
        "readyWorkerReplicas": sum(1 for p in workers if pod_running_and_ready(p)),
        "availableWorkerReplicas": sum(1 for p in workers if phase_of(p) == "Running"),
        "desiredWorkerReplicas": desired,
        "minWorkerReplicas": sum(int(g["minReplicas"]) * g["numOfHosts"] for g in active),
        "maxWorkerReplicas": sum(int(g["maxReplicas"]) * g["numOfHosts"] for g in active),
    }


def _desired_resources(spec: dict, groups: list) -> dict:
    """desiredCPU/Memory/GPU/TPU: the head pod plus every worker replica, printed as resource.Quantity sums."""
    head_template = ((spec.get("headGroupSpec") or {}).get("template") or {}).get("spec") or {}
    parts = [(_pod_resources(head_template), 1)]
    for group in groups:
        if not group.get("suspend"):
            replicas = int(group["replicas"] or 0) * group["numOfHosts"]
            parts.append((_pod_resources((group.get("template") or {}).get("spec") or {}), replicas))
    totals, binary = {}, {}
    for resources, times in parts:
        for key, value in resources["total"].items():
            totals[key] = totals.get(key, 0) + value * times
            binary.setdefault(key, resources["binary"][key])
    gpus = sum((v for k, v in totals.items() if k.endswith("gpu")), Fraction(0))
    return {
        "desiredCPU": format_quantity(totals.get("cpu", 0), binary.get("cpu", False)),
        "desiredMemory": format_quantity(totals.get("memory", 0), binary.get("memory", False)),
        "desiredGPU": format_quantity(gpus),
        "desiredTPU": format_quantity(totals.get("google.com/tpu", 0)),
    }


def _cr_condition(conditions: list, kind: str, status: str, reason: str, message: str, stamp: str) -> list:
    return set_condition(conditions, kind, status, reason, message, stamp=stamp, meta=True)


def _head_pod_ready(conditions: list, head: dict | None, stamp: str) -> list:
    """HeadPodReady mirrors the head pod's Ready condition."""
    if head is None:
        return _cr_condition(conditions, "HeadPodReady", "False", "HeadPodNotFound", "Head Pod not found", stamp)
    ready = find_condition(head, "Ready") or {}
    value = ready.get("status") or "False"
    reason = ready.get("reason") or ("HeadPodRunningAndReady" if value == "True" else "Unknown")
    return _cr_condition(conditions, "HeadPodReady", value, reason, ready.get("message", ""), stamp)


def _provisioned(conditions: list, all_running: bool, stamp: str) -> list:
    """RayClusterProvisioned turns True once all pods ran and were ready, and then stays True."""
    provisioned = condition_in(conditions, "RayClusterProvisioned")
    if provisioned and provisioned.get("status") == "True":
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
    """The head Service's named ports: node ports where it has them, else target ports."""
    endpoints = dict(endpoints or {})
    for port in ((service or {}).get("spec") or {}).get("ports") or []:
        if not port.get("name"):
            continue
        if port.get("nodePort"):
            endpoints[port["name"]] = str(port["nodePort"])
        else:
            endpoints[port["name"]] = str(port.get("targetPort") or port.get("port"))
    return endpoints


def _head_info(head: dict | None, service: dict | None, service_name: str) -> dict:
    head_info = {}
    if head is not None:
        head_info["podIP"] = (head.get("status") or {}).get("podIP", "")
        head_info["podName"] = head["metadata"]["name"]
    if service is not None:
        cluster_ip = (service.get("spec") or {}).get("clusterIP") or ""
        head_info["serviceIP"] = head_info.get("podIP", "") if cluster_ip == "None" else cluster_ip
        head_info["serviceName"] = service_name
    return {k: v for k, v in head_info.items() if v}
