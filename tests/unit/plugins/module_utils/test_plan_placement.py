"""Where the Ray head and the vLLM driver go beside KubeRay's worker pods (_plan_placement), on the seed's nodes."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from ansible_collections.llmops.ray_vllm.plugins.module_utils import _deployment_plan as dp
from ansible_collections.llmops.ray_vllm.plugins.module_utils._plan_placement import (
    DEFAULT_WORKER_REQUEST_RATIO,
    place_cpu_pods,
    worker_pod_requests,
)

MODELS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "fixtures", "models")
# The seed: two A100 nodes, 32 CPUs and 262044 MiB allocatable each (tests/k8s_testbed/seeds/gpu-nodes-2.yaml).
NODES = [
    {"name": "gpu-worker-1", "gpus": 1, "cpus": 32.0, "memory_mib": 262044},
    {"name": "gpu-worker-2", "gpus": 1, "cpus": 32.0, "memory_mib": 262044},
]
LAYOUT = {
    "head": {"num_gpus": 0, "node": None},
    "worker_group": {"cpus": 32.0, "memory_mib": 262044, "pods_per_node": {"gpu-worker-1": 1, "gpu-worker-2": 1}},
}
HEAD = {"name": "the Ray head pod", "cpus": 4.0, "memory_mib": 16384.0, "ray_head": True}
DRIVER = {"name": "the vLLM driver pod", "cpus": 2.0, "memory_mib": 8192.0}


def test_worker_requests_are_the_ratio_of_their_share():
    assert worker_pod_requests(LAYOUT["worker_group"], 0.8) == (25, 209635)
    assert worker_pod_requests({"cpus": 1.0, "memory_mib": None}, 0.5) == (1, None)


def test_the_head_and_the_driver_fit_in_what_the_workers_leave():
    sentences, problem = place_cpu_pods(NODES, LAYOUT, [DRIVER, HEAD], 0.8)
    assert problem is None
    assert sentences == [
        "the Ray head pod (4 CPU, 16.0 GiB) fits beside the worker pod(s) on gpu-worker-1.",
        "the vLLM driver pod (2 CPU, 8.0 GiB) fits beside the worker pod(s) on gpu-worker-1.",
    ]


def test_workers_that_request_everything_leave_no_room_and_say_so():
    sentences, problem = place_cpu_pods(NODES, LAYOUT, [HEAD, DRIVER], 1.0)
    assert sentences == []
    assert problem.startswith("the Ray head pod (4 CPU, 16.0 GiB), the vLLM driver pod (2 CPU, 8.0 GiB) do(es) not fit")
    assert "gpu-worker-1: 0 CPU, 0.0 GiB" in problem


def test_a_pod_sent_to_a_node_pool_is_only_named_and_a_gpu_head_takes_its_node():
    pinned = dict(DRIVER, node_selector={"pool": "cpu"})
    gpu_head = dict(LAYOUT, head={"num_gpus": 1, "node": "gpu-worker-2"})
    sentences, problem = place_cpu_pods(NODES, gpu_head, [HEAD, pinned], 0.8)
    assert problem is None
    assert sentences == [
        "the Ray head pod (4 CPU, 16.0 GiB) goes to gpu-worker-2 with its GPU(s).",
        "the vLLM driver pod (2 CPU, 8.0 GiB) goes to the nodes matching {'pool': 'cpu'}, outside the GPU nodes "
        "planned here.",
    ]


def test_nodes_without_allocatable_are_left_to_the_scheduler():
    sentences, problem = place_cpu_pods([{"name": "n", "cpus": None, "memory_mib": None}], LAYOUT, [HEAD])
    assert problem is None and "the scheduler places them" in sentences[0]


def seed_plan(platform="kubernetes", **options):
    config_path = os.path.join(MODELS, "deepseek-r1-distill-llama-70b", "config.json")
    with open(config_path, encoding="utf-8") as handle:
        model = dp.resolve_model(model_config=json.load(handle), model_params_b=70.6)
    nodes = [dict(node, gpu_memory_mib=81920, gpu_product="NVIDIA-A100-SXM4-80GB") for node in NODES]
    return dp.build_plan(nodes, model, platform, max_model_len=8096, **options)


def test_the_plan_says_where_the_head_and_the_driver_go():
    plan = seed_plan(cpu_pods=[HEAD, DRIVER])
    assert "the Ray head pod (4 CPU, 16.0 GiB) fits beside the worker pod(s) on gpu-worker-1." in plan["reasons"]


def test_the_plan_refuses_pods_that_would_stay_pending_by_their_names():
    with pytest.raises(dp.PlanError) as error:
        seed_plan(
            cpu_pods=[HEAD],
            worker_request_ratio=1.0,
            option_names={
                "worker_request_ratio": "ray_cluster_worker_request_ratio",
                "cpu_pods": "ray_cluster_head_cpus",
            },
        )
    assert "would stay Pending" in error.value.msg and "lower ray_cluster_worker_request_ratio" in error.value.msg
    with pytest.raises(dp.PlanError, match="worker_request_ratio=1.5 must be above 0 and at most 1"):
        seed_plan(worker_request_ratio=1.5)
    with pytest.raises(dp.PlanError, match="only applies with platform=kubernetes"):
        seed_plan("hosts", cpu_pods=[HEAD])


def test_the_planners_request_ratio_is_the_ray_cluster_roles_default():
    defaults = os.path.join(MODELS, "..", "..", "..", "roles", "ray_cluster", "defaults", "main.yml")
    with open(defaults, encoding="utf-8") as handle:
        assert yaml.safe_load(handle)["ray_cluster_worker_request_ratio"] == DEFAULT_WORKER_REQUEST_RATIO


def test_a_serve_llm_plan_places_no_driver_pod():
    # 10 CPUs fit on no node once the workers (25 CPUs each) and the head (4) are placed.
    large_driver = dict(DRIVER, cpus=10.0)
    with pytest.raises(dp.PlanError, match=r"the vLLM driver pod \(10 CPU, 8.0 GiB\) do\(es\) not fit"):
        seed_plan(cpu_pods=[HEAD, large_driver])
    # A replica count asks for Ray Serve LLM, whose replicas run in the Ray pods: the driver is not created.
    plan = seed_plan(cpu_pods=[HEAD, large_driver], replicas=1)
    assert plan["serve"]["engine"] == "serve_llm"
    assert "Ray Serve LLM runs the replicas in the Ray pods: no vLLM driver pod is placed." in plan["reasons"]
    assert not any("driver pod" in reason and "fits" in reason for reason in plan["reasons"])
