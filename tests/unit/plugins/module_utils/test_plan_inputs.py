"""What site.yml hands the planner (_plan_inputs): the user's settings with their names, and the hosts' nodes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ansible_collections.llmops.ray_vllm.plugins.module_utils._plan_inputs import (
    DERIVED_OPTION_NAMES,
    PLAN_OPTION_VARIABLES,
    PlanInputError,
    hosts_plan_input,
    kubernetes_cpu_pods,
    plan_request,
)


def test_only_what_the_user_set_goes_to_the_plan_with_its_name():
    request = plan_request(
        {
            "vllm_serve_tensor_parallel_size": None,
            "ray_vllm_tensor_parallel_size": 2,
            "vllm_serve_max_model_len": 4096,
            "vllm_serve_dtype": "auto",
            "ray_vllm_dtype": None,
            "ray_cluster_kuberay_layout": None,
        }
    )
    assert request == {
        "options": {"tensor_parallel_size": 2, "max_model_len": 4096},
        "option_names": dict(
            DERIVED_OPTION_NAMES,
            tensor_parallel_size="ray_vllm_tensor_parallel_size",
            max_model_len="vllm_serve_max_model_len",
        ),
    }


def test_the_roles_variable_names_the_option_when_both_agree():
    request = plan_request({"vllm_serve_tensor_parallel_size": 2, "ray_vllm_tensor_parallel_size": "2"})
    assert request["option_names"] == dict(DERIVED_OPTION_NAMES, tensor_parallel_size="vllm_serve_tensor_parallel_size")


def test_two_variables_that_disagree_are_refused_naming_both():
    with pytest.raises(PlanInputError) as error:
        plan_request({"vllm_serve_tensor_parallel_size": 2, "ray_vllm_tensor_parallel_size": 4})
    assert str(error.value) == (
        "vllm_serve_tensor_parallel_size=2 and ray_vllm_tensor_parallel_size=4 ask the plan for different "
        "tensor_parallel_size values; set one of them."
    )


def cpu_facts(bf16):
    return {"mode": "cpu", "gpu_count": 0, "cpu": {"logical_cores": 2, "bf16_supported": bf16}, "memory_mib": 23000}


def test_hosts_nodes_and_the_cpu_dtype():
    result = hosts_plan_input(
        [
            {"name": "head", "is_head": True, "cuda_check_facts": cpu_facts(True)},
            {"name": "worker", "is_head": False, "cuda_check_facts": cpu_facts(False)},
        ]
    )
    assert result["cpu_dtype"] == "float32"
    assert result["nodes"][0] == {
        "name": "head", "gpus": 0, "gpu_memory_mib": 0, "gpu_product": "", "cpus": 2, "memory_mib": 23000,
    }  # fmt: skip
    assert hosts_plan_input([{"name": "h", "is_head": True, "cuda_check_facts": cpu_facts(True)}])["cpu_dtype"] is None


def test_a_gpu_cap_limits_what_the_plan_may_use_on_that_node():
    gpu = {"mode": "gpu", "gpu_count": 8, "gpu_memory_mib": 143771, "gpu_product": "NVIDIA H200", "cpu": {}}
    nodes = hosts_plan_input(
        [
            {"name": "head", "is_head": True, "cuda_check_facts": gpu, "ray_cluster_head_num_gpus": 0,
             "ray_cluster_num_gpus": 8},
            {"name": "w", "is_head": False, "cuda_check_facts": gpu, "ray_cluster_num_gpus": 4},
        ]
    )["nodes"]  # fmt: skip
    assert [node["gpus"] for node in nodes] == [0, 4]


def test_more_gpus_than_the_node_has_or_no_facts_are_refused():
    with pytest.raises(PlanInputError, match="ray_cluster_num_gpus=2 on w, but cuda_check found 0 GPU"):
        hosts_plan_input(
            [{"name": "w", "is_head": False, "cuda_check_facts": cpu_facts(True), "ray_cluster_num_gpus": 2}]
        )
    with pytest.raises(PlanInputError, match="w has no cuda_check_facts"):
        hosts_plan_input([{"name": "w", "is_head": False, "cuda_check_facts": None}])


def test_the_head_and_driver_requests_become_numbers_for_the_plan():
    pods = kubernetes_cpu_pods(
        {"cpus": "4", "memory": "16Gi", "node_selector": {}},
        {"resources": {"requests": {"cpu": "500m", "memory": "8Gi"}}, "node_selector": {"pool": "cpu"}},
    )
    assert pods == [
        {"name": "the Ray head pod", "cpus": 4.0, "memory_mib": 16384, "node_selector": {}, "ray_head": True},
        {
            "name": "the vLLM driver pod",
            "cpus": 0.5,
            "memory_mib": 8192,
            "node_selector": {"pool": "cpu"},
            "ray_head": False,
            # No limit: the request is what the engine of a CPU plan may count on.
            "engine_memory_mib": 8192,
        },
    ]
    assert kubernetes_cpu_pods({"cpus": "4", "memory": "16Gi"}, {"resources": {}})[0]["name"] == "the Ray head pod"
    with pytest.raises(PlanInputError, match="the Ray head pod's requests"):
        kubernetes_cpu_pods({"cpus": "four", "memory": "16Gi"}, {})


def test_the_driver_pods_memory_limit_is_where_a_cpu_plans_engine_lives():
    driver = {"resources": {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"memory": "32Gi"}}}
    pods = kubernetes_cpu_pods({"cpus": "4", "memory": "16Gi"}, driver)
    assert [pod.get("engine_memory_mib") for pod in pods] == [None, 32768]
    with pytest.raises(PlanInputError, match=r"the vLLM driver pod's memory limit 'lots': "):
        kubernetes_cpu_pods(
            {}, {"resources": {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"memory": "lots"}}}
        )


def test_ray_vllm_device_reaches_the_plan_by_name_and_auto_asks_for_nothing():
    assert plan_request({"ray_vllm_device": "cpu"}) == {
        "options": {"device": "cpu"},
        "option_names": dict(DERIVED_OPTION_NAMES, device="ray_vllm_device"),
    }
    assert plan_request({"ray_vllm_device": "auto"})["options"] == {}
    with pytest.raises(PlanInputError) as error:
        plan_request({"ray_vllm_device": "tpu"})
    assert (
        str(error.value)
        == "ray_vllm_device='tpu' is not one of auto, gpu, cpu; set ray_vllm_device to one of them, or leave it unset."
    )
    with pytest.raises(PlanInputError, match=r"^ray_vllm_dtype='fp16' is not one of auto, bfloat16"):
        plan_request({"ray_vllm_dtype": "fp16"})


def test_gpu_hosts_planned_on_their_cpus_size_float32_without_bf16():
    gpu = {"mode": "gpu", "gpu_count": 1, "gpu_memory_mib": 46068, "gpu_product": "NVIDIA L40S", "memory_mib": 64000}
    nodes = [
        {"name": "h", "is_head": True, "cuda_check_facts": dict(gpu, cpu={"logical_cores": 8, "bf16_supported": False})}
    ]
    assert hosts_plan_input(nodes)["cpu_dtype"] is None
    assert hosts_plan_input(nodes, "cpu")["cpu_dtype"] == "float32"
    nodes[0]["cuda_check_facts"]["cpu"]["bf16_supported"] = True
    assert hosts_plan_input(nodes, "cpu")["cpu_dtype"] is None


def test_the_replica_variables_reach_the_plan_with_their_names():
    request = plan_request(
        {
            "ray_vllm_replicas": None,
            "ray_vllm_min_replicas": 2,
            "ray_vllm_max_replicas": 6,
            "ray_vllm_max_gpus": None,
            "ray_vllm_gpu_share": 0.5,
            "ray_vllm_target_concurrency": 16,
        }
    )
    assert request["options"] == {"min_replicas": 2, "max_replicas": 6, "gpu_share": 0.5, "target_concurrency": 16}
    assert {option: request["option_names"][option] for option in request["options"]} == {
        "min_replicas": "ray_vllm_min_replicas",
        "max_replicas": "ray_vllm_max_replicas",
        "gpu_share": "ray_vllm_gpu_share",
        "target_concurrency": "ray_vllm_target_concurrency",
    }
    fixed = plan_request({"ray_vllm_replicas": 4, "ray_vllm_max_gpus": 32})
    assert fixed["options"] == {"replicas": 4, "max_gpus": 32}
    assert (fixed["option_names"]["replicas"], fixed["option_names"]["max_gpus"]) == (
        "ray_vllm_replicas",
        "ray_vllm_max_gpus",
    )


def test_every_plan_variable_is_read_by_the_playbooks():
    """playbooks/vars/plan_request.yml hands the filter every variable PLAN_OPTION_VARIABLES maps, and the plan tasks
    pass every option on to deployment_plan."""
    playbooks = Path(__file__).resolve().parents[4] / "playbooks"
    listed = yaml.safe_load((playbooks / "vars" / "plan_request.yml").read_text(encoding="utf-8"))
    assert set(listed["_ray_vllm_plan_variables"]) == {
        name for _option, names in PLAN_OPTION_VARIABLES for name in names
    }
    # On hosts there is no KubeRay layout, and no pods to size.
    for platform, skipped in (("hosts", {"kuberay_layout", "worker_request_ratio"}), ("kubernetes", set())):
        tasks = yaml.safe_load((playbooks / "tasks" / f"plan_{platform}.yml").read_text(encoding="utf-8"))
        options = next(
            task["llmops.ray_vllm.deployment_plan"] for task in tasks if "llmops.ray_vllm.deployment_plan" in task
        )
        assert {option for option, _names in PLAN_OPTION_VARIABLES} - skipped <= set(options), platform
