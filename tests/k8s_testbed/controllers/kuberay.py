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
    deleting,
    deletion_order,
    find_condition,
    labels_of,
    owner_reference,
    pod_running_and_ready,
    pod_terminal,
    rand5,
    set_condition,
)

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


def ray_start_command(node_type: str, params: dict, resources: dict) -> str:
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
            binary.setdefault(key, is_binary(value))
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
        for cluster in self.live("ray.io/v1", "RayCluster"):
            self._cluster(cluster)

    def _service_name(self, cluster: dict) -> str:
        head_service = ((cluster.get("spec") or {}).get("headGroupSpec") or {}).get("headService") or {}
        return (head_service.get("metadata") or {}).get("name") or f"{cluster['metadata']['name']}-head-svc"

    def _cluster(self, cluster: dict) -> None:
        spec = cluster.get("spec") or {}
        failure = None
        try:
            self._head_service(cluster)
        except ApiError as error:
            failure = ("FailedCreateHeadService", error.message)
        live = self._pods(cluster)
        if spec.get("suspend"):
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
        heads = [p for p in live if labels_of(p).get("ray.io/node-type") == "head"]
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
                if labels_of(p).get("ray.io/node-type") == "worker"
                and labels_of(p).get("ray.io/group") == group_name
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
                    for pod in sorted(workers, key=deletion_order)[:-diff]:
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
        workers = [p for p in pods if labels_of(p).get("ray.io/node-type") == "worker"]
        heads = [p for p in pods if labels_of(p).get("ray.io/node-type") == "head"]
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
            and (find_condition(p, "Ready") is None or find_condition(p, "Ready").get("status") == "True")
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
            ready_condition = find_condition(head, "Ready") or {}
            value = ready_condition.get("status") or "False"
            reason = ready_condition.get("reason") or ("HeadPodRunningAndReady" if value == "True" else "Unknown")
            conditions = set_condition(
                conditions, "HeadPodReady", value, reason, ready_condition.get("message", ""), stamp=stamp, meta=True
            )
        provisioned = find_condition({"status": {"conditions": conditions}}, "RayClusterProvisioned")
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
        suspended = find_condition({"status": {"conditions": conditions}}, "RayClusterSuspended") or {}
        suspending = find_condition({"status": {"conditions": conditions}}, "RayClusterSuspending") or {}
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
