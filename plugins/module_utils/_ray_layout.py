# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""The Ray cluster's shape on both platforms, from the deployment plan and the ray_cluster role's settings.

- hosts: the GPUs each node offers Ray, and what the Ray gate waits for;
- kubernetes: the KubeRay layout (the plan's, or the user's checked against it) and the requests, limits,
  selectors, tolerations and counts the RayCluster manifest is rendered with.

Messages name the role's variables through a prefix, so they say which variable to change.
"""

from __future__ import annotations

import copy

from ansible_collections.llmops.ray_vllm.plugins.module_utils._deployment_plan import (
    PlanError,
    merge_kuberay_layout,
    normalise_kuberay_layout,
    replica_range_problem,
)
from ansible_collections.llmops.ray_vllm.plugins.module_utils._plan_placement import worker_pod_requests
from ansible_collections.llmops.ray_vllm.plugins.module_utils._quantity import smaller_quantity

DEFAULT_KUBERAY_LAYOUT = {
    "head": {"num_gpus": 0, "node": None},
    "worker_group": {
        "replicas": 1,
        "min_replicas": 1,
        "max_replicas": 1,
        "num_of_hosts": 1,
        "num_gpus": 1,
        "gpu_product": "",
        "cpus": None,
        "memory_mib": None,
        "pods_per_node": {},
    },
}
# KubeRay v1.7.0's default ports of the head container (utils/constant.go), which its head Service exposes when the
# container declares none; "serve" is Ray Serve's HTTP proxy. The dashboard agent listens on 52365 besides.
KUBERAY_HEAD_PORTS = {"client": 10001, "dashboard": 8265, "gcs-server": 6379, "metrics": 8080, "serve": 8000}
# Ray 2.60's autoscaler and dashboard metrics ports on the head (AUTOSCALER_METRIC_PORT, DASHBOARD_METRIC_PORT), named
# as KubeRay v1.7.0's ray-cluster.embed-grafana.yaml sample names them: roles/monitoring's head PodMonitor scrapes
# them by name, and Prometheus sees only the ports a container declares.
HEAD_METRICS_PORTS = {"as-metrics": 44217, "dash-metrics": 44227}
DASHBOARD_AGENT_PORT = 52365
GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
HOSTNAME_LABEL = "kubernetes.io/hostname"


class RayLayoutError(ValueError):
    """A layout or setting that cannot work; the message names the variable and the fix."""


def deep_merge(base, override):
    """``override`` merged over ``base`` recursively (dicts only), as Ansible's combine(recursive=true)."""
    merged = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


# ---------------------------------------------------------------------------------------------------------------------
# platform hosts


def _planned_host_gpus(plan, host, is_head):
    hosts_layout = ((plan or {}).get("ray_layout") or {}).get("hosts")
    if not hosts_layout:
        return None
    if is_head:
        return int(hosts_layout["head"]["num_gpus"])
    for worker in hosts_layout.get("workers", []):
        if worker["name"] == host:
            return int(worker["num_gpus"])
    # A host the plan leaves idle offers Ray no GPU, so Ray cannot place vLLM's workers there.
    return 0


def host_gpus(plan, host, is_head, num_gpus=None, head_num_gpus=None, prefix="ray_cluster_"):
    """GPUs this node offers Ray: the user's setting, else the plan's share for the node, else None (Ray counts).

    A user's setting below what the plan places on the node is refused: vLLM's workers would not fit there.
    """
    name = prefix + ("head_num_gpus" if is_head and head_num_gpus is not None else "num_gpus")
    user = head_num_gpus if is_head and head_num_gpus is not None else num_gpus
    planned = _planned_host_gpus(plan, host, is_head)
    if user is None:
        return planned
    if int(user) < 0:
        raise RayLayoutError(f"{name}={user} on {host} must be 0 or more GPUs.")
    if planned is not None and int(user) < planned:
        raise RayLayoutError(
            f"{name}={user} on {host} offers Ray fewer GPUs than the deployment plan places there ({planned}), so "
            f"vLLM's workers could not start. Leave {name} unset to take the plan's share, or plan with that many "
            "(site.yml caps each node's GPUs for the plan at this value)."
        )
    return int(user)


def hosts_gate_expectations(node_gpus, num_cpus=None, expected_nodes=None, expected_gpus=None, expected_cpus=None):
    """What the Ray gate waits for on hosts: ``{"nodes", "gpus", "cpus"}``.

    ``node_gpus`` lists the GPUs each node offers Ray (None: Ray counts them, so they add nothing to the minimum).
    An expectation the user set wins.
    """
    count = len(node_gpus)
    return {
        "nodes": int(expected_nodes) if expected_nodes is not None else count,
        "gpus": int(expected_gpus) if expected_gpus is not None else sum(int(g or 0) for g in node_gpus),
        "cpus": int(expected_cpus) if expected_cpus is not None else count * int(num_cpus or 0),
    }


# ---------------------------------------------------------------------------------------------------------------------
# platform kubernetes: the layout


def _describe(layout):
    group = layout["worker_group"]
    return "head num_gpus={}, {} x {} pod(s) with {} GPU(s)".format(
        layout["head"]["num_gpus"], group["replicas"], group["num_of_hosts"], group["num_gpus"]
    )


def kuberay_layout(
    user_layout=None, plan=None, variable="ray_cluster_kuberay_layout", plan_variable="ray_cluster_plan"
):
    """The KubeRay layout to render: the user's (when set) over the plan's (when given) over the default.

    The user's layout is checked and merged as the planner does (deployment_plan's kuberay_layout option: known keys,
    whole numbers, a replicas that also sets min/max_replicas). With a plan, a user layout that changes the plan's
    is refused: site.yml hands a user's layout to the planner, which checks it against the model and the GPUs.
    """
    planned = ((plan or {}).get("ray_layout") or {}).get("kuberay")
    base = deep_merge(DEFAULT_KUBERAY_LAYOUT, planned) if planned else copy.deepcopy(DEFAULT_KUBERAY_LAYOUT)
    if user_layout is None:
        return base
    try:
        layout = merge_kuberay_layout(base, normalise_kuberay_layout(user_layout, variable))
    except PlanError as error:
        raise RayLayoutError(error.msg) from None
    if planned and layout != base:
        raise RayLayoutError(
            f"{variable} ({_describe(layout)}) conflicts with the deployment plan in {plan_variable} "
            f"({_describe(base)}). Leave {variable} unset to take the plan's layout, or pass it to the plan "
            "(site.yml hands it to llmops.ray_vllm.deployment_plan as kuberay_layout, which checks it against the "
            "model and the GPUs)."
        )
    problem = replica_range_problem(layout["worker_group"], variable)
    if problem:
        raise RayLayoutError(problem)
    return layout


# ---------------------------------------------------------------------------------------------------------------------
# platform kubernetes: the RayCluster's numbers


def worker_requests(group, settings):
    """CPU and memory a worker pod requests: a share of the layout's per-pod allocatable (as the plan placed them,
    _plan_placement.worker_pod_requests), else the fixed sizes."""
    cpus, memory = worker_pod_requests(group, float(settings["worker_request_ratio"]))
    return (
        str(cpus) if cpus is not None else str(settings["worker_cpus"]),
        f"{memory}Mi" if memory is not None else str(settings["worker_memory"]),
    )


def _gpu_limits(num_gpus, settings):
    if int(num_gpus) <= 0:
        return {}
    limits = {GPU_RESOURCE: int(num_gpus)}
    if settings.get("infiniband"):
        limits[settings["infiniband_resource"]] = int(settings["infiniband_resource_count"])
    return limits


def _product_selector(layout, settings):
    product = layout["worker_group"].get("gpu_product") or ""
    return {GPU_PRODUCT_LABEL: product} if settings.get("gpu_node_selector") and product else {}


def shm_size(memory_limit, settings):
    """/dev/shm of a Ray pod: its memory limit, as KubeRay v1.7.0 sizes the /dev/shm it adds itself
    (ray-operator/controllers/ray/common/pod.go, makeEmptyDirVolume), or a smaller shm_size when one is set.
    The pages count against the pod's memory, so more than the limit only gets the pod killed."""
    wanted = settings.get("shm_size") or ""
    return smaller_quantity(memory_limit, wanted) if wanted else str(memory_limit)


def _head_pod(layout, settings):
    gpus = int(layout["head"]["num_gpus"])
    limits = {"memory": str(settings["head_memory"])}
    if gpus > 0:
        limits[GPU_RESOURCE] = gpus
    selector = dict(settings.get("node_selector") or {}, **(settings.get("head_node_selector") or {}))
    if gpus > 0:
        selector.update(_product_selector(layout, settings))
        if settings.get("gpu_node_selector") and layout["head"].get("node"):
            selector[HOSTNAME_LABEL] = layout["head"]["node"]
    return {
        "head_resources": {
            "requests": {"cpu": str(settings["head_cpus"]), "memory": str(settings["head_memory"])},
            "limits": limits,
        },
        "head_node_selector": selector,
        "head_tolerations": _tolerations(gpus, settings) + list(settings.get("head_tolerations") or []),
        "head_shm_size": shm_size(settings["head_memory"], settings),
    }


def _worker_pod(layout, settings):
    group = layout["worker_group"]
    cpu, memory = worker_requests(group, settings)
    gpu_limits = _gpu_limits(group["num_gpus"], settings)
    selector = dict(settings.get("node_selector") or {})
    if int(group["num_gpus"]) > 0:
        selector.update(_product_selector(layout, settings))
    return {
        "worker_resources": {
            "requests": dict({"cpu": cpu, "memory": memory}, **gpu_limits),
            "limits": dict({"memory": memory}, **gpu_limits),
        },
        "worker_node_selector": selector,
        "worker_tolerations": _tolerations(group["num_gpus"], settings),
        "worker_shm_size": shm_size(memory, settings),
    }


def _tolerations(num_gpus, settings):
    tolerations = list(settings.get("tolerations") or [])
    if int(num_gpus) > 0:
        tolerations += list(settings.get("gpu_tolerations") or [])
    return tolerations


def autoscaled(layout):
    """Whether the worker group may grow and shrink (maxReplicas above minReplicas): KubeRay's in-tree autoscaler
    then adds the worker pods Ray Serve's new replicas ask for, and removes idle ones down to minReplicas."""
    group = layout["worker_group"]
    return int(group["max_replicas"]) > int(group["min_replicas"])


def expected_ray_nodes(layout):
    """Ray nodes and GPUs a KubeRay layout brings up: ``{"pods", "workers", "gpus", "max_workers"}`` (the head is
    one pod). An autoscaled group starts with minReplicas (the autoscaler owns ``replicas``); ``max_workers`` is the
    most worker pods it may grow to."""
    group = layout["worker_group"]
    hosts = int(group["num_of_hosts"])
    started = int(group["min_replicas"]) if autoscaled(layout) else int(group["replicas"])
    workers = started * hosts
    return {
        "pods": 1 + workers,
        "workers": workers,
        "gpus": int(layout["head"]["num_gpus"]) + workers * int(group["num_gpus"]),
        "max_workers": max(int(group["max_replicas"]) * hosts, workers),
    }


def worker_group_replicas(layout, live_cluster=None, group_name="gpu"):
    """``{"replicas", "scale_strategy"}`` of the worker group to render.

    A fixed group: the layout's replicas, no scaleStrategy. An autoscaled group is scaled by KubeRay's autoscaler,
    which writes ``replicas`` and ``scaleStrategy`` into the RayCluster's worker group. Client-side apply sends a
    custom resource's list (workerGroupSpecs) whole whenever it differs from the live one, so the group is rendered
    with the live RayCluster's values (replicas kept within the layout's minReplicas and maxReplicas), so a re-run
    never scales the group back. Without a live RayCluster: the layout's replicas.
    """
    group = layout["worker_group"]
    low, high = int(group["min_replicas"]), int(group["max_replicas"])
    if not autoscaled(layout):
        return {"replicas": int(group["replicas"]), "scale_strategy": None}
    specs = ((live_cluster or {}).get("spec") or {}).get("workerGroupSpecs") or []
    live = next((spec for spec in specs if spec.get("groupName") == group_name), None)
    if live is None:
        return {"replicas": min(max(int(group["replicas"]), low), high), "scale_strategy": None}
    replicas = live.get("replicas")
    replicas = low if replicas is None else min(max(int(replicas), low), high)
    return {"replicas": replicas, "scale_strategy": live.get("scaleStrategy")}


def head_container_ports(serve_port, variable="ray_cluster_serve_port"):
    """The head container's ports: KubeRay's defaults with serve on ``serve_port``, and the head's two metrics ports.
    A head that declares ports gets exactly those from KubeRay (and in its Service). Raises RayLayoutError for a
    port Ray's head already uses."""
    text = str(serve_port).strip()
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise RayLayoutError(f"{variable}={serve_port!r} must be a port number, 1-65535.")
    port = int(text)
    taken = {number: name for name, number in {**KUBERAY_HEAD_PORTS, **HEAD_METRICS_PORTS}.items() if name != "serve"}
    taken[DASHBOARD_AGENT_PORT] = "dashboard-agent"
    if port in taken:
        raise RayLayoutError(
            f"{variable}={port} is the Ray head's {taken[port]} port: Ray Serve's HTTP proxy runs on the head pod "
            f"beside it. Choose another port (it follows vllm_serve_port in site.yml), for example the default "
            f"{KUBERAY_HEAD_PORTS['serve']}."
        )
    ports = dict(KUBERAY_HEAD_PORTS, serve=port, **HEAD_METRICS_PORTS)
    return [{"name": name, "containerPort": number, "protocol": "TCP"} for name, number in sorted(ports.items())]


def raycluster_settings(layout, settings):
    """Everything the RayCluster template needs beyond the role's plain variables.

    ``settings``: release, head_cpus, head_memory, worker_cpus, worker_memory, worker_request_ratio,
    gpu_node_selector, gpu_tolerations, node_selector, tolerations, infiniband, infiniband_resource,
    infiniband_resource_count, shm_size (empty: each pod's memory limit), head_node_selector and head_tolerations
    (the head alone, for a CPU node pool), serve_port (Ray Serve's HTTP port on the head; default 8000).
    """
    release = settings["release"]
    labels = {
        "app.kubernetes.io/managed-by": "llmops.ray_vllm",
        "app.kubernetes.io/part-of": "ray-vllm",
        "app.kubernetes.io/instance": release,
    }
    expected = expected_ray_nodes(layout)
    result = {
        "name": f"{release}-raycluster",
        "head_service": f"{release}-raycluster-head-svc",
        "layout": layout,
        "labels": dict(labels, **{"app.kubernetes.io/name": "raycluster"}),
        # app.kubernetes.io/name stays KubeRay's ("kuberay") on the pods: the head Service selects on it, and a
        # template label would override it, leaving the headless Service (the workers' way to the GCS) without
        # endpoints.
        "pod_labels": labels,
        "expected_pods": expected["pods"],
        "expected_workers": expected["workers"],
        "expected_gpus": expected["gpus"],
        "max_workers": expected["max_workers"],
        # KubeRay's in-tree autoscaler, for a group whose maxReplicas exceeds its minReplicas.
        "autoscaling": autoscaled(layout),
        "head_ports": head_container_ports(settings.get("serve_port", KUBERAY_HEAD_PORTS["serve"])),
    }
    result.update(_head_pod(layout, settings))
    result.update(_worker_pod(layout, settings))
    return result


# ---------------------------------------------------------------------------------------------------------------------
# one machine, several listeners


def port_clashes(ports):
    """``["a and b are both 8000", ...]`` for the variables in ``ports`` ({variable: port}) that share a port."""
    by_port = {}
    for name, port in ports.items():
        by_port.setdefault(int(port), []).append(name)
    return [
        "{} are all {}".format(", ".join(names), port)
        if len(names) > 2
        else "{} are both {}".format(" and ".join(names), port)
        for port, names in sorted(by_port.items())
        if len(names) > 1
    ]
