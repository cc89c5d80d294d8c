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

How a plan is made: ``PlanRequest`` holds the module's options and validates all of them once, when it is built;
``Planner(request).plan()`` then sizes the model (dtypes, weight bytes), chooses the replicas and their layout,
checks a user's KubeRay layout against that choice, and assembles the result dict. The planner owns the reasons and
warnings its steps add. Messages name options through ``request.name(option)``, so a playbook can have them name its
own variables (``option_names``).

How replicas are chosen (``ReplicaSearch``): one replica is the fewest GPUs that hold the weights and the KV cache of
``target_concurrency`` sequences of ``max_model_len`` tokens (vLLM's Maximum concurrency of the replica's tightest
GPU: with TP the KV heads are split and with PP the layers, so every GPU of a replica holds the same tokens). It sits
inside one node with TP (PP=1) when a node holds it, else over whole nodes with PP across them; the given TP or PP
fix its shape. As many replicas run as the GPUs hold, or ``replicas``, or the layout is sized for ``max_replicas``
(autoscaling, starting with ``min_replicas``); GPUs left over grow each replica when that keeps their number. When
no replica holds the target, one instance takes the largest layout over the GPUs, with ``max_model_len`` lowered when
it was not given, as the planner did before replicas.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections import namedtuple

from ansible_collections.llmops.ray_vllm.plugins.module_utils._model_facts import (
    SAFETENSORS_DTYPE_BYTES,
    ModelFactsError,
    architecture_facts,
    dtype_bytes,
    embedding_parameters,
    kv_elements_per_token_per_layer,
    load_model_dir,
)
from ansible_collections.llmops.ray_vllm.plugins.module_utils._plan_placement import (
    DEFAULT_WORKER_REQUEST_RATIO,
    place_cpu_pods,
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

# The module's defaults, here once: its argument spec takes them from these names.
DEFAULT_DTYPE = "auto"
DEFAULT_KV_CACHE_DTYPE = "auto"
DEFAULT_GPU_MEMORY_UTILIZATION = 0.9
DEFAULT_ALLOW_CROSS_NODE_TP = False
DEFAULT_DEVICE = "auto"
# Full-length sequences each replica must hold in its KV cache at once; the replica search sizes replicas for it.
DEFAULT_TARGET_CONCURRENCY = 8

PLATFORMS = ("kubernetes", "hosts")
# What vLLM serves on: auto (GPUs where a node has one, else CPUs), or either on purpose.
DEVICES = ("auto", "gpu", "cpu")
DTYPES = ("auto", "bfloat16", "float16", "float32", "fp8")
# vLLM 0.32's --kv-cache-dtype choices (vllm/config/cache.py CacheDType) that the memory model sizes; no float32.
KV_CACHE_DTYPES = ("auto", "bfloat16", "float16", "fp8", "fp8_e4m3", "fp8_e5m2")

# The options a message may name, which are the keys option_names accepts.
OPTION_NAMES = (
    "nodes",
    "model_path",
    "model_config",
    "model_params_b",
    "model_name",
    "dtype",
    "kv_cache_dtype",
    "max_model_len",
    "gpu_memory_utilization",
    "tensor_parallel_size",
    "pipeline_parallel_size",
    "platform",
    "head_gpus",
    "max_gpus",
    "allow_cross_node_tp",
    "cpu_kvcache_space_gib",
    "runtime_overhead_gib",
    "kuberay_layout",
    "cpu_pods",
    "worker_request_ratio",
    "device",
    "replicas",
    "min_replicas",
    "max_replicas",
    "gpu_share",
    "target_concurrency",
)

# The keys of ray_layout.kuberay, which a kuberay_layout override may set.
KUBERAY_KEYS = {
    "head": ("num_gpus", "node"),
    "worker_group": (
        "replicas",
        "min_replicas",
        "max_replicas",
        "num_of_hosts",
        "num_gpus",
        "gpu_product",
        "cpus",
        "memory_mib",
        "pods_per_node",
    ),
}
# The least each count of a KubeRay layout may be; replicas may be 0 when the head pod carries every GPU.
KUBERAY_MINIMUMS = {"num_gpus": 0, "replicas": 0, "min_replicas": 0, "max_replicas": 0, "num_of_hosts": 1}

# vLLM 0.32's default max_num_seqs for its OpenAI server (EngineArgs._set_default_max_num_seqs_and_batched_tokens_args):
# 1024 on GPUs of at least 70 GiB other than the A100 (H100, H200, B200), 256 on other GPUs, 128 per worker on CPU.
# A replica runs at most that many sequences at once, so Ray Serve sends it no more (serve.max_ongoing_requests).
VLLM_MAX_NUM_SEQS_LARGE_GPU = 1024
VLLM_MAX_NUM_SEQS_GPU = 256
VLLM_MAX_NUM_SEQS_CPU_WORKER = 128
VLLM_LARGE_GPU_MIB = 70 * 1024

# The largest single node the smallest-cluster search proposes (HGX-class servers carry 8 GPUs).
LARGEST_SINGLE_NODE = 8
# The smallest-cluster search stops here; a model needing more is reported as not fitting at all.
LARGEST_CLUSTER_GPUS = 4096

# What the layout search may choose from: an explicit TP or PP, a GPU cap, whether a TP group may span nodes.
LayoutWish = namedtuple("LayoutWish", "tp pp max_gpus cross_node", defaults=(None, None, None, False))
ANY_LAYOUT = LayoutWish()
# What one device may hold: its memory, the share vLLM may use, the per-device reserve, and the KV block size;
# kv_space_bytes fixes the KV cache (CPU's VLLM_CPU_KVCACHE_SPACE) instead of taking what is left.
MemoryBudget = namedtuple(
    "MemoryBudget", "device_bytes usable_bytes overhead_bytes block_size kv_space_bytes", defaults=(None,)
)
# The memory settings a layout is checked with; the planner lowers max_model_len when the model's own does not fit.
MemorySettings = namedtuple("MemorySettings", "gpu_memory_utilization runtime_overhead_gib max_model_len")


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


def own_name(option):
    """How messages name an option when the caller maps no names: by the option's own name."""
    return option


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


def check_tensor_parallel_size(facts, size, name=own_name):
    """None when ``size`` is a valid TP size for the model, else the message saying why and what to choose."""
    heads = facts["num_attention_heads"]
    kv_heads = facts["num_key_value_heads"]
    choices = ", ".join(str(value) for value in valid_tensor_parallel_sizes(facts))
    option = name("tensor_parallel_size")
    if size < 1:
        return f"{option}={size} must be at least 1; choose one of {choices}."
    if heads % size:
        return f"{option}={size} does not divide num_attention_heads={heads} of the model; choose one of {choices}."
    if kv_heads % size and size % kv_heads:
        return (
            f"{option}={size} neither divides num_key_value_heads={kv_heads} of the model nor is a "
            f"multiple of it, so vLLM cannot shard or replicate the KV heads; choose one of {choices}."
        )
    return None


def pipeline_stage_layers(num_layers, pp_size):
    """Layers per pipeline stage, as vLLM's get_pp_indices splits them (remainder to the stages before the last)."""
    partitions = [num_layers // pp_size] * pp_size
    for index in range(2, num_layers % pp_size + 2):
        partitions[-index] += 1
    return partitions


# Messages name each node up to this many; more are grouped by count, so a 1,000-node plan stays readable.
MOST_NODES_NAMED = 8


def _describe_nodes(nodes, usable):
    return _per_node((node["name"], count) for node, count in zip(nodes, usable))


def _per_node(pairs):
    """``gpu-0: 1, gpu-1: 1`` for ``(node name, count)`` pairs; above MOST_NODES_NAMED nodes, ``64 nodes with 8``."""
    pairs = list(pairs)
    if len(pairs) <= MOST_NODES_NAMED:
        return ", ".join(f"{name}: {count}" for name, count in pairs)
    groups = {}
    for _name, count in pairs:
        groups[count] = groups.get(count, 0) + 1
    return ", ".join(
        "{} node{} with {}".format(_fmt_int(nodes), "" if nodes == 1 else "s", count)
        for count, nodes in sorted(groups.items(), reverse=True)
    )


def _product(nodes, members):
    products = sorted({nodes[index]["gpu_product"] for index in members})
    return " / ".join(products)


# ---------------------------------------------------------------------------------------------------------------------
# inputs: option names, nodes, the head's GPUs, the model


class OptionNames:
    """How messages name each option: the caller's name from option_names, else the option's own name."""

    def __init__(self, mapping=None):
        mapping = {} if mapping is None else mapping
        if not isinstance(mapping, dict):
            raise PlanError(
                f"option_names must be a dict from option to the name messages use for it; got {mapping!r}."
            )
        unknown = sorted(str(key) for key in mapping if key not in OPTION_NAMES)
        if unknown:
            raise PlanError(
                "option_names has unknown key(s) {}; its keys are deployment_plan's options: {}.".format(
                    ", ".join(unknown), ", ".join(OPTION_NAMES)
                )
            )
        for key, value in mapping.items():
            if not isinstance(value, str) or not value.strip():
                raise PlanError(
                    f"option_names.{key} is {value!r}; give the name messages should use for {key}, such as the "
                    "variable that sets it."
                )
        self.mapping = {key: value.strip() for key, value in mapping.items()}

    def __call__(self, option):
        return self.mapping.get(option, option)


def normalise_nodes(nodes, name=own_name):
    """Validated copies of the node dicts; raises PlanError naming the bad entry."""
    option = name("nodes")
    if not nodes:
        raise PlanError(
            f"{option} is empty; pass one entry per node ({{name, gpus, gpu_memory_mib, ...}}), for example "
            "from the cuda_check facts of each host or from the Kubernetes nodes' allocatable."
        )
    result = []
    for position, node in enumerate(nodes):
        where = f"{option}[{position}]"
        node_name = _node_name(node, where)
        if any(seen["name"] == node_name for seen in result):
            raise PlanError(f"{where} repeats the name {node_name!r}; node names must be unique.")
        result.append(_normalise_node(node, node_name, where))
    return result


def _node_name(node, where):
    if not isinstance(node, dict):
        raise PlanError(f"{where} is {node!r}; each node must be a dict with at least name and gpus.")
    node_name = str(node.get("name") or "").strip()
    if not node_name:
        raise PlanError(f"{where} has no name; give every node the name of its host or Kubernetes node.")
    return node_name


def _normalise_node(node, node_name, where):
    gpus = int(node.get("gpus") or 0)
    if gpus < 0:
        raise PlanError(f"{where} ({node_name}) has gpus={gpus}; the GPU count cannot be negative.")
    memory = node.get("gpu_memory_mib")
    memory = int(memory) if memory not in (None, "") else None
    if gpus and not memory:
        raise PlanError(
            f"{where} ({node_name}) has {gpus} GPU(s) but no gpu_memory_mib; pass the memory of one GPU in "
            "MiB as nvidia-smi reports it (memory.total), e.g. 81920 for an A100-80GB."
        )
    return {
        "name": node_name,
        "gpus": gpus,
        "gpu_memory_mib": memory,
        "gpu_product": str(node.get("gpu_product") or ("GPU" if gpus else "")),
        "cpus": node.get("cpus"),
        "memory_mib": int(node["memory_mib"]) if node.get("memory_mib") not in (None, "") else None,
    }


def normalise_head_gpus(head_gpus, platform, name=own_name):
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
        raise PlanError(f"{name('head_gpus')}={head_gpus!r} must be true, false or a GPU count.") from None
    if count < 0:
        raise PlanError(f"{name('head_gpus')}={count} cannot be negative.")
    return count if count else False


def usable_gpus(nodes, platform, head_gpus):
    """GPUs each node may give vLLM: all, except those of a hosts head beyond ``head_gpus``."""
    usable = [node["gpus"] for node in nodes]
    # On Kubernetes a head without a GPU request is a pod beside a worker pod, so every node's GPUs still serve.
    if head_gpus is True or (platform == "kubernetes" and head_gpus is False):
        return usable
    cap = 0 if head_gpus is False else int(head_gpus)
    usable[0] = min(cap, nodes[0]["gpus"])
    return usable


def resolve_model(model_path=None, model_config=None, model_params_b=None, model_name=None, name=own_name):
    """``{"facts", "weights", "params_b"}``; ``weights`` is None when only a parameter count is known."""
    model = _resolve_model(model_path, model_config, model_params_b, name)
    if model_name:
        model["facts"]["name"] = model_name
    return model


def _resolve_model(model_path, model_config, model_params_b, name):
    path, config, params = name("model_path"), name("model_config"), name("model_params_b")
    if model_path and model_config:
        raise PlanError(f"Pass either {path} or {config}, not both.")
    try:
        if model_path:
            loaded = load_model_dir(model_path)
            return {"facts": loaded["facts"], "weights": loaded["weights"], "params_b": model_params_b}
        if model_config is None:
            raise PlanError(
                f"Pass the model: {path} (a directory with config.json and safetensors files) or "
                f"{config} (config.json as a dict) with {params}."
            )
        facts = architecture_facts(model_config)
    except ModelFactsError as error:
        raise PlanError(str(error)) from error
    if not model_params_b or float(model_params_b) <= 0:
        raise PlanError(
            f"{config} was given without {params}; pass the parameter count in billions "
            f"(e.g. {params}=70.6) or point {path} at the downloaded model for exact sizes."
        )
    return {"facts": facts, "weights": None, "params_b": float(model_params_b)}


def unknown_quantization_message(model, name=own_name):
    """The message when only a parameter count is known and the bytes per quantized weight are not, else None."""
    quant = model["facts"].get("quantization")
    if model.get("weights") is not None or not quant or quant["weight_bytes"] is not None:
        return None
    return (
        "The checkpoint is quantized with {!r}, whose bytes per weight the planner does not know; pass "
        "{} so the exact weight bytes are read from the safetensors files.".format(quant["method"], name("model_path"))
    )


# ---------------------------------------------------------------------------------------------------------------------
# sizing: dtypes and weight bytes


def _dominant_safetensors_dtype_bytes(weights):
    by_dtype = (weights or {}).get("bytes_by_dtype") or {}
    if not by_dtype:
        return None
    dominant = max(by_dtype.items(), key=lambda item: item[1])[0]
    return SAFETENSORS_DTYPE_BYTES.get(dominant)


def resolve_dtypes(request):
    """``{"serve", "serve_bytes", "stored", "stored_bytes", "online_fp8", "kv", "kv_bytes", "notes"}``.

    ``serve`` is the activation dtype vLLM runs with (its --dtype); weights of a pre-quantized checkpoint or of an
    online FP8 plan take fewer bytes than that.
    """
    facts, dtype = request.model["facts"], request.dtype
    notes = []
    stored = facts.get("torch_dtype")
    stored_bytes = dtype_bytes(stored) or _dominant_safetensors_dtype_bytes(request.model.get("weights"))
    if stored_bytes is None:
        stored, stored_bytes = "bfloat16", 2
        notes.append("The config names no torch_dtype, so the planner assumes the weights are stored as bfloat16.")
    serve, note = _serving_dtype(stored, request)
    notes.extend([note] if note else [])
    online_fp8 = dtype == "fp8" and not facts.get("quantization")
    if dtype == "fp8" and facts.get("quantization"):
        notes.append(
            "{}=fp8 is already how the checkpoint is quantized ({}); no online quantization is added.".format(
                request.name("dtype"), facts["quantization"]["method"]
            )
        )
    kv = serve if request.kv_cache_dtype == "auto" else request.kv_cache_dtype
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


def _serving_dtype(stored, request):
    """``(dtype vLLM serves with, the note saying why when it is not what the checkpoint stores, or None)``."""
    dtype = request.dtype
    if dtype not in ("auto", "fp8"):
        return dtype, None
    serve = stored if dtype_bytes(stored) in (2, 4) else "bfloat16"
    if serve == "float32" and request.device == "GPU":
        # vLLM's auto dtype downcasts float32 checkpoints to the platform's preferred 16-bit type.
        return (
            "bfloat16",
            f"{request.name('dtype')}=auto serves the float32 checkpoint as bfloat16 on GPUs, as vLLM does.",
        )
    if serve == "float32" and dtype == "fp8":
        return "bfloat16", None
    return serve, None


def serving_weight_bytes(model, dtypes, name=own_name):
    """``(total_bytes, embedding_bytes, source)`` of the weights as they sit in device memory."""
    if model.get("weights") is not None:
        return _loaded_weight_bytes(model, dtypes)
    problem = unknown_quantization_message(model, name)
    if problem:
        raise PlanError(problem)
    return _estimated_weight_bytes(model, dtypes, name)


def _loaded_weight_bytes(model, dtypes):
    facts, weights = model["facts"], model["weights"]
    embed_params = embedding_parameters(facts)
    serve_bytes = dtypes["serve_bytes"]
    disk = weights["bytes"]
    source = "exact, {}".format(weights["source"])
    if facts.get("quantization"):
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


def _estimated_weight_bytes(model, dtypes, name):
    facts, params_b = model["facts"], model["params_b"]
    quant = facts.get("quantization")
    serve_bytes = dtypes["serve_bytes"]
    params = int(params_b * 1e9)
    embed_params = min(embedding_parameters(facts), params)
    embed = embed_params * serve_bytes
    estimated = f"estimated from {name('model_params_b')}={params_b:g}"
    if quant:
        body = (params - embed_params) * quant["weight_bytes"]
        return (
            int(body + embed),
            int(embed),
            "{} with {} weights ({:g} byte(s) each)".format(estimated, quant["method"], quant["weight_bytes"]),
        )
    if dtypes["online_fp8"]:
        return (
            int(params - embed_params + embed),
            int(embed),
            f"{estimated}, linear layers quantized to FP8 when loaded",
        )
    return (
        int(params * serve_bytes),
        int(embed),
        "{} at {} bytes per parameter ({})".format(estimated, serve_bytes, dtypes["serve"]),
    )


# ---------------------------------------------------------------------------------------------------------------------
# memory of one layout


def stage_memory(model, tp, pp, budget, max_model_len):
    """Memory per device of each pipeline stage (``budget``: a MemoryBudget); returns the tightest stage's numbers.

    With ``budget.kv_space_bytes`` the KV cache has that fixed size (CPU); otherwise it is what is left of
    ``budget.usable_bytes`` after weights and overhead.
    """
    layers = pipeline_stage_layers(model["facts"]["num_hidden_layers"], pp)
    needed_blocks = int(math.ceil(max_model_len / float(budget.block_size)))
    stages = []
    for index, count in enumerate(layers):
        weights_per_device, bytes_per_token = _stage_load(model, tp, layers, index)
        stage = _stage_room(budget, weights_per_device, bytes_per_token, needed_blocks)
        stage.update(stage=index, layers=count)
        stages.append(stage)
    tightest = min(stages, key=lambda stage: (stage["margin_bytes"], stage["tokens"]))
    blocks = min(stage["blocks"] for stage in stages)
    return {
        "device_bytes": budget.device_bytes,
        "usable_bytes": budget.usable_bytes,
        "overhead_bytes": budget.overhead_bytes,
        "weights_bytes": tightest["weights_bytes"],
        "kv_cache_bytes": tightest["kv_cache_bytes"],
        "bytes_per_token": tightest["bytes_per_token"],
        "needed_bytes": tightest["needed_bytes"],
        "margin_bytes": tightest["margin_bytes"],
        "tokens": min(stage["tokens"] for stage in stages),
        "blocks": blocks,
        "block_size": budget.block_size,
        "max_concurrency": blocks / float(needed_blocks) if needed_blocks else 0.0,
        "fits": all(stage["blocks"] >= needed_blocks for stage in stages),
        "stage_layers": layers,
        "tightest_stage": tightest["stage"],
    }


def _stage_load(model, tp, layers, index):
    """``(weight bytes per device, KV bytes per token)`` of pipeline stage ``index``."""
    facts = model["facts"]
    pp = len(layers)
    embed_total = model["embedding_bytes"]
    # The input embedding sits on the first stage and the output head on the last; tied embeddings mean each of the
    # two stages holds a copy when they differ.
    embed_one = embed_total if facts["tie_word_embeddings"] else embed_total / 2.0
    body_per_layer = (model["weight_bytes"] - embed_total) / float(facts["num_hidden_layers"])
    stage_weights = layers[index] * body_per_layer
    if pp == 1:
        stage_weights += embed_total
    else:
        if index == 0:
            stage_weights += embed_one
        if index == pp - 1:
            stage_weights += embed_one
    bytes_per_token = layers[index] * kv_elements_per_token_per_layer(facts, tp) * model["kv_bytes"]
    return stage_weights / tp, bytes_per_token


def _stage_room(budget, weights_per_device, bytes_per_token, needed_blocks):
    if budget.kv_space_bytes is None:
        kv_bytes = budget.usable_bytes - weights_per_device - budget.overhead_bytes
    else:
        kv_bytes = budget.kv_space_bytes
    blocks = int(kv_bytes // (budget.block_size * bytes_per_token)) if kv_bytes > 0 else 0
    needed_bytes = needed_blocks * budget.block_size * bytes_per_token
    return {
        "weights_bytes": weights_per_device,
        "kv_cache_bytes": kv_bytes,
        "bytes_per_token": bytes_per_token,
        "blocks": blocks,
        "tokens": blocks * budget.block_size,
        "needed_bytes": needed_bytes,
        "margin_bytes": kv_bytes - needed_bytes,
    }


def layout_memory(model, nodes, layout, settings):
    """stage_memory of a GPU layout on the smallest GPU among its nodes (``settings``: a MemorySettings)."""
    device_bytes = min(nodes[index]["gpu_memory_mib"] for index in layout["members"]) * MIB
    budget = gpu_budget(device_bytes, settings)
    return stage_memory(model, layout["tp"], layout["pp"], budget, settings.max_model_len)


def gpu_budget(device_bytes, settings):
    """The MemoryBudget of one GPU of ``device_bytes`` under ``settings`` (a MemorySettings)."""
    return MemoryBudget(
        device_bytes=device_bytes,
        usable_bytes=device_bytes * settings.gpu_memory_utilization,
        overhead_bytes=settings.runtime_overhead_gib * GIB,
        block_size=GPU_BLOCK_SIZE,
    )


# ---------------------------------------------------------------------------------------------------------------------
# layouts


def candidate_layouts(usable, facts, wish=ANY_LAYOUT):
    """Every layout the nodes' ``usable`` GPUs allow (``wish``: a LayoutWish), in the order the planner prefers them.

    A layout gives each Ray worker ``unit`` GPUs (one KubeRay worker pod, or a share of a host); a node holds
    ``usable // unit`` workers. TP groups stay inside a worker unless TP exceeds every node (cross-node TP).
    Preference: most GPUs first (the cluster is dedicated to the model), TP inside a node before TP across nodes,
    bigger workers, then the largest TP (TP all-reduces every layer; PP only passes activations between stages).
    Without a requested size every worker is used; a requested TP or PP may leave workers out.
    """
    return _LayoutSearch(usable, facts, wish).layouts()


class _LayoutSearch:
    """candidate_layouts' search: what it was asked for, and the model's limits it checks each layout against."""

    def __init__(self, usable, facts, wish):
        self.usable = usable
        self.wish = wish
        self.largest = max(usable) if usable else 0
        self.valid_tp = sorted(valid_tensor_parallel_sizes(facts), reverse=True)
        self.layers = facts["num_hidden_layers"]
        self.max_gpus = wish.max_gpus
        if wish.tp is not None and wish.pp is not None:
            self.max_gpus = wish.tp * wish.pp if wish.max_gpus is None else min(wish.max_gpus, wish.tp * wish.pp)

    def layouts(self):
        layouts = []
        for unit in range(self.largest, 0, -1):
            for wanted in self._worker_counts(unit):
                sizes = self._tp_sizes(unit, wanted)
                if sizes:
                    # Placing costs a pass over the nodes, so only counts some TP size suits are placed.
                    layouts.extend(self._layouts_for(self._place(unit, wanted), unit, sizes))
        # Stable sort keeps bigger workers and then bigger TP first inside each world size.
        layouts.sort(key=lambda layout: (-layout["world"], layout["cross_node_tp"]))
        if not self.wish.cross_node and self.wish.tp is None:
            layouts = [layout for layout in layouts if not layout["cross_node_tp"]]
        return layouts

    def _worker_counts(self, unit):
        """How many workers of ``unit`` GPUs to try: all that fit, or every count down to one for a requested size."""
        available = sum(count // unit for count in self.usable)
        if self.max_gpus is not None:
            available = min(available, self.max_gpus // unit)
        if self.wish.tp is not None or self.wish.pp is not None:
            return range(available, 0, -1)
        return [available] if available > 0 else []

    def _place(self, unit, wanted):
        """``{node index: workers}``: ``wanted`` workers of ``unit`` GPUs, filling the nodes in order."""
        return fill_nodes(self.usable, unit, wanted)

    def _tp_sizes(self, unit, units):
        """The TP sizes ``units`` workers of ``unit`` GPUs allow: the requested one, placeable, whose stages number at
        most the layers (and the requested PP), largest first."""
        world = unit * units
        return [
            size
            for size in self.valid_tp
            if (self.wish.tp is None or size == self.wish.tp)
            and self._tp_placeable(size, unit, units)
            and world // size <= self.layers
            and (self.wish.pp is None or world // size == self.wish.pp)
        ]

    def _layouts_for(self, units_by_node, unit, sizes):
        world = unit * sum(units_by_node.values())
        return [
            {
                "tp": size,
                "pp": world // size,
                "unit": unit,
                "units_by_node": units_by_node,
                "members": sorted(units_by_node),
                "world": world,
                "cross_node_tp": size > unit,
            }
            for size in sizes
        ]

    def _tp_placeable(self, size, unit, units):
        if size <= unit:
            return unit % size == 0
        # A TP group wider than a worker only makes sense when it is wider than every node, over whole workers.
        return size > self.largest and size % unit == 0 and units % (size // unit) == 0


def fill_nodes(usable, unit, wanted, per_node_group=1):
    """``{node index: workers}``: ``wanted`` workers of ``unit`` GPUs, filling the nodes in order; with
    ``per_node_group`` a node takes only whole groups of that many workers (the workers of one replica)."""
    units_by_node = {}
    placed = 0
    for index, count in enumerate(usable):
        if placed >= wanted:
            break
        take = min(count // unit // per_node_group * per_node_group, wanted - placed)
        if take > 0:
            units_by_node[index] = take
            placed += take
    return units_by_node


def used_gpus_by_node(nodes, layout):
    """``{node name: GPUs the layout uses on it}``."""
    return {nodes[index]["name"]: count * layout["unit"] for index, count in layout["units_by_node"].items()}


# ---------------------------------------------------------------------------------------------------------------------
# replicas: copies of the model, each a layout of its own

# How many model replicas a plan runs: ``started`` at first (the result's replicas), ``most`` that its GPUs and Ray
# layout hold (max_replicas when ``autoscaled``).
ReplicaCount = namedtuple("ReplicaCount", "started most autoscaled")


class ReplicaSearch:
    """The layouts one model replica may take on the nodes, fewest GPUs first, and how many of one the nodes hold.

    A replica sits inside one node (1 GPU up to the largest node's usable GPUs, TP only unless TP or PP was asked
    for); only when no node holds it does it span 2, 3 ... of the nodes with the most usable GPUs, with PP across
    them, in the whole workers candidate_layouts gives them (whole nodes first). Candidates come from
    candidate_layouts on that small sub-cluster, never on every node, so a 1,000-node plan searches as fast as a
    2-node one. Every replica is sized on the smallest GPU among the nodes, so it fits wherever Ray places it.
    ``best`` keeps the layout that held the most sequences, for the messages.
    """

    def __init__(self, request, model):
        usable = request.usable_gpus
        self.request, self.model = request, model
        self.sizes = sorted((count for count in usable if count), reverse=True)
        self.largest = self.sizes[0]
        memories = [node["gpu_memory_mib"] for node, count in zip(request.nodes, usable) if count]
        self.device_mib, self.memory_mibs = min(memories), set(memories)
        self.cap = request.gpu_cap()[0]
        cross_node = request.allow_cross_node_tp or request.tensor_parallel_size is not None
        self.wish = LayoutWish(request.tensor_parallel_size, request.pipeline_parallel_size, self.cap, cross_node)
        self.sizes_asked = self.wish.tp is not None or self.wish.pp is not None
        self.best = None
        self._memories = {}
        self._units = {}

    def layouts(self):
        """Every replica layout: inside one node, then over more and more nodes."""
        yield from self.in_node()
        yield from self.over_nodes()

    def in_node(self, fewest=1):
        """Layouts inside the largest node, from ``fewest`` GPUs up: TP only (PP=1), since PP is for replicas no node
        holds, unless TP or PP was asked for."""
        for gpus in range(fewest, self.largest + 1):
            wish = self.wish._replace(max_gpus=gpus if self.cap is None else min(gpus, self.cap))
            for layout in candidate_layouts([self.largest], self.model["facts"], wish):
                if layout["world"] == gpus and (layout["pp"] == 1 or self.sizes_asked):
                    yield layout

    def over_nodes(self, fewest=2):
        """Layouts spanning ``fewest`` nodes and more, each count of nodes in candidate_layouts' order."""
        for count in range(max(fewest, 2), self._most_nodes() + 1):
            layouts = candidate_layouts(self.sizes[:count], self.model["facts"], self.wish)
            spanning = [layout for layout in layouts if len(layout["members"]) == count]
            if not spanning and not self.sizes_asked:
                # Every worker is used, so more nodes only make more stages: none fits beyond this.
                return
            yield from spanning

    def _most_nodes(self):
        """A replica spans at most this many nodes: each holds a whole stage, or a share of a cross-node TP group."""
        facts = self.model["facts"]
        stages = self.wish.pp or facts["num_hidden_layers"]
        widest = self.wish.tp or max(valid_tensor_parallel_sizes(facts))
        spread = widest if self.wish.cross_node and widest > self.largest else 1
        return min(len(self.sizes), stages * spread)

    def memory(self, layout, settings):
        """stage_memory of ``layout`` on the smallest GPU (``settings``: a MemorySettings)."""
        key = (layout["tp"], layout["pp"], settings)
        if key not in self._memories:
            budget = gpu_budget(self.device_mib * MIB, settings)
            self._memories[key] = stage_memory(self.model, layout["tp"], layout["pp"], budget, settings.max_model_len)
        return self._memories[key]

    def holds(self, memory):
        """Whether a replica with ``memory`` holds target_concurrency full sequences (vLLM's Maximum concurrency)."""
        return memory["fits"] and memory["max_concurrency"] >= self.request.target_concurrency

    def smallest(self, settings):
        """``(layout, memory)`` of the first replica layout that holds target_concurrency sequences, or None."""
        for layout in self.layouts():
            memory = self.memory(layout, settings)
            if memory["fits"] and (self.best is None or memory["max_concurrency"] > self.best[1]["max_concurrency"]):
                self.best = (layout, memory)
            if self.holds(memory):
                return layout, memory
        return None

    def fixed_shape(self, settings):
        """``(layout, memory)`` of the requested TP x PP in the fewest nodes, when it holds one sequence (or can,
        with a shorter max_model_len that was not given); else None, and the single-instance plan says why."""
        layout = next(iter(self.layouts()), None)
        if layout is None:
            return None
        memory = self.memory(layout, settings)
        if memory["fits"] or (not self.request.length_given and memory["blocks"] > 0):
            return layout, memory
        return None

    def largest_keeping(self, layout, replicas, settings):
        """``(layout, memory)`` of the largest layout, past ``layout``, of which ``replicas`` still fit and that holds
        target_concurrency; inside one node when ``layout`` is, else over more nodes. None when there is none."""
        spans = len(layout["members"])
        bigger = self.in_node(layout["world"] + 1) if spans == 1 else self.over_nodes(spans + 1)
        grown = None
        for other in bigger:
            if other["world"] <= (grown or (layout,))[0]["world"] or self.count(other) < replicas:
                continue
            memory = self.memory(other, settings)
            if self.holds(memory):
                grown = (other, memory)
        return grown

    def count(self, layout):
        """How many replicas of ``layout`` the usable GPUs hold within the GPU cap: whole replicas per node when one
        sits inside a node, else whole workers anywhere."""
        unit, workers = layout["unit"], layout["world"] // layout["unit"]
        group = workers if len(layout["members"]) == 1 else 1
        key = (unit, group)
        if key not in self._units:
            self._units[key] = sum(count // unit // group for count in self.request.usable_gpus)
        count = self._units[key] if group > 1 else self._units[key] // workers
        return count if self.cap is None else min(count, self.cap // layout["world"])

    def offered(self):
        """The GPUs the replicas may use: every usable GPU, or the cap."""
        total = sum(self.request.usable_gpus)
        return total if self.cap is None else min(total, self.cap)

    def place(self, layout, replicas):
        """``layout`` for ``replicas`` replicas on the real nodes: their workers filled into the nodes in order, with
        ``replica_world`` the GPUs of one replica and ``world`` those of all."""
        unit, workers = layout["unit"], layout["world"] // layout["unit"]
        group = workers if len(layout["members"]) == 1 else 1
        by_node = fill_nodes(self.request.usable_gpus, unit, replicas * workers, group)
        return dict(
            layout,
            units_by_node=by_node,
            members=sorted(by_node),
            world=unit * sum(by_node.values()),
            replica_world=layout["world"],
        )

    def sized_on_smaller_gpu(self):
        """Whether some nodes have larger GPUs than the one replicas are sized on."""
        return len(self.memory_mibs) > 1

    def describe_best(self):
        """``the most one holds is 2.66, with TP=1 x PP=2 on 2 GPU(s)``, or that none holds even one sequence."""
        if self.best is None:
            return "none holds the weights and one such sequence"
        layout, memory = self.best
        return "the most one holds is {:.2f}, with TP={} x PP={} on {} GPU(s)".format(
            memory["max_concurrency"], layout["tp"], layout["pp"], layout["world"]
        )


def _replica_where(layout):
    spans = len(layout["members"])
    return "inside one node" if spans == 1 else f"over {spans} nodes"


def _placement_group(shape, device):
    """One replica's Ray placement group: a bundle per GPU (with a CPU for its worker), or per CPU worker."""
    bundle = {"GPU": 1, "CPU": 1} if device == "GPU" else {"CPU": 1}
    return {
        "bundles": [dict(bundle) for _worker in range(shape["world"])],
        "strategy": "STRICT_PACK" if shape["nodes"] == 1 else "PACK",
    }


def _bundle_text(bundle):
    return "{" + ", ".join(f"{key}: {value}" for key, value in bundle.items()) + "}"


def _autoscaling_result(counts, serve):
    if not counts.autoscaled:
        return None
    return {
        "min_replicas": counts.started,
        "max_replicas": counts.most,
        "target_ongoing_requests": serve["target_ongoing_requests"],
        "max_ongoing_requests": serve["max_ongoing_requests"],
    }


# ---------------------------------------------------------------------------------------------------------------------
# the smallest cluster that fits


def largest_useful_world(facts, per_node):
    """More GPUs than this cannot help: PP is at most the layers and TP stays inside a node."""
    widest = max(valid_tensor_parallel_sizes(facts, limit=max(per_node, LARGEST_SINGLE_NODE)))
    return min(LARGEST_CLUSTER_GPUS, facts["num_hidden_layers"] * widest)


def smallest_fitting_cluster(model, template_node, per_node, settings):
    """The fewest GPUs like ``template_node`` that fit the model: ``(gpus, [descriptions])`` or ``(None, [])``."""
    per_node = max(per_node, 1)
    if settings.runtime_overhead_gib * GIB >= template_node["gpu_memory_mib"] * MIB * settings.gpu_memory_utilization:
        # The per-GPU reserve alone fills the usable memory: no number of these GPUs helps.
        return None, []
    found = {}
    best = None
    for total, nodes_count, gpus_each in _cluster_shapes(model["facts"], per_node):
        if best is not None and total > best:
            break
        layout = _fitting_layout(model, template_node, (nodes_count, gpus_each), settings)
        if layout is not None:
            best = total
            found.setdefault((nodes_count, gpus_each), _describe_cluster(nodes_count, gpus_each, layout))
    if best is None:
        return None, []
    return best, [found[key] for key in sorted(found, key=lambda key: (key[0], -key[1]))]


def _cluster_shapes(facts, per_node):
    """``(total GPUs, nodes, GPUs each)``, smallest first: whole nodes like the template, or one node of 1 to 8."""
    shapes = [
        (nodes_count * per_node, nodes_count, per_node)
        for nodes_count in range(1, largest_useful_world(facts, per_node) // per_node + 2)
    ]
    shapes.extend((gpus, 1, gpus) for gpus in range(1, LARGEST_SINGLE_NODE + 1))
    return sorted(shapes)


def _fitting_layout(model, template_node, shape, settings):
    """The first layout using every GPU of ``shape`` (nodes, GPUs each) that fits, or None."""
    nodes_count, gpus_each = shape
    nodes = [dict(template_node, name=f"n{index}", gpus=gpus_each) for index in range(nodes_count)]
    for layout in candidate_layouts([gpus_each] * nodes_count, model["facts"]):
        if layout["world"] == nodes_count * gpus_each and layout_memory(model, nodes, layout, settings)["fits"]:
            return layout
    return None


def _describe_cluster(nodes_count, gpus_each, layout):
    return "{} node{} x {} GPU{} with TP={}, PP={}".format(
        nodes_count,
        "" if nodes_count == 1 else "s",
        gpus_each,
        "" if gpus_each == 1 else "s",
        layout["tp"],
        layout["pp"],
    )


# ---------------------------------------------------------------------------------------------------------------------
# the request: every option, validated once


def _given_or(value, default):
    return value if value is not None else default


# What each count option means, for the message that refuses a bad value: (what it is, what to set it to).
_COUNT_MEANINGS = {
    "replicas": ("a replica count", "the number of model replicas to serve, or leave it unset to run as many as fit"),
    "min_replicas": ("a replica count", "the fewest replicas autoscaling keeps running, or leave it unset for 1"),
    "max_replicas": (
        "a replica count",
        "the most replicas autoscaling may run, or leave it unset for as many as the GPUs hold",
    ),
    "target_concurrency": (
        "a number of sequences",
        f"how many full-length sequences each replica must hold at once (default {DEFAULT_TARGET_CONCURRENCY})",
    ),
}


def _is_whole(value, minimum):
    return _is_number(value) and float(value).is_integer() and value >= minimum


def _not_a_count_message(option, value, meaning):
    what, fix = meaning
    return f"{option}={value!r} is not {what}: expected a whole number >= 1, seen {value!r}; set {fix}."


def smallest_ram_mib(nodes):
    """The least memory_mib among the nodes that report one, or None."""
    return min((node["memory_mib"] for node in nodes if node["memory_mib"]), default=None)


@dataclasses.dataclass
class PlanRequest:
    """The planner's inputs, validated once: building one raises the PlanError of the first bad option.

    Afterwards the fields hold checked values: ``nodes`` as normalise_nodes returns them, ``head_gpus`` True, False
    or a count, ``device`` ``GPU`` or ``CPU`` (what the plan serves on; ``device_option`` keeps what was asked),
    ``max_model_len`` in tokens (the model's own limit when none was given; ``length_given`` says which),
    ``gpu_memory_utilization`` and ``runtime_overhead_gib`` as floats (the overhead's default follows ``device``),
    ``kuberay_layout`` None or the keys it sets, and ``usable_gpus`` the GPUs each node may serve with.
    """

    nodes: list
    model: dict
    platform: str
    dtype: str = DEFAULT_DTYPE
    kv_cache_dtype: str = DEFAULT_KV_CACHE_DTYPE
    max_model_len: int | None = None
    gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION
    tensor_parallel_size: int | None = None
    pipeline_parallel_size: int | None = None
    head_gpus: object = None
    max_gpus: int | None = None
    allow_cross_node_tp: bool = DEFAULT_ALLOW_CROSS_NODE_TP
    cpu_kvcache_space_gib: int | None = None
    runtime_overhead_gib: float | None = None
    option_names: dict | None = None
    kuberay_layout: dict | None = None
    cpu_pods: list | None = None
    worker_request_ratio: float = DEFAULT_WORKER_REQUEST_RATIO
    device: str = DEFAULT_DEVICE
    replicas: int | None = None
    min_replicas: int | None = None
    max_replicas: int | None = None
    gpu_share: float | None = None
    target_concurrency: int = DEFAULT_TARGET_CONCURRENCY

    def __post_init__(self):
        # The order of the checks decides which problem is reported when several options are wrong.
        self._names = OptionNames(self.option_names)
        self._check_choices()
        self._check_ranges()
        self._check_replica_options()
        self.head_gpus = normalise_head_gpus(self.head_gpus, self.platform, self.name)
        self.nodes = normalise_nodes(self.nodes, self.name)
        self.device_option = self.device
        self.device = self._serving_device()
        self.allow_cross_node_tp = bool(self.allow_cross_node_tp)
        self._check_against_model()
        self._settle_numbers()
        self.usable_gpus = usable_gpus(self.nodes, self.platform, self.head_gpus)
        self.kuberay_layout = self._checked_kuberay_layout()
        self.cpu_pods = self._checked_cpu_pods()
        if self.device == "CPU":
            self._check_cpu_kv_cache()
        else:
            self._check_gpus()

    @classmethod
    def from_params(cls, params):
        """The request from the module's parameters (a dict shaped like its argument spec); resolves the model."""
        names = OptionNames(params.get("option_names"))
        model = resolve_model(
            params.get("model_path"),
            params.get("model_config"),
            params.get("model_params_b"),
            params.get("model_name"),
            name=names,
        )
        return cls(
            nodes=params.get("nodes"),
            model=model,
            platform=params.get("platform"),
            dtype=params.get("dtype") or DEFAULT_DTYPE,
            kv_cache_dtype=params.get("kv_cache_dtype") or DEFAULT_KV_CACHE_DTYPE,
            max_model_len=params.get("max_model_len"),
            gpu_memory_utilization=_given_or(params.get("gpu_memory_utilization"), DEFAULT_GPU_MEMORY_UTILIZATION),
            tensor_parallel_size=params.get("tensor_parallel_size"),
            pipeline_parallel_size=params.get("pipeline_parallel_size"),
            head_gpus=params.get("head_gpus"),
            max_gpus=params.get("max_gpus"),
            allow_cross_node_tp=bool(params.get("allow_cross_node_tp")),
            cpu_kvcache_space_gib=params.get("cpu_kvcache_space_gib"),
            runtime_overhead_gib=params.get("runtime_overhead_gib"),
            option_names=params.get("option_names"),
            kuberay_layout=params.get("kuberay_layout"),
            cpu_pods=params.get("cpu_pods"),
            worker_request_ratio=_given_or(params.get("worker_request_ratio"), DEFAULT_WORKER_REQUEST_RATIO),
            device=params.get("device") or DEFAULT_DEVICE,
            replicas=params.get("replicas"),
            min_replicas=params.get("min_replicas"),
            max_replicas=params.get("max_replicas"),
            gpu_share=params.get("gpu_share"),
            target_concurrency=_given_or(params.get("target_concurrency"), DEFAULT_TARGET_CONCURRENCY),
        )

    def name(self, option):
        """How messages name ``option``: its option_names entry, else the option's own name."""
        return self._names(option)

    def _check_choices(self):
        for option, value, choices in (
            ("platform", self.platform, PLATFORMS),
            ("dtype", self.dtype, DTYPES),
            ("kv_cache_dtype", self.kv_cache_dtype, KV_CACHE_DTYPES),
            ("device", self.device, DEVICES),
        ):
            if value not in choices:
                raise PlanError("{}={!r} is not one of {}.".format(self.name(option), value, ", ".join(choices)))

    def _check_ranges(self):
        name = self.name
        if not 0 < self.gpu_memory_utilization <= 1:
            raise PlanError(
                f"{name('gpu_memory_utilization')}={self.gpu_memory_utilization} must be above 0 and at most 1 "
                f"(vLLM's default is {DEFAULT_GPU_MEMORY_UTILIZATION})."
            )
        if self.max_model_len is not None and self.max_model_len < 1:
            raise PlanError(f"{name('max_model_len')}={self.max_model_len} must be a positive number of tokens.")
        if self.max_gpus is not None and self.max_gpus < 1:
            raise PlanError(f"{name('max_gpus')}={self.max_gpus} must be at least 1; leave it unset to use every GPU.")
        if self.pipeline_parallel_size is not None and self.pipeline_parallel_size < 1:
            raise PlanError(f"{name('pipeline_parallel_size')}={self.pipeline_parallel_size} must be at least 1.")
        if not 0 < self.worker_request_ratio <= 1:
            raise PlanError(
                f"{name('worker_request_ratio')}={self.worker_request_ratio} must be above 0 and at most 1 (the share "
                f"of its node's allocatable a worker pod requests; {DEFAULT_WORKER_REQUEST_RATIO} leaves room for the "
                "head, the driver and the node's DaemonSets)."
            )

    def _check_replica_options(self):
        """replicas, min_replicas, max_replicas, target_concurrency, gpu_share: each alone, then together."""
        for option in ("replicas", "min_replicas", "max_replicas", "target_concurrency"):
            value = getattr(self, option)
            if value is not None and not _is_whole(value, 1):
                raise PlanError(_not_a_count_message(self.name(option), value, _COUNT_MEANINGS[option]))
            if value is not None:
                setattr(self, option, int(value))
        self._check_gpu_share()
        name = self.name
        if self.replicas is not None and self.autoscaling:
            option = "min_replicas" if self.min_replicas is not None else "max_replicas"
            given = f"{name(option)}={getattr(self, option)}"
            raise PlanError(
                f"{name('replicas')}={self.replicas} and {given} both set how many replicas run: expected either a "
                f"fixed count ({name('replicas')}) or an autoscaling range ({name('min_replicas')} and "
                f"{name('max_replicas')}), seen both. Remove {name('replicas')} to autoscale, or the range to run a "
                "fixed number."
            )
        low, high = self.min_replicas, self.max_replicas
        if low is not None and high is not None and high < low:
            raise PlanError(
                f"{name('max_replicas')}={high} is below {name('min_replicas')}={low}: expected {name('min_replicas')} "
                f"<= {name('max_replicas')}, seen {low} > {high}; raise {name('max_replicas')} to at least {low} or "
                f"lower {name('min_replicas')}."
            )

    def _check_gpu_share(self):
        share, name = self.gpu_share, self.name
        if share is None:
            return
        if not (_is_number(share) and 0 < share <= 1):
            raise PlanError(
                f"{name('gpu_share')}={share!r} is not a share of the GPUs: expected a number above 0 and at most 1, "
                f"seen {share!r}; set the share of the offered GPUs the plan may use (0.5 for half), or leave it unset "
                "to use them all."
            )
        if self.max_gpus is not None:
            raise PlanError(
                f"{name('max_gpus')}={self.max_gpus} and {name('gpu_share')}={share} both cap the GPUs the plan uses: "
                f"expected one of them, seen both; keep {name('max_gpus')} for a count or {name('gpu_share')} for a "
                "share, and remove the other."
            )

    @property
    def autoscaling(self):
        """Whether Ray Serve scales the replicas (min_replicas or max_replicas was given)."""
        return self.min_replicas is not None or self.max_replicas is not None

    @property
    def sizes_fixed(self):
        """Whether both TP and PP were given, so the replica's shape is the user's."""
        return self.tensor_parallel_size is not None and self.pipeline_parallel_size is not None

    def gpu_cap(self):
        """``(most GPUs the plan may use, the option that says so)``, or ``(None, None)`` without a cap."""
        if self.max_gpus is not None:
            return self.max_gpus, "max_gpus"
        if self.gpu_share is not None and self.device == "GPU":
            return int(math.floor(self.gpu_share * sum(self.usable_gpus) + 1e-9)), "gpu_share"
        return None, None

    def describe_cap(self):
        """How reasons name the GPU cap: ``max_gpus=8`` or ``gpu_share=0.5 (8 of 16 GPUs)``."""
        cap, option = self.gpu_cap()
        if option == "max_gpus":
            return f"{self.name('max_gpus')}={self.max_gpus}"
        return f"{self.name('gpu_share')}={self.gpu_share:g} ({cap} of {sum(self.usable_gpus)} GPUs)"

    def _serving_device(self):
        """``GPU`` or ``CPU``: the device option, where the nodes allow it; auto takes GPUs wherever a node has one."""
        gpus = sum(node["gpus"] for node in self.nodes)
        if self.device_option == "cpu" or (self.device_option == "auto" and not gpus):
            return "CPU"
        if not gpus:
            option, seen = self.name("device"), _describe_nodes(self.nodes, [0] * len(self.nodes))
            raise PlanError(
                f"{option}=gpu asks for a GPU plan, but no node has a GPU: expected at least one, seen {seen}. Fix: "
                f"set {option} to cpu (or auto) to serve on the nodes' CPUs, or add nodes with GPUs (on hosts "
                "nvidia-smi must list them; on Kubernetes the nodes must advertise nvidia.com/gpu)."
            )
        return "GPU"

    def _check_against_model(self):
        facts = self.model["facts"]
        problem = unknown_quantization_message(self.model, self.name)
        if problem is None and self.tensor_parallel_size is not None:
            problem = check_tensor_parallel_size(facts, self.tensor_parallel_size, self.name)
        if problem:
            raise PlanError(problem)
        layers = facts["num_hidden_layers"]
        if self.pipeline_parallel_size is not None and self.pipeline_parallel_size > layers:
            raise PlanError(
                f"{self.name('pipeline_parallel_size')}={self.pipeline_parallel_size} exceeds num_hidden_layers="
                f"{layers} of the model; each stage needs at least one layer, choose at most {layers}."
            )
        model_max = facts.get("max_position_embeddings")
        option = self.name("max_model_len")
        if self.max_model_len is not None and model_max and self.max_model_len > model_max:
            raise PlanError(
                f"{option}={self.max_model_len} exceeds the model's max_position_embeddings={model_max}; vLLM "
                f"refuses a longer context. Choose at most {model_max}."
            )
        if self.max_model_len is None and not model_max:
            raise PlanError(
                f"The model config has no max_position_embeddings; pass {option} (tokens per sequence) explicitly."
            )

    def _settle_numbers(self):
        """max_model_len, gpu_memory_utilization and runtime_overhead_gib as the planner computes with them."""
        self.length_given = self.max_model_len is not None
        model_max = self.model["facts"].get("max_position_embeddings")
        self.max_model_len = int(self.max_model_len if self.length_given else model_max)
        self.gpu_memory_utilization = float(self.gpu_memory_utilization)
        given = self.runtime_overhead_gib
        default = DEFAULT_GPU_RUNTIME_OVERHEAD_GIB if self.device == "GPU" else DEFAULT_CPU_RUNTIME_OVERHEAD_GIB
        self.runtime_overhead_gib = float(_given_or(given, default))
        if self.runtime_overhead_gib < 0:
            raise PlanError(f"{self.name('runtime_overhead_gib')}={given} cannot be negative.")

    def cpu_memory(self):
        """``(MiB or None, what it is, the pod or None)``: the memory a CPU plan's engine has. On Kubernetes vLLM's mp
        executor runs the model inside the driver pod, so that pod's memory limit counts
        (``cpu_pods[].engine_memory_mib``); elsewhere the smallest node's RAM."""
        engine = [pod for pod in self.cpu_pods if pod.get("engine_memory_mib")]
        if self.platform == "kubernetes" and engine:
            return engine[0]["engine_memory_mib"], f"the memory limit of {engine[0]['name']}", engine[0]
        return smallest_ram_mib(self.nodes), "the smallest node's RAM", None

    def _check_cpu_kv_cache(self):
        space = self.cpu_kvcache_space_gib
        option = self.name("cpu_kvcache_space_gib")
        if space is None and not self.cpu_memory()[0]:
            raise PlanError(
                f"The plan serves on CPUs, but the nodes report no memory_mib, so the CPU KV cache cannot be sized; "
                f"pass {option} (vLLM's VLLM_CPU_KVCACHE_SPACE) or the nodes' memory_mib."
            )
        if space is not None and space < 1:
            raise PlanError(f"{option}={space} must be at least 1 (vLLM reads VLLM_CPU_KVCACHE_SPACE as whole GiB).")

    def _check_gpus(self):
        """The GPUs the head leaves to vLLM, and the requested sizes, against the nodes."""
        nodes, usable, name = self.nodes, self.usable_gpus, self.name
        tp, pp = self.tensor_parallel_size, self.pipeline_parallel_size
        if sum(usable) == 0:
            raise PlanError(
                "No GPU is available to vLLM: the nodes offer {} GPU(s) ({}) and {}={} keeps the "
                "head's; add GPU workers or set {}=true.".format(
                    sum(node["gpus"] for node in nodes),
                    _describe_nodes(nodes, [node["gpus"] for node in nodes]),
                    name("head_gpus"),
                    str(self.head_gpus).lower(),
                    name("head_gpus"),
                )
            )
        if tp is not None and tp > max(usable) and not self.allow_cross_node_tp:
            raise PlanError(self._tp_across_nodes_message())
        self._check_share_leaves_a_gpu()
        if tp is not None and pp is not None and tp * pp > sum(usable):
            raise PlanError(
                f"{name('tensor_parallel_size')}={tp} x {name('pipeline_parallel_size')}={pp} = {tp * pp} GPUs, but "
                f"the nodes offer {sum(usable)} usable GPU(s) ({_describe_nodes(nodes, usable)}); lower the sizes or "
                "add nodes."
            )

    def _check_share_leaves_a_gpu(self):
        cap, option = self.gpu_cap()
        if option != "gpu_share" or cap >= 1:
            return
        share, name, total = self.gpu_share, self.name, sum(self.usable_gpus)
        raise PlanError(
            f"{name('gpu_share')}={share:g} of the {total} usable GPU(s) is less than one GPU: expected a share that "
            f"leaves at least one whole GPU (at least {1.0 / total:.3g}), seen {share:g}; raise {name('gpu_share')}, "
            f"or set {name('max_gpus')} to a count instead."
        )

    def _tp_across_nodes_message(self):
        tp, largest = self.tensor_parallel_size, max(self.usable_gpus)
        stages_hint = tp if largest == 1 else tp // math.gcd(tp, largest)
        tp_name, pp_name = self.name("tensor_parallel_size"), self.name("pipeline_parallel_size")
        return (
            f"{tp_name}={tp} needs {tp} GPUs in one node, but the largest node offers {largest} "
            f"({_describe_nodes(self.nodes, self.usable_gpus)}); TP all-reduces every layer and over the network it "
            f"is slow. Set {self.name('allow_cross_node_tp')}=true to accept that, or use pipeline parallelism across "
            f"nodes instead (e.g. {tp_name}={math.gcd(tp, largest)}, {pp_name}={stages_hint})."
        )

    def _checked_cpu_pods(self):
        """``cpu_pods`` with numbers as floats; only meaningful on Kubernetes."""
        pods = self.cpu_pods or []
        where = self.name("cpu_pods")
        if pods and self.platform != "kubernetes":
            raise PlanError(f"{where} places pods beside KubeRay's workers; it only applies with platform=kubernetes.")
        checked = []
        for position, pod in enumerate(pods):
            if not isinstance(pod, dict) or not pod.get("name"):
                raise PlanError(f"{where}[{position}]={pod!r} must be a dict with name, cpus and memory_mib.")
            numbers = {key: pod.get(key) for key in ("cpus", "memory_mib")}
            if not all(_is_number(value) and value > 0 for value in numbers.values()):
                raise PlanError(
                    f"{where}[{position}] ({pod['name']}) has cpus={numbers['cpus']!r}, memory_mib="
                    f"{numbers['memory_mib']!r}: expected numbers above 0 (the pod's requests)."
                )
            engine = pod.get("engine_memory_mib")
            if engine is not None and not (_is_number(engine) and engine > 0):
                raise PlanError(
                    f"{where}[{position}] ({pod['name']}) has engine_memory_mib={engine!r}: expected a number above "
                    "0 (the memory limit of the pod vLLM's engine runs in) or none."
                )
            checked.append(dict(pod, cpus=float(numbers["cpus"]), memory_mib=float(numbers["memory_mib"])))
        return checked

    def _checked_kuberay_layout(self):
        """None, or the keys the kuberay_layout override sets, checked on their own (the plan checks the rest)."""
        if not self.kuberay_layout:
            return None
        option, platform = self.name("kuberay_layout"), self.name("platform")
        if self.platform != "kubernetes":
            raise PlanError(
                f"{option} is set, but {platform}={self.platform}: a KubeRay layout only exists on kubernetes, "
                f"where it overrides the plan's ray_layout.kuberay, while on hosts Ray follows ray_layout.hosts. "
                f"Remove {option}, or plan with {platform}=kubernetes."
            )
        return normalise_kuberay_layout(self.kuberay_layout, option)


# ---------------------------------------------------------------------------------------------------------------------
# the planner


class Planner:
    """Plans one PlanRequest (validated when it was built): size the model, choose the replicas and their layout,
    check a KubeRay override against that choice, assemble the result. The planner owns ``reasons`` and
    ``warnings``; each step appends the sentences of what it decided."""

    def __init__(self, request):
        self.request = request
        self.name = request.name
        self.reasons = []
        self.warnings = []
        # The memory check's settings; choose lowers max_model_len when the model's own limit does not fit.
        self.settings = MemorySettings(
            request.gpu_memory_utilization, request.runtime_overhead_gib, request.max_model_len
        )

    def plan(self):
        """The deployment plan as a dict (see the module's RETURN); raises PlanError with an actionable message."""
        sized = self.size()
        placement = self.choose(sized["model"])
        placement["ray_layout"] = self.override_kuberay(placement)
        self.place_cpu_pods(placement["ray_layout"], placement["serve"]["engine"])
        return self.assemble(sized, placement)

    # --- size: dtypes and weight bytes

    def size(self):
        """``{"model", "dtypes", "weight_source"}``: the model with its bytes in memory, and the dtypes served."""
        model = self.request.model
        dtypes = resolve_dtypes(self.request)
        weight_bytes, embed_bytes, source = serving_weight_bytes(model, dtypes, self.name)
        self.reasons.append(_model_sentence(model["facts"], weight_bytes, source, dtypes))
        self.reasons.extend(dtypes["notes"])
        sized = dict(model, weight_bytes=weight_bytes, embedding_bytes=embed_bytes, kv_bytes=dtypes["kv_bytes"])
        return {"model": sized, "dtypes": dtypes, "weight_source": source}

    def choose(self, model):
        """The placement: TP, PP, the GPUs and nodes used, max_model_len, memory and the Ray layout."""
        if self.request.device == "GPU":
            return self._choose_gpu_layout(model)
        return self._choose_cpu_layout(model)

    # --- choose on GPUs

    def _choose_gpu_layout(self, model):
        """Replicas of the smallest layout that holds target_concurrency sequences, as many as the GPUs hold (or as
        asked); when none does, one instance over the GPUs, shortening max_model_len when it was not given."""
        self._explain_gpu_inputs()
        search = ReplicaSearch(self.request, model)
        if self.request.sizes_fixed:
            found = search.fixed_shape(self.settings)
        else:
            found = search.smallest(self.settings)
        if found is None:
            return self._single_instance(model, search)
        return self._replicated(search, found)

    def _single_instance(self, model, search):
        """One instance over the GPUs, the largest layout that fits (no replica holds target_concurrency)."""
        request = self.request
        wish = self._wish(cross_node=request.allow_cross_node_tp or request.tensor_parallel_size is not None)
        layouts = candidate_layouts(request.usable_gpus, model["facts"], wish)
        if not layouts:
            raise PlanError(self._no_layout_message(search))
        chosen, memory = self._first_fitting(model, layouts)
        if not memory["fits"]:
            memory = self._shorten_to_fit(chosen, memory, lambda layout: self._layout_memory(model, layout))
        counts = self._single_instance_count(search)
        self._explain_single_instance(search)
        self._explain_gpu_count(chosen)
        self._explain_tp_and_pp(chosen)
        self.reasons.append(_fit_sentence(memory, self.settings, "GPU"))
        chosen = dict(chosen, replica_world=chosen["world"])
        return self._gpu_placement(chosen, chosen, memory, counts)

    def _replicated(self, search, found):
        """``found`` (layout, memory) of one replica: how many run, grown into GPUs left over, placed on the nodes."""
        layout, memory = found
        if not memory["fits"]:
            memory = self._shorten_to_fit(layout, memory, lambda shape: search.memory(shape, self.settings))
        counts = self._replica_counts(search, layout)
        self._explain_replica(search, layout, memory)
        self._explain_replica_count(search, layout, counts)
        layout, memory = self._grow_into_leftover(search, (layout, memory), counts)
        self._explain_idle_gpus(search, layout, counts)
        self._explain_tp_and_pp(layout)
        self.reasons.append(_fit_sentence(memory, self.settings, "GPU"))
        return self._gpu_placement(layout, search.place(layout, counts.most), memory, counts)

    def _gpu_placement(self, replica, cluster, memory, counts):
        """The GPU placement: one replica's sizes and memory, the GPUs all replicas use, and the Ray layout."""
        request = self.request
        placement = {
            "tensor_parallel_size": replica["tp"],
            "pipeline_parallel_size": replica["pp"],
            "world_size": replica["world"],
            "gpus_total": sum(node["gpus"] for node in request.nodes),
            "gpus_used": cluster["world"],
            "gpus_idle": sum(request.usable_gpus) - cluster["world"],
            "nodes_total": len(request.nodes),
            "nodes_used": len(cluster["members"]),
            "cross_node_tensor_parallel": replica["cross_node_tp"],
            "max_model_len": self.settings.max_model_len,
            "memory": _memory_result(memory, self.settings.max_model_len, "GPU"),
            "ray_layout": self._ray_layout(cluster, counts),
        }
        shape = {"tp": replica["tp"], "pp": replica["pp"], "world": replica["world"], "nodes": len(replica["members"])}
        placement.update(self._replica_parts(shape, memory, counts))
        return placement

    def _wish(self, cross_node):
        request = self.request
        cap = request.gpu_cap()[0]
        return LayoutWish(request.tensor_parallel_size, request.pipeline_parallel_size, cap, cross_node)

    # --- replicas: how many, how large, and why

    def _replica_counts(self, search, layout):
        """ReplicaCount from replicas, the autoscaling range, or every replica the GPUs hold; refuses more than fit."""
        fit = search.count(layout)
        return self._counted_replicas(
            fit, fit, lambda option, asked: self._check_replicas_fit(option, asked, fit, layout)
        )

    def _counted_replicas(self, fit, unasked, check_fit):
        """ReplicaCount from replicas, the autoscaling range (its most defaults to ``fit``), or ``unasked``;
        ``check_fit(option, asked)`` refuses a count above ``fit``, naming the option."""
        request = self.request
        if request.replicas is not None:
            check_fit("replicas", request.replicas)
            return ReplicaCount(request.replicas, request.replicas, False)
        if not request.autoscaling:
            return ReplicaCount(unasked, unasked, False)
        least = request.min_replicas or 1
        most = request.max_replicas or max(fit, least)
        check_fit("max_replicas" if request.max_replicas is not None else "min_replicas", most)
        return ReplicaCount(least, most, True)

    def _check_replicas_fit(self, option, asked, fit, layout):
        if asked <= fit:
            return
        request, name = self.request, self.name
        capped = f", capped by {request.describe_cap()}" if request.gpu_cap()[0] is not None else ""
        if request.sizes_fixed:
            why = f"as {name('tensor_parallel_size')} and {name('pipeline_parallel_size')} ask"
        else:
            why = f"to hold the weights and {self._target_sequences()} at once"
        raise PlanError(
            f"{name(option)}={asked} asks for more replicas than the GPUs hold: expected at most {fit}, seen {asked}. "
            f"Each replica needs {layout['world']} GPU(s) {_replica_where(layout)} (TP={layout['tp']} x "
            f"PP={layout['pp']}) {why}, and the nodes offer {sum(request.usable_gpus)} usable GPU(s) "
            f"({_describe_nodes(request.nodes, request.usable_gpus)}){capped}. Fix: lower {name(option)} to {fit}, "
            f"lower {name('target_concurrency')} or {name('max_model_len')} for smaller replicas, or add GPUs."
        )

    def _target_sequences(self):
        """``target_concurrency=8 full 131,072-token sequences``, at the length asked for (or the model's)."""
        request = self.request
        return "{}={} full {}-token sequences".format(
            self.name("target_concurrency"), request.target_concurrency, _fmt_int(request.max_model_len)
        )

    def _grow_into_leftover(self, search, found, counts):
        """``found``, or the largest replica that keeps ``counts.most`` replicas and still holds the target, when
        GPUs would be left over; a replica inside one node grows inside it, one over nodes over more nodes."""
        layout, memory = found
        left = search.offered() - counts.most * layout["world"]
        if left <= 0 or self.request.sizes_fixed:
            return found
        grown = search.largest_keeping(layout, counts.most, self.settings)
        if grown is None:
            return found
        bigger, bigger_memory = grown
        self.reasons.append(
            f"{left} GPU(s) would be left over beside {counts.most} replica(s) of {layout['world']} GPU(s), so each "
            f"replica grows to {bigger['world']} GPU(s) {_replica_where(bigger)} (TP={bigger['tp']} x "
            f"PP={bigger['pp']}): still {counts.most} replica(s), each holding "
            f"{bigger_memory['max_concurrency']:.2f} full sequences instead of {memory['max_concurrency']:.2f}."
        )
        return grown

    def _explain_replica(self, search, layout, memory):
        request = self.request
        holds = f"{memory['max_concurrency']:.2f} full {_fmt_int(self.settings.max_model_len)}-token sequences"
        shape = f"{layout['world']} GPU(s) {_replica_where(layout)} with TP={layout['tp']} x PP={layout['pp']}"
        if request.sizes_fixed:
            text = (
                f"Each replica is the requested {shape}; its KV cache holds {holds} at once "
                f"({self.name('target_concurrency')} asks for {request.target_concurrency})."
            )
        else:
            text = (
                f"Each replica is the fewest GPUs that hold the weights and the KV cache of "
                f"{self._target_sequences()} at once: {shape}, holding {memory['max_concurrency']:.2f}."
            )
        if search.sized_on_smaller_gpu():
            text += (
                f" Replicas are sized on the smallest GPU among the nodes ({_fmt_int(search.device_mib)} MiB), so "
                "each fits wherever Ray places it."
            )
        self.reasons.append(text)

    def _explain_replica_count(self, search, layout, counts):
        request, name = self.request, self.name
        capped = f" (within {request.describe_cap()})" if request.gpu_cap()[0] is not None else ""
        described = _describe_nodes(request.nodes, request.usable_gpus)
        total, fit = sum(request.usable_gpus), search.count(layout)
        text = f"The {total} usable GPU(s) ({described}){capped} hold {fit} such replica(s)"
        if request.replicas is not None:
            text += f"; the plan runs {request.replicas}, as {name('replicas')}={request.replicas} asks."
        elif counts.autoscaled:
            text += (
                f"; Ray Serve scales between {counts.started} and {counts.most} replica(s) "
                f"({self._autoscaling_range()}), and the GPUs are laid out for {counts.most}."
            )
        else:
            text += "; the plan runs them all, since the cluster is dedicated to this model."
        self.reasons.append(text)

    def _autoscaling_range(self):
        request, name = self.request, self.name
        low, high = request.min_replicas, request.max_replicas
        low_text = f"{name('min_replicas')}={low}" if low is not None else f"{name('min_replicas')} unset, so 1"
        if high is not None:
            return f"{low_text}, {name('max_replicas')}={high}"
        return f"{low_text}, {name('max_replicas')} unset, so as many as fit"

    def _explain_idle_gpus(self, search, layout, counts):
        total = sum(self.request.usable_gpus)
        used = counts.most * layout["world"]
        if used >= total:
            return
        why = self._why_idle(search, layout, counts)
        self.reasons.append(f"The plan uses {used} of the {total} usable GPU(s) because {why}.")
        self.warnings.append(f"{total - used} GPU(s) stay idle: {why}.")

    def _why_idle(self, search, layout, counts):
        request, name = self.request, self.name
        fit, gpus = search.count(layout), layout["world"]
        if counts.most < fit:
            option = "replicas" if request.replicas is not None else "max_replicas"
            return f"{name(option)}={counts.most} asks for {counts.most} replica(s) of {gpus} GPU(s)"
        cap = request.gpu_cap()[0]
        if cap is not None and cap < sum(request.usable_gpus) and fit == cap // gpus:
            return f"{request.describe_cap()} caps it"
        if len(layout["members"]) == 1:
            return (
                f"a replica needs {gpus} GPU(s) inside one node (TP={layout['tp']} x PP={layout['pp']}) and what the "
                "nodes have left holds no other"
            )
        return (
            f"a replica takes {gpus // layout['unit']} Ray worker(s) of {layout['unit']} GPU(s) over "
            f"{len(layout['members'])} nodes and what the nodes have left holds no other"
        )

    def _single_instance_count(self, search):
        """One replica; refused when more were asked for, since no replica of these GPUs holds the target."""
        request = self.request
        for option in ("replicas", "min_replicas", "max_replicas"):
            asked = getattr(request, option)
            if asked is not None and asked > 1:
                raise PlanError(
                    f"{self.name(option)}={asked} asks for {asked} replicas, but no replica of these GPUs holds "
                    f"{self._target_sequences()} at once: expected a replica that holds "
                    f"{request.target_concurrency}, seen {search.describe_best()}. Fix: lower "
                    f"{self.name('target_concurrency')} or {self.name('max_model_len')} so that a replica holds it, "
                    f"set {self.name(option)} to 1 to serve one instance over the GPUs, or add GPUs."
                )
        return ReplicaCount(1, 1, request.autoscaling)

    def _explain_single_instance(self, search):
        self.reasons.append(
            f"No replica layout of these GPUs holds {self._target_sequences()} at once ({search.describe_best()}), "
            "so one instance serves over the GPUs, sized as follows."
        )

    def _too_many_gpus_for_one_instance_message(self, search):
        request = self.request
        total, layers = sum(request.usable_gpus), request.model["facts"]["num_hidden_layers"]
        return (
            f"No replica holds {self._target_sequences()} at once ({search.describe_best()}), and one instance cannot "
            f"span all {total} usable GPU(s) ({_describe_nodes(request.nodes, request.usable_gpus)}): expected at "
            f"most one pipeline stage per layer ({layers} layers), seen {total} GPUs. Fix: lower "
            f"{self.name('target_concurrency')} or {self.name('max_model_len')} so that a replica holds it, or cap the "
            f"GPUs with {self.name('max_gpus')} or {self.name('gpu_share')}."
        )

    # --- what every plan says about its replicas

    def _replica_parts(self, shape, memory, counts):
        """The result's replica keys; ``shape``: one replica's tp, pp, world and nodes; ``counts``: ReplicaCount."""
        most_seqs = self._vllm_max_num_seqs(shape, memory)
        serve = self._serve_settings(memory, counts, most_seqs)
        sequences = int(math.floor(memory["max_concurrency"]))
        parts = {
            "replicas": counts.started,
            "autoscaling": _autoscaling_result(counts, serve),
            "replica": {
                "tensor_parallel_size": shape["tp"],
                "pipeline_parallel_size": shape["pp"],
                "gpus": shape["world"] if self.request.device == "GPU" else 0,
                "nodes": shape["nodes"],
                "kv_cache_tokens": int(memory["tokens"]),
                "max_concurrency": _round(memory["max_concurrency"]),
            },
            "serve": serve,
            "placement_group": _placement_group(shape, self.request.device),
            "kv_capacity": {"tokens": counts.most * int(memory["tokens"]), "sequences": counts.most * sequences},
        }
        self._explain_placement_group(parts["placement_group"], shape)
        self._explain_serving(serve, sequences, most_seqs)
        return parts

    def _serve_settings(self, memory, counts, most_seqs):
        """Ray Serve's view of a replica: the engine, and the requests it takes at once: the full sequences its KV
        cache holds, at least target_concurrency, at most vLLM's default max_num_seqs (``most_seqs``)."""
        target = self.request.target_concurrency
        holds = int(math.floor(memory["max_concurrency"]))
        ongoing = max(target, min(holds, most_seqs))
        # A replica count the user set asks for Serve even at 1, so that a later count is applied in place.
        single = counts.most == 1 and not counts.autoscaled and self.request.replicas is None
        return {
            "engine": "vllm" if single else "serve_llm",
            "max_ongoing_requests": ongoing,
            "target_ongoing_requests": target,
        }

    def _vllm_max_num_seqs(self, shape, memory):
        """vLLM's default max_num_seqs for the replica's device: what it runs at once, whatever its KV cache holds."""
        if self.request.device == "CPU":
            return VLLM_MAX_NUM_SEQS_CPU_WORKER * shape["world"]
        products = " ".join(node["gpu_product"] for node in self.request.nodes if node["gpus"]).lower()
        if memory["device_bytes"] >= VLLM_LARGE_GPU_MIB * MIB and "a100" not in products:
            return VLLM_MAX_NUM_SEQS_LARGE_GPU
        return VLLM_MAX_NUM_SEQS_GPU

    def _explain_placement_group(self, group, shape):
        if group["strategy"] == "STRICT_PACK":
            why = "a replica fits in one node, so all its bundles go there and its workers talk inside that node"
        else:
            why = (
                f"a replica spans {shape['nodes']} nodes, which STRICT_PACK (all bundles on one node) cannot place; "
                "PACK puts them on as few nodes as it can"
            )
        self.reasons.append(
            f"Each replica reserves a Ray placement group of {len(group['bundles'])} bundle(s) "
            f"{_bundle_text(group['bundles'][0])}, strategy {group['strategy']}: {why}."
        )

    def _explain_serving(self, serve, sequences, most_seqs):
        if serve["engine"] == "vllm":
            self.reasons.append(
                f"One replica without autoscaling and no {self.name('replicas')} set: vLLM serves the model itself "
                "(serve.engine=vllm)."
            )
            return
        target = f"{self.name('target_concurrency')}={serve['target_ongoing_requests']}"
        self.reasons.append(
            "Ray Serve LLM runs the replicas behind one endpoint and routes each request to one of them "
            f"(serve.engine=serve_llm). A replica takes at most max_ongoing_requests={serve['max_ongoing_requests']} "
            f"requests at once: the full sequences its KV cache holds ({sequences}), at least {target} and at most "
            f"vLLM's default max_num_seqs ({most_seqs})"
            + (f"; autoscaling aims at {target} ongoing requests per replica." if self.request.autoscaling else ".")
        )

    def _explain_gpu_inputs(self):
        request = self.request
        head = request.nodes[0]
        if request.cpu_kvcache_space_gib is not None:
            self.warnings.append(
                f"{self.name('cpu_kvcache_space_gib')}={request.cpu_kvcache_space_gib} is ignored: the nodes have "
                f"GPUs, whose KV cache is sized by {self.name('gpu_memory_utilization')}."
            )
        if request.usable_gpus[0] < head["gpus"]:
            head_gpus = "{}={}".format(self.name("head_gpus"), str(request.head_gpus).lower())
            self.reasons.append(
                "The head {} registers {} of its {} GPU(s) with Ray ({}).".format(
                    head["name"], request.usable_gpus[0], head["gpus"], head_gpus
                )
            )
            self.warnings.append(
                "{} GPU(s) of the head {} stay idle because {}; set {}=true to serve with them.".format(
                    head["gpus"] - request.usable_gpus[0], head["name"], head_gpus, self.name("head_gpus")
                )
            )

    def _layout_memory(self, model, layout):
        return layout_memory(model, self.request.nodes, layout, self.settings)

    def _first_fitting(self, model, layouts):
        """``(layout, memory)`` of the preferred layout that fits; without a requested max_model_len, of the first
        that holds at least one KV block (max_model_len is lowered to it). Raises PlanError when none does."""
        evaluated = [(layout, self._layout_memory(model, layout)) for layout in layouts]
        for layout, memory in evaluated:
            if memory["fits"]:
                return layout, memory
        if not self.request.length_given:
            for layout, memory in evaluated:
                if memory["blocks"] > 0:
                    return layout, memory
        layout, memory = evaluated[0]
        raise PlanError(
            self._does_not_fit_message(model, layout, memory),
            {
                "tensor_parallel_size": layout["tp"],
                "pipeline_parallel_size": layout["pp"],
                "memory": _memory_result(memory, self.settings.max_model_len, "GPU"),
            },
        )

    def _shorten_to_fit(self, chosen, memory, measure):
        """No max_model_len was asked for: shorten the model's own limit to what the KV cache holds; ``measure``
        gives a layout's memory at the shortened length."""
        fitting = memory["blocks"] * memory["block_size"]
        option = self.name("max_model_len")
        self.warnings.append(
            f"The model's max_position_embeddings={_fmt_int(self.settings.max_model_len)} does not fit the KV cache "
            f"({_fmt_int(memory['tokens'])} tokens per GPU); {option} is lowered to {_fmt_int(fitting)}. Pass {option} "
            "to choose it yourself, or add GPUs."
        )
        self.settings = self.settings._replace(max_model_len=fitting)
        return measure(chosen)

    # --- why this layout

    def _explain_gpu_count(self, chosen):
        request = self.request
        usable_total = sum(request.usable_gpus)
        described = _describe_nodes(request.nodes, request.usable_gpus)
        world = chosen["world"]
        if world == usable_total:
            self.reasons.append(
                f"The nodes offer {usable_total} usable GPU(s) ({described}); the plan uses all of "
                "them because the cluster is dedicated to this model."
            )
            return
        cap = request.gpu_cap()[0]
        if cap is not None and world <= cap < usable_total:
            why = f"{request.describe_cap()} caps it"
        elif request.tensor_parallel_size is not None or request.pipeline_parallel_size is not None:
            why = "the requested {}/{} use that many".format(
                self.name("tensor_parallel_size"), self.name("pipeline_parallel_size")
            )
        else:
            why = (
                "every Ray worker gets the same number of GPUs ({} here), a multiple of a TP size that divides "
                "the {} attention heads, and no larger layout fits".format(
                    chosen["unit"], request.model["facts"]["num_attention_heads"]
                )
            )
        self.reasons.append(f"The plan uses {world} of the {usable_total} usable GPU(s) ({described}) because {why}.")
        self.warnings.append(f"{usable_total - world} GPU(s) stay idle: {why}.")

    def _explain_tp_and_pp(self, chosen):
        facts = self.request.model["facts"]
        unit = chosen["unit"]
        if chosen["cross_node_tp"]:
            self.reasons.append(
                "TP={} spans {} nodes of {} GPU(s) as requested; PP={}.".format(
                    chosen["tp"], chosen["tp"] // unit, unit, chosen["pp"]
                )
            )
            self.warnings.append(
                "Tensor parallelism crosses nodes: every layer all-reduces over the network between {} "
                "nodes, so throughput depends on its bandwidth (InfiniBand/RoCE recommended); pipeline "
                "parallelism across nodes sends far less.".format(chosen["tp"] // unit)
            )
        elif self.request.tensor_parallel_size is None:
            self.reasons.append(
                f"{_why_tp(chosen, facts)}: tensor parallelism all-reduces every layer, so it stays inside a node on "
                f"the fast interconnect; {_why_pp(chosen)}."
            )
        else:
            self.reasons.append(
                "TP={} and PP={} as requested; they are valid for the model and fit the nodes.".format(
                    chosen["tp"], chosen["pp"]
                )
            )
        if chosen["pp"] > 1:
            self.reasons.append(
                "PP={} splits the {} layers as {} per stage, as vLLM does.".format(
                    chosen["pp"],
                    facts["num_hidden_layers"],
                    "/".join(str(count) for count in pipeline_stage_layers(facts["num_hidden_layers"], chosen["pp"])),
                )
            )

    def _no_layout_message(self, search):
        request = self.request
        tp, pp = request.tensor_parallel_size, request.pipeline_parallel_size
        tp_name, pp_name = self.name("tensor_parallel_size"), self.name("pipeline_parallel_size")
        described = _describe_nodes(request.nodes, request.usable_gpus)
        capped = f" with {request.describe_cap()}" if request.gpu_cap()[0] is not None else ""
        if search.best is not None and tp is None and pp is None:
            return self._too_many_gpus_for_one_instance_message(search)
        if tp is not None and pp is not None:
            return (
                f"No placement of {tp_name}={tp} x {pp_name}={pp} fits the nodes ({described}): every Ray worker "
                "gets the same number of GPUs, a multiple of the TP size, and a node holds whole workers. Choose "
                "sizes whose product the nodes can hold that way."
            )
        if tp is not None:
            return (
                f"{tp_name}={tp} cannot be placed on the nodes ({described}){capped}: every Ray worker gets the same "
                "number of GPUs, a multiple of the TP size. Choose a TP size that divides the GPUs per node."
            )
        if pp is not None:
            valid = ", ".join(str(size) for size in valid_tensor_parallel_sizes(request.model["facts"]))
            return (
                f"{pp_name}={pp} cannot be placed on the nodes ({described}){capped} with a TP size valid for the "
                f"model ({valid}); leave {pp_name} unset to let the planner choose."
            )
        return f"No layout fits the nodes ({described}); check their gpus and {self.name('max_gpus')}."

    def _does_not_fit_message(self, model, layout, memory):
        text = self._shortfall_sentence(model, layout, memory)
        request = self.request
        if request.tensor_parallel_size is not None or request.pipeline_parallel_size is not None:
            # The requested sizes do not fit; say so when the planner's own choice would.
            wish = LayoutWish(max_gpus=request.gpu_cap()[0], cross_node=request.allow_cross_node_tp)
            for other in candidate_layouts(request.usable_gpus, model["facts"], wish):
                if self._layout_memory(model, other)["fits"]:
                    return text + (
                        f" These nodes hold it with TP={other['tp']}, PP={other['pp']}: leave "
                        f"{self.name('tensor_parallel_size')} and {self.name('pipeline_parallel_size')} unset to get "
                        "that plan."
                    )
        return text

    def _shortfall_sentence(self, model, layout, memory):
        """What one GPU of ``layout`` misses, and the smallest cluster of the same GPUs that would hold the model."""
        facts, nodes, settings = model["facts"], self.request.nodes, self.settings
        product = _product(nodes, layout["members"])
        text = (
            "{} does not fit on {} x {} with TP={}, PP={}: each GPU needs {} of weights + {} runtime overhead + {} of "
            "KV cache for one {}-token sequence, but {:.2g} x {} = {} is usable (short by {}).".format(
                facts.get("name") or "The model",
                layout["world"],
                product,
                layout["tp"],
                layout["pp"],
                _fmt_gib(memory["weights_bytes"]),
                _fmt_gib(memory["overhead_bytes"]),
                _fmt_gib(memory["needed_bytes"]),
                _fmt_int(settings.max_model_len),
                settings.gpu_memory_utilization,
                _fmt_gib(memory["device_bytes"]),
                _fmt_gib(memory["usable_bytes"]),
                _fmt_gib(memory["needed_bytes"] - memory["kv_cache_bytes"]),
            )
        )
        per_node = max(node["gpus"] for node in nodes)
        gpus, shapes = smallest_fitting_cluster(model, dict(nodes[layout["members"][0]]), per_node, settings)
        if gpus is None:
            return text + (
                f" No number of these GPUs holds it (beyond {largest_useful_world(facts, per_node)} GPUs neither PP, "
                "at most one stage per layer, nor TP inside a node can split it further); use GPUs with more memory, "
                f"a shorter {self.name('max_model_len')} or a quantized model."
            )
        return text + " It needs {} x {}: {}.".format(gpus, product, ", or ".join(shapes))

    # --- the Ray layout

    def _ray_layout(self, chosen, counts):
        """``chosen``: the GPUs of every replica (its ``replica_world`` GPUs per replica); ``counts``: ReplicaCount."""
        if self.request.platform == "hosts":
            return {"hosts": self._hosts_layout(chosen)}
        return {"kuberay": self._kuberay_layout(chosen, counts)}

    def _hosts_layout(self, chosen):
        nodes = self.request.nodes
        head = nodes[0]
        used = used_gpus_by_node(nodes, chosen)
        head_used = used.get(head["name"], 0)
        workers = [{"name": node["name"], "num_gpus": used[node["name"]]} for node in nodes[1:] if node["name"] in used]
        idle = [node["name"] for node in nodes if node["name"] not in used and node["gpus"]]
        self.reasons.append(
            "Ray on hosts: the head {} starts with --num-gpus={} and {} worker host(s) with --num-gpus={}, so Ray "
            "registers exactly the {} GPUs of the plan.".format(
                head["name"],
                head_used,
                len(workers),
                "/".join(sorted({str(w["num_gpus"]) for w in workers})) or "-",
                chosen["world"],
            )
        )
        return {"head": {"name": head["name"], "num_gpus": head_used}, "workers": workers, "idle": idle}

    def _kuberay_layout(self, chosen, counts):
        nodes = self.request.nodes
        head = nodes[0]
        unit = chosen["unit"]
        # One Ray worker pod per unit of GPUs; the head pod carries one unit only when head_gpus asks for it.
        head_used = used_gpus_by_node(nodes, chosen).get(head["name"], 0)
        head_pod_gpus = unit if self.request.head_gpus is not False and head_used else 0
        pods_per_node = _worker_pods_per_node(nodes, chosen, head_pod_gpus)
        most = sum(pods_per_node.values())
        # Autoscaling starts the pods of min_replicas model replicas; pods_per_node places those of max_replicas.
        started = most - (counts.most - counts.started) * (chosen["replica_world"] // unit)
        self._explain_kuberay(chosen, head_pod_gpus, pods_per_node, counts)
        self._explain_kuberay_autoscaling(started, most, counts)
        cpus, memories = _pod_shares(nodes, pods_per_node)
        return {
            "head": {"num_gpus": head_pod_gpus, "node": head["name"] if head_pod_gpus else None},
            "worker_group": {
                "replicas": started,
                "min_replicas": started,
                "max_replicas": most,
                "num_of_hosts": 1,
                "num_gpus": unit,
                "gpu_product": _product(nodes, chosen["members"]),
                "cpus": round(min(cpus), 3) if cpus else None,
                "memory_mib": min(memories) if memories else None,
                "pods_per_node": pods_per_node,
            },
        }

    def _explain_kuberay(self, chosen, head_pod_gpus, pods_per_node, counts):
        replicas = sum(pods_per_node.values())
        ray_nodes = replicas + (1 if head_pod_gpus else 0)
        # With autoscaling the pods placed are the most the group may have.
        pods = f"{'maxReplicas' if counts.autoscaled else 'replicas'}={replicas}"
        if head_pod_gpus:
            self.reasons.append(
                f"KubeRay: the head pod requests {head_pod_gpus} GPU(s) on {self.request.nodes[0]['name']} and is "
                f"itself one of the {ray_nodes} Ray nodes with GPUs, so the worker group has {pods}, not "
                f"{ray_nodes}: counting the head again would ask for a pod no node can hold."
            )
        else:
            self.reasons.append(
                "KubeRay: the head pod requests no GPU (num-gpus 0) and schedules beside a worker, so it is not "
                "counted as a GPU node; the {} GPU(s) of the plan run in {} worker pod(s) ({}).".format(
                    chosen["world"], pods, _per_node(pods_per_node.items())
                )
            )
        self.reasons.append(
            "KubeRay worker group: numOfHosts=1 because each of its replicas is one pod on one node (numOfHosts>1 "
            f"multiplies pods per replica for multi-host slices), and num-gpus={chosen['unit']} per pod equals its "
            "nvidia.com/gpu limit, which is what Ray detects in the container."
        )

    def _explain_kuberay_autoscaling(self, started, most, counts):
        if not counts.autoscaled:
            return
        self.reasons.append(
            f"KubeRay worker group for autoscaling: minReplicas={started} pod(s) for the {counts.started} model "
            f"replica(s) it starts with, maxReplicas={most} for {counts.most}; "
            + (
                "with maxReplicas above minReplicas, enable KubeRay's autoscaler (enableInTreeAutoscaling) so the pods "
                "follow Ray Serve's replicas."
                if most > started
                else "they are equal, so the worker group keeps a fixed size and Ray Serve scales within it."
            )
        )

    # --- choose on CPUs

    def _choose_cpu_layout(self, model):
        request = self.request
        tp = request.tensor_parallel_size or 1
        pp = request.pipeline_parallel_size or 1
        shape = {"tp": tp, "pp": pp, "world": tp * pp}
        if shape["world"] > 1:
            self.warnings.append(
                f"TP={tp} x PP={pp} on CPU: vLLM's CPU backend runs one worker per NUMA node or host; check the "
                "nodes have that many."
            )
        kv_space_gib = self._cpu_kv_space(model, shape)
        memory = self._cpu_memory(model, shape, kv_space_gib)
        self._check_cpu_ram(memory, kv_space_gib)
        result_memory = _memory_result(memory, self.settings.max_model_len, "CPU")
        result_memory["cpu_kvcache_space_gib"] = int(kv_space_gib)
        nodes = request.nodes
        counts = self._cpu_replica_counts(shape)
        replica_nodes = min(shape["world"], len(nodes))
        # Each CPU worker of each replica takes a node of its own, as far as the nodes go.
        used = nodes[: counts.most * shape["world"]]
        replicas = self._replica_parts(dict(shape, nodes=replica_nodes), memory, counts)
        self.reasons.append(f"{self._why_cpu()} with TP={tp}, PP={pp} (world size {shape['world']}).")
        self._explain_unused_gpus()
        placement = {
            "tensor_parallel_size": tp,
            "pipeline_parallel_size": pp,
            "world_size": shape["world"],
            "gpus_total": sum(node["gpus"] for node in nodes),
            "gpus_used": 0,
            "gpus_idle": sum(request.usable_gpus),
            "nodes_total": len(nodes),
            "nodes_used": len(used),
            "cross_node_tensor_parallel": False,
            "max_model_len": self.settings.max_model_len,
            "memory": result_memory,
            "ray_layout": _cpu_ray_layout(nodes, request.platform),
        }
        placement.update(replicas)
        return placement

    def _cpu_replica_counts(self, shape):
        """ReplicaCount of a CPU plan: replicas, the autoscaling range (its most defaults to what the nodes hold), or
        one; each CPU worker takes a node of its own, so more replicas than that are refused."""
        fit = max(1, len(self.request.nodes) // shape["world"])
        return self._counted_replicas(
            fit, 1, lambda option, asked: self._check_cpu_replicas_fit(option, asked, fit, shape)
        )

    def _check_cpu_replicas_fit(self, option, asked, fit, shape):
        if asked <= fit:
            return
        nodes = len(self.request.nodes)
        raise PlanError(
            f"{self.name(option)}={asked} asks for {asked} CPU replicas of {shape['world']} worker(s), but the {nodes} "
            f"node(s) hold {fit}: expected at most {fit}, seen {asked}. Each CPU worker takes a node of its own, since "
            f"its weights and KV cache are sized to {self.request.cpu_memory()[1]}. Fix: lower {self.name(option)} to "
            f"{fit}, or add nodes."
        )

    def _why_cpu(self):
        """Why the plan serves on CPUs: no node has a GPU, or the device option asks for CPUs."""
        if self.request.device_option == "cpu":
            return f"{self.name('device')}=cpu, so vLLM runs on the nodes' CPUs"
        return "No node has a GPU, so vLLM runs on CPU"

    def _explain_unused_gpus(self):
        """A CPU plan on nodes with GPUs (device=cpu): how many stay unused, and why no Ray node or pod takes them."""
        nodes = self.request.nodes
        unused = sum(node["gpus"] for node in nodes)
        if not unused:
            return
        how = (
            "every Ray node starts with --num-gpus=0"
            if self.request.platform == "hosts"
            else "no Ray pod requests nvidia.com/gpu"
        )
        self.reasons.append(
            f"The nodes' {unused} GPU(s) ({_describe_nodes(nodes, [node['gpus'] for node in nodes])}) stay unused: "
            f"{how}, as {self.name('device')}=cpu asks."
        )

    def _cpu_kv_space(self, model, shape):
        """VLLM_CPU_KVCACHE_SPACE in GiB: cpu_kvcache_space_gib, else what vLLM would take of the engine's memory."""
        given = self.request.cpu_kvcache_space_gib
        if given is not None:
            self.reasons.append(
                f"On CPU the KV cache is VLLM_CPU_KVCACHE_SPACE={given} GiB per worker, not a share of "
                f"{self.name('gpu_memory_utilization')}."
            )
            return given
        ram_mib, where, _pod = self.request.cpu_memory()
        utilization = self.settings.gpu_memory_utilization
        # Without VLLM_CPU_KVCACHE_SPACE vLLM takes gpu_memory_utilization of RAM minus what the process holds.
        kv_bytes = (
            ram_mib * MIB * utilization
            - model["weight_bytes"] / float(shape["world"])
            - self.settings.runtime_overhead_gib * GIB
        )
        kv_space_gib = max(int(kv_bytes // GIB), 0)
        self.reasons.append(
            "No {} given: {:.2g} of {} ({}) minus weights and overhead leaves {} GiB, passed to vLLM as "
            "VLLM_CPU_KVCACHE_SPACE.".format(
                self.name("cpu_kvcache_space_gib"), utilization, where, _fmt_gib(ram_mib * MIB), kv_space_gib
            )
        )
        return kv_space_gib

    def _cpu_stage_memory(self, model, shape, kv_space_gib):
        weights_per_worker = model["weight_bytes"] / float(shape["world"])
        overhead = self.settings.runtime_overhead_gib * GIB
        kv_bytes = int(kv_space_gib) * GIB
        budget = MemoryBudget(
            device_bytes=(self.request.cpu_memory()[0] or 0) * MIB,
            usable_bytes=kv_bytes + weights_per_worker + overhead,
            overhead_bytes=overhead,
            block_size=CPU_BLOCK_SIZE,
            kv_space_bytes=kv_bytes,
        )
        return stage_memory(model, shape["tp"], shape["pp"], budget, self.settings.max_model_len)

    def _cpu_memory(self, model, shape, kv_space_gib):
        """The CPU worker's memory; without a requested max_model_len, lowered to what the KV cache holds."""
        memory = self._cpu_stage_memory(model, shape, kv_space_gib)
        if memory["fits"]:
            return memory
        length, space = self.name("max_model_len"), self.name("cpu_kvcache_space_gib")
        if self.request.length_given:
            needed = memory["needed_bytes"]
            raise PlanError(
                f"The CPU KV cache of {kv_space_gib} GiB holds {_fmt_int(memory['tokens'])} tokens per worker, less "
                f"than one {length}={_fmt_int(self.settings.max_model_len)} sequence ({_fmt_gib(needed)}); raise "
                f"{space} to at least {int(math.ceil(gib(needed)))} or lower {length}."
            )
        fitting = memory["blocks"] * CPU_BLOCK_SIZE
        if fitting < 1:
            raise PlanError(f"The CPU KV cache of {kv_space_gib} GiB holds less than one block; raise {space}.")
        self.warnings.append(
            f"The model's max_position_embeddings={_fmt_int(self.settings.max_model_len)} does not fit the CPU KV "
            f"cache; {length} is lowered to {_fmt_int(fitting)}."
        )
        self.settings = self.settings._replace(max_model_len=fitting)
        return self._cpu_stage_memory(model, shape, kv_space_gib)

    def _check_cpu_ram(self, memory, kv_space_gib):
        ram_mib, where, _pod = self.request.cpu_memory()
        overhead = self.settings.runtime_overhead_gib * GIB
        needed_ram = memory["weights_bytes"] + int(kv_space_gib) * GIB + overhead
        if not ram_mib:
            self.warnings.append(
                f"The nodes report no memory_mib, so the planner cannot check that {_fmt_gib(needed_ram)} of RAM per "
                "worker is there."
            )
            return
        parts = (_fmt_gib(memory["weights_bytes"]), kv_space_gib, _fmt_gib(overhead), where, _fmt_gib(ram_mib * MIB))
        if needed_ram > ram_mib * MIB:
            raise PlanError(
                "The CPU plan needs {} of RAM per worker ({} weights + {} GiB KV cache + {} overhead) but {} is {}; "
                "lower {} or {}.".format(
                    _fmt_gib(needed_ram), *parts, self.name("cpu_kvcache_space_gib"), self._more_cpu_memory_fix()
                )
            )
        self.reasons.append(
            "Each CPU worker holds {} of weights + {} GiB KV cache + {} overhead within {} of {}: {} tokens, "
            "{:.2f} sequences of {} tokens.".format(
                *parts,
                _fmt_int(memory["tokens"]),
                memory["max_concurrency"],
                _fmt_int(self.settings.max_model_len),
            )
        )

    def _more_cpu_memory_fix(self):
        if self.request.cpu_memory()[2] is None:
            return "use a node with more memory"
        return f"raise that limit ({self.name('cpu_pods')})"

    # --- a user's KubeRay layout

    def override_kuberay(self, placement):
        """The placement's ray_layout, or the user's kuberay_layout merged over it once it holds the plan."""
        override = self.request.kuberay_layout
        if not override:
            return placement["ray_layout"]
        layout = merge_kuberay_layout(placement["ray_layout"]["kuberay"], override)
        check = KuberayLayoutCheck(self.request, placement, layout)
        check.run()
        self.warnings.extend(check.warnings)
        self.reasons.append(check.reason())
        return {"kuberay": layout}

    def place_cpu_pods(self, ray_layout, engine):
        """Say where the pods without GPUs (the Ray head, the vLLM driver) go beside the worker pods (GPU or CPU).

        Ray Serve LLM (``engine`` serve_llm) runs the replicas in the Ray pods: no driver pod is created to place."""
        request = self.request
        cpu_pods = [pod for pod in request.cpu_pods if engine == "vllm" or pod.get("ray_head")]
        if not (cpu_pods and "kuberay" in ray_layout):
            return
        if len(cpu_pods) < len(request.cpu_pods):
            self.reasons.append("Ray Serve LLM runs the replicas in the Ray pods: no vLLM driver pod is placed.")
        name = self.name
        sentences, problem = place_cpu_pods(
            request.nodes, ray_layout["kuberay"], cpu_pods, request.worker_request_ratio
        )
        self.reasons.extend(sentences)
        if problem:
            raise PlanError(
                f"{problem}: they would stay Pending and the deployment would never come up. Fix: lower "
                f"{name('worker_request_ratio')} to leave the nodes more room, lower the pods' requests "
                f"({name('cpu_pods')}), or send them to a CPU node pool with a node selector."
            )

    # --- assemble

    def assemble(self, sized, placement):
        """The result dict: the placement, then what was served and why, the vLLM arguments and the table."""
        request, dtypes = self.request, sized["dtypes"]
        plan = dict(placement)
        plan.update(
            {
                "changed": False,
                "platform": request.platform,
                "device": request.device,
                "dtype": dtypes["serve"],
                "kv_cache_dtype": dtypes["kv"],
                "gpu_memory_utilization": request.gpu_memory_utilization,
                "model": _model_result(sized["model"], sized["weight_source"]),
                "reasons": self.reasons,
                "warnings": self.warnings,
            }
        )
        plan["vllm_args"] = {
            "tensor_parallel_size": plan["tensor_parallel_size"],
            "pipeline_parallel_size": plan["pipeline_parallel_size"],
            "max_model_len": plan["max_model_len"],
            "gpu_memory_utilization": request.gpu_memory_utilization,
            "dtype": dtypes["serve"],
            "kv_cache_dtype": request.kv_cache_dtype,
            "quantization": "fp8" if dtypes["online_fp8"] else None,
        }
        plan["env"] = {}
        if request.device == "CPU":
            plan["env"]["VLLM_CPU_KVCACHE_SPACE"] = str(plan["memory"]["cpu_kvcache_space_gib"])
        plan["table_lines"] = format_plan_table(plan).splitlines()
        plan["table"] = "\n".join(plan["table_lines"])
        return plan


# ---------------------------------------------------------------------------------------------------------------------
# the planner's sentences and result parts


def _why_tp(chosen, facts):
    if chosen["tp"] == chosen["unit"]:
        return "TP={} fills the {} GPU(s) of each Ray worker".format(chosen["tp"], chosen["unit"])
    return (
        "TP={} is the largest size up to the {} GPU(s) of a Ray worker that divides the {} attention "
        "heads and suits the {} KV heads".format(
            chosen["tp"], chosen["unit"], facts["num_attention_heads"], facts["num_key_value_heads"]
        )
    )


def _why_pp(chosen):
    if chosen["pp"] == 1:
        return "PP=1 because one TP group holds the whole model"
    if len(chosen["members"]) > 1:
        return "PP={} spreads the layers over the {} nodes, whose stages pass only activations between them".format(
            chosen["pp"], len(chosen["members"])
        )
    return "PP={} splits the layers inside the node".format(chosen["pp"])


def _worker_pods_per_node(nodes, chosen, head_pod_gpus):
    """``{node name: KubeRay worker pods}``: one pod per unit of GPUs, less the unit the head pod carries."""
    pods_per_node = {}
    for index in chosen["members"]:
        pods = chosen["units_by_node"][index] - (1 if head_pod_gpus and index == 0 else 0)
        if pods:
            pods_per_node[nodes[index]["name"]] = pods
    return pods_per_node


def _pod_shares(nodes, pods_per_node):
    """``(CPUs, memory MiB)`` per worker pod on each node that reports them: its allocatable over its pods."""
    by_name = {node["name"]: node for node in nodes}
    cpus = [
        float(by_name[name]["cpus"]) / pods
        for name, pods in pods_per_node.items()
        if by_name[name].get("cpus") not in (None, "")
    ]
    memories = [
        by_name[name]["memory_mib"] // pods for name, pods in pods_per_node.items() if by_name[name].get("memory_mib")
    ]
    return cpus, memories


def _cpu_ray_layout(nodes, platform):
    """A CPU plan's Ray layout: every node joins, without GPUs."""
    if platform == "hosts":
        return {
            "hosts": {
                "head": {"name": nodes[0]["name"], "num_gpus": 0},
                "workers": [{"name": node["name"], "num_gpus": 0} for node in nodes[1:]],
                # Hosts with GPUs a CPU plan leaves unused (device=cpu).
                "idle": [node["name"] for node in nodes if node["gpus"]],
            }
        }
    return {
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
                "memory_mib": smallest_ram_mib(nodes),
                "pods_per_node": {node["name"]: 1 for node in nodes},
            },
        }
    }


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


def _model_result(model, weight_source):
    facts = model["facts"]
    return {
        "name": facts.get("name") or "",
        "model_type": facts["model_type"],
        "num_hidden_layers": facts["num_hidden_layers"],
        "num_attention_heads": facts["num_attention_heads"],
        "num_key_value_heads": facts["num_key_value_heads"],
        "head_dim": facts["head_dim"],
        "attention": facts["attention"],
        "max_position_embeddings": facts.get("max_position_embeddings"),
        "quantization": (facts.get("quantization") or {}).get("method"),
        "weights_gib": _round(gib(model["weight_bytes"])),
        "weights_source": weight_source,
    }


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


def _fit_sentence(memory, settings, device_label):
    usable = "{:.2g} x {} = {}".format(
        settings.gpu_memory_utilization, _fmt_gib(memory["device_bytes"]), _fmt_gib(memory["usable_bytes"])
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
            _fmt_int(settings.max_model_len),
        )
    )
    if memory["fits"]:
        return text + " (fits with {} to spare beyond one full sequence).".format(_fmt_gib(memory["margin_bytes"]))
    return text + " (misses by {}).".format(_fmt_gib(-memory["margin_bytes"]))


# ---------------------------------------------------------------------------------------------------------------------
# a user's KubeRay layout (kuberay_layout)

KUBERAY_SHAPE = (
    "{head: {num_gpus, node}, worker_group: {replicas, min_replicas, max_replicas, num_of_hosts, num_gpus, "
    "gpu_product, cpus, memory_mib, pods_per_node}}"
)


def normalise_kuberay_layout(layout, label):
    """``{"head": {...}, "worker_group": {...}}`` with only the keys the override sets, counts as ints; raises
    PlanError naming an unknown key or a bad value (``label`` is how messages name the option)."""
    if not isinstance(layout, dict):
        raise PlanError(
            f"{label} must be a dict shaped like the plan's ray_layout.kuberay: expected {KUBERAY_SHAPE}, seen "
            f"{layout!r}; pass such a dict with only the keys to change."
        )
    _refuse_unknown_keys(layout, tuple(KUBERAY_KEYS), label)
    result = {}
    for part, keys in KUBERAY_KEYS.items():
        where = f"{label}.{part}"
        given = layout.get(part)
        given = {} if given is None else given
        if not isinstance(given, dict):
            raise PlanError(
                f"{where} must be a dict: expected keys among {', '.join(keys)}, seen {given!r}; pass a dict or "
                "leave it out."
            )
        _refuse_unknown_keys(given, keys, where)
        result[part] = {key: _kuberay_value(f"{where}.{key}", key, value) for key, value in given.items()}
    return result


def _refuse_unknown_keys(given, known, where):
    unknown = sorted(str(key) for key in given if key not in known)
    if unknown:
        raise PlanError(
            "{} has unknown key(s) {}: expected only {}, seen {}; remove or rename the unknown ones.".format(
                where, ", ".join(unknown), ", ".join(known), ", ".join(str(key) for key in given)
            )
        )


def _kuberay_value(where, key, value):
    if key in KUBERAY_MINIMUMS:
        return _whole_number(where, value, KUBERAY_MINIMUMS[key])
    if key == "memory_mib":
        return None if value is None else _whole_number(where, value, 1)
    if key == "pods_per_node":
        if not isinstance(value, dict):
            raise PlanError(
                f"{where}={value!r} is not a dict: expected {{node name: worker pods}}, seen {value!r}; pass one "
                "entry per node that runs worker pods, or leave it out."
            )
        return {node: _whole_number(f"{where}.{node}", count, 1) for node, count in value.items()}
    if key == "cpus":
        if value is None or (_is_number(value) and value > 0):
            return value
        raise PlanError(
            f"{where}={value!r} is not a CPU count: expected a number above 0 or null, seen {value!r}; set the "
            "CPUs one worker pod may use, or null to use the ray_cluster role's default."
        )
    if value is None or isinstance(value, str):
        return value
    raise PlanError(f"{where}={value!r} is not a name: expected a string or null, seen {value!r}; quote it.")


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _whole_number(where, value, minimum):
    if not (_is_number(value) and float(value).is_integer() and value >= minimum):
        raise PlanError(
            f"{where}={value!r} is not a whole number of at least {minimum}: expected a whole number >= {minimum}, "
            f"seen {value!r}; set it to one, or leave it out to keep the plan's value."
        )
    return int(value)


def merge_kuberay_layout(planned, override):
    """The plan's KubeRay layout with the override's keys on top.

    Keys the override leaves out come from the plan, with three exceptions that keep the layout consistent: an
    overridden replicas also sets min_replicas and max_replicas (the plan's cluster has a fixed size); pods_per_node,
    the plan's placement, is emptied (Kubernetes places the pods) when the override changes the number of worker
    pods or their GPUs; and a head left without GPUs is pinned to no node.
    """
    head = dict(planned["head"], **override["head"])
    group = dict(planned["worker_group"], **override["worker_group"])
    given = override["worker_group"]
    for key in ("min_replicas", "max_replicas"):
        if "replicas" in given and key not in given:
            group[key] = given["replicas"]
    planned_group = planned["worker_group"]
    # pods_per_node places the most pods the group may have (max_replicas; replicas unless it autoscales).
    moved = (
        group["max_replicas"] * group["num_of_hosts"] != planned_group["max_replicas"] * planned_group["num_of_hosts"]
        or group["num_gpus"] != planned_group["num_gpus"]
    )
    group["pods_per_node"] = {} if moved and "pods_per_node" not in given else dict(group["pods_per_node"])
    if "node" not in override["head"] and not head["num_gpus"]:
        head["node"] = None
    return {"head": head, "worker_group": group}


def replica_range_problem(group, label):
    """None when ``min_replicas <= replicas <= max_replicas`` in a worker group, else the sentence saying so."""
    low, count, high = group["min_replicas"], group["replicas"], group["max_replicas"]
    if low <= count <= high:
        return None
    fix = f"lower min_replicas to {count} or less" if low > count else f"raise max_replicas to {count} or more"
    return (
        f"{label}.worker_group has min_replicas={low}, replicas={count}, max_replicas={high}: expected "
        f"min_replicas <= replicas <= max_replicas, seen {low} <= {count} <= {high}; {fix}, or change replicas."
    )


class KuberayLayoutCheck:
    """A merged kuberay_layout against the plan (TP, PP, world size) and the nodes; ``run`` raises PlanError
    saying what was expected, what was seen and the fix, and collects a warning for GPUs the plan leaves idle."""

    def __init__(self, request, placement, layout):
        self.request = request
        self.label = request.name("kuberay_layout")
        self.head = layout["head"]
        self.group = layout["worker_group"]
        self.tp = placement["tensor_parallel_size"]
        self.pp = placement["pipeline_parallel_size"]
        # The GPUs the plan's replicas start with: world_size each.
        self.replicas = placement.get("replicas", 1)
        self.world = placement["world_size"] * self.replicas
        self.warnings = []

    def run(self):
        self._check_replica_range()
        self._check_head_node()
        self._check_pods_per_node()
        self._check_pod_gpus()
        self._check_total_gpus()
        if self.request.device == "GPU":
            self._check_world_size()
            self._check_tp_groups()
        else:
            self._check_no_gpus()

    def gpus(self):
        """GPUs the layout gives Ray: the head pod's and every worker pod's."""
        group = self.group
        return self.head["num_gpus"] + group["replicas"] * group["num_of_hosts"] * group["num_gpus"]

    def _gpu_sum(self):
        return "{} on the head pod + replicas={} x num_of_hosts={} x num_gpus={}".format(
            self.head["num_gpus"], self.group["replicas"], self.group["num_of_hosts"], self.group["num_gpus"]
        )

    def reason(self):
        group = self.group
        pods = "replicas={} x numOfHosts={} worker pod(s)".format(group["replicas"], group["num_of_hosts"])
        if self.request.device == "CPU":
            return (
                f"ray_layout.kuberay comes from the user option {self.label}, merged over the planned layout and "
                f"checked against the nodes: {pods} without GPUs serve the CPU plan (TP={self.tp} x PP={self.pp})."
            )
        return (
            f"ray_layout.kuberay comes from the user option {self.label}, merged over the planned layout and checked "
            f"against the plan and the nodes: the head pod has {self.head['num_gpus']} GPU(s) and {pods} have "
            f"{group['num_gpus']} GPU(s) each, {self.gpus()} GPUs for the {self._planned()}."
        )

    def _sizes(self):
        """``TP=8 x PP=2``, or ``4 x TP=8 x PP=1`` for 4 replicas."""
        sizes = f"TP={self.tp} x PP={self.pp}"
        return sizes if self.replicas == 1 else f"{self.replicas} x {sizes}"

    def _planned(self):
        """``world size of 16 (TP=8 x PP=2)``, or ``4 replicas of world size 8 (TP=8 x PP=1), 32 GPUs``."""
        if self.replicas == 1:
            return f"world size of {self.world} ({self._sizes()})"
        each = self.world // self.replicas
        return f"{self.replicas} replicas of world size {each} (TP={self.tp} x PP={self.pp}), {self.world} GPUs"

    def _check_replica_range(self):
        problem = replica_range_problem(self.group, self.label)
        if problem:
            raise PlanError(problem)

    def _check_head_node(self):
        node_name = self.head.get("node")
        if node_name is None:
            return
        by_name = {node["name"]: node for node in self.request.nodes}
        where = f"{self.label}.head"
        if node_name not in by_name:
            raise PlanError(
                f"{where}.node={node_name!r} is not one of the nodes: expected one of {', '.join(by_name)}, seen "
                f"{node_name!r}; name the node the head pod must run on, or null."
            )
        gpus, wanted = by_name[node_name]["gpus"], self.head["num_gpus"]
        if wanted > gpus:
            raise PlanError(
                f"{where}.num_gpus={wanted} is more than its node {node_name} has: expected at most {gpus}, seen "
                f"{wanted}; lower {where}.num_gpus or set {where}.node to a node with more GPUs."
            )

    def _check_pods_per_node(self):
        pods = self.group["pods_per_node"]
        if not pods:
            return
        where = f"{self.label}.worker_group.pods_per_node"
        names = [node["name"] for node in self.request.nodes]
        unknown = [name for name in pods if name not in names]
        if unknown:
            raise PlanError(
                f"{where} names {', '.join(unknown)}, not among the nodes: expected names from {', '.join(names)}, "
                f"seen {', '.join(pods)}; use the nodes' names."
            )
        # pods_per_node places the most pods the group may have: max_replicas (replicas unless it autoscales).
        count_key = "replicas" if self.group["max_replicas"] == self.group["replicas"] else "max_replicas"
        expected = self.group[count_key] * self.group["num_of_hosts"]
        if sum(pods.values()) != expected:
            raise PlanError(
                f"{where} places {sum(pods.values())} pod(s), but {count_key}={self.group[count_key]} x "
                f"num_of_hosts={self.group['num_of_hosts']} makes {expected}: expected {expected}, seen "
                f"{sum(pods.values())}; make them agree, or leave pods_per_node out."
            )
        for node in self.request.nodes:
            self._check_node_pods(node, pods.get(node["name"], 0), where)

    def _check_node_pods(self, node, pods, where):
        gpus_each = self.group["num_gpus"]
        head_gpus = self.head["num_gpus"] if self.head.get("node") == node["name"] else 0
        if pods * gpus_each + head_gpus <= node["gpus"]:
            return
        room = max(node["gpus"] - head_gpus, 0) // gpus_each
        raise PlanError(
            f"{where} puts {pods} pod(s) of {gpus_each} GPU(s) on {node['name']}, which has {node['gpus']}"
            f"{' beside the head pod' if head_gpus else ''}: expected at most {room} pod(s) there, seen {pods}; move "
            "pods to other nodes."
        )

    def _check_pod_gpus(self):
        largest = max(self.request.nodes, key=lambda node: node["gpus"])
        for where, wanted in (
            (f"{self.label}.worker_group.num_gpus", self.group["num_gpus"]),
            (f"{self.label}.head.num_gpus", self.head["num_gpus"]),
        ):
            if wanted > largest["gpus"]:
                raise PlanError(
                    f"{where}={wanted} asks for more GPUs in one pod than any node has: expected at most "
                    f"{largest['gpus']} (the GPUs of {largest['name']}), seen {wanted}; lower {where} to "
                    f"{largest['gpus']} or less."
                )

    def _check_total_gpus(self):
        nodes = self.request.nodes
        total = sum(node["gpus"] for node in nodes)
        if self.gpus() > total:
            raise PlanError(
                f"{self.label} asks for {self.gpus()} GPUs ({self._gpu_sum()}) but the nodes have {total} "
                f"({_describe_nodes(nodes, [node['gpus'] for node in nodes])}): expected at most {total}, seen "
                f"{self.gpus()}; lower {self.label}.worker_group.replicas or num_gpus."
            )

    def _check_no_gpus(self):
        """A CPU plan's pods ask for no GPU: vLLM would not use it, and the pod would hold it from other work."""
        if self.gpus():
            device = self.request.name("device")
            raise PlanError(
                f"{self.label} asks for {self.gpus()} GPUs ({self._gpu_sum()}), but the plan serves on CPUs "
                f"({device}={self.request.device_option}): expected 0 GPUs, seen {self.gpus()}; set "
                f"{self.label}.worker_group.num_gpus and head.num_gpus to 0, or plan on GPUs ({device}=gpu or auto)."
            )

    def _check_world_size(self):
        have, name = self.gpus(), self.request.name
        if have < self.world:
            what = "the plan's world size" if self.replicas == 1 else f"the plan's {self.replicas} replicas"
            fewer = f" or {name('replicas')}" if self.replicas > 1 else ""
            raise PlanError(
                f"{self.label} gives Ray {have} GPUs ({self._gpu_sum()}), fewer than {what}: expected at least "
                f"{self.world} ({self._sizes()}), seen {have}; raise "
                f"{self.label}.worker_group.replicas or num_gpus, or set {name('tensor_parallel_size')} and "
                f"{name('pipeline_parallel_size')}{fewer} to sizes whose product is at most {have}."
            )
        if have > self.world:
            self.warnings.append(
                f"{self.label} gives Ray {have} GPUs ({self._gpu_sum()}), {have - self.world} more than the plan's "
                f"{self._planned()}; the extra GPU(s) stay idle."
            )

    def _check_tp_groups(self):
        largest = max(node["gpus"] for node in self.request.nodes)
        if self.tp > largest or self.request.allow_cross_node_tp:
            return
        for where, gpus in (
            (f"{self.label}.worker_group.num_gpus", self.group["num_gpus"] if self.group["replicas"] else 0),
            (f"{self.label}.head.num_gpus", self.head["num_gpus"]),
        ):
            if gpus % self.tp:
                raise PlanError(
                    f"{where}={gpus} is not a multiple of TP={self.tp}, so a tensor-parallel group would be split "
                    f"across pods although TP={self.tp} fits in one node: expected a multiple of {self.tp}, seen "
                    f"{gpus}; set {where} to {max(self.tp, gpus // self.tp * self.tp)}, or set "
                    f"{self.request.name('allow_cross_node_tp')}=true to accept TP across pods."
                )


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
    """A short fixed-width table of the plan: nodes, GPUs used and idle, replicas x (TP x PP), memory per GPU, KV
    tokens per replica, and the full-length sequences all replicas hold at once."""
    header, row = _table_cells(plan)
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


def _table_cells(plan):
    memory = plan["memory"]
    device = plan.get("device", "GPU")
    if device == "GPU":
        gpus, idle = "{} of {}".format(plan["gpus_used"], plan["gpus_total"]), str(plan.get("gpus_idle", 0))
        per_device = "{:.1f} + {:.1f} + {:.1f} of {:.1f} GiB".format(
            memory["weights_gib"], memory["runtime_overhead_gib"], memory["kv_cache_gib"], memory["usable_gib"]
        )
    else:
        gpus, idle = "CPU", "-"
        per_device = "{:.1f} + {:.1f} + {:.1f} GiB RAM".format(
            memory["weights_gib"], memory["runtime_overhead_gib"], memory["kv_cache_gib"]
        )
    started, most = _table_replicas(plan)
    count = str(started) if started == most else f"{started}-{most}"
    header = [
        "nodes",
        "GPUs used",
        "idle",
        "replicas x (TP x PP)",
        f"per {device}: weights + overhead + KV",
        "KV tokens/replica",
        "seqs x max_model_len",
    ]
    row = [
        "{} of {}".format(plan["nodes_used"], plan["nodes_total"]),
        gpus,
        idle,
        "{} x ({} x {})".format(count, plan["tensor_parallel_size"], plan["pipeline_parallel_size"]),
        per_device,
        _fmt_int(memory["kv_cache_tokens"]),
        "{:,.2f} x {}".format(most * memory["max_concurrency"], _fmt_int(plan["max_model_len"])),
    ]
    return header, row


def _table_replicas(plan):
    """``(replicas started, most replicas)`` of a plan; a plan without replica keys is one instance."""
    autoscaling = plan.get("autoscaling")
    if autoscaling:
        return autoscaling["min_replicas"], autoscaling["max_replicas"]
    replicas = plan.get("replicas", 1)
    return replicas, replicas


# ---------------------------------------------------------------------------------------------------------------------
# the ways in


def build_plan(nodes, model, platform, **options):
    """The plan for an already resolved ``model`` (resolve_model); ``options`` are PlanRequest's other fields."""
    return Planner(PlanRequest(nodes, model, platform, **options)).plan()


def plan_from_options(params):
    """The plan from the module's parameters (a dict shaped like its argument spec)."""
    return Planner(PlanRequest.from_params(params)).plan()
