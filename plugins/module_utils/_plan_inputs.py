# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""What site.yml hands the deployment planner: the user's settings as plan options, and the nodes of platform hosts.

Each plan option may come from a role variable or a collection-wide one; the planner is told which, so its checks
(TP against the heads, PP against the layers, a layout against the GPUs ...) name the variable the user set.
"""

from __future__ import annotations

from ansible_collections.llmops.ray_vllm.plugins.module_utils._deployment_plan import DEVICES, DTYPES
from ansible_collections.llmops.ray_vllm.plugins.module_utils._quantity import MIB, QuantityError, parse_quantity

# deployment_plan option -> the inventory variables that may set it, the role's own first.
PLAN_OPTION_VARIABLES = (
    ("tensor_parallel_size", ("vllm_serve_tensor_parallel_size", "ray_vllm_tensor_parallel_size")),
    ("pipeline_parallel_size", ("vllm_serve_pipeline_parallel_size", "ray_vllm_pipeline_parallel_size")),
    ("max_model_len", ("vllm_serve_max_model_len",)),
    ("gpu_memory_utilization", ("vllm_serve_gpu_memory_utilization",)),
    ("cpu_kvcache_space_gib", ("vllm_serve_cpu_kvcache_space_gib",)),
    ("dtype", ("vllm_serve_dtype", "ray_vllm_dtype")),
    ("head_gpus", ("ray_vllm_head_gpus",)),
    ("model_name", ("vllm_serve_served_model_name",)),
    ("kuberay_layout", ("ray_cluster_kuberay_layout",)),
    ("worker_request_ratio", ("ray_cluster_worker_request_ratio",)),
    ("device", ("ray_vllm_device",)),
    ("replicas", ("ray_vllm_replicas",)),
    ("min_replicas", ("ray_vllm_min_replicas",)),
    ("max_replicas", ("ray_vllm_max_replicas",)),
    ("max_gpus", ("ray_vllm_max_gpus",)),
    ("gpu_share", ("ray_vllm_gpu_share",)),
    ("target_concurrency", ("ray_vllm_target_concurrency",)),
)
# The values deployment_plan's argument spec allows; checked here so that a refusal names the variable, not the option.
OPTION_CHOICES = {"dtype": DTYPES, "device": DEVICES}
# How the planner's messages name what site.yml computes rather than reads: the pods without GPUs (cpu_pods).
DERIVED_OPTION_NAMES = {
    "cpu_pods": "the head and driver requests (ray_cluster_head_cpus, ray_cluster_head_memory, vllm_serve_resources; "
    "ray_cluster_head_node_selector and vllm_serve_node_selector send them to a CPU node pool)",
}
# Defaults that ask for nothing: vllm_serve_dtype's, and ray_vllm_device's (the plan's own choice).
UNSET_VALUES = {"vllm_serve_dtype": "auto", "ray_vllm_device": "auto"}


class PlanInputError(ValueError):
    """Two settings that contradict each other, or a node setting that cannot work; names them and the fix."""


def _given(variables, name):
    value = variables.get(name)
    return None if value is None or value == "" or UNSET_VALUES.get(name) == value else value


def _check_choice(option, name, value):
    choices = OPTION_CHOICES.get(option)
    if choices and value not in choices:
        raise PlanInputError(
            f"{name}={value!r} is not one of {', '.join(choices)}; set {name} to one of them, or leave it unset."
        )


def plan_request(variables):
    """``{"options": {option: value}, "option_names": {option: variable}}`` from the variables the user set.

    ``variables`` maps the names in PLAN_OPTION_VARIABLES to their values (None when unset). Two variables that
    set one option must agree.
    """
    options = {}
    option_names = dict(DERIVED_OPTION_NAMES)
    for option, names in PLAN_OPTION_VARIABLES:
        given = [(name, _given(variables, name)) for name in names]
        given = [(name, value) for name, value in given if value is not None]
        if not given:
            continue
        first_name, first_value = given[0]
        _check_choice(option, first_name, first_value)
        for other_name, other_value in given[1:]:
            if str(other_value) != str(first_value):
                raise PlanInputError(
                    f"{first_name}={first_value} and {other_name}={other_value} ask the plan for different "
                    f"{option} values; set one of them."
                )
        options[option] = first_value
        option_names[option] = first_name
    return {"options": options, "option_names": option_names}


def _ray_gpus_cap(node):
    """The GPUs the user lets this host offer Ray (ray_cluster_head_num_gpus / ray_cluster_num_gpus), or None."""
    if node.get("is_head") and node.get("ray_cluster_head_num_gpus") is not None:
        return "ray_cluster_head_num_gpus", int(node["ray_cluster_head_num_gpus"])
    if node.get("ray_cluster_num_gpus") is not None:
        return "ray_cluster_num_gpus", int(node["ray_cluster_num_gpus"])
    return None, None


def _plan_node(node):
    facts = node.get("cuda_check_facts")
    if not facts:
        raise PlanInputError(
            "{} has no cuda_check_facts: the cuda_check role reads each node's GPUs and CPUs before the plan; run it "
            "on every Ray node first (site.yml does).".format(node["name"])
        )
    gpus = int(facts.get("gpu_count") or 0)
    name, cap = _ray_gpus_cap(node)
    if cap is not None and cap > gpus:
        raise PlanInputError(
            f"{name}={cap} on {node['name']}, but cuda_check found {gpus} GPU(s) there; Ray cannot offer GPUs the "
            f"node does not have. Set {name} to at most {gpus}, or leave it unset."
        )
    cpu = facts.get("cpu") or {}
    return {
        "name": node["name"],
        "gpus": gpus if cap is None else cap,
        "gpu_memory_mib": int(facts.get("gpu_memory_mib") or 0),
        "gpu_product": facts.get("gpu_product") or "",
        "cpus": int(cpu.get("logical_cores") or 0),
        "memory_mib": int(facts.get("memory_mib") or 0),
    }


def hosts_plan_input(nodes, device="auto"):
    """The planner's node list for platform hosts, and the dtype CPU nodes need.

    ``nodes``: the Ray head first, each ``{name, is_head, cuda_check_facts, ray_cluster_num_gpus,
    ray_cluster_head_num_gpus}`` (the last two None when the inventory leaves them unset). ``device``: the plan's
    device option (ray_vllm_device); with ``cpu`` every node serves on its CPUs, GPUs or not.
    Returns ``{"nodes": [...], "cpu_dtype": "float32" or None}``: CPUs without AVX-512 bf16 serve float32 (bf16
    there gave garbage text), so the plan sizes weights at 4 bytes a parameter.
    """
    plan_nodes = [_plan_node(node) for node in nodes]
    needs_float32 = any(
        (device == "cpu" or node["cuda_check_facts"].get("mode") == "cpu")
        and not (node["cuda_check_facts"].get("cpu") or {}).get("bf16_supported")
        for node in nodes
    )
    return {"nodes": plan_nodes, "cpu_dtype": "float32" if needs_float32 else None}


def kubernetes_cpu_pods(head, driver):
    """The planner's ``cpu_pods`` for the Kubernetes platform: the Ray head and the vLLM driver pods.

    ``head``: ``{cpus, memory, node_selector}`` (the ray_cluster role's quantities); ``driver``: ``{resources,
    node_selector}`` (vllm_serve_resources). The driver also carries ``engine_memory_mib``, its memory limit (else
    its request): a CPU plan runs vLLM's engine in it. A quantity Kubernetes would refuse is refused here, by name.
    """
    resources = driver.get("resources") or {}
    requests = resources.get("requests") or {}
    pods = [
        ("the Ray head pod", head.get("cpus"), head.get("memory"), head.get("node_selector"), True),
        ("the vLLM driver pod", requests.get("cpu"), requests.get("memory"), driver.get("node_selector"), False),
    ]
    result = []
    for name, cpus, memory, selector, is_head in pods:
        if cpus in (None, "") or memory in (None, ""):
            continue  # no request: the scheduler fits it anywhere, and so does the plan
        try:
            numbers = {"cpus": parse_quantity(cpus), "memory_mib": _mib(memory)}
        except QuantityError as error:
            raise PlanInputError(f"{name}'s requests (cpu {cpus!r}, memory {memory!r}): {error}") from None
        result.append(dict(numbers, name=name, node_selector=selector or {}, ray_head=is_head))
    if result and not result[-1]["ray_head"]:
        result[-1]["engine_memory_mib"] = _engine_memory_mib(resources, result[-1])
    return result


def _engine_memory_mib(resources, driver_pod):
    """The driver pod's memory limit in MiB, else its request: where a CPU plan's vLLM engine lives."""
    limit = (resources.get("limits") or {}).get("memory")
    if limit in (None, ""):
        return driver_pod["memory_mib"]
    try:
        return _mib(limit)
    except QuantityError as error:
        raise PlanInputError(f"{driver_pod['name']}'s memory limit {limit!r}: {error}") from None


def _mib(quantity):
    return int(parse_quantity(quantity) // MIB)
