# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""gpu_node_facts' logic on Node objects recorded from the Kubernetes test bed (tests/fixtures/kubernetes, README
there: the emulator, not a real cluster; labels named as NVIDIA GPU feature discovery names them)."""

from __future__ import annotations

import copy
import json
import os

import pytest

from ansible_collections.llmops.ray_vllm.plugins.module_utils import _gpu_node_facts as gnf

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "..", "..", "fixtures", "kubernetes")
VLLM_DRIVER, VLLM_CUDA = "580.65.06", "13.0"


def nodes(capture):
    path = os.path.join(FIXTURES, f"nodes-{capture}.json")
    if not os.path.isfile(path):
        raise AssertionError(f"recorded fixture {path} is missing (tests/fixtures/kubernetes/record_nodes.py)")
    with open(path, encoding="utf-8") as handle:
        document = json.load(handle)
    assert document["kind"] == "List"
    return document["items"]


def by_name(items, name):
    return next(item for item in items if item["metadata"]["name"] == name)


def collect(items, **options):
    options.setdefault("min_driver_version", VLLM_DRIVER)
    options.setdefault("min_cuda_version", VLLM_CUDA)
    return gnf.collect(items, **options)


def test_seed_cluster_two_a100_nodes():
    result = collect(nodes("gpu-nodes-2"))
    assert result["problems"] == []
    assert result["warnings"] == []
    assert [node["name"] for node in result["nodes"]] == ["gpu-worker-1", "gpu-worker-2"]
    assert result["nodes"][0] == {
        "name": "gpu-worker-1",
        "gpus": 1,
        "gpu_product": "NVIDIA-A100-SXM4-80GB",
        "gpu_memory_mib": 81920,
        "cpus": 32.0,
        # 256Gi capacity minus the kubelet's 100Mi eviction threshold: 268333056Ki
        "memory_mib": 262044,
        "driver_version": "580.95.05",
        "cuda_version": "13.0",
        "mig_strategy": "single",
    }
    assert result["gpu_count"] == 2
    assert result["gpu_node_count"] == 2
    assert result["gpu_products"] == ["NVIDIA-A100-SXM4-80GB"]
    assert result["gpu_product"] == "NVIDIA-A100-SXM4-80GB"
    assert result["gpu_memory_mib"] == 81920
    assert result["driver_version"] == "580.95.05"
    assert result["cuda_version"] == "13.0"
    assert result["excluded"] == []


def test_plan_nodes_carry_only_what_deployment_plan_accepts():
    result = collect(nodes("gpu-nodes-2"))
    assert result["plan_nodes"] == [
        {
            "name": name,
            "gpus": 1,
            "gpu_product": "NVIDIA-A100-SXM4-80GB",
            "gpu_memory_mib": 81920,
            "cpus": 32.0,
            "memory_mib": 262044,
        }
        for name in ("gpu-worker-1", "gpu-worker-2")
    ]
    # The same keys as deployment_plan's nodes suboptions (an unknown key would fail that module).
    from ansible_collections.llmops.ray_vllm.plugins.modules import deployment_plan

    suboptions = set(deployment_plan.ARGUMENT_SPEC["nodes"]["options"])
    assert set(result["plan_nodes"][0]) == suboptions


def test_sixty_four_h200_nodes():
    result = collect(nodes("gpu-nodes-64"))
    assert result["problems"] == []
    assert result["gpu_node_count"] == 64
    assert result["gpu_count"] == 512
    assert result["gpu_products"] == ["NVIDIA-H200"]
    assert result["gpu_memory_mib"] == 143771
    assert {node["gpus"] for node in result["nodes"]} == {8}
    assert all(node["cpus"] == 192.0 for node in result["nodes"])
    names = [node["name"] for node in result["nodes"]]
    assert names == sorted(names)
    assert not any(name.startswith("control-plane") for name in names)


def test_min_gpus_per_node():
    result = collect(nodes("gpu-nodes-2"), min_gpus=2)
    assert len(result["problems"]) == 2
    assert "gpu-worker-1 offers 1 GPU(s)" in result["problems"][0]
    assert "fewer than the 2 needed" in result["problems"][0]
    assert collect(nodes("gpu-nodes-64"), min_gpus=8)["problems"] == []


def test_no_gpu_operator_means_no_gpu_node_and_names_the_label():
    result = collect(nodes("gpu-nodes-2-operator-absent"))
    assert result["nodes"] == []
    assert result["gpu_count"] == 0
    assert result["gpu_product"] is None
    assert len(result["problems"]) == 1
    problem = result["problems"][0]
    assert problem.startswith("No GPU node")
    assert "nvidia.com/gpu" in problem
    assert "nvidia.com/gpu.present=true" in problem
    assert "out of 5 node(s)" in problem
    assert "GPU operator" in problem


def test_labels_without_allocatable_gpu_blame_the_device_plugin():
    result = collect(nodes("gpu-nodes-2-no-device-plugin"))
    assert [node["name"] for node in result["nodes"]] == ["gpu-worker-2"]
    assert len(result["problems"]) == 1
    problem = result["problems"][0]
    assert problem.startswith("GPU operator's device plugin not running on gpu-worker-1")
    assert "allocatable nvidia.com/gpu is 0" in problem
    assert "NVIDIA-A100-SXM4-80GB" in problem


def test_labels_and_no_gpu_resource_at_all():
    items = nodes("gpu-nodes-2")
    for name in ("gpu-worker-1", "gpu-worker-2"):
        for key in ("capacity", "allocatable"):
            del by_name(items, name)["status"][key]["nvidia.com/gpu"]
    result = collect(items)
    assert result["nodes"] == []
    assert len(result["problems"]) == 2
    assert all("device plugin not running" in problem and "is missing" in problem for problem in result["problems"])


def test_not_ready_gpu_node_is_left_out_with_a_warning():
    result = collect(nodes("gpu-nodes-2-notready"))
    assert [node["name"] for node in result["nodes"]] == ["gpu-worker-1"]
    assert result["excluded"] == [{"name": "gpu-worker-2", "reason": "not Ready"}]
    assert result["problems"] == []
    assert result["warnings"] == ["gpu-worker-2 has GPUs but is left out: not Ready."]


def test_cordoned_gpu_node_is_left_out():
    items = nodes("gpu-nodes-2")
    by_name(items, "gpu-worker-1")["spec"]["unschedulable"] = True
    result = collect(items)
    assert [node["name"] for node in result["nodes"]] == ["gpu-worker-2"]
    assert result["excluded"] == [{"name": "gpu-worker-1", "reason": "cordoned (spec.unschedulable)"}]


def test_every_gpu_node_not_ready_is_no_gpu_node():
    items = nodes("gpu-nodes-2-notready")
    by_name(items, "gpu-worker-1")["spec"]["unschedulable"] = True
    result = collect(items)
    assert result["nodes"] == []
    assert "No GPU node" in result["problems"][0]
    assert "gpu-worker-2 not Ready" in result["problems"][0]
    assert "gpu-worker-1 cordoned" in result["problems"][0]


def _with_driver(items, name, full, major, minor, rev):
    labels = by_name(items, name)["metadata"]["labels"]
    labels["nvidia.com/cuda.driver-version.full"] = full
    labels["nvidia.com/cuda.driver.major"], labels["nvidia.com/cuda.driver.minor"] = major, minor
    labels["nvidia.com/cuda.driver.rev"] = rev
    return items


def test_driver_too_old_says_seen_needed_and_fix():
    items = _with_driver(nodes("gpu-nodes-2"), "gpu-worker-2", "535.104.05", "535", "104", "05")
    result = collect(items)
    assert len(result["problems"]) == 1
    problem = result["problems"][0]
    assert problem.startswith("NVIDIA driver too old on gpu-worker-2")
    assert "seen 535.104.05" in problem
    assert "needed 580.65.06 or newer" in problem
    assert "Upgrade the driver" in problem
    assert result["driver_version"] == "535.104.05"


def test_driver_from_major_minor_rev_when_the_full_label_is_missing():
    items = nodes("gpu-nodes-2")
    labels = by_name(items, "gpu-worker-1")["metadata"]["labels"]
    del labels["nvidia.com/cuda.driver-version.full"]
    labels["nvidia.com/cuda.driver.rev"] = "02"
    assert gnf.driver_version(labels) == "580.95.02"
    assert collect(items)["nodes"][0]["driver_version"] == "580.95.02"


def test_driver_newer_than_needed_passes_number_by_number():
    items = _with_driver(nodes("gpu-nodes-2"), "gpu-worker-1", "580.105.08", "580", "105", "08")
    assert collect(items)["problems"] == []
    assert collect(items, min_driver_version="580.95.05")["problems"] == []
    assert "seen 580.95.05" in collect(items, min_driver_version="580.95.6")["problems"][0]


def test_cuda_too_old():
    items = nodes("gpu-nodes-2")
    labels = by_name(items, "gpu-worker-1")["metadata"]["labels"]
    labels["nvidia.com/cuda.runtime-version.full"] = "12.4"
    labels["nvidia.com/cuda.runtime.major"], labels["nvidia.com/cuda.runtime.minor"] = "12", "4"
    result = collect(items)
    assert len(result["problems"]) == 1
    assert "CUDA too old on gpu-worker-1" in result["problems"][0]
    assert "supports CUDA 12.4" in result["problems"][0]
    assert "needed 13.0 or newer" in result["problems"][0]
    assert result["cuda_version"] == "12.4"


def test_no_version_check_without_minimums():
    items = _with_driver(nodes("gpu-nodes-2"), "gpu-worker-2", "470.1.2", "470", "1", "2")
    assert gnf.collect(items)["problems"] == []


def test_missing_version_labels_are_problems_when_checked():
    items = nodes("gpu-nodes-2")
    labels = by_name(items, "gpu-worker-1")["metadata"]["labels"]
    for key in list(labels):
        if key.startswith("nvidia.com/cuda."):
            del labels[key]
    result = collect(items)
    assert len(result["problems"]) == 2
    assert "NVIDIA driver version is unknown" in result["problems"][0]
    assert "CUDA version the driver supports is unknown" in result["problems"][1]
    assert gnf.collect(items)["problems"] == []


def test_missing_memory_label_is_a_problem():
    items = nodes("gpu-nodes-2")
    del by_name(items, "gpu-worker-1")["metadata"]["labels"]["nvidia.com/gpu.memory"]
    result = collect(items)
    assert result["nodes"][0]["gpu_memory_mib"] is None
    assert "no nvidia.com/gpu.memory label" in result["problems"][0]
    assert result["gpu_memory_mib"] == 81920


def test_node_selector():
    items = nodes("gpu-nodes-2")
    by_name(items, "gpu-worker-2")["metadata"]["labels"]["pool"] = "serving"
    result = collect(items, node_selector={"pool": "serving"})
    assert [node["name"] for node in result["nodes"]] == ["gpu-worker-2"]
    result = collect(items, node_selector={"pool": "training"})
    assert result["nodes"] == []
    assert "among the 0 node(s) matching pool=training" in result["problems"][0]


def test_mig_mixed_slices_only():
    items = nodes("gpu-nodes-2")
    node = by_name(items, "gpu-worker-1")
    node["metadata"]["labels"]["nvidia.com/mig.strategy"] = "mixed"
    for key in ("capacity", "allocatable"):
        del node["status"][key]["nvidia.com/gpu"]
        node["status"][key]["nvidia.com/mig-3g.40gb"] = "2"
    result = collect(items)
    assert [node["name"] for node in result["nodes"]] == ["gpu-worker-2"]
    assert "advertises only MIG slices (nvidia.com/mig-3g.40gb=2)" in result["problems"][0]


def test_mixed_products_warn_and_take_the_smallest_memory():
    items = nodes("gpu-nodes-2") + [item for item in nodes("gpu-nodes-64") if item["metadata"]["name"] == "h200-01"]
    result = collect(items)
    assert result["problems"] == []
    assert result["gpu_products"] == ["NVIDIA-A100-SXM4-80GB", "NVIDIA-H200"]
    assert result["gpu_product"] == "NVIDIA-A100-SXM4-80GB + NVIDIA-H200"
    assert result["gpu_memory_mib"] == 81920
    assert result["gpu_count"] == 10
    assert any("mix GPU models" in warning for warning in result["warnings"])


def test_input_is_not_left_changed():
    items = nodes("gpu-nodes-2")
    before = copy.deepcopy(items)
    collect(items)
    assert items == before


@pytest.mark.parametrize(
    ("quantity", "value"),
    [("32", 32.0), ("500m", 0.5), ("268333056Ki", 268333056 * 1024.0), ("16Gi", 16 * 2**30), ("1e3", 1000.0)],
)
def test_parse_quantity(quantity, value):
    assert gnf.parse_quantity(quantity) == value


def test_bad_input():
    with pytest.raises(gnf.NodeFactsError):
        gnf.parse_quantity("lots")
    with pytest.raises(gnf.NodeFactsError, match="not a Node"):
        gnf.collect([{"kind": "Pod", "metadata": {"name": "p"}}])
    with pytest.raises(gnf.NodeFactsError, match="list of Node objects"):
        gnf.collect({"items": []})
