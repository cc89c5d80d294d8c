"""Plans with several replicas (serve.engine serve_llm) on Kubernetes, rendered into the manifests the roles apply.

The plans are made by deployment_plan on four recorded nodes of the 64-node seed (8 x H200 each), with the prod
inventory's model (DeepSeek-R1-Distill-Llama-70B's config) and settings; the RayCluster and the vLLM Service are
rendered as the roles render them (test_cpu_plan_manifests.render: the roles' defaults, vars, tasks/settings.yml and
templates with the collection's filters).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ansible_collections.llmops.ray_vllm.plugins.module_utils import _deployment_plan as dp
from ansible_collections.llmops.ray_vllm.plugins.module_utils import _gpu_node_facts as gnf
from ansible_collections.llmops.ray_vllm.plugins.module_utils._plan_inputs import kubernetes_cpu_pods, plan_request
from ansible_collections.llmops.ray_vllm.plugins.module_utils._ray_layout import head_container_ports
from ansible_collections.llmops.ray_vllm.tests.unit.roles.test_cpu_plan_manifests import render

REPO = Path(__file__).resolve().parents[3]
PROD = yaml.safe_load((REPO / "inventories" / "prod" / "group_vars" / "all.yml").read_text())


def h200_nodes(count=4):
    """The first ``count`` GPU nodes of the 64-node seed, as gpu_node_facts reports them (recorded Node objects)."""
    with open(REPO / "tests" / "fixtures" / "kubernetes" / "nodes-gpu-nodes-64.json", encoding="utf-8") as stream:
        items = json.load(stream)["items"]
    nodes = gnf.collect(items)["nodes"]
    assert len(nodes) == 64 and {node["gpu_product"] for node in nodes} == {"NVIDIA-H200"}
    return nodes[:count]


def plan(**variables):
    """The plan plan_kubernetes.yml makes on those nodes with the prod inventory and these inventory variables."""
    request = plan_request(
        dict(
            {
                "vllm_serve_max_model_len": PROD["vllm_serve_max_model_len"],
                "vllm_serve_gpu_memory_utilization": PROD["vllm_serve_gpu_memory_utilization"],
                "vllm_serve_served_model_name": PROD["vllm_serve_served_model_name"],
            },
            **variables,
        )
    )
    cpu_pods = kubernetes_cpu_pods(
        {"cpus": "4", "memory": "16Gi", "node_selector": {}},
        {"resources": {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"memory": "32Gi"}}, "node_selector": {}},
    )
    params = dict(
        request["options"],
        nodes=h200_nodes(),
        platform="kubernetes",
        model_config=PROD["ray_vllm_model_config"],
        model_params_b=PROD["ray_vllm_model_params_b"],
        cpu_pods=cpu_pods,
        option_names=request["option_names"],
    )
    return dp.plan_from_options(params)


@pytest.fixture(scope="module")
def fixed_plan():
    result = plan()
    assert result["serve"]["engine"] == "serve_llm" and result["autoscaling"] is None
    return result


@pytest.fixture(scope="module")
def autoscaling_plan():
    result = plan(ray_vllm_min_replicas=2, ray_vllm_max_replicas=8)
    assert result["serve"]["engine"] == "serve_llm"
    assert (result["autoscaling"]["min_replicas"], result["autoscaling"]["max_replicas"]) == (2, 8)
    return result


def raycluster(the_plan, **variables):
    given = {"ray_cluster_plan": the_plan, "ray_cluster_platform": "kubernetes", "ray_cluster_kuberay_layout": None}
    return yaml.safe_load(render("ray_cluster", "raycluster.yaml.j2", "_ray_cluster_k8s", dict(given, **variables)))


def test_a_fixed_replica_count_gets_a_worker_group_for_every_replica_and_no_autoscaler(fixed_plan):
    cluster = raycluster(fixed_plan)
    (group,) = cluster["spec"]["workerGroupSpecs"]
    planned = fixed_plan["ray_layout"]["kuberay"]["worker_group"]
    replica = fixed_plan["replica"]
    # Every replica's GPUs in worker pods: replicas x (TP x PP) GPUs, planned pods of planned GPUs each.
    assert planned["replicas"] * planned["num_gpus"] == fixed_plan["replicas"] * replica["gpus"] == 32
    assert (group["replicas"], group["minReplicas"], group["maxReplicas"]) == (planned["replicas"],) * 3
    assert group["rayStartParams"]["num-gpus"] == str(planned["num_gpus"])
    assert "enableInTreeAutoscaling" not in cluster["spec"] and "autoscalerOptions" not in cluster["spec"]
    # KubeRay's default head ports, Serve's 8000 among them, and the head's metrics ports (roles/monitoring's
    # PodMonitor scrapes them by name), declared on the container: the head Service gets exactly those.
    # (test_ray_layout.py pins the numbers.)
    assert cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["ports"] == head_container_ports(8000)


def test_an_autoscaling_plan_turns_on_kuberays_autoscaler_and_leaves_replicas_to_it(autoscaling_plan):
    cluster = raycluster(autoscaling_plan, ray_cluster_autoscaler_options={"idleTimeoutSeconds": 300})
    spec = cluster["spec"]
    (group,) = spec["workerGroupSpecs"]
    planned = autoscaling_plan["ray_layout"]["kuberay"]["worker_group"]
    assert planned["max_replicas"] > planned["min_replicas"]
    assert (group["minReplicas"], group["maxReplicas"]) == (planned["min_replicas"], planned["max_replicas"])
    # The first run starts minReplicas; then the autoscaler moves replicas (next test).
    assert group["replicas"] == planned["min_replicas"] and "scaleStrategy" not in group
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["autoscalerOptions"] == {
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "idleTimeoutSeconds": 300,
    }


def test_a_rerun_keeps_what_the_autoscaler_did(autoscaling_plan, fixed_plan):
    """Client-side apply sends workerGroupSpecs whole when it differs from the live list: the group is rendered with
    the live replicas and scaleStrategy, so it matches and nothing is scaled back."""
    live = raycluster(autoscaling_plan)
    live["spec"]["workerGroupSpecs"][0].update(replicas=5, scaleStrategy={"workersToDelete": ["pod-a"]})
    (group,) = raycluster(autoscaling_plan, _ray_cluster_live=live)["spec"]["workerGroupSpecs"]
    assert (group["replicas"], group["scaleStrategy"]) == (5, {"workersToDelete": ["pod-a"]})
    # Beyond the layout's range (a new plan with fewer replicas): kept within minReplicas and maxReplicas.
    live["spec"]["workerGroupSpecs"][0]["replicas"] = 99
    (group,) = raycluster(autoscaling_plan, _ray_cluster_live=live)["spec"]["workerGroupSpecs"]
    assert group["replicas"] == autoscaling_plan["ray_layout"]["kuberay"]["worker_group"]["max_replicas"]
    # A fixed count ignores the live value: the plan's replicas.
    (group,) = raycluster(fixed_plan, _ray_cluster_live=live)["spec"]["workerGroupSpecs"]
    assert group["replicas"] == fixed_plan["ray_layout"]["kuberay"]["worker_group"]["replicas"]
    assert "scaleStrategy" not in group


def test_another_serve_port_is_declared_on_the_head_container(fixed_plan):
    cluster = raycluster(fixed_plan, ray_cluster_serve_port=8001)
    (container,) = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports["serve"] == 8001 and container["ports"] == head_container_ports(8001)
    (worker,) = cluster["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"]
    assert "ports" not in worker


def vllm_service(the_plan):
    given = {
        "vllm_serve_plan": the_plan,
        "vllm_serve_platform": "kubernetes",
        "vllm_serve_model_path": PROD["vllm_serve_model_path"],
        "vllm_serve_served_model_name": PROD["vllm_serve_served_model_name"],
        "vllm_serve_max_model_len": PROD["vllm_serve_max_model_len"],
        "vllm_serve_gpu_memory_utilization": PROD["vllm_serve_gpu_memory_utilization"],
    }
    return yaml.safe_load(render("vllm_serve", "service.yaml.j2", "_vllm_serve_settings", given))


def test_the_vllm_service_leads_to_serves_proxy_on_the_ray_head(fixed_plan):
    service = vllm_service(fixed_plan)
    assert service["metadata"]["name"] == "llm-vllm"
    assert service["spec"]["selector"] == {"ray.io/cluster": "llm-raycluster", "ray.io/node-type": "head"}
    assert service["spec"]["ports"] == [{"name": "http", "port": 8000, "targetPort": 8000, "protocol": "TCP"}]


def test_one_engine_keeps_the_driver_service():
    one = plan(ray_vllm_replicas=None, ray_vllm_max_gpus=2)
    assert one["serve"]["engine"] == "vllm"
    service = vllm_service(one)
    assert service["spec"]["selector"] == {"app.kubernetes.io/instance": "llm", "app.kubernetes.io/name": "vllm"}
    assert service["spec"]["ports"][0]["targetPort"] == "http"
