"""The Ray cluster's shape from the plan and the ray_cluster role's settings (_ray_layout)."""

from __future__ import annotations

import pytest

from ansible_collections.llmops.ray_vllm.plugins.module_utils._ray_layout import (
    DEFAULT_KUBERAY_LAYOUT,
    RayLayoutError,
    autoscaled,
    deep_merge,
    expected_ray_nodes,
    head_container_ports,
    host_gpus,
    hosts_gate_expectations,
    kuberay_layout,
    port_clashes,
    raycluster_settings,
    worker_group_replicas,
)

HOSTS_PLAN = {
    "ray_layout": {
        "hosts": {
            "head": {"name": "head", "num_gpus": 1},
            "workers": [{"name": "w1", "num_gpus": 2}],
            "idle": ["w2"],
        }
    }
}
SEED_LAYOUT = {
    "head": {"num_gpus": 0, "node": None},
    "worker_group": {
        "replicas": 2,
        "min_replicas": 2,
        "max_replicas": 2,
        "num_of_hosts": 1,
        "num_gpus": 1,
        "gpu_product": "NVIDIA-A100-SXM4-80GB",
        "cpus": 32.0,
        "memory_mib": 262044,
        "pods_per_node": {"gpu-worker-1": 1, "gpu-worker-2": 1},
    },
}
POD_SETTINGS = {
    "release": "llm",
    "head_cpus": "4",
    "head_memory": "16Gi",
    "worker_cpus": "8",
    "worker_memory": "64Gi",
    "worker_request_ratio": 0.8,
    "gpu_node_selector": True,
    "gpu_tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    "node_selector": {},
    "tolerations": [],
    "infiniband": False,
    "infiniband_resource": "rdma/rdma_shared_device_a",
    "infiniband_resource_count": 1,
}


def test_hosts_take_the_plans_share_per_node_and_idle_nodes_offer_none():
    assert host_gpus(HOSTS_PLAN, "head", True) == 1
    assert host_gpus(HOSTS_PLAN, "w1", False) == 2
    assert host_gpus(HOSTS_PLAN, "w2", False) == 0
    assert host_gpus(None, "w1", False) is None


def test_a_users_gpus_win_when_they_hold_the_plans_share():
    assert host_gpus(HOSTS_PLAN, "w1", False, num_gpus=4) == 4
    assert host_gpus(HOSTS_PLAN, "head", True, num_gpus=4, head_num_gpus=1) == 1


def test_fewer_gpus_than_the_plan_places_are_refused_by_name():
    with pytest.raises(RayLayoutError) as error:
        host_gpus(HOSTS_PLAN, "w1", False, num_gpus=1)
    assert "ray_cluster_num_gpus=1 on w1 offers Ray fewer GPUs than the deployment plan places there (2)" in str(
        error.value
    )
    with pytest.raises(RayLayoutError, match="ray_cluster_head_num_gpus=0 on head"):
        host_gpus(HOSTS_PLAN, "head", True, head_num_gpus=0)


def test_the_hosts_gate_adds_up_the_nodes_and_a_users_expectation_wins():
    assert hosts_gate_expectations([1, 2, 0], num_cpus=4) == {"nodes": 3, "gpus": 3, "cpus": 12}
    assert hosts_gate_expectations([None, None]) == {"nodes": 2, "gpus": 0, "cpus": 0}
    assert hosts_gate_expectations([1], expected_nodes=5, expected_gpus=7, expected_cpus=9) == {
        "nodes": 5,
        "gpus": 7,
        "cpus": 9,
    }


def test_the_kuberay_layout_is_the_plans_then_the_users_over_the_default():
    plan = {"ray_layout": {"kuberay": SEED_LAYOUT}}
    assert kuberay_layout(None, plan) == SEED_LAYOUT
    assert kuberay_layout(None, None) == DEFAULT_KUBERAY_LAYOUT
    assert kuberay_layout({"worker_group": {"replicas": 2}}, plan) == SEED_LAYOUT
    partial = kuberay_layout({"worker_group": {"replicas": 3, "max_replicas": 3}}, None)
    assert partial["worker_group"]["replicas"] == 3 and partial["worker_group"]["num_gpus"] == 1


def test_a_user_layout_that_changes_the_plans_is_refused_by_name():
    plan = {"ray_layout": {"kuberay": SEED_LAYOUT}}
    with pytest.raises(RayLayoutError) as error:
        kuberay_layout({"worker_group": {"replicas": 3}}, plan)
    text = str(error.value)
    assert text.startswith("ray_cluster_kuberay_layout (head num_gpus=0, 3 x 1 pod(s) with 1 GPU(s)) conflicts")
    assert "ray_cluster_plan (head num_gpus=0, 2 x 1 pod(s) with 1 GPU(s))" in text


@pytest.mark.parametrize(
    ("layout", "fragment"),
    [
        ({"worker_group": {"num_of_hosts": 0}}, "worker_group.num_of_hosts=0 is not a whole number of at least 1"),
        ({"worker_group": {"replicas": "two"}}, "worker_group.replicas='two'"),
        ({"head": {"num_gpus": -1}}, "head.num_gpus=-1"),
        ({"worker_group": {"min_replicas": 3, "max_replicas": 2}}, "expected min_replicas <= replicas <= max_replicas"),
        ({"worker_group": {"size": 3}}, "has unknown key(s) size"),
        ([1, 2], "must be a dict"),
    ],
)
def test_unusable_layouts_are_refused(layout, fragment):
    with pytest.raises(RayLayoutError) as error:
        kuberay_layout(layout, None)
    assert fragment in str(error.value) and "ray_cluster_kuberay_layout" in str(error.value)


def test_the_raycluster_numbers_for_the_seed_layout():
    k8s = raycluster_settings(SEED_LAYOUT, POD_SETTINGS)
    assert (k8s["name"], k8s["head_service"]) == ("llm-raycluster", "llm-raycluster-head-svc")
    assert (k8s["expected_pods"], k8s["expected_workers"], k8s["expected_gpus"]) == (3, 2, 2)
    # 80 % of the 32 CPUs and 262044 MiB per pod, the GPU in both requests and limits.
    assert k8s["worker_resources"] == {
        "requests": {"cpu": "25", "memory": "209635Mi", "nvidia.com/gpu": 1},
        "limits": {"memory": "209635Mi", "nvidia.com/gpu": 1},
    }
    assert k8s["worker_node_selector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert k8s["worker_tolerations"] == POD_SETTINGS["gpu_tolerations"]
    assert k8s["head_resources"] == {"requests": {"cpu": "4", "memory": "16Gi"}, "limits": {"memory": "16Gi"}}
    assert k8s["head_node_selector"] == {} and k8s["head_tolerations"] == []
    assert k8s["labels"]["app.kubernetes.io/name"] == "raycluster"
    assert "app.kubernetes.io/name" not in k8s["pod_labels"]


def test_a_gpu_head_is_pinned_to_its_node_and_infiniband_adds_its_resource():
    layout = deep_merge(SEED_LAYOUT, {"head": {"num_gpus": 1, "node": "gpu-worker-1"}})
    k8s = raycluster_settings(layout, dict(POD_SETTINGS, infiniband=True, node_selector={"pool": "gpu"}))
    assert k8s["head_resources"]["limits"] == {"memory": "16Gi", "nvidia.com/gpu": 1}
    assert k8s["head_node_selector"] == {
        "pool": "gpu",
        "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB",
        "kubernetes.io/hostname": "gpu-worker-1",
    }
    assert k8s["worker_resources"]["requests"]["rdma/rdma_shared_device_a"] == 1
    assert expected_ray_nodes(layout) == {"pods": 3, "workers": 2, "gpus": 3, "max_workers": 2}


def test_without_node_sizes_the_fixed_requests_are_used():
    layout = deep_merge(DEFAULT_KUBERAY_LAYOUT, {})
    k8s = raycluster_settings(layout, dict(POD_SETTINGS, gpu_node_selector=False))
    assert k8s["worker_resources"]["requests"]["cpu"] == "8"
    assert k8s["worker_resources"]["requests"]["memory"] == "64Gi"
    assert k8s["worker_node_selector"] == {}


def test_port_clashes_name_the_variables():
    assert port_clashes({"a": 1, "b": 2}) == []
    assert port_clashes({"ray_cluster_dashboard_port": 8000, "vllm_serve_port": "8000", "c": 1}) == [
        "ray_cluster_dashboard_port and vllm_serve_port are both 8000"
    ]
    assert port_clashes({"a": 5, "b": 5, "c": 5}) == ["a, b, c are all 5"]


def test_dev_shm_is_each_pods_memory_limit_or_a_smaller_size_asked_for():
    k8s = raycluster_settings(SEED_LAYOUT, POD_SETTINGS)
    assert (k8s["head_shm_size"], k8s["worker_shm_size"]) == ("16Gi", "209635Mi")
    capped = raycluster_settings(SEED_LAYOUT, dict(POD_SETTINGS, shm_size="64Gi"))
    # 64Gi is more than the head's 16Gi limit (the pages count against it), less than a worker's.
    assert (capped["head_shm_size"], capped["worker_shm_size"]) == ("16Gi", "64Gi")


def test_a_fixed_worker_group_keeps_its_replicas_and_no_autoscaler():
    k8s = raycluster_settings(SEED_LAYOUT, POD_SETTINGS)
    assert not k8s["autoscaling"] and not autoscaled(SEED_LAYOUT)
    assert (k8s["expected_workers"], k8s["max_workers"]) == (2, 2)
    # KubeRay's default head ports (Serve's 8000 among them) and the head's metrics ports, declared.
    assert {port["name"]: port["containerPort"] for port in k8s["head_ports"]} == HEAD_PORTS_AT_8000


def test_an_autoscaled_worker_group_starts_at_its_minimum_and_may_grow_to_its_maximum():
    # Two replicas of 2 GPUs at first, up to 8: the plan's layout with ray_vllm_min_replicas=2, max_replicas=8.
    layout = deep_merge(
        SEED_LAYOUT, {"worker_group": {"replicas": 2, "min_replicas": 2, "max_replicas": 8, "num_gpus": 2}}
    )
    k8s = raycluster_settings(layout, POD_SETTINGS)
    assert k8s["autoscaling"] and autoscaled(layout)
    assert (k8s["expected_pods"], k8s["expected_workers"], k8s["max_workers"], k8s["expected_gpus"]) == (3, 2, 8, 4)
    # A layout whose replicas lie above the minimum still starts at the minimum: the autoscaler owns replicas.
    above = deep_merge(layout, {"worker_group": {"replicas": 4}})
    assert expected_ray_nodes(above) == {"pods": 3, "workers": 2, "gpus": 4, "max_workers": 8}
    multi_host = deep_merge(layout, {"worker_group": {"num_of_hosts": 2}})
    assert expected_ray_nodes(multi_host)["max_workers"] == 16


HEAD_PORTS_AT_8000 = {
    "client": 10001,
    "dashboard": 8265,
    "gcs-server": 6379,
    "metrics": 8080,
    "serve": 8000,
    "as-metrics": 44217,
    "dash-metrics": 44227,
}


def test_the_serve_port_moves_the_head_containers_serve_port_and_never_takes_rays_own():
    assert head_container_ports(8000) == head_container_ports("8000")
    assert {port["name"]: port["containerPort"] for port in head_container_ports(8000)} == HEAD_PORTS_AT_8000
    ports = {port["name"]: port["containerPort"] for port in head_container_ports("8001")}
    assert ports == dict(HEAD_PORTS_AT_8000, serve=8001)
    k8s = raycluster_settings(SEED_LAYOUT, dict(POD_SETTINGS, serve_port=9000))
    assert {port["name"]: port["containerPort"] for port in k8s["head_ports"]}["serve"] == 9000
    for taken, name in ((8265, "dashboard"), (6379, "gcs-server"), (52365, "dashboard-agent"), (44227, "dash-metrics")):
        with pytest.raises(RayLayoutError) as error:
            head_container_ports(taken)
        assert f"ray_cluster_serve_port={taken} is the Ray head's {name} port" in str(error.value)
    for bad in ("http", 0, 70000):
        with pytest.raises(RayLayoutError, match="must be a port number"):
            head_container_ports(bad)


def test_the_worker_replicas_of_an_autoscaled_group_are_the_live_ones_within_the_range():
    layout = deep_merge(SEED_LAYOUT, {"worker_group": {"replicas": 1, "min_replicas": 1, "max_replicas": 4}})

    def live(**group):
        return {"spec": {"workerGroupSpecs": [{"groupName": "other", "replicas": 9}, dict(group, groupName="gpu")]}}

    assert worker_group_replicas(SEED_LAYOUT, live(replicas=7)) == {"replicas": 2, "scale_strategy": None}
    assert worker_group_replicas(layout, None) == {"replicas": 1, "scale_strategy": None}
    assert worker_group_replicas(layout, {"spec": {}}) == {"replicas": 1, "scale_strategy": None}
    assert worker_group_replicas(layout, live(replicas=3, scaleStrategy={})) == {"replicas": 3, "scale_strategy": {}}
    assert worker_group_replicas(layout, live(replicas=0))["replicas"] == 1
    assert worker_group_replicas(layout, live(replicas=12))["replicas"] == 4
    assert worker_group_replicas(layout, live())["replicas"] == 1
