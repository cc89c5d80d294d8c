"""model_download's completeness check and marker logic, on real safetensors files (written by safetensors)."""

from __future__ import annotations

import json
import os

import numpy
from safetensors.numpy import save_file

from ansible_collections.llmops.ray_vllm.plugins.module_utils._model_download import (
    PARTIAL_SUFFIX,
    completeness_problems,
    finish,
    model_summary,
    needs_fetch,
)
from ansible_collections.llmops.ray_vllm.plugins.module_utils._model_marker import read_marker

CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 64,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "num_hidden_layers": 2,
    "vocab_size": 128,
    "torch_dtype": "float32",
}


def write_model(directory, shards=1):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "config.json"), "w") as handle:
        json.dump(CONFIG, handle)
    weight_map = {}
    for index in range(shards):
        name = "model.safetensors" if shards == 1 else "model-%05d-of-%05d.safetensors" % (index + 1, shards)
        tensor = "layers.%d.weight" % index
        save_file({tensor: numpy.ones((64, 64), dtype=numpy.float32)}, os.path.join(directory, name))
        weight_map[tensor] = name
    if shards > 1:
        with open(os.path.join(directory, "model.safetensors.index.json"), "w") as handle:
            json.dump({"metadata": {"total_size": shards * 64 * 64 * 4}, "weight_map": weight_map}, handle)


def test_a_complete_model_has_no_problems(tmp_path):
    write_model(str(tmp_path / "m"), shards=2)
    assert completeness_problems(str(tmp_path / "m")) == []
    summary = model_summary(str(tmp_path / "m"))
    assert summary["num_attention_heads"] == 4 and summary["num_key_value_heads"] == 2


def test_a_truncated_shard_is_named(tmp_path):
    model = str(tmp_path / "m")
    write_model(model, shards=2)
    shard = os.path.join(model, "model-00002-of-00002.safetensors")
    size = os.path.getsize(shard)
    with open(shard, "r+b") as handle:
        handle.truncate(size - 100)
    problems = completeness_problems(model)
    assert len(problems) == 1
    assert "model-00002-of-00002.safetensors has %d of its %d bytes" % (size - 100, size) in problems[0]


def test_a_missing_shard_and_config_are_named(tmp_path):
    model = str(tmp_path / "m")
    write_model(model, shards=3)
    os.remove(os.path.join(model, "model-00003-of-00003.safetensors"))
    os.remove(os.path.join(model, "config.json"))
    problems = " ".join(completeness_problems(model))
    assert "1 of the 3 weight shards listed in model.safetensors.index.json are missing" in problems
    assert "config.json" in problems


def test_no_directory_and_no_weights(tmp_path):
    assert "does not exist" in completeness_problems(str(tmp_path / "nothing"))[0]
    os.makedirs(str(tmp_path / "empty"))
    with open(str(tmp_path / "empty" / "config.json"), "w") as handle:
        json.dump(CONFIG, handle)
    assert completeness_problems(str(tmp_path / "empty")) == [
        "%s holds no *.safetensors weights." % (tmp_path / "empty")
    ]


def test_fetch_is_needed_until_marked_and_again_for_another_revision(tmp_path):
    dest = str(tmp_path / "models" / "m")
    reasons = needs_fetch(dest, "modelscope", "org/m", "v1")
    assert reasons and "no completion marker" in reasons[0]
    # A finished download: checked, marked, then moved into place.
    write_model(dest + PARTIAL_SUFFIX)
    finish(dest + PARTIAL_SUFFIX, dest, "modelscope", "org/m", "v1")
    assert not os.path.exists(dest + PARTIAL_SUFFIX)
    assert read_marker(dest)["revision"] == "v1"
    assert needs_fetch(dest, "modelscope", "org/m", "v1") == []
    assert needs_fetch(dest, "modelscope", "org/m", "v2") == ["revision is 'v1', wanted 'v2'"]
    # A marked directory whose weights were damaged afterwards is fetched again.
    with open(os.path.join(dest, "model.safetensors"), "r+b") as handle:
        handle.truncate(50)
    assert needs_fetch(dest, "modelscope", "org/m", "v1")


def test_finish_replaces_an_older_model(tmp_path):
    dest = str(tmp_path / "m")
    write_model(dest)
    finish_source = dest + PARTIAL_SUFFIX
    write_model(finish_source, shards=2)
    finish(finish_source, dest, "huggingface", "org/m", "abc123")
    assert os.path.exists(os.path.join(dest, "model.safetensors.index.json"))
    assert not os.path.exists(dest + ".old")
    assert read_marker(dest)["source"] == "huggingface"
