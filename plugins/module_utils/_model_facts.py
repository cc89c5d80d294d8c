# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""Facts about a model that sizing needs: its architecture from config.json and its exact weight bytes.

Weight bytes come from the safetensors files themselves (each file starts with a little-endian u64 header length
and a JSON header listing every tensor's dtype, shape and byte range), or from the ``metadata.total_size`` of
``model.safetensors.index.json`` when the shards are not all present. Nothing here loads a tensor.
"""

from __future__ import annotations

import glob
import json
import os
import struct

CONFIG_NAME = "config.json"
INDEX_NAME = "model.safetensors.index.json"

# A safetensors header is JSON text; anything far larger than this is not a safetensors file.
MAX_HEADER_BYTES = 100 * 1024 * 1024

# Bytes per element of the dtype names safetensors writes in its header.
SAFETENSORS_DTYPE_BYTES = {
    "F64": 8,
    "I64": 8,
    "U64": 8,
    "F32": 4,
    "I32": 4,
    "U32": 4,
    "F16": 2,
    "BF16": 2,
    "I16": 2,
    "U16": 2,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "F8_E8M0": 1,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
}

# Bytes per element of the dtype names used by config.json (torch_dtype / dtype) and by vLLM's --dtype.
DTYPE_BYTES = {
    "float64": 8,
    "float32": 4,
    "float": 4,
    "bfloat16": 2,
    "float16": 2,
    "half": 2,
    "fp8": 1,
    "fp8_e4m3": 1,
    "fp8_e5m2": 1,
    "float8_e4m3fn": 1,
    "float8_e5m2": 1,
    "int8": 1,
}

# vLLM uses multi-head latent attention for these model types when kv_lora_rank is set.
MLA_MODEL_TYPES = ("deepseek_v2", "deepseek_v3", "deepseek_v32", "kimi_k2", "deepseek_mtp")


class ModelFactsError(Exception):
    """A problem with the model the operator can fix; the message names the file or key and what to do."""


def _normalise_dtype(name):
    if name is None:
        return None
    text = str(name).lower()
    if text.startswith("torch."):
        text = text[len("torch.") :]
    return text


def dtype_bytes(name):
    """Bytes per element of a config/vLLM dtype name, or None when unknown."""
    return DTYPE_BYTES.get(_normalise_dtype(name))


def read_safetensors_header(path):
    """The JSON header of a safetensors file, as a dict (tensor name -> {dtype, shape, data_offsets})."""
    try:
        with open(path, "rb") as stream:
            prefix = stream.read(8)
            if len(prefix) != 8:
                raise ModelFactsError(f"{path} is shorter than a safetensors header (8 bytes); the file is truncated.")
            (length,) = struct.unpack("<Q", prefix)
            if length <= 0 or length > MAX_HEADER_BYTES:
                raise ModelFactsError(
                    f"{path} declares a {length}-byte header, which no safetensors file has; the file is damaged "
                    "or is not safetensors."
                )
            raw = stream.read(length)
    except OSError as error:
        raise ModelFactsError(f"Cannot read {path}: {error}.") from error
    if len(raw) != length:
        raise ModelFactsError(
            f"{path} ends inside its header ({len(raw)} of {length} bytes); the download is incomplete."
        )
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise ModelFactsError(f"The header of {path} is not JSON ({error}); the file is damaged.") from error
    if not isinstance(header, dict):
        raise ModelFactsError(f"The header of {path} is not a JSON object; the file is damaged.")
    return header


def safetensors_header_totals(header, source="safetensors header"):
    """``{"bytes", "parameters", "bytes_by_dtype"}`` of the tensors a safetensors header lists."""
    total_bytes = 0
    parameters = 0
    by_dtype = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            start, end = entry["data_offsets"]
            shape = entry["shape"]
            dtype = entry["dtype"]
        except (KeyError, TypeError, ValueError):
            raise ModelFactsError(f"Tensor {name!r} in {source} has no dtype, shape or data_offsets.") from None
        size = int(end) - int(start)
        count = 1
        for dimension in shape:
            count *= int(dimension)
        total_bytes += size
        parameters += count
        by_dtype[dtype] = by_dtype.get(dtype, 0) + size
    return {"bytes": total_bytes, "parameters": parameters, "bytes_by_dtype": by_dtype}


def weight_bytes_from_dir(model_dir):
    """Exact bytes of the weights in ``model_dir``: ``{"bytes", "parameters", "bytes_by_dtype", "source"}``.

    ``parameters`` and ``bytes_by_dtype`` are None when only the index's total is known.
    """
    index_path = os.path.join(model_dir, INDEX_NAME)
    shards = sorted(glob.glob(os.path.join(model_dir, "*.safetensors")))
    if os.path.isfile(index_path):
        try:
            with open(index_path, encoding="utf-8") as stream:
                index = json.load(stream)
        except (OSError, ValueError) as error:
            raise ModelFactsError(f"Cannot read {index_path}: {error}.") from error
        weight_map = index.get("weight_map") or {}
        wanted = sorted(set(weight_map.values()))
        present = [name for name in wanted if os.path.isfile(os.path.join(model_dir, name))]
        if wanted and len(present) == len(wanted):
            return _sum_shards(
                [os.path.join(model_dir, name) for name in wanted],
                f"safetensors headers of {len(wanted)} shards",
            )
        total = (index.get("metadata") or {}).get("total_size")
        if not isinstance(total, int) or total <= 0:
            raise ModelFactsError(
                f"{index_path} has no positive metadata.total_size and {len(wanted) - len(present)} of its "
                f"{len(wanted)} shards are missing; download the model completely or pass model_config with "
                "model_params_b instead of model_path."
            )
        on_disk = f"{len(present)} of {len(wanted)} shards on disk" if wanted else "no shard on disk"
        return {
            "bytes": total,
            "parameters": None,
            "bytes_by_dtype": None,
            "source": f"metadata.total_size of {INDEX_NAME}, {on_disk}",
        }
    if shards:
        return _sum_shards(shards, f"safetensors headers of {len(shards)} file(s)")
    others = sorted(
        os.path.basename(path)
        for pattern in ("*.bin", "*.pt", "*.gguf")
        for path in glob.glob(os.path.join(model_dir, pattern))
    )
    raise ModelFactsError(
        "{} holds no *.safetensors files and no {}{}; the planner reads exact weight sizes only from safetensors. "
        "Convert the weights to safetensors, or pass model_config with model_params_b instead of model_path.".format(
            model_dir, INDEX_NAME, (" (found: {})".format(", ".join(others))) if others else ""
        )
    )


def _sum_shards(paths, source):
    total = {"bytes": 0, "parameters": 0, "bytes_by_dtype": {}, "source": source}
    for path in paths:
        part = safetensors_header_totals(read_safetensors_header(path), path)
        total["bytes"] += part["bytes"]
        total["parameters"] += part["parameters"]
        for dtype, size in part["bytes_by_dtype"].items():
            total["bytes_by_dtype"][dtype] = total["bytes_by_dtype"].get(dtype, 0) + size
    return total


def read_config(model_dir):
    path = os.path.join(model_dir, CONFIG_NAME)
    try:
        with open(path, encoding="utf-8") as stream:
            config = json.load(stream)
    except OSError as error:
        raise ModelFactsError(
            f"Cannot read {path} ({error.strerror or error}); model_path must be a model directory with a config.json."
        ) from error
    except ValueError as error:
        raise ModelFactsError(f"{path} is not valid JSON: {error}.") from error
    if not isinstance(config, dict):
        raise ModelFactsError(f"{path} is not a JSON object.")
    return config


def _first(config, *keys):
    for key in keys:
        value = config.get(key)
        if value is not None:
            return value
    return None


def _text_config(config):
    """Multimodal configs keep the language model's sizes under text_config (or llm_config)."""
    if _first(config, "num_hidden_layers", "n_layer", "num_layers") is None:
        for key in ("text_config", "llm_config", "language_config"):
            nested = config.get(key)
            if isinstance(nested, dict):
                return nested
    return config


def quantization_facts(config):
    """``{"method", "weight_bytes"}`` of a pre-quantized checkpoint, or None for an unquantized one.

    ``weight_bytes`` (bytes per quantized weight) is None when the method is not one the planner knows.
    """
    quant = config.get("quantization_config")
    if not isinstance(quant, dict):
        return None
    method = str(quant.get("quant_method") or quant.get("quant_type") or "unknown").lower()
    per_weight = None
    if method in ("fp8", "fbgemm_fp8", "modelopt"):
        per_weight = 1.0
    elif method in ("gptq", "awq", "gptq_marlin", "awq_marlin"):
        per_weight = float(quant.get("bits") or 4) / 8.0
    elif method == "bitsandbytes":
        per_weight = 0.5 if quant.get("load_in_4bit") else 1.0
    return {"method": method, "weight_bytes": per_weight, "config": quant}


def architecture_facts(config):
    """The sizes the planner needs, normalised across config.json spellings.

    Raises ModelFactsError naming the missing key when the config lacks one.
    """
    if not isinstance(config, dict):
        raise ModelFactsError(f"model_config must be a dict (the content of config.json), got {type(config).__name__}.")
    text = _text_config(config)
    layers = _first(text, "num_hidden_layers", "n_layer", "num_layers")
    heads = _first(text, "num_attention_heads", "n_head", "num_heads")
    hidden = _first(text, "hidden_size", "n_embd", "d_model")
    missing = [
        name
        for name, value in (("num_hidden_layers", layers), ("num_attention_heads", heads), ("hidden_size", hidden))
        if value is None
    ]
    if missing:
        raise ModelFactsError(
            "The model config has no {}; pass the model's complete config.json (model_path or model_config).".format(
                " or ".join(missing)
            )
        )
    layers, heads, hidden = int(layers), int(heads), int(hidden)
    if layers <= 0 or heads <= 0 or hidden <= 0:
        raise ModelFactsError(
            f"The model config has num_hidden_layers={layers}, num_attention_heads={heads}, hidden_size={hidden}; "
            "all must be positive."
        )
    kv_heads = _first(text, "num_key_value_heads", "num_kv_heads", "n_head_kv")
    if kv_heads is None:
        kv_heads = 1 if text.get("multi_query") else heads
    kv_heads = int(kv_heads)
    head_dim = text.get("head_dim")
    head_dim_source = "head_dim"
    if head_dim is None:
        head_dim = hidden // heads
        head_dim_source = "hidden_size / num_attention_heads"
    model_type = str(text.get("model_type") or config.get("model_type") or "")
    kv_lora_rank = text.get("kv_lora_rank")
    mla = kv_lora_rank is not None and (model_type in MLA_MODEL_TYPES or text.get("qk_rope_head_dim") is not None)
    facts = {
        "model_type": model_type,
        "architectures": list(config.get("architectures") or text.get("architectures") or []),
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": int(head_dim),
        "head_dim_source": head_dim_source,
        "hidden_size": hidden,
        "vocab_size": int(_first(text, "vocab_size", "padded_vocab_size") or 0),
        "tie_word_embeddings": bool(_first(text, "tie_word_embeddings", "tie_embeddings")),
        "max_position_embeddings": _first(
            text, "max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"
        ),
        "torch_dtype": _normalise_dtype(_first(config, "torch_dtype", "dtype") or _first(text, "torch_dtype", "dtype")),
        "quantization": quantization_facts(config),
        "attention": "MLA" if mla else ("MHA" if kv_heads == heads else ("MQA" if kv_heads == 1 else "GQA")),
        "kv_lora_rank": int(kv_lora_rank) if mla else None,
        "qk_rope_head_dim": int(text.get("qk_rope_head_dim") or 0) if mla else None,
        "name": str(config.get("_name_or_path") or config.get("_model_name_or_path") or ""),
    }
    if facts["max_position_embeddings"] is not None:
        facts["max_position_embeddings"] = int(facts["max_position_embeddings"])
    return facts


def kv_elements_per_token_per_layer(facts, tensor_parallel_size=1):
    """KV-cache elements one token takes in one layer on one GPU of a tensor-parallel group.

    Standard attention stores K and V for each KV head; vLLM shards KV heads over TP ranks and replicates them
    when TP exceeds their count. MLA stores one latent vector (kv_lora_rank + qk_rope_head_dim) per token and
    layer with no per-head K/V, and every TP rank keeps the whole latent cache.
    """
    if facts["attention"] == "MLA":
        return facts["kv_lora_rank"] + facts["qk_rope_head_dim"]
    kv_heads_per_rank = max(1, facts["num_key_value_heads"] // max(1, tensor_parallel_size))
    return 2 * kv_heads_per_rank * facts["head_dim"]


def embedding_parameters(facts):
    """Parameters of the input embedding plus, when untied, the output head."""
    per_matrix = facts["vocab_size"] * facts["hidden_size"]
    return per_matrix if facts["tie_word_embeddings"] else 2 * per_matrix


def load_model_dir(model_dir):
    """``{"config", "facts", "weights"}`` of a model directory on disk."""
    if not os.path.isdir(model_dir):
        raise ModelFactsError(
            f"model_path {model_dir} is not a directory; point it at the directory holding config.json "
            "and the safetensors files."
        )
    config = read_config(model_dir)
    facts = architecture_facts(config)
    if not facts["name"]:
        facts["name"] = os.path.basename(os.path.normpath(model_dir))
    return {"config": config, "facts": facts, "weights": weight_bytes_from_dir(model_dir)}
