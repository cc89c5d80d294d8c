# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The Ray Serve LLM application built from a real plan (the planner on the demo model's recorded config) and the
vLLM settings the role computes from it. Deploying it for real: tests/integration/test_site_local_replicas.py."""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.llmops.ray_vllm.plugins.module_utils import _deployment_plan as dp
from ansible_collections.llmops.ray_vllm.plugins.module_utils import _serve_llm as serve_llm
from ansible_collections.llmops.ray_vllm.plugins.module_utils._vllm_command import serving_settings

MODEL_CONFIG = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "fixtures", "models", "smollm2-135m-instruct"
)
KEY = "k" * 40


def demo_plan(**options):
    with open(os.path.join(MODEL_CONFIG, "config.json"), encoding="utf-8") as stream:
        model = dp.resolve_model(model_config=json.load(stream), model_params_b=0.135, model_name="SmolLM2")
    nodes = [{"name": f"node-{index}", "gpus": 0, "memory_mib": 24 * 1024, "cpus": 2.0} for index in range(2)]
    return dp.build_plan(nodes, model, "hosts", dtype="float32", max_model_len=2048, cpu_kvcache_space_gib=1, **options)


def settings(plan):
    requested = {"model": "/models/smollm2", "served_model_name": "smollm2", "host": "127.0.0.1", "port": 8000}
    return serving_settings(requested, plan)


def llm_config(application):
    return application["args"]["llm_configs"][0]


def test_two_replicas_carry_the_plans_engine_arguments_and_placement():
    plan = demo_plan(replicas=2)
    effective = settings(plan)
    application = serve_llm.serve_llm_application(effective, plan, serve_llm.api_key_digest(KEY, "llm"))
    config = llm_config(application)
    assert application["import_path"] == "ray.serve.llm:build_openai_app"
    assert config["model_loading_config"] == {"model_id": "smollm2", "model_source": "/models/smollm2"}
    assert config["accelerator_config"] == {"kind": "cpu"}
    assert config["engine_kwargs"] == {
        "tensor_parallel_size": 1, "pipeline_parallel_size": 1, "dtype": "float32", "enforce_eager": True,
        "max_model_len": 2048,
    }  # fmt: skip
    assert config["placement_group_config"] == {"bundles": [{"CPU": 1}], "strategy": "STRICT_PACK"}
    router = config["deployment_config"]["request_router_config"]
    assert router["request_router_class"].endswith(":PrefixCacheAffinityRouter")
    assert router["request_router_kwargs"] == {"imbalanced_threshold": plan["serve"]["target_ongoing_requests"]}
    # The count lives in the application's deployments list, which Serve applies in place.
    assert "num_replicas" not in config["deployment_config"]
    (scaling,) = application["deployments"]
    assert scaling["name"] == "LLMServer:smollm2"
    # A fixed count is a range pinned to it: going to autoscaling later changes no code version (no restart).
    assert "num_replicas" not in scaling
    assert scaling["autoscaling_config"] == {
        "min_replicas": 2, "initial_replicas": 2, "max_replicas": 2,
        "target_ongoing_requests": plan["serve"]["target_ongoing_requests"],
    }  # fmt: skip
    assert scaling["max_ongoing_requests"] == plan["serve"]["max_ongoing_requests"]
    assert config["runtime_env"] == {"env_vars": {"VLLM_CPU_KVCACHE_SPACE": "1"}}
    assert serve_llm.expected_replicas(effective, plan) == {"LLMServer:smollm2": 2}


def test_the_key_never_enters_the_config_only_its_digest():
    plan = demo_plan(replicas=2)
    application = serve_llm.serve_llm_application(settings(plan), plan, serve_llm.api_key_digest(KEY, "llm"))
    text = json.dumps(application)
    assert KEY not in text
    digest = application["args"]["ingress_cls_config"]["ingress_extra_kwargs"]["api_key_digest"]
    assert set(digest) == {"salt", "iterations", "digest"} and digest["iterations"] >= 100_000
    assert application["args"]["ingress_cls_config"]["ingress_cls"] == "llmops_serve_ingress:KeyedOpenAiIngress"


def test_autoscaling_takes_the_plans_range_and_the_users_extra_keys():
    plan = demo_plan(min_replicas=1, max_replicas=2, target_concurrency=1)
    effective = settings(plan)
    application = serve_llm.serve_llm_application(
        effective, plan, serve_llm.api_key_digest(KEY, "llm"), {"autoscaling": {"downscale_delay_s": 10}}
    )
    (deployment,) = application["deployments"]
    assert "num_replicas" not in deployment
    assert deployment["autoscaling_config"] == {
        "min_replicas": 1, "initial_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 1,
        "downscale_delay_s": 10,
    }  # fmt: skip
    assert serve_llm.expected_replicas(effective, plan) == {"LLMServer:smollm2": 1}


def test_a_plan_without_replica_keys_is_refused_with_the_fix():
    plan = demo_plan(replicas=2)
    del plan["placement_group"]
    with pytest.raises(serve_llm.ServeLlmError, match="Plan again"):
        serve_llm.serve_llm_application(settings(plan), plan, serve_llm.api_key_digest(KEY, "llm"))


def test_an_empty_key_is_refused():
    with pytest.raises(serve_llm.ServeLlmError, match="never deployed without one"):
        serve_llm.api_key_digest("", "llm")


def test_a_new_count_changes_only_the_deployments_list():
    one, two = demo_plan(replicas=1), demo_plan(replicas=2)
    digest = serve_llm.api_key_digest(KEY, "llm")
    first = serve_llm.serve_llm_application(settings(one), one, digest)
    second = serve_llm.serve_llm_application(settings(two), two, digest)
    assert first["args"] == second["args"]
    assert first["deployments"] != second["deployments"]
