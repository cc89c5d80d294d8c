# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The defaulting the real API server does on write, for the built-in fields clients read back.

Only what a client would notice: Secret stringData folded into data, Service cluster IPs and port defaults,
Pod phase/QoS and probe timings, workload replica counts, Job limits, claim and volume phases. Everything else
is stored as sent.
"""

from __future__ import annotations

import base64
import itertools

from .quantity import parse_quantity

_cluster_ips = itertools.count(10)


def _default_pod_spec(spec: dict) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("securityContext", {})
    for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        image = container.get("image") or ""
        latest = ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")
        container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        container.setdefault("resources", {})
        for port in container.get("ports") or []:
            port.setdefault("protocol", "TCP")
        for key in ("livenessProbe", "readinessProbe", "startupProbe"):
            if isinstance(container.get(key), dict):
                _default_probe(container[key])


def _default_probe(probe: dict) -> None:
    """SetDefaults_Probe and SetDefaults_HTTPGetAction (k8s.io/api core/v1 defaults)."""
    for key, value in (("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1), ("failureThreshold", 3)):
        probe.setdefault(key, value)
    if isinstance(probe.get("httpGet"), dict):
        probe["httpGet"].setdefault("path", "/")
        probe["httpGet"].setdefault("scheme", "HTTP")


def _same_quantity(first, second) -> bool:
    try:
        return parse_quantity(first) == parse_quantity(second)
    except ValueError:  # defaulting runs before validation, which reports the bad quantity
        return False


def qos_class(spec: dict) -> str:
    """Guaranteed when every container limits cpu and memory with equal requests; BestEffort when none asks."""
    containers = spec.get("containers") or []
    any_set = False
    guaranteed = bool(containers)
    for container in containers:
        resources = container.get("resources") or {}
        limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
        any_set = any_set or bool(limits) or bool(requests)
        for key in ("cpu", "memory"):
            if key not in limits or not _same_quantity(requests.get(key, limits[key]), limits[key]):
                guaranteed = False
    if guaranteed:
        return "Guaranteed"
    return "Burstable" if any_set else "BestEffort"


def on_write(kind: str, obj: dict, old: dict | None) -> dict:
    """Defaults for a create (old is None) or an update of a built-in object; returns obj (changed in place)."""
    spec = obj.get("spec")
    if kind == "Secret":
        obj.setdefault("type", "Opaque")
        string_data = obj.pop("stringData", None) or {}
        if string_data:
            data = obj.setdefault("data", {}) or {}
            obj["data"] = data
            for key, value in string_data.items():
                data[key] = base64.b64encode(str(value).encode()).decode()
    elif kind == "Service" and isinstance(spec, dict):
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        if spec["type"] != "ExternalName":
            previous = ((old or {}).get("spec") or {}).get("clusterIP")
            if spec.get("clusterIP") != "None":
                spec["clusterIP"] = (
                    previous
                    or spec.get("clusterIP")
                    or f"10.96.{next(_cluster_ips) // 250}.{next(_cluster_ips) % 250 + 1}"
                )
            spec["clusterIPs"] = [spec["clusterIP"]]
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
            spec.setdefault("internalTrafficPolicy", "Cluster")
        for port in spec.get("ports") or []:
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
        if old is None:
            obj["status"] = {"loadBalancer": {}}
    elif kind == "Pod" and isinstance(spec, dict):
        _default_pod_spec(spec)
        if old is None:
            obj["status"] = {"phase": "Pending", "qosClass": qos_class(spec)}
    elif kind in ("Deployment", "StatefulSet", "ReplicaSet") and isinstance(spec, dict):
        spec.setdefault("replicas", 1)
        if kind != "ReplicaSet":
            spec.setdefault("revisionHistoryLimit", 10)
        _default_pod_spec((spec.get("template") or {}).get("spec") or {})
        if kind == "Deployment":
            spec.setdefault("progressDeadlineSeconds", 600)
            spec.setdefault(
                "strategy", {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}
            )
        if kind == "StatefulSet":
            spec.setdefault("podManagementPolicy", "OrderedReady")
            spec.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
    elif kind == "DaemonSet" and isinstance(spec, dict):
        _default_pod_spec((spec.get("template") or {}).get("spec") or {})
    elif kind == "Job" and isinstance(spec, dict):
        spec.setdefault("backoffLimit", 6)
        spec.setdefault("completions", 1)
        spec.setdefault("parallelism", 1)
        spec.setdefault("completionMode", "NonIndexed")
        _default_pod_spec((spec.get("template") or {}).get("spec") or {})
    elif kind == "PersistentVolumeClaim" and isinstance(spec, dict):
        spec.setdefault("volumeMode", "Filesystem")
        if old is None:
            obj["status"] = {"phase": "Pending"}
    elif kind == "PersistentVolume" and isinstance(spec, dict):
        spec.setdefault("volumeMode", "Filesystem")
        spec.setdefault("persistentVolumeReclaimPolicy", "Retain")
        if old is None:
            obj["status"] = {"phase": "Available"}
    return obj
