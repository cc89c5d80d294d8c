"""model_download's completeness check, marker logic and fetch, on real safetensors files (written by safetensors)."""

from __future__ import annotations

import json
import os

import numpy
import pytest
from safetensors.numpy import save_file

from ansible_collections.llmops.ray_vllm.plugins.module_utils._model_dir import endpoint_url, read_marker
from ansible_collections.llmops.ray_vllm.plugins.module_utils._model_download import (
    PARTIAL_SUFFIX,
    ModelDownloadError,
    check_local,
    completeness_problems,
    fetch_model,
    finish,
    model_summary,
    needs_fetch,
    sdk_missing_message,
)

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


def test_an_empty_shard_or_an_unreadable_index_is_named(tmp_path):
    model = str(tmp_path / "m")
    write_model(model, shards=2)
    open(os.path.join(model, "model-00001-of-00002.safetensors"), "w").close()
    assert completeness_problems(model) == [
        "1 of the 2 weight shards listed in model.safetensors.index.json are missing or empty "
        "(first: model-00001-of-00002.safetensors)."
    ]
    with open(os.path.join(model, "model.safetensors.index.json"), "w") as handle:
        handle.write("{")
    problems = completeness_problems(model)
    assert len(problems) == 1 and problems[0].startswith(
        "%s is not valid JSON: " % os.path.join(model, "model.safetensors.index.json")
    )


def test_a_config_that_is_no_json_object_is_named(tmp_path):
    model = str(tmp_path / "m")
    write_model(model)
    with open(os.path.join(model, "config.json"), "w") as handle:
        handle.write("[]")
    assert completeness_problems(model) == ["%s is not a JSON object." % os.path.join(model, "config.json")]


def test_check_local_reports_the_model_or_what_is_missing(tmp_path):
    model = str(tmp_path / "m")
    write_model(model)
    result = check_local(model)
    assert result["changed"] is False and result["marker"] == {} and result["model"]["model_type"] == "llama"
    os.remove(os.path.join(model, "model.safetensors"))
    with pytest.raises(ModelDownloadError) as raised:
        check_local(model)
    assert str(raised.value).startswith("The model at %s is not complete: %s holds no" % (model, model))
    assert raised.value.result["problems"] == ["%s holds no *.safetensors weights." % model]


def hub(tmp_path, error=None):
    """A download function like download_with_sdk that writes a model, or raises ``error``; it records its calls."""
    calls = []

    def download(source, model_id, revision, target, token=None, endpoint=None):
        calls.append((source, model_id, revision, target, token, endpoint))
        if error is not None:
            raise error
        write_model(target)

    download.calls = calls
    return download


def fetch_params(dest, **change):
    params = dict(source="huggingface", model_id="org/m", revision="abc", dest=dest + "/", token=None, endpoint=None)
    params.update(change)
    return params


def test_fetch_in_check_mode_changes_nothing(tmp_path):
    dest = str(tmp_path / "m")
    download = hub(tmp_path)
    result = fetch_model(fetch_params(dest), check_mode=True, download=download)
    assert result["changed"] is True and result["reasons"] == ["no completion marker .ray_vllm_complete.json"]
    assert result["diff"] == {"before": {}, "after": {"source": "huggingface", "model_id": "org/m", "revision": "abc"}}
    assert download.calls == [] and os.listdir(str(tmp_path)) == []


def test_fetch_downloads_into_the_partial_directory_then_moves_it(tmp_path):
    dest = str(tmp_path / "m")
    download = hub(tmp_path)
    result = fetch_model(fetch_params(dest, token="t"), download=download)
    assert download.calls == [("huggingface", "org/m", "abc", dest + PARTIAL_SUFFIX, "t", None)]
    assert result["changed"] is True and result["path"] == dest and result["marker"]["revision"] == "abc"
    assert sorted(os.listdir(str(tmp_path))) == ["m"]
    again = fetch_model(fetch_params(dest), download=download)
    assert again["changed"] is False and again["reasons"] == [] and len(download.calls) == 1
    assert again["diff"]["before"] == again["diff"]["after"] == again["marker"]


def test_a_missing_sdk_names_the_package_the_interpreter_and_the_fix(tmp_path):
    dest = str(tmp_path / "m")
    missing = ImportError("No module named 'modelscope'")
    with pytest.raises(ModelDownloadError) as raised:
        fetch_model(fetch_params(dest, source="modelscope"), download=hub(tmp_path, missing))
    assert str(raised.value) == sdk_missing_message("modelscope", missing)
    assert "ImportError" in raised.value.result["exception"] and raised.value.result["changed"] is True
    assert sdk_missing_message("huggingface", "No module named 'huggingface_hub'", "/opt/venv/bin/python") == (
        "source=huggingface needs the Python package huggingface_hub, which the interpreter running this module "
        "(/opt/venv/bin/python) cannot import: No module named 'huggingface_hub'. Install huggingface_hub into that "
        "interpreter, or set ansible_python_interpreter to a Python that has it."
    )


def test_a_failed_download_says_where_it_resumes(tmp_path):
    dest = str(tmp_path / "m")
    with pytest.raises(ModelDownloadError) as raised:
        fetch_model(fetch_params(dest), download=hub(tmp_path, OSError("connection reset")))
    assert str(raised.value) == (
        "Downloading org/m@abc from huggingface failed: connection reset. What was fetched stays in %s.partial and "
        "the next run resumes from it." % dest
    )


def test_a_hub_endpoint_is_a_url_without_a_trailing_slash():
    assert endpoint_url("hub.example.com:8088") == "https://hub.example.com:8088"
    assert endpoint_url("http://172.17.0.1:8088/") == "http://172.17.0.1:8088"
