"""The filter plugins: thin wrappers that turn module_utils errors into Ansible filter errors."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.llmops.ray_vllm.plugins.filter.k8s_status import FilterModule as K8sStatusFilters
from ansible_collections.llmops.ray_vllm.plugins.filter.plan import FilterModule as PlanFilters
from ansible_collections.llmops.ray_vllm.plugins.filter.ray import FilterModule as RayFilters
from ansible_collections.llmops.ray_vllm.plugins.filter.vllm import FilterModule as VllmFilters
from ansible_collections.llmops.ray_vllm.plugins.test.ready import TestModule as ReadyTests

CPU = {"mode": "cpu", "gpu_count": 0, "cpu": {"logical_cores": 2, "bf16_supported": False}, "memory_mib": 8000}


def test_hosts_plan_input_reads_each_hosts_vars_the_head_first():
    hostvars = {
        "head": {"cuda_check_facts": CPU},
        "worker": {"cuda_check_facts": CPU, "ray_cluster_num_gpus": 0},
    }
    result = PlanFilters().filters()["hosts_plan_input"](["head", "worker"], hostvars)
    assert [node["name"] for node in result["nodes"]] == ["head", "worker"]
    assert result["cpu_dtype"] == "float32"


def test_the_plan_filters_hand_the_device_over():
    gpu = {"mode": "gpu", "gpu_count": 1, "gpu_memory_mib": 46068, "cpu": {"bf16_supported": False}}
    hosts = PlanFilters().filters()["hosts_plan_input"]
    assert hosts(["h"], {"h": {"cuda_check_facts": gpu}})["cpu_dtype"] is None
    assert hosts(["h"], {"h": {"cuda_check_facts": gpu}}, "cpu")["cpu_dtype"] == "float32"
    request = PlanFilters().filters()["plan_request"]({"ray_vllm_device": "cpu"})
    assert (request["options"], request["option_names"]["device"]) == ({"device": "cpu"}, "ray_vllm_device")
    with pytest.raises(AnsibleFilterError, match=r"^ray_vllm_device='tpu' is not one of auto, gpu, cpu"):
        PlanFilters().filters()["plan_request"]({"ray_vllm_device": "tpu"})


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (
            lambda: PlanFilters().filters()["plan_request"](
                {"vllm_serve_max_model_len": 1, "vllm_serve_dtype": "auto"}
            ),
            None,
        ),
        (
            lambda: PlanFilters().filters()["hosts_plan_input"](
                ["h"], {"h": {"cuda_check_facts": CPU, "ray_cluster_num_gpus": 1}}
            ),
            "ray_cluster_num_gpus=1 on h",
        ),
        (lambda: RayFilters().filters()["kuberay_layout"]({"worker_group": {"num_of_hosts": 0}}), "num_of_hosts=0"),
        (lambda: RayFilters().filters()["ray_host_gpus"](None, "h", False, num_gpus=-1), "ray_cluster_num_gpus=-1"),
        (
            lambda: VllmFilters().filters()["vllm_settings"]({"device": "cpu", "executor_backend": "ray"}),
            "ray does not",
        ),
    ],
)
def test_module_utils_errors_become_filter_errors(call, fragment):
    if fragment is None:
        assert call()["options"] == {"max_model_len": 1}
        return
    with pytest.raises(AnsibleFilterError, match=fragment):
        call()


def test_vllm_settings_returns_the_arguments_with_the_settings():
    settings = {"model": "/m", "served_model_name": "m", "host": "h", "port": 1, "device": "cpu"}
    effective = VllmFilters().filters()["vllm_settings"](settings, None, venv="/v")
    assert effective["args"][:2] == ["--model", "/m"] and "--enforce-eager" in effective["args"]
    assert effective["command"] == ["/v/bin/python", "-m", "vllm.entrypoints.openai.api_server"]
    entry = VllmFilters().filters()["vllm_job_entrypoint"](effective, "/k")
    assert "exec /v/bin/python -m vllm.entrypoints.openai.api_server --model /m" in entry


def test_the_readiness_tests_are_registered_under_their_names():
    tests = ReadyTests().tests()
    assert set(tests) == {
        "deployment_available", "raycluster_ready", "crd_established", "job_finished", "clusterpolicies_ready",
        "pod_finished", "raycluster_provisioned",
    }  # fmt: skip
    assert tests["raycluster_ready"]({"status": {"state": "ready", "readyWorkerReplicas": 1}}, 1)
    assert tests["raycluster_provisioned"]({"status": {"state": "ready", "readyWorkerReplicas": 0}})


def test_the_not_ready_node_filters_are_registered_under_their_names():
    filters = K8sStatusFilters().filters()
    pod = {"metadata": {"name": "p"}, "spec": {"nodeName": "n", "containers": [{"name": "c"}]}, "status": {}}
    node = {"metadata": {"name": "n"}, "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}
    assert filters["not_ready_pod_nodes"]([pod]) == ["n"]
    assert filters["not_ready_node_lines"]([pod], [node])[0].startswith("node n Ready=Unknown under p (")
