# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""Where the pods without GPUs go on Kubernetes: the Ray head and the vLLM driver, beside the GPU worker pods.

A worker pod requests ``worker_request_ratio`` of its node's allocatable share (``worker_pod_requests``, which the
ray_cluster role renders too); what the workers leave on each node must hold the head and the driver, or they stay
Pending and the deployment never comes up. The planner checks it and says where each goes, or which settings to
change. Pods pinned elsewhere with a node selector (a CPU node pool) are only named: their nodes are not among the
GPU nodes the plan sees.
"""

from __future__ import annotations

import math

# The share of a node's per-pod allocatable a worker pod requests; the rest is left for the head, the driver and
# the node's DaemonSets. The ray_cluster role's default (ray_cluster_worker_request_ratio) is the same.
DEFAULT_WORKER_REQUEST_RATIO = 0.8


def worker_pod_requests(group, ratio=DEFAULT_WORKER_REQUEST_RATIO):
    """``(cpus, memory_mib)`` one worker pod requests: ``ratio`` of the layout's per-pod share, at least one CPU;
    None where the layout does not know the nodes' allocatable."""
    cpus = max(int(math.floor(float(group["cpus"]) * ratio)), 1) if group.get("cpus") else None
    memory = int(float(group["memory_mib"]) * ratio) if group.get("memory_mib") else None
    return cpus, memory


def _free_after_workers(nodes, layout, ratio):
    """``{node: [cpus, memory_mib]}`` each node keeps once its worker pods are placed."""
    group = layout["worker_group"]
    cpus, memory = worker_pod_requests(group, ratio)
    free = {}
    for node in nodes:
        pods = group.get("pods_per_node", {}).get(node["name"], 0)
        free[node["name"]] = [
            float(node["cpus"] or 0) - pods * (cpus or 0),
            float(node["memory_mib"] or 0) - pods * (memory or 0),
        ]
    return free


def _describe_pod(pod):
    return "{} ({:g} CPU, {:.1f} GiB)".format(pod["name"], pod["cpus"], pod["memory_mib"] / 1024.0)


def _first_fit(free, pod):
    for node, (cpus, memory) in free.items():
        if cpus >= pod["cpus"] and memory >= pod["memory_mib"]:
            free[node] = [cpus - pod["cpus"], memory - pod["memory_mib"]]
            return node
    return None


def place_cpu_pods(nodes, layout, cpu_pods, ratio=DEFAULT_WORKER_REQUEST_RATIO):
    """``(sentences, problem)``: where each pod without GPUs goes beside the worker pods, or why it cannot.

    ``cpu_pods``: ``{name, cpus, memory_mib, node_selector, ray_head}`` each (largest placed first; the Ray head
    goes with its GPUs to the layout's head node when it has some). ``problem`` is None when every pod fits;
    otherwise it names the pods that do not and what each node keeps.
    """
    if not all(node.get("cpus") and node.get("memory_mib") for node in nodes):
        pods = ", ".join(_describe_pod(pod) for pod in cpu_pods)
        return [
            f"The nodes report no allocatable CPUs or memory, so the plan cannot check where {pods} fit; the "
            "scheduler places them."
        ], None
    free = _free_after_workers(nodes, layout, ratio)
    sentences, left_out = [], []
    head = layout["head"]
    for pod in [pod for pod in cpu_pods if pod.get("ray_head") and head.get("num_gpus") and head.get("node")]:
        # A head with GPUs is pinned to its node by the layout: it takes its room there first.
        free[head["node"]][0] -= pod["cpus"]
        free[head["node"]][1] -= pod["memory_mib"]
        sentences.append(f"{_describe_pod(pod)} goes to {head['node']} with its GPU(s).")
    kept = {node: list(room) for node, room in free.items()}
    placed = [pod for pod in cpu_pods if not (pod.get("ray_head") and head.get("num_gpus") and head.get("node"))]
    for pod in sorted(placed, key=lambda p: (-p["cpus"], -p["memory_mib"])):
        if pod.get("node_selector"):
            sentences.append(
                f"{_describe_pod(pod)} goes to the nodes matching {pod['node_selector']}, outside the GPU nodes "
                "planned here."
            )
            continue
        node = _first_fit(free, pod)
        if node is None:
            left_out.append(pod)
        else:
            sentences.append(f"{_describe_pod(pod)} fits beside the worker pod(s) on {node}.")
    if not left_out:
        return sentences, None
    rooms = ", ".join(f"{node}: {cpus:g} CPU, {memory / 1024.0:.1f} GiB" for node, (cpus, memory) in kept.items())
    return sentences, (
        "{} do(es) not fit in what the worker pods leave on the nodes ({}, with worker pods requesting {:g} of their "
        "node's share)".format(", ".join(_describe_pod(p) for p in left_out), rooms, ratio)
    )
