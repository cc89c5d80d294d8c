# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""GPU facts of Kubernetes nodes, from their allocatable resources and NVIDIA GPU feature discovery labels.

The input is what ``kubernetes.core.k8s_info`` returns for ``kind: Node`` (its ``resources`` list, the shape of
``kubectl get nodes -o json``'s items). Label names follow NVIDIA GPU feature discovery (GFD), which the GPU operator
runs on every GPU node; the GPU count is the device plugin's ``nvidia.com/gpu`` in ``status.allocatable``.
"""

from __future__ import annotations

import re

from ansible_collections.llmops.ray_vllm.plugins.module_utils._accelerator_facts import (
    version_problems,
    version_tuple,
)
from ansible_collections.llmops.ray_vllm.plugins.module_utils._quantity import QuantityError
from ansible_collections.llmops.ray_vllm.plugins.module_utils._quantity import parse_quantity as _parse_quantity

GPU_RESOURCE = "nvidia.com/gpu"
# Labels that say a node has NVIDIA GPUs whether or not the device plugin advertises them.
PRESENT_LABEL = "nvidia.com/gpu.present"
PRODUCT_LABEL = "nvidia.com/gpu.product"
MEMORY_LABEL = "nvidia.com/gpu.memory"
COUNT_LABEL = "nvidia.com/gpu.count"
MIG_STRATEGY_LABEL = "nvidia.com/mig.strategy"
NFD_PCI_LABEL = "feature.node.kubernetes.io/pci-10de.present"  # Node Feature Discovery: an NVIDIA PCI device
DRIVER_FULL_LABEL = "nvidia.com/cuda.driver-version.full"
DRIVER_PART_LABELS = ("nvidia.com/cuda.driver.major", "nvidia.com/cuda.driver.minor", "nvidia.com/cuda.driver.rev")
CUDA_FULL_LABEL = "nvidia.com/cuda.runtime-version.full"
CUDA_PART_LABELS = ("nvidia.com/cuda.runtime.major", "nvidia.com/cuda.runtime.minor")
MIG_RESOURCE = re.compile(r"^nvidia\.com/mig-\d+g\.\d+gb$")
# The keys deployment_plan's nodes option accepts.
PLAN_KEYS = ("name", "gpus", "gpu_product", "gpu_memory_mib", "cpus", "memory_mib")

# What the version gates say (see _accelerator_facts.version_problems).
DRIVER_UNKNOWN = (
    "{name}: the NVIDIA driver version is unknown (no "
    + DRIVER_FULL_LABEL
    + " nor "
    + DRIVER_PART_LABELS[0]
    + " label), needed {minimum} or newer: GPU feature discovery is not labelling the node (check the "
    "gpu-feature-discovery pod there)."
)
DRIVER_TOO_OLD = (
    "NVIDIA driver too old on {name}: seen {seen} (label " + DRIVER_FULL_LABEL + "), needed {minimum} or newer. "
    "Upgrade the driver on the node (with the GPU operator: its driver.version), or lower min_driver_version for an "
    "older vLLM image."
)
CUDA_UNKNOWN = (
    "{name}: the CUDA version the driver supports is unknown (no "
    + CUDA_FULL_LABEL
    + " nor "
    + CUDA_PART_LABELS[0]
    + " label), needed {minimum}: GPU feature discovery is not labelling the node."
)
CUDA_TOO_OLD = (
    "CUDA too old on {name}: its driver supports CUDA {seen} (label " + CUDA_FULL_LABEL + "), needed {minimum} or "
    "newer. Upgrade the NVIDIA driver on the node, or lower min_cuda_version for an older vLLM image."
)
VERSION_MESSAGES = {"driver_version": (DRIVER_UNKNOWN, DRIVER_TOO_OLD), "cuda_version": (CUDA_UNKNOWN, CUDA_TOO_OLD)}


# Suffixes of Kubernetes resource quantities (k8s.io/apimachinery resource.Quantity).
class NodeFactsError(ValueError):
    """A node object that is not what k8s_info returns for kind Node."""


def parse_quantity(value):
    """A Kubernetes quantity as a float in base units; a bad one raises NodeFactsError."""
    try:
        return _parse_quantity(value)
    except QuantityError as error:
        raise NodeFactsError(str(error)) from None


def _labels(node):
    return (node.get("metadata") or {}).get("labels") or {}


def node_name(node):
    name = (node.get("metadata") or {}).get("name")
    if not name:
        raise NodeFactsError(f"a node has no metadata.name: {str(node)[:200]}")
    return name


def driver_version(labels):
    """The NVIDIA driver version from GFD labels (``cuda.driver-version.full``, else major/minor/rev), or None."""
    if labels.get(DRIVER_FULL_LABEL):
        return labels[DRIVER_FULL_LABEL]
    parts = [labels.get(key) for key in DRIVER_PART_LABELS]
    if parts[0] and parts[1]:
        return ".".join(part for part in parts if part)
    return None


def cuda_version(labels):
    """The newest CUDA the driver supports, from GFD labels (``cuda.runtime-version.full``, else major/minor)."""
    if labels.get(CUDA_FULL_LABEL):
        return labels[CUDA_FULL_LABEL]
    major, minor = (labels.get(key) for key in CUDA_PART_LABELS)
    if major:
        return f"{major}.{minor or 0}"
    return None


def is_ready(node):
    """Whether the node's Ready condition is True."""
    for condition in (node.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return condition.get("status") == "True"
    return False


def is_schedulable(node):
    """False for a cordoned node (``spec.unschedulable``)."""
    return not (node.get("spec") or {}).get("unschedulable", False)


def has_gpu_labels(labels):
    """Whether GFD or NFD labelled the node as having NVIDIA GPUs."""
    return labels.get(PRESENT_LABEL) == "true" or bool(labels.get(PRODUCT_LABEL)) or labels.get(NFD_PCI_LABEL) == "true"


def matches_selector(labels, selector):
    """Whether the labels carry every key=value of ``selector`` (a nodeSelector)."""
    return all(labels.get(key) == str(value) for key, value in (selector or {}).items())


def allocatable_gpus(node):
    """Whole GPUs the device plugin advertises (``status.allocatable["nvidia.com/gpu"]``), or None when absent."""
    allocatable = (node.get("status") or {}).get("allocatable") or {}
    if GPU_RESOURCE not in allocatable:
        return None
    return int(parse_quantity(allocatable[GPU_RESOURCE]))


def mig_resources(node):
    """MIG slices advertised as their own resources (MIG strategy ``mixed``): {resource: count}."""
    allocatable = (node.get("status") or {}).get("allocatable") or {}
    return {key: int(parse_quantity(value)) for key, value in allocatable.items() if MIG_RESOURCE.match(key)}


def _int_label(labels, key):
    try:
        return int(labels[key])
    except (KeyError, TypeError, ValueError):
        return None


def node_facts(node):
    """One node's facts: name, gpus, gpu_product, gpu_memory_mib, cpus, memory_mib, versions, mig_strategy."""
    labels = _labels(node)
    allocatable = (node.get("status") or {}).get("allocatable") or {}
    cpus = parse_quantity(allocatable["cpu"]) if "cpu" in allocatable else None
    memory = parse_quantity(allocatable["memory"]) if "memory" in allocatable else None
    return {
        "name": node_name(node),
        "gpus": allocatable_gpus(node) or 0,
        "gpu_product": labels.get(PRODUCT_LABEL),
        "gpu_memory_mib": _int_label(labels, MEMORY_LABEL),
        "cpus": round(cpus, 3) if cpus is not None else None,
        "memory_mib": int(memory // 2**20) if memory is not None else None,
        "driver_version": driver_version(labels),
        "cuda_version": cuda_version(labels),
        "mig_strategy": labels.get(MIG_STRATEGY_LABEL),
    }


def _lowest(versions):
    known = [version for version in versions if version]
    return min(known, key=version_tuple) if known else None


def _selector_text(selector):
    return ", ".join(f"{key}={value}" for key, value in sorted((selector or {}).items()))


def collect(nodes, min_gpus=1, min_driver_version=None, min_cuda_version=None, node_selector=None):
    """Facts and problems of the GPU nodes among ``nodes`` (k8s_info ``resources`` for kind Node).

    Returns a dict: ``nodes`` (one entry per Ready, schedulable node matching ``node_selector`` that advertises
    GPUs, sorted by name), ``plan_nodes`` (the same with deployment_plan's keys only), ``gpu_count``,
    ``gpu_products``, ``gpu_product``, ``gpu_memory_mib`` (smallest), ``driver_version`` and ``cuda_version``
    (oldest), ``excluded`` (GPU nodes left out, with the reason), ``problems`` (sentences with what was seen, what
    is needed and the fix) and ``warnings``.
    """
    if not isinstance(nodes, list):
        raise NodeFactsError(f"nodes must be the list of Node objects k8s_info returns, got {type(nodes).__name__}")
    found, excluded, problems, warnings, no_plugin = [], [], [], [], []
    considered = 0
    for node in nodes:
        if not isinstance(node, dict):
            raise NodeFactsError(f"a node is {type(node).__name__}, not a Node object: {str(node)[:200]}")
        kind = node.get("kind")
        if kind not in (None, "Node"):
            raise NodeFactsError(f"{node_name(node)} is a {kind}, not a Node; pass k8s_info's resources for kind Node")
        labels = _labels(node)
        facts = node_facts(node)
        name = facts["name"]
        if not matches_selector(labels, node_selector):
            continue
        considered += 1
        gpu_node = facts["gpus"] > 0 or has_gpu_labels(labels)
        if not gpu_node:
            continue
        if not is_ready(node):
            excluded.append({"name": name, "reason": "not Ready"})
            continue
        if not is_schedulable(node):
            excluded.append({"name": name, "reason": "cordoned (spec.unschedulable)"})
            continue
        if facts["gpus"] == 0:
            no_plugin.append(name)
            slices = mig_resources(node)
            if slices:
                problems.append(
                    f"{name} advertises only MIG slices ({', '.join(f'{k}={v}' for k, v in sorted(slices.items()))}) "
                    f"and no whole {GPU_RESOURCE} (MIG strategy {facts['mig_strategy'] or 'mixed'}); vLLM's Ray "
                    "workers request whole GPUs: disable MIG on the node or use the GPU operator's mig.strategy single."
                )
            else:
                seen = (node.get("status") or {}).get("allocatable", {}).get(GPU_RESOURCE)
                problems.append(
                    f"GPU operator's device plugin not running on {name}: the node carries the GPU labels "
                    f"({PRODUCT_LABEL}={labels.get(PRODUCT_LABEL) or '?'}, {PRESENT_LABEL}="
                    f"{labels.get(PRESENT_LABEL) or '?'}) but its allocatable {GPU_RESOURCE} is "
                    f"{seen if seen is not None else 'missing'}. Check the nvidia-device-plugin-daemonset pod on "
                    f"{name} (kubectl -n gpu-operator get pods -o wide --field-selector spec.nodeName={name}) and "
                    "the ClusterPolicy's status."
                )
            continue
        found.append(facts)
        if facts["gpus"] < min_gpus:
            problems.append(
                f"{name} offers {facts['gpus']} GPU(s) ({GPU_RESOURCE} allocatable), fewer than the {min_gpus} "
                "needed on each GPU node (min_gpus); lower it or use nodes with more GPUs."
            )
        if facts["gpu_memory_mib"] is None:
            problems.append(
                f"{name} has no {MEMORY_LABEL} label, so the memory of its GPUs is unknown: GPU feature discovery "
                "is not labelling it (check the gpu-feature-discovery pod on the node)."
            )
        minimums = {"driver_version": min_driver_version, "cuda_version": min_cuda_version}
        problems.extend(version_problems(facts, minimums, VERSION_MESSAGES, name=name))
    found.sort(key=lambda facts: facts["name"])
    for entry in excluded:
        warnings.append(f"{entry['name']} has GPUs but is left out: {entry['reason']}.")
    if not found and not no_plugin:
        where = f" among the {considered} node(s) matching {_selector_text(node_selector)}" if node_selector else ""
        left_out = (
            f" ({len(excluded)} GPU node(s) left out: "
            + "; ".join(f"{entry['name']} {entry['reason']}" for entry in excluded)
            + ")"
            if excluded
            else ""
        )
        problems.insert(
            0,
            f"No GPU node: no Ready, schedulable node{where} advertises {GPU_RESOURCE} in its allocatable or "
            f"carries the label {PRESENT_LABEL}=true{left_out}, out of {len(nodes)} node(s). The GPUs are not "
            "advertised: install the NVIDIA GPU operator (this collection's gpu_operator role can) or check that its "
            "device plugin and GPU feature discovery run on the GPU nodes.",
        )
    strategies = sorted({facts["mig_strategy"] for facts in found if facts["mig_strategy"] not in (None, "none")})
    if strategies and strategies != ["single"]:
        warnings.append(f"MIG strategy {', '.join(strategies)} on the GPU nodes; vLLM serves on whole GPUs.")
    products = sorted({facts["gpu_product"] or "unknown" for facts in found})
    if len(products) > 1:
        warnings.append(f"The GPU nodes mix GPU models ({', '.join(products)}); the plan sizes for the smallest.")
    memories = [facts["gpu_memory_mib"] for facts in found if facts["gpu_memory_mib"] is not None]
    return {
        "nodes": found,
        "plan_nodes": [{key: facts[key] for key in PLAN_KEYS} for facts in found],
        "gpu_count": sum(facts["gpus"] for facts in found),
        "gpu_node_count": len(found),
        "gpu_products": products if found else [],
        "gpu_product": " + ".join(products) if found else None,
        "gpu_memory_mib": min(memories) if memories else None,
        "driver_version": _lowest(facts["driver_version"] for facts in found),
        "cuda_version": _lowest(facts["cuda_version"] for facts in found),
        "excluded": excluded,
        "problems": problems,
        "warnings": warnings,
    }
