# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""Size a Ray cluster and vLLM's parallelism from node facts and a model: pure functions, no cluster access.

The memory model mirrors what vLLM does at start-up:

- each GPU may use ``gpu_memory_utilization`` of its memory; vLLM subtracts the weights it loaded and what its
  profiling run measured (activations, CUDA graphs, NCCL buffers, the CUDA context), and the rest is KV cache.
  The planner cannot profile, so it reserves ``runtime_overhead_gib`` per GPU for the measured part;
- the KV cache is cut into blocks (16 tokens on GPUs, 128 on CPUs in vLLM 0.32) and vLLM refuses to start when one
  ``max_model_len`` sequence does not fit;
- on CPU the KV cache is a fixed ``VLLM_CPU_KVCACHE_SPACE`` GiB, whatever the utilisation;
- layers are split over pipeline stages as vLLM's ``get_pp_indices`` does: the remainder goes to the stages
  before the last, so the tightest stage decides.
"""

from __future__ import annotations

import math
import re

from ansible_collections.llmops.ray_vllm.plugins.module_utils._model_facts import (
    SAFETENSORS_DTYPE_BYTES,
    ModelFactsError,
    architecture_facts,
    dtype_bytes,
    embedding_parameters,
    kv_elements_per_token_per_layer,
    load_model_dir,
)

GIB = 1024**3
MIB = 1024**2

GPU_BLOCK_SIZE = 16
CPU_BLOCK_SIZE = 128

# Default reserve per GPU for what vLLM measures at start-up instead of knowing in advance: activations of one
# max_num_batched_tokens step, CUDA graphs, NCCL buffers, the CUDA context and the memory the driver keeps
# (nvidia-smi's total is 615 MiB above what CUDA reports usable on the recorded H200). A fixed reserve can only be an
# estimate: 3 GiB is a deliberately generous guess for vLLM's default batch settings; raise it for larger
# max_num_batched_tokens, lower it when a real start-up log shows more KV cache than planned.
DEFAULT_GPU_RUNTIME_OVERHEAD_GIB = 3.0
# On CPU the Python process, torch and the OpenMP workers live beside the weights in RAM.
DEFAULT_CPU_RUNTIME_OVERHEAD_GIB = 2.0

PLATFORMS = ("kubernetes", "hosts")
DTYPES = ("auto", "bfloat16", "float16", "float32", "fp8")
KV_CACHE_DTYPES = ("auto", "bfloat16", "float16", "float32", "fp8", "fp8_e4m3", "fp8_e5m2")

# The largest single node the smallest-cluster search proposes (HGX-class servers carry 8 GPUs).
LARGEST_SINGLE_NODE = 8
# The smallest-cluster search stops here; a model needing more is reported as not fitting at all.
LARGEST_CLUSTER_GPUS = 4096


class PlanError(Exception):
    """Bad input or a model that cannot fit; the message names the value and the fix."""

    def __init__(self, msg, facts=None):
        super().__init__(msg)
        self.msg = msg
        self.facts = facts or {}


# ---------------------------------------------------------------------------------------------------------------------
# small helpers


def gib(value_bytes):
    return float(value_bytes) / GIB


def _round(value, digits=2):
    return round(float(value), digits)


def _fmt_gib(value_bytes):
    return f"{gib(value_bytes):.1f} GiB"


def _fmt_int(value):
    return f"{int(value):,}"


def divisors(number):
    return [value for value in range(1, number + 1) if number % value == 0]


def valid_tensor_parallel_sizes(facts, limit=None):
    """TP sizes vLLM accepts for this model: they divide the attention heads, and KV heads either divide by TP or
    TP is a multiple of them (vLLM then replicates each KV head)."""
    heads = facts["num_attention_heads"]
    kv_heads = facts["num_key_value_heads"]
    sizes = []
    for size in divisors(heads):
        if limit is not None and size > limit:
            break
        if kv_heads % size == 0 or size % kv_heads == 0:
            sizes.append(size)
    return sizes


def check_tensor_parallel_size(facts, size):
    """None when ``size`` is a valid TP size for the model, else the message saying why and what to choose."""
    heads = facts["num_attention_heads"]
    kv_heads = facts["num_key_value_heads"]
    choices = ", ".join(str(value) for value in valid_tensor_parallel_sizes(facts))
    if size < 1:
        return f"tensor_parallel_size={size} must be at least 1; choose one of {choices}."
    if heads % size:
        return (
            f"tensor_parallel_size={size} does not divide num_attention_heads={heads} of the model; "
            f"choose one of {choices}."
        )
    if kv_heads % size and size % kv_heads:
        return (
            f"tensor_parallel_size={size} neither divides num_key_value_heads={kv_heads} of the model nor is a "
            f"multiple of it, so vLLM cannot shard or replicate the KV heads; choose one of {choices}."
        )
    return None


def pipeline_stage_layers(num_layers, pp_size):
    """Layers per pipeline stage, as vLLM's get_pp_indices splits them (remainder to the stages before the last)."""
    partitions = [num_layers // pp_size] * pp_size
    for index in range(2, num_layers % pp_size + 2):
        partitions[-index] += 1
    return partitions


# ---------------------------------------------------------------------------------------------------------------------
# inputs


def normalise_nodes(nodes):
    """Validated copies of the node dicts; raises PlanError naming the bad entry."""
    if not nodes:
        raise PlanError(
            "nodes is empty; pass one entry per node ({name, gpus, gpu_memory_mib, ...}), for example "
            "from the cuda_check facts of each host or from the Kubernetes nodes' allocatable."
        )
    seen = set()
    result = []
    for position, node in enumerate(nodes):
        if not isinstance(node, dict):
            raise PlanError(f"nodes[{position}] is {node!r}; each node must be a dict with at least name and gpus.")
        name = str(node.get("name") or "").strip()
        if not name:
            raise PlanError(f"nodes[{position}] has no name; give every node the name of its host or Kubernetes node.")
        if name in seen:
            raise PlanError(f"nodes[{position}] repeats the name {name!r}; node names must be unique.")
        seen.add(name)
        gpus = int(node.get("gpus") or 0)
        if gpus < 0:
            raise PlanError(f"nodes[{position}] ({name}) has gpus={gpus}; the GPU count cannot be negative.")
        memory = node.get("gpu_memory_mib")
        memory = int(memory) if memory not in (None, "") else None
        if gpus and not memory:
            raise PlanError(
                f"nodes[{position}] ({name}) has {gpus} GPU(s) but no gpu_memory_mib; pass the memory of one GPU in "
                "MiB as nvidia-smi reports it (memory.total), e.g. 81920 for an A100-80GB."
            )
        result.append(
            {
                "name": name,
                "gpus": gpus,
                "gpu_memory_mib": memory,
                "gpu_product": str(node.get("gpu_product") or ("GPU" if gpus else "")),
                "cpus": node.get("cpus"),
                "memory_mib": int(node["memory_mib"]) if node.get("memory_mib") not in (None, "") else None,
            }
        )
    return result


def resolve_model(model_path=None, model_config=None, model_params_b=None, model_name=None):
    """``{"facts", "weights", "params_b"}``; ``weights`` is None when only a parameter count is known."""
    model = _resolve_model(model_path, model_config, model_params_b)
    if model_name:
        model["facts"]["name"] = model_name
    return model


def _resolve_model(model_path, model_config, model_params_b):
    if model_path and model_config:
        raise PlanError("Pass either model_path or model_config, not both.")
    try:
        if model_path:
            loaded = load_model_dir(model_path)
            return {"facts": loaded["facts"], "weights": loaded["weights"], "params_b": model_params_b}
        if model_config is None:
            raise PlanError(
                "Pass the model: model_path (a directory with config.json and safetensors files) or "
                "model_config (config.json as a dict) with model_params_b."
            )
        facts = architecture_facts(model_config)
    except ModelFactsError as error:
        raise PlanError(str(error)) from error
    if not model_params_b or float(model_params_b) <= 0:
        raise PlanError(
            "model_config was given without model_params_b; pass the parameter count in billions "
            "(e.g. model_params_b=70.6) or point model_path at the downloaded model for exact sizes."
        )
    return {"facts": facts, "weights": None, "params_b": float(model_params_b)}


def _dominant_safetensors_dtype_bytes(weights):
    by_dtype = (weights or {}).get("bytes_by_dtype") or {}
    if not by_dtype:
        return None
    dominant = max(by_dtype.items(), key=lambda item: item[1])[0]
    return SAFETENSORS_DTYPE_BYTES.get(dominant)


def resolve_dtypes(facts, weights, dtype, kv_cache_dtype, device):
    """``{"serve", "serve_bytes", "stored_bytes", "online_fp8", "kv", "kv_bytes", "notes"}``.

    ``serve`` is the activation dtype vLLM runs with (its --dtype); weights of a pre-quantized checkpoint or of an
    online FP8 plan take fewer bytes than that.
    """
    notes = []
    stored = facts.get("torch_dtype")
    stored_bytes = dtype_bytes(stored) or _dominant_safetensors_dtype_bytes(weights)
    if stored_bytes is None:
        stored, stored_bytes = "bfloat16", 2
        notes.append("The config names no torch_dtype, so the planner assumes the weights are stored as bfloat16.")
    online_fp8 = dtype == "fp8"
    if dtype in ("auto", "fp8"):
        serve = stored if dtype_bytes(stored) in (2, 4) else "bfloat16"
        if serve == "float32" and device == "GPU":
            # vLLM's auto dtype downcasts float32 checkpoints to the platform's preferred 16-bit type.
            serve = "bfloat16"
            notes.append("dtype=auto serves the float32 checkpoint as bfloat16 on GPUs, as vLLM does.")
        elif serve == "float32" and dtype == "fp8":
            serve = "bfloat16"
    else:
        serve = dtype
    if online_fp8 and facts.get("quantization"):
        online_fp8 = False
        notes.append(
            "dtype=fp8 is already how the checkpoint is quantized ({}); no online quantization is added.".format(
                facts["quantization"]["method"]
            )
        )
    if kv_cache_dtype == "auto":
        kv = serve
    else:
        kv = kv_cache_dtype
    return {
        "serve": serve,
        "serve_bytes": dtype_bytes(serve),
        "stored": stored,
        "stored_bytes": stored_bytes,
        "online_fp8": online_fp8,
        "kv": kv,
        "kv_bytes": dtype_bytes(kv),
        "notes": notes,
    }


def serving_weight_bytes(facts, weights, params_b, dtypes):
    """``(total_bytes, embedding_bytes, source)`` of the weights as they sit in device memory."""
    embed_params = embedding_parameters(facts)
    quant = facts.get("quantization")
    serve_bytes = dtypes["serve_bytes"]
    if weights is not None:
        disk = weights["bytes"]
        source = "exact, {}".format(weights["source"])
        if quant:
            # A pre-quantized checkpoint loads as stored: quantized linears, 16-bit embeddings and norms.
            embed = embed_params * serve_bytes
            return disk, min(embed, disk), source
        stored_bytes = dtypes["stored_bytes"]
        embed_disk = min(embed_params * stored_bytes, disk)
        if dtypes["online_fp8"]:
            body = (disk - embed_disk) / float(stored_bytes)
            embed = embed_disk / float(stored_bytes) * serve_bytes
            return int(body + embed), int(embed), source + ", linear layers quantized to FP8 when loaded"
        scale = float(serve_bytes) / stored_bytes
        source_note = (
            source if scale == 1 else "{}, stored {} and served {}".format(source, dtypes["stored"], dtypes["serve"])
        )
        return int(disk * scale), int(embed_disk * scale), source_note
    params = int(params_b * 1e9)
    embed_params = min(embed_params, params)
    embed = embed_params * serve_bytes
    if quant:
        if quant["weight_bytes"] is None:
            raise PlanError(
                "The checkpoint is quantized with {!r}, whose bytes per weight the planner does not know; pass "
                "model_path so the exact weight bytes are read from the safetensors files.".format(quant["method"])
            )
        body = (params - embed_params) * quant["weight_bytes"]
        return (
            int(body + embed),
            int(embed),
            "estimated from model_params_b={:g} with {} weights ({:g} byte(s) each)".format(
                params_b, quant["method"], quant["weight_bytes"]
            ),
        )
    if dtypes["online_fp8"]:
        return (
            int(params - embed_params + embed),
            int(embed),
            (f"estimated from model_params_b={params_b:g}, linear layers quantized to FP8 when loaded"),
        )
    return (
        int(params * serve_bytes),
        int(embed),
        "estimated from model_params_b={:g} at {} bytes per parameter ({})".format(
            params_b, serve_bytes, dtypes["serve"]
        ),
    )


# ---------------------------------------------------------------------------------------------------------------------
# memory of one layout


def stage_memory(
    model, tp, pp, device_bytes, usable_bytes, overhead_bytes, block_size, max_model_len, kv_space_bytes=None
):
    """Memory per device of each pipeline stage; returns the tightest stage's numbers.

    ``kv_space_bytes`` fixes the KV cache size (CPU's VLLM_CPU_KVCACHE_SPACE); otherwise it is what is left of
    ``usable_bytes`` after weights and overhead.
    """
    facts = model["facts"]
    layers = pipeline_stage_layers(facts["num_hidden_layers"], pp)
    weights_total = model["weight_bytes"]
    embed_total = model["embedding_bytes"]
    # The input embedding sits on the first stage and the output head on the last; tied embeddings mean each of the
    # two stages holds a copy when they differ.
    embed_one = embed_total if facts["tie_word_embeddings"] else embed_total / 2.0
    body_per_layer = (weights_total - embed_total) / float(facts["num_hidden_layers"])
    kv_elements = kv_elements_per_token_per_layer(facts, tp)
    needed_blocks = int(math.ceil(max_model_len / float(block_size)))
    stages = []
    for index, count in enumerate(layers):
        stage_weights = count * body_per_layer
        if pp == 1:
            stage_weights += embed_total
        else:
            if index == 0:
                stage_weights += embed_one
            if index == pp - 1:
                stage_weights += embed_one
        weights_per_device = stage_weights / tp
        bytes_per_token = count * kv_elements * model["kv_bytes"]
        if kv_space_bytes is None:
            kv_bytes = usable_bytes - weights_per_device - overhead_bytes
        else:
            kv_bytes = kv_space_bytes
        blocks = int(kv_bytes // (block_size * bytes_per_token)) if kv_bytes > 0 else 0
        needed_bytes = needed_blocks * block_size * bytes_per_token
        stages.append(
            {
                "stage": index,
                "layers": count,
                "weights_bytes": weights_per_device,
                "kv_cache_bytes": kv_bytes,
                "bytes_per_token": bytes_per_token,
                "blocks": blocks,
                "tokens": blocks * block_size,
                "needed_bytes": needed_bytes,
                "margin_bytes": kv_bytes - needed_bytes,
            }
        )
    tightest = min(stages, key=lambda stage: (stage["margin_bytes"], stage["tokens"]))
    tokens = min(stage["tokens"] for stage in stages)
    blocks = min(stage["blocks"] for stage in stages)
    concurrency = blocks / float(needed_blocks) if needed_blocks else 0.0
    return {
        "device_bytes": device_bytes,
        "usable_bytes": usable_bytes,
        "overhead_bytes": overhead_bytes,
        "weights_bytes": tightest["weights_bytes"],
        "kv_cache_bytes": tightest["kv_cache_bytes"],
        "bytes_per_token": tightest["bytes_per_token"],
        "needed_bytes": tightest["needed_bytes"],
        "margin_bytes": tightest["margin_bytes"],
        "tokens": tokens,
        "blocks": blocks,
        "block_size": block_size,
        "max_concurrency": concurrency,
        "fits": all(stage["blocks"] >= needed_blocks for stage in stages),
        "stage_layers": layers,
        "tightest_stage": tightest["stage"],
    }


# ---------------------------------------------------------------------------------------------------------------------
# layouts


def _usable_gpus(nodes, platform, head_gpus):
    """GPUs each node may contribute, and the sentence explaining the head's share."""
    usable = [node["gpus"] for node in nodes]
    head = nodes[0]
    if head_gpus is True:
        return usable, None
    cap = 0 if head_gpus is False else int(head_gpus)
    if platform == "kubernetes" and head_gpus is False:
        # The head is a pod: with no GPU request it schedules beside a worker pod and every node's GPUs serve.
        return usable, None
    usable[0] = min(cap, head["gpus"])
    if usable[0] < head["gpus"]:
        return usable, "The head {} registers {} of its {} GPU(s) with Ray (head_gpus={}).".format(
            head["name"], usable[0], head["gpus"], str(head_gpus).lower()
        )
    return usable, None


def candidate_layouts(nodes, usable, facts, tp=None, pp=None, max_gpus=None, allow_cross_node_tp=False):
    """Every layout the nodes allow, in the order the planner prefers them.

    A layout gives each Ray worker ``unit`` GPUs (one KubeRay worker pod, or a share of a host); a node holds
    ``usable // unit`` workers. TP groups stay inside a worker unless TP exceeds every node (cross-node TP).
    Preference: most GPUs first (the cluster is dedicated to the model), TP inside a node before TP across nodes,
    bigger workers, then the largest TP (TP all-reduces every layer; PP only passes activations between stages).
    Without a requested size every worker is used; a requested TP or PP may leave workers out.
    """
    layouts = []
    largest = max(usable) if usable else 0
    valid_tp = valid_tensor_parallel_sizes(facts)
    layers = facts["num_hidden_layers"]
    if tp is not None and pp is not None:
        max_gpus = tp * pp if max_gpus is None else min(max_gpus, tp * pp)
    for unit in range(largest, 0, -1):
        budget = None if max_gpus is None else max_gpus // unit
        available = sum(count // unit for count in usable)
        if budget is not None:
            available = min(available, budget)
        counts = range(available, 0, -1) if (tp is not None or pp is not None) else [available]
        for wanted in counts:
            if wanted <= 0:
                continue
            units_by_node = {}
            for index, count in enumerate(usable):
                take = min(count // unit, wanted - sum(units_by_node.values()))
                if take > 0:
                    units_by_node[index] = take
            layouts.extend(_layouts_for(units_by_node, unit, valid_tp, tp, pp, layers, largest))
    # Stable sort keeps bigger workers and then bigger TP first inside each world size.
    layouts.sort(key=lambda layout: (-layout["world"], layout["cross_node_tp"]))
    if not allow_cross_node_tp and tp is None:
        layouts = [layout for layout in layouts if not layout["cross_node_tp"]]
    return layouts


def _layouts_for(units_by_node, unit, valid_tp, tp, pp, layers, largest):
    units = sum(units_by_node.values())
    world = unit * units
    found = []
    for size in sorted(valid_tp, reverse=True):
        if tp is not None and size != tp:
            continue
        if size <= unit:
            if unit % size:
                continue
            cross = False
        else:
            # A TP group wider than a worker only makes sense when it is wider than every node.
            if size <= largest or size % unit or units % (size // unit):
                continue
            cross = True
        stages = world // size
        if stages > layers or (pp is not None and stages != pp):
            continue
        found.append(
            {
                "tp": size,
                "pp": stages,
                "unit": unit,
                "units_by_node": units_by_node,
                "members": sorted(units_by_node),
                "world": world,
                "cross_node_tp": cross,
            }
        )
    return found


def used_gpus_by_node(nodes, layout):
    """``{node name: GPUs the layout uses on it}``."""
    return {nodes[index]["name"]: count * layout["unit"] for index, count in layout["units_by_node"].items()}


def _describe_nodes(nodes, usable):
    return ", ".join("{}: {}".format(node["name"], count) for node, count in zip(nodes, usable))


def _product(nodes, members):
    products = sorted({nodes[index]["gpu_product"] for index in members})
    return " / ".join(products)


def _layout_memory(model, nodes, layout, options):
    memory_mib = min(nodes[index]["gpu_memory_mib"] for index in layout["members"])
    device_bytes = memory_mib * MIB
    usable_bytes = device_bytes * options["gpu_memory_utilization"]
    return stage_memory(
        model,
        layout["tp"],
        layout["pp"],
        device_bytes,
        usable_bytes,
        options["runtime_overhead_gib"] * GIB,
        GPU_BLOCK_SIZE,
        options["max_model_len"],
    )


def _largest_fitting_len(model, layout_memory):
    """Largest max_model_len (whole blocks) whose KV fits the tightest stage."""
    return layout_memory["blocks"] * layout_memory["block_size"]


# ---------------------------------------------------------------------------------------------------------------------
# the smallest cluster that fits


def largest_useful_world(facts, per_node):
    """More GPUs than this cannot help: PP is at most the layers and TP stays inside a node."""
    widest = max(valid_tensor_parallel_sizes(facts, limit=max(per_node, LARGEST_SINGLE_NODE)))
    return min(LARGEST_CLUSTER_GPUS, facts["num_hidden_layers"] * widest)


def smallest_fitting_cluster(model, template_node, per_node, options):
    """The fewest GPUs like ``template_node`` that fit the model: ``(gpus, [descriptions])`` or ``(None, [])``."""
    found = {}
    shapes = []
    per_node = max(per_node, 1)
    if (
        options["runtime_overhead_gib"] * GIB
        >= template_node["gpu_memory_mib"] * MIB * options["gpu_memory_utilization"]
    ):
        # The per-GPU reserve alone fills the usable memory: no number of these GPUs helps.
        return None, []
    for nodes_count in range(1, largest_useful_world(model["facts"], per_node) // per_node + 2):
        shapes.append((nodes_count * per_node, nodes_count, per_node))
    for gpus in range(1, LARGEST_SINGLE_NODE + 1):
        shapes.append((gpus, 1, gpus))
    shapes.sort()
    best = None
    for total, nodes_count, gpus_each in shapes:
        if best is not None and total > best:
            break
        nodes = [dict(template_node, name=f"n{index}", gpus=gpus_each) for index in range(nodes_count)]
        usable = [gpus_each] * nodes_count
        for layout in candidate_layouts(nodes, usable, model["facts"], allow_cross_node_tp=False):
            if layout["world"] != total:
                continue
            memory = _layout_memory(model, nodes, layout, options)
            if memory["fits"]:
                best = total
                key = (nodes_count, gpus_each)
                if key not in found:
                    found[key] = "{} node{} x {} GPU{} with TP={}, PP={}".format(
                        nodes_count,
                        "" if nodes_count == 1 else "s",
                        gpus_each,
                        "" if gpus_each == 1 else "s",
                        layout["tp"],
                        layout["pp"],
                    )
                break
    if best is None:
        return None, []
    return best, [found[key] for key in sorted(found, key=lambda key: (key[0], -key[1]))]


# ---------------------------------------------------------------------------------------------------------------------
# the plan


def build_plan(
    nodes,
    model,
    platform,
    dtype="auto",
    kv_cache_dtype="auto",
    max_model_len=None,
    gpu_memory_utilization=0.9,
    tensor_parallel_size=None,
    pipeline_parallel_size=None,
    head_gpus=None,
    max_gpus=None,
    allow_cross_node_tp=False,
    cpu_kvcache_space_gib=None,
    runtime_overhead_gib=None,
):
    """The deployment plan as a dict (see the module's RETURN); raises PlanError with an actionable message."""
    if platform not in PLATFORMS:
        raise PlanError("platform={!r} is not one of {}.".format(platform, ", ".join(PLATFORMS)))
    if dtype not in DTYPES:
        raise PlanError("dtype={!r} is not one of {}.".format(dtype, ", ".join(DTYPES)))
    if kv_cache_dtype not in KV_CACHE_DTYPES:
        raise PlanError("kv_cache_dtype={!r} is not one of {}.".format(kv_cache_dtype, ", ".join(KV_CACHE_DTYPES)))
    if not 0 < gpu_memory_utilization <= 1:
        raise PlanError(
            f"gpu_memory_utilization={gpu_memory_utilization} must be above 0 and at most 1 (vLLM's default is 0.9)."
        )
    if max_model_len is not None and max_model_len < 1:
        raise PlanError(f"max_model_len={max_model_len} must be a positive number of tokens.")
    if max_gpus is not None and max_gpus < 1:
        raise PlanError(f"max_gpus={max_gpus} must be at least 1; leave it unset to use every GPU.")
    if pipeline_parallel_size is not None and pipeline_parallel_size < 1:
        raise PlanError(f"pipeline_parallel_size={pipeline_parallel_size} must be at least 1.")
    head_gpus = normalise_head_gpus(head_gpus, platform)
    nodes = normalise_nodes(nodes)
    facts = model["facts"]

    reasons = []
    warnings = []
    total_gpus = sum(node["gpus"] for node in nodes)
    device = "GPU" if total_gpus else "CPU"
    dtypes = resolve_dtypes(facts, model.get("weights"), dtype, kv_cache_dtype, device)
    weight_bytes, embed_bytes, weight_source = serving_weight_bytes(
        facts, model.get("weights"), model.get("params_b"), dtypes
    )
    sized = dict(model, weight_bytes=weight_bytes, embedding_bytes=embed_bytes, kv_bytes=dtypes["kv_bytes"])

    reasons.append(_model_sentence(facts, weight_bytes, weight_source, dtypes))
    reasons.extend(dtypes["notes"])

    if tensor_parallel_size is not None:
        problem = check_tensor_parallel_size(facts, tensor_parallel_size)
        if problem:
            raise PlanError(problem)
    if pipeline_parallel_size is not None and pipeline_parallel_size > facts["num_hidden_layers"]:
        raise PlanError(
            "pipeline_parallel_size={} exceeds num_hidden_layers={} of the model; each stage needs at "
            "least one layer, choose at most {}.".format(
                pipeline_parallel_size, facts["num_hidden_layers"], facts["num_hidden_layers"]
            )
        )

    model_max = facts.get("max_position_embeddings")
    length_given = max_model_len is not None
    if length_given and model_max and max_model_len > model_max:
        raise PlanError(
            f"max_model_len={max_model_len} exceeds the model's max_position_embeddings={model_max}; vLLM refuses "
            f"a longer context. Choose at most {model_max}."
        )
    if not length_given:
        if not model_max:
            raise PlanError(
                "The model config has no max_position_embeddings; pass max_model_len (tokens per sequence) explicitly."
            )
        max_model_len = model_max

    options = {
        "gpu_memory_utilization": float(gpu_memory_utilization),
        "max_model_len": int(max_model_len),
        "runtime_overhead_gib": float(
            runtime_overhead_gib
            if runtime_overhead_gib is not None
            else (DEFAULT_GPU_RUNTIME_OVERHEAD_GIB if device == "GPU" else DEFAULT_CPU_RUNTIME_OVERHEAD_GIB)
        ),
    }
    if options["runtime_overhead_gib"] < 0:
        raise PlanError(f"runtime_overhead_gib={runtime_overhead_gib} cannot be negative.")

    if device == "CPU":
        plan = _cpu_plan(
            nodes,
            sized,
            platform,
            tensor_parallel_size,
            pipeline_parallel_size,
            cpu_kvcache_space_gib,
            options,
            length_given,
            reasons,
            warnings,
        )
    else:
        if cpu_kvcache_space_gib is not None:
            warnings.append(
                f"cpu_kvcache_space_gib={cpu_kvcache_space_gib} is ignored: the nodes have GPUs, whose KV cache is "
                "sized by gpu_memory_utilization."
            )
        plan = _gpu_plan(
            nodes,
            sized,
            platform,
            tensor_parallel_size,
            pipeline_parallel_size,
            head_gpus,
            max_gpus,
            allow_cross_node_tp,
            options,
            length_given,
            reasons,
            warnings,
        )

    plan.update(
        {
            "changed": False,
            "platform": platform,
            "device": device,
            "dtype": dtypes["serve"],
            "kv_cache_dtype": dtypes["kv"],
            "gpu_memory_utilization": options["gpu_memory_utilization"],
            "model": {
                "name": facts.get("name") or "",
                "model_type": facts["model_type"],
                "num_hidden_layers": facts["num_hidden_layers"],
                "num_attention_heads": facts["num_attention_heads"],
                "num_key_value_heads": facts["num_key_value_heads"],
                "head_dim": facts["head_dim"],
                "attention": facts["attention"],
                "max_position_embeddings": model_max,
                "quantization": (facts.get("quantization") or {}).get("method"),
                "weights_gib": _round(gib(weight_bytes)),
                "weights_source": weight_source,
            },
            "reasons": reasons,
            "warnings": warnings,
        }
    )
    plan["vllm_args"] = {
        "tensor_parallel_size": plan["tensor_parallel_size"],
        "pipeline_parallel_size": plan["pipeline_parallel_size"],
        "max_model_len": plan["max_model_len"],
        "gpu_memory_utilization": options["gpu_memory_utilization"],
        "dtype": dtypes["serve"],
        "kv_cache_dtype": kv_cache_dtype,
        "quantization": "fp8" if dtypes["online_fp8"] else None,
    }
    plan["env"] = {}
    if device == "CPU":
        plan["env"]["VLLM_CPU_KVCACHE_SPACE"] = str(plan["memory"]["cpu_kvcache_space_gib"])
    plan["table_lines"] = format_plan_table(plan).splitlines()
    plan["table"] = "\n".join(plan["table_lines"])
    return plan


def normalise_head_gpus(head_gpus, platform):
    """True, False or a GPU count; the default is platform-specific (see the module documentation)."""
    if head_gpus is None or head_gpus == "":
        return platform == "hosts"
    if isinstance(head_gpus, bool):
        return head_gpus
    text = str(head_gpus).strip().lower()
    if text in ("true", "yes", "on"):
        return True
    if text in ("false", "no", "off"):
        return False
    try:
        count = int(text)
    except ValueError:
        raise PlanError(f"head_gpus={head_gpus!r} must be true, false or a GPU count.") from None
    if count < 0:
        raise PlanError(f"head_gpus={count} cannot be negative.")
    return count if count else False


def _model_sentence(facts, weight_bytes, weight_source, dtypes):
    if facts["attention"] == "MLA":
        attention = "MLA attention caching kv_lora_rank {} + qk_rope_head_dim {} values per token and layer".format(
            facts["kv_lora_rank"], facts["qk_rope_head_dim"]
        )
    else:
        attention = "{} KV heads ({}), head_dim {} from {}".format(
            facts["num_key_value_heads"], facts["attention"], facts["head_dim"], facts["head_dim_source"]
        )
    return "Model {}: {} layers, {} attention heads, {}; weights {} in memory ({}); KV cache in {}.".format(
        facts.get("name") or facts["model_type"] or "(unnamed)",
        facts["num_hidden_layers"],
        facts["num_attention_heads"],
        attention,
        _fmt_gib(weight_bytes),
        weight_source,
        dtypes["kv"],
    )


def _memory_result(memory, max_model_len, device):
    return {
        "device": device,
        "gpu_memory_gib": _round(gib(memory["device_bytes"])) if device == "GPU" else None,
        "usable_gib": _round(gib(memory["usable_bytes"])) if device == "GPU" else None,
        "weights_gib": _round(gib(memory["weights_bytes"])),
        "runtime_overhead_gib": _round(gib(memory["overhead_bytes"])),
        "kv_cache_gib": _round(gib(max(memory["kv_cache_bytes"], 0))),
        "kv_cache_bytes_per_token": int(memory["bytes_per_token"]),
        "kv_cache_tokens": int(memory["tokens"]),
        "kv_cache_blocks": int(memory["blocks"]),
        "block_size": memory["block_size"],
        "max_model_len": max_model_len,
        "min_kv_cache_gib": _round(gib(memory["needed_bytes"]), 3),
        "margin_gib": _round(gib(memory["margin_bytes"])),
        "max_concurrent_sequences": int(math.floor(memory["max_concurrency"])),
        "max_concurrency": _round(memory["max_concurrency"]),
        "stage_layers": memory["stage_layers"],
        "fits": bool(memory["fits"]),
    }


def _fit_sentence(memory, options, device_label):
    usable = "{:.2g} x {} = {}".format(
        options["gpu_memory_utilization"], _fmt_gib(memory["device_bytes"]), _fmt_gib(memory["usable_bytes"])
    )
    text = (
        "Each {} holds {} of weights + {} runtime overhead within {}, leaving {} of KV cache: {} tokens, {:.2f} "
        "sequences of {} tokens".format(
            device_label,
            _fmt_gib(memory["weights_bytes"]),
            _fmt_gib(memory["overhead_bytes"]),
            usable,
            _fmt_gib(max(memory["kv_cache_bytes"], 0)),
            _fmt_int(memory["tokens"]),
            memory["max_concurrency"],
            _fmt_int(options["max_model_len"]),
        )
    )
    if memory["fits"]:
        return text + " (fits with {} to spare beyond one full sequence).".format(_fmt_gib(memory["margin_bytes"]))
    return text + " (misses by {}).".format(_fmt_gib(-memory["margin_bytes"]))


def _gpu_plan(
    nodes, model, platform, tp, pp, head_gpus, max_gpus, allow_cross_node_tp, options, length_given, reasons, warnings
):
    facts = model["facts"]
    usable, head_note = _usable_gpus(nodes, platform, head_gpus)
    total_gpus = sum(node["gpus"] for node in nodes)
    usable_total = sum(usable)
    if head_note:
        reasons.append(head_note)
        if usable[0] < nodes[0]["gpus"]:
            warnings.append(
                "{} GPU(s) of the head {} stay idle because head_gpus={}; set head_gpus=true to serve "
                "with them.".format(nodes[0]["gpus"] - usable[0], nodes[0]["name"], str(head_gpus).lower())
            )
    if usable_total == 0:
        raise PlanError(
            "No GPU is available to vLLM: the nodes offer {} GPU(s) ({}) and head_gpus={} keeps the "
            "head's; add GPU workers or set head_gpus=true.".format(
                total_gpus, _describe_nodes(nodes, [node["gpus"] for node in nodes]), str(head_gpus).lower()
            )
        )
    largest_node = max(usable)
    if tp is not None and tp > largest_node and not allow_cross_node_tp:
        stages_hint = tp if largest_node == 1 else tp // math.gcd(tp, largest_node)
        raise PlanError(
            f"tensor_parallel_size={tp} needs {tp} GPUs in one node, but the largest node offers {largest_node} "
            f"({_describe_nodes(nodes, usable)}); TP all-reduces every layer and over the network it is slow. Set "
            "allow_cross_node_tp=true to accept that, or use pipeline parallelism across nodes instead (e.g. "
            f"tensor_parallel_size={math.gcd(tp, largest_node)}, pipeline_parallel_size={stages_hint})."
        )
    if tp is not None and pp is not None and tp * pp > usable_total:
        raise PlanError(
            f"tensor_parallel_size={tp} x pipeline_parallel_size={pp} = {tp * pp} GPUs, but the nodes offer "
            f"{usable_total} usable GPU(s) ({_describe_nodes(nodes, usable)}); lower the sizes or add nodes."
        )

    layouts = candidate_layouts(
        nodes, usable, facts, tp=tp, pp=pp, max_gpus=max_gpus, allow_cross_node_tp=allow_cross_node_tp or tp is not None
    )
    if not layouts:
        raise PlanError(_no_layout_message(nodes, usable, facts, tp, pp, max_gpus))

    evaluated = [(layout, _layout_memory(model, nodes, layout, options)) for layout in layouts]
    chosen = chosen_memory = None
    for layout, memory in evaluated:
        if memory["fits"]:
            chosen, chosen_memory = layout, memory
            break
    if chosen is None and not length_given:
        # No max_model_len was asked for: shorten the model's own limit to what the KV cache of the most
        # GPUs holds, as long as at least one block fits.
        for layout, memory in evaluated:
            if memory["blocks"] > 0:
                chosen, chosen_memory = layout, memory
                break
    if chosen is None:
        layout, memory = evaluated[0]
        message = _does_not_fit_message(model, nodes, layout, memory, options)
        if tp is not None or pp is not None:
            # The requested sizes do not fit; say so when the planner's own choice would.
            for other in candidate_layouts(
                nodes, usable, facts, max_gpus=max_gpus, allow_cross_node_tp=allow_cross_node_tp
            ):
                if _layout_memory(model, nodes, other, options)["fits"]:
                    message += (
                        f" These nodes hold it with TP={other['tp']}, PP={other['pp']}: leave tensor_parallel_size "
                        "and pipeline_parallel_size unset to get that plan."
                    )
                    break
        raise PlanError(
            message,
            {
                "tensor_parallel_size": layout["tp"],
                "pipeline_parallel_size": layout["pp"],
                "memory": _memory_result(memory, options["max_model_len"], "GPU"),
            },
        )

    if not chosen_memory["fits"]:
        fitting = _largest_fitting_len(model, chosen_memory)
        warnings.append(
            "The model's max_position_embeddings={} does not fit the KV cache ({} tokens per GPU); max_model_len is "
            "lowered to {}. Pass max_model_len to choose it yourself, or add GPUs.".format(
                _fmt_int(options["max_model_len"]), _fmt_int(chosen_memory["tokens"]), _fmt_int(fitting)
            )
        )
        options["max_model_len"] = fitting
        chosen_memory = _layout_memory(model, nodes, chosen, options)

    _gpu_decision_sentences(nodes, usable, chosen, facts, tp, pp, max_gpus, usable_total, reasons, warnings)
    reasons.append(_fit_sentence(chosen_memory, options, "GPU"))

    ray_layout = _ray_layout(nodes, chosen, platform, head_gpus, reasons)
    return {
        "tensor_parallel_size": chosen["tp"],
        "pipeline_parallel_size": chosen["pp"],
        "world_size": chosen["world"],
        "gpus_total": total_gpus,
        "gpus_used": chosen["world"],
        "nodes_total": len(nodes),
        "nodes_used": len(chosen["members"]),
        "cross_node_tensor_parallel": chosen["cross_node_tp"],
        "max_model_len": options["max_model_len"],
        "memory": _memory_result(chosen_memory, options["max_model_len"], "GPU"),
        "ray_layout": ray_layout,
    }


def _gpu_decision_sentences(nodes, usable, chosen, facts, tp, pp, max_gpus, usable_total, reasons, warnings):
    world = chosen["world"]
    unit = chosen["unit"]
    if world == usable_total:
        reasons.append(
            f"The nodes offer {usable_total} usable GPU(s) ({_describe_nodes(nodes, usable)}); the plan uses all of "
            "them because the cluster is dedicated to this model."
        )
    else:
        if max_gpus is not None and world <= max_gpus < usable_total:
            why = f"max_gpus={max_gpus} caps it"
        elif tp is not None or pp is not None:
            why = "the requested tensor_parallel_size/pipeline_parallel_size use that many"
        else:
            why = (
                "every Ray worker gets the same number of GPUs ({} here), a multiple of a TP size that divides "
                "the {} attention heads, and no larger layout fits".format(unit, facts["num_attention_heads"])
            )
        reasons.append(
            f"The plan uses {world} of the {usable_total} usable GPU(s) ({_describe_nodes(nodes, usable)}) "
            f"because {why}."
        )
        warnings.append(f"{usable_total - world} GPU(s) stay idle: {why}.")
    if chosen["cross_node_tp"]:
        reasons.append(
            "TP={} spans {} nodes of {} GPU(s) as requested; PP={}.".format(
                chosen["tp"], chosen["tp"] // unit, unit, chosen["pp"]
            )
        )
        warnings.append(
            "Tensor parallelism crosses nodes: every layer all-reduces over the network between {} "
            "nodes, so throughput depends on its bandwidth (InfiniBand/RoCE recommended); pipeline "
            "parallelism across nodes sends far less.".format(chosen["tp"] // unit)
        )
    elif tp is None:
        if chosen["tp"] == unit:
            why_tp = "TP={} fills the {} GPU(s) of each Ray worker".format(chosen["tp"], unit)
        else:
            why_tp = (
                "TP={} is the largest size up to the {} GPU(s) of a Ray worker that divides the {} attention "
                "heads and suits the {} KV heads".format(
                    chosen["tp"], unit, facts["num_attention_heads"], facts["num_key_value_heads"]
                )
            )
        if chosen["pp"] == 1:
            why_pp = "PP=1 because one TP group holds the whole model"
        elif len(chosen["members"]) > 1:
            why_pp = (
                "PP={} spreads the layers over the {} nodes, whose stages pass only activations between them".format(
                    chosen["pp"], len(chosen["members"])
                )
            )
        else:
            why_pp = "PP={} splits the layers inside the node".format(chosen["pp"])
        reasons.append(
            f"{why_tp}: tensor parallelism all-reduces every layer, so it stays inside a node on the fast "
            f"interconnect; {why_pp}."
        )
    else:
        reasons.append(
            "TP={} and PP={} as requested; they are valid for the model and fit the nodes.".format(
                chosen["tp"], chosen["pp"]
            )
        )
    if chosen["pp"] > 1:
        reasons.append(
            "PP={} splits the {} layers as {} per stage, as vLLM does.".format(
                chosen["pp"],
                facts["num_hidden_layers"],
                "/".join(str(count) for count in pipeline_stage_layers(facts["num_hidden_layers"], chosen["pp"])),
            )
        )


def _no_layout_message(nodes, usable, facts, tp, pp, max_gpus):
    described = _describe_nodes(nodes, usable)
    if tp is not None and pp is not None:
        return (
            f"No placement of tensor_parallel_size={tp} x pipeline_parallel_size={pp} fits the nodes ({described}): "
            "every Ray worker gets the same number of GPUs, a multiple of the TP size, and a node holds whole "
            "workers. Choose sizes whose product the nodes can hold that way."
        )
    if tp is not None:
        return (
            "tensor_parallel_size={} cannot be placed on the nodes ({}){}: every Ray worker gets the same number "
            "of GPUs, a multiple of the TP size. Choose a TP size that divides the GPUs per node.".format(
                tp, described, f" with max_gpus={max_gpus}" if max_gpus else ""
            )
        )
    if pp is not None:
        return (
            "pipeline_parallel_size={} cannot be placed on the nodes ({}){} with a TP size valid for the model "
            "({}); leave pipeline_parallel_size unset to let the planner choose.".format(
                pp,
                described,
                f" with max_gpus={max_gpus}" if max_gpus else "",
                ", ".join(str(size) for size in valid_tensor_parallel_sizes(facts)),
            )
        )
    return f"No layout fits the nodes ({described}); check their gpus and max_gpus."


def _does_not_fit_message(model, nodes, layout, memory, options):
    facts = model["facts"]
    product = _product(nodes, layout["members"])
    short = memory["needed_bytes"] - memory["kv_cache_bytes"]
    text = (
        "{} does not fit on {} x {} with TP={}, PP={}: each GPU needs {} of weights + {} runtime overhead + {} of KV "
        "cache for one {}-token sequence, but {:.2g} x {} = {} is usable (short by {}).".format(
            facts.get("name") or "The model",
            layout["world"],
            product,
            layout["tp"],
            layout["pp"],
            _fmt_gib(memory["weights_bytes"]),
            _fmt_gib(memory["overhead_bytes"]),
            _fmt_gib(memory["needed_bytes"]),
            _fmt_int(options["max_model_len"]),
            options["gpu_memory_utilization"],
            _fmt_gib(memory["device_bytes"]),
            _fmt_gib(memory["usable_bytes"]),
            _fmt_gib(short),
        )
    )
    template = dict(nodes[layout["members"][0]])
    per_node = max(node["gpus"] for node in nodes)
    gpus, shapes = smallest_fitting_cluster(model, template, per_node, options)
    if gpus is None:
        return (
            text + f" No number of these GPUs holds it (beyond {largest_useful_world(facts, per_node)} GPUs neither "
            "PP, at most one stage per layer, nor TP inside a node can split it further); use GPUs with more memory, "
            "a shorter max_model_len or a quantized model."
        )
    return text + " It needs {} x {}: {}.".format(gpus, product, ", or ".join(shapes))


def _ray_layout(nodes, chosen, platform, head_gpus, reasons):
    head = nodes[0]
    unit = chosen["unit"]
    used = used_gpus_by_node(nodes, chosen)
    head_used = used.get(head["name"], 0)
    if platform == "hosts":
        workers = [{"name": node["name"], "num_gpus": used[node["name"]]} for node in nodes[1:] if node["name"] in used]
        idle = [node["name"] for node in nodes if node["name"] not in used and node["gpus"]]
        reasons.append(
            "Ray on hosts: the head {} starts with --num-gpus={} and {} worker host(s) with --num-gpus={}, so Ray "
            "registers exactly the {} GPUs of the plan.".format(
                head["name"],
                head_used,
                len(workers),
                "/".join(sorted({str(w["num_gpus"]) for w in workers})) or "-",
                chosen["world"],
            )
        )
        return {"hosts": {"head": {"name": head["name"], "num_gpus": head_used}, "workers": workers, "idle": idle}}
    # One Ray worker pod per unit of GPUs; the head pod carries one unit only when head_gpus asks for it.
    head_pod_gpus = unit if head_gpus is not False and head_used else 0
    pods_per_node = {}
    for index in chosen["members"]:
        name = nodes[index]["name"]
        pods = chosen["units_by_node"][index] - (1 if head_pod_gpus and index == 0 else 0)
        if pods:
            pods_per_node[name] = pods
    replicas = sum(pods_per_node.values())
    by_name = {node["name"]: node for node in nodes}
    cpus = [
        float(by_name[name]["cpus"]) / pods
        for name, pods in pods_per_node.items()
        if by_name[name].get("cpus") not in (None, "")
    ]
    memories = [
        by_name[name]["memory_mib"] // pods for name, pods in pods_per_node.items() if by_name[name].get("memory_mib")
    ]
    ray_nodes = replicas + (1 if head_pod_gpus else 0)
    if head_pod_gpus:
        reasons.append(
            f"KubeRay: the head pod requests {head_pod_gpus} GPU(s) on {head['name']} and is itself one of the "
            f"{ray_nodes} Ray nodes with GPUs, so the worker group has replicas={replicas}, not {ray_nodes}: counting "
            "the head again would ask for a pod no node can hold."
        )
    else:
        reasons.append(
            "KubeRay: the head pod requests no GPU (num-gpus 0) and schedules beside a worker, so it is not counted "
            "as a GPU node; the {} GPU(s) of the plan run in replicas={} worker pod(s) ({}).".format(
                chosen["world"], replicas, ", ".join("{}: {}".format(*item) for item in pods_per_node.items())
            )
        )
    reasons.append(
        "KubeRay worker group: numOfHosts=1 because each replica is one pod on one node (numOfHosts>1 multiplies "
        f"pods per replica for multi-host slices), and num-gpus={unit} per pod equals its nvidia.com/gpu limit, which "
        "is what Ray detects in the container."
    )
    return {
        "kuberay": {
            "head": {"num_gpus": head_pod_gpus, "node": head["name"] if head_pod_gpus else None},
            "worker_group": {
                "replicas": replicas,
                "min_replicas": replicas,
                "max_replicas": replicas,
                "num_of_hosts": 1,
                "num_gpus": unit,
                "gpu_product": _product(nodes, chosen["members"]),
                "cpus": round(min(cpus), 3) if cpus else None,
                "memory_mib": min(memories) if memories else None,
                "pods_per_node": pods_per_node,
            },
        }
    }


def _cpu_plan(nodes, model, platform, tp, pp, kv_space_gib, options, length_given, reasons, warnings):
    tp = tp or 1
    pp = pp or 1
    world = tp * pp
    if world > 1:
        warnings.append(
            f"TP={tp} x PP={pp} on CPU: vLLM's CPU backend runs one worker per NUMA node or host; check the "
            "nodes have that many."
        )
    head = nodes[0]
    ram_mib = min((node["memory_mib"] for node in nodes if node["memory_mib"]), default=None)
    weights_per_worker = model["weight_bytes"] / float(world)
    overhead = options["runtime_overhead_gib"] * GIB
    if kv_space_gib is None:
        if not ram_mib:
            raise PlanError(
                "The nodes have no GPUs and no memory_mib, so the CPU KV cache cannot be sized; pass "
                "cpu_kvcache_space_gib (vLLM's VLLM_CPU_KVCACHE_SPACE) or the nodes' memory_mib."
            )
        # Without VLLM_CPU_KVCACHE_SPACE vLLM takes gpu_memory_utilization of RAM minus what the process holds.
        kv_bytes = ram_mib * MIB * options["gpu_memory_utilization"] - weights_per_worker - overhead
        kv_space_gib = max(int(kv_bytes // GIB), 0)
        reasons.append(
            "No cpu_kvcache_space_gib given: {:.2g} of {} RAM minus weights and overhead leaves {} GiB, "
            "passed to vLLM as VLLM_CPU_KVCACHE_SPACE.".format(
                options["gpu_memory_utilization"], _fmt_gib(ram_mib * MIB), kv_space_gib
            )
        )
    elif kv_space_gib < 1:
        raise PlanError(
            f"cpu_kvcache_space_gib={kv_space_gib} must be at least 1 (vLLM reads VLLM_CPU_KVCACHE_SPACE as whole GiB)."
        )
    else:
        reasons.append(
            f"On CPU the KV cache is VLLM_CPU_KVCACHE_SPACE={kv_space_gib} GiB per worker, not a share of "
            "gpu_memory_utilization."
        )
    kv_bytes = int(kv_space_gib) * GIB

    def cpu_stage_memory(max_model_len):
        return stage_memory(
            model,
            tp,
            pp,
            (ram_mib or 0) * MIB,
            kv_bytes + weights_per_worker + overhead,
            overhead,
            CPU_BLOCK_SIZE,
            max_model_len,
            kv_space_bytes=kv_bytes,
        )

    memory = cpu_stage_memory(options["max_model_len"])
    if not memory["fits"]:
        if length_given:
            raise PlanError(
                "The CPU KV cache of {} GiB holds {} tokens per worker, less than one max_model_len={} sequence "
                "({}); raise cpu_kvcache_space_gib to at least {} or lower max_model_len.".format(
                    kv_space_gib,
                    _fmt_int(memory["tokens"]),
                    _fmt_int(options["max_model_len"]),
                    _fmt_gib(memory["needed_bytes"]),
                    int(math.ceil(gib(memory["needed_bytes"]))),
                )
            )
        fitting = memory["blocks"] * CPU_BLOCK_SIZE
        if fitting < 1:
            raise PlanError(
                f"The CPU KV cache of {kv_space_gib} GiB holds less than one block; raise cpu_kvcache_space_gib."
            )
        warnings.append(
            "The model's max_position_embeddings={} does not fit the CPU KV cache; max_model_len is "
            "lowered to {}.".format(_fmt_int(options["max_model_len"]), _fmt_int(fitting))
        )
        options["max_model_len"] = fitting
        memory = cpu_stage_memory(options["max_model_len"])
    needed_ram = memory["weights_bytes"] + kv_bytes + overhead
    if ram_mib:
        if needed_ram > ram_mib * MIB:
            raise PlanError(
                "The CPU plan needs {} of RAM per worker ({} weights + {} GiB KV cache + {} overhead) but the "
                "smallest node has {}; lower cpu_kvcache_space_gib or use a node with more memory.".format(
                    _fmt_gib(needed_ram),
                    _fmt_gib(memory["weights_bytes"]),
                    kv_space_gib,
                    _fmt_gib(overhead),
                    _fmt_gib(ram_mib * MIB),
                )
            )
        reasons.append(
            "Each CPU worker holds {} of weights + {} GiB KV cache + {} overhead in {} of RAM: {} tokens, "
            "{:.2f} sequences of {} tokens.".format(
                _fmt_gib(memory["weights_bytes"]),
                kv_space_gib,
                _fmt_gib(overhead),
                _fmt_gib(ram_mib * MIB),
                _fmt_int(memory["tokens"]),
                memory["max_concurrency"],
                _fmt_int(options["max_model_len"]),
            )
        )
    else:
        warnings.append(
            f"The nodes report no memory_mib, so the planner cannot check that {_fmt_gib(needed_ram)} of RAM per "
            "worker is there."
        )
    result_memory = _memory_result(memory, options["max_model_len"], "CPU")
    result_memory["cpu_kvcache_space_gib"] = int(kv_space_gib)
    used = nodes[:world] if world <= len(nodes) else nodes
    if platform == "hosts":
        ray_layout = {
            "hosts": {
                "head": {"name": head["name"], "num_gpus": 0},
                "workers": [{"name": node["name"], "num_gpus": 0} for node in nodes[1:]],
                "idle": [],
            }
        }
    else:
        ray_layout = {
            "kuberay": {
                "head": {"num_gpus": 0, "node": None},
                "worker_group": {
                    "replicas": len(nodes),
                    "min_replicas": len(nodes),
                    "max_replicas": len(nodes),
                    "num_of_hosts": 1,
                    "num_gpus": 0,
                    "gpu_product": "",
                    "cpus": min((node["cpus"] for node in nodes if node["cpus"]), default=None),
                    "memory_mib": ram_mib,
                    "pods_per_node": {node["name"]: 1 for node in nodes},
                },
            }
        }
    reasons.append(f"No node has a GPU, so vLLM runs on CPU with TP={tp}, PP={pp} (world size {world}).")
    return {
        "tensor_parallel_size": tp,
        "pipeline_parallel_size": pp,
        "world_size": world,
        "gpus_total": 0,
        "gpus_used": 0,
        "nodes_total": len(nodes),
        "nodes_used": len(used),
        "cross_node_tensor_parallel": False,
        "max_model_len": options["max_model_len"],
        "memory": result_memory,
        "ray_layout": ray_layout,
    }


# ---------------------------------------------------------------------------------------------------------------------
# what vLLM reports, to hold the plan against

# vLLM 0.32, v1/core/kv_cache_utils.py: "%s KV cache size: %s tokens, Maximum concurrency for %s tokens per request:
# %.2fx", the first field naming the pool (GPU, CPU).
VLLM_KV_CAPACITY = re.compile(
    r"(?P<pool>\w+) KV cache size: (?P<tokens>[\d,]+) tokens, Maximum concurrency for (?P<max_model_len>[\d,]+) "
    r"tokens per request: (?P<concurrency>[\d.]+)x"
)
# vLLM 0.32, v1/worker/cpu_worker.py, when VLLM_CPU_KVCACHE_SPACE (or --kv-cache-memory-bytes) sets the size.
VLLM_CPU_KV_SPACE = re.compile(r"Explicitly set \((?P<kv_gib>[\d.]+)/(?P<total_gib>[\d.]+)\) GiB for KV cache")


def kv_capacity_from_vllm_log(log_text):
    """The KV cache vLLM reports in its start-up log, or None when the log has no such line yet.

    ``{"pool", "tokens", "max_model_len", "max_concurrency", "cpu_kvcache_space_gib", "node_memory_gib"}``; the
    last two are None unless a CPU worker logged an explicit KV cache size.
    """
    capacity = VLLM_KV_CAPACITY.search(log_text or "")
    if capacity is None:
        return None
    space = VLLM_CPU_KV_SPACE.search(log_text)
    return {
        "pool": capacity.group("pool"),
        "tokens": int(capacity.group("tokens").replace(",", "")),
        "max_model_len": int(capacity.group("max_model_len").replace(",", "")),
        "max_concurrency": float(capacity.group("concurrency")),
        "cpu_kvcache_space_gib": float(space.group("kv_gib")) if space else None,
        "node_memory_gib": float(space.group("total_gib")) if space else None,
    }


# ---------------------------------------------------------------------------------------------------------------------
# the operator's view


def format_plan_table(plan):
    """A short fixed-width table of the plan: nodes, GPUs used, TP, PP, memory per GPU and KV tokens."""
    memory = plan["memory"]
    device = plan.get("device", "GPU")
    if device == "GPU":
        gpus = "{} of {}".format(plan["gpus_used"], plan["gpus_total"])
        per_device = "{:.1f} + {:.1f} + {:.1f} of {:.1f} GiB".format(
            memory["weights_gib"], memory["runtime_overhead_gib"], memory["kv_cache_gib"], memory["usable_gib"]
        )
    else:
        gpus = "CPU"
        per_device = "{:.1f} + {:.1f} + {:.1f} GiB RAM".format(
            memory["weights_gib"], memory["runtime_overhead_gib"], memory["kv_cache_gib"]
        )
    header = [
        "nodes",
        "GPUs used",
        "TP",
        "PP",
        f"per {device}: weights + overhead + KV",
        "KV tokens",
        "seqs x max_model_len",
    ]
    row = [
        "{} of {}".format(plan["nodes_used"], plan["nodes_total"]),
        gpus,
        str(plan["tensor_parallel_size"]),
        str(plan["pipeline_parallel_size"]),
        per_device,
        _fmt_int(memory["kv_cache_tokens"]),
        "{:.2f} x {}".format(memory["max_concurrency"], _fmt_int(plan["max_model_len"])),
    ]
    widths = [max(len(a), len(b)) for a, b in zip(header, row)]
    title = "deployment plan: {} on {} ({}, KV {})".format(
        (plan.get("model") or {}).get("name") or "model",
        plan.get("platform", ""),
        plan.get("dtype", ""),
        plan.get("kv_cache_dtype", ""),
    )
    lines = [
        title,
        "  ".join(cell.ljust(width) for cell, width in zip(header, widths)).rstrip(),
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip(),
    ]
    return "\n".join(lines)


def plan_from_options(params):
    """Build the plan from the module's parameters (a dict shaped like its argument spec)."""
    model = resolve_model(
        params.get("model_path"), params.get("model_config"), params.get("model_params_b"), params.get("model_name")
    )
    return build_plan(
        nodes=params.get("nodes"),
        model=model,
        platform=params.get("platform"),
        dtype=params.get("dtype") or "auto",
        kv_cache_dtype=params.get("kv_cache_dtype") or "auto",
        max_model_len=params.get("max_model_len"),
        gpu_memory_utilization=params.get("gpu_memory_utilization")
        if params.get("gpu_memory_utilization") is not None
        else 0.9,
        tensor_parallel_size=params.get("tensor_parallel_size"),
        pipeline_parallel_size=params.get("pipeline_parallel_size"),
        head_gpus=params.get("head_gpus"),
        max_gpus=params.get("max_gpus"),
        allow_cross_node_tp=bool(params.get("allow_cross_node_tp")),
        cpu_kvcache_space_gib=params.get("cpu_kvcache_space_gib"),
        runtime_overhead_gib=params.get("runtime_overhead_gib"),
    )
