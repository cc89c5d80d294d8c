"""accelerator_facts on a real two-H200 host's outputs (tests/fixtures/gpu/h200-2x): several GPUs, a bf16 CPU."""

from __future__ import annotations

import os

from ansible_collections.llmops.ray_vllm.plugins.module_utils import _accelerator_facts as facts

H200X2 = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "fixtures", "gpu", "h200-2x")


def read(name):
    with open(os.path.join(H200X2, name), encoding="utf-8") as handle:
        return handle.read()


class Replay:
    """Answers run_command with what nvidia-smi printed on that host."""

    def __init__(self):
        self.answers = {
            facts.QUERY_GPU_ARGS: (0, read("query-gpu.csv"), ""),
            (): (0, read("nvidia-smi.txt"), ""),
            ("-q", "-x"): (0, read("nvidia-smi-q.xml"), ""),
        }

    def run_command(self, argv):
        return self.answers[tuple(argv[1:])]


def node_online():
    return [line.split(": ", 1)[1] for line in read("lscpu.txt").splitlines() if line.startswith("node-online: ")][0]


def collected(tmp_path):
    # /sys/devices/system/node/online was recorded into lscpu.txt; collect() reads it from a file of its own.
    online = tmp_path / "node-online"
    online.write_text(node_online() + "\n")
    return facts.collect(
        Replay(),
        "nvidia-smi",
        None,
        os.path.join(H200X2, "cpuinfo.txt"),
        os.path.join(H200X2, "meminfo.txt"),
        str(online),
    )


def test_both_gpus_are_read_in_index_order():
    gpus = facts.parse_query_gpu(read("query-gpu.csv"))
    assert [gpu["index"] for gpu in gpus] == [0, 1]
    assert [gpu["pci_bus_id"] for gpu in gpus] == ["00000000:00:06.0", "00000000:00:07.0"]
    assert len({gpu["uuid"] for gpu in gpus}) == 2
    assert all(gpu["memory_total_mib"] == 143771 for gpu in gpus)


def test_the_node_facts_count_two_h200_and_a_bf16_cpu(tmp_path):
    result, absent = collected(tmp_path)
    nproc = int([line.split(": ")[1] for line in read("lscpu.txt").splitlines() if line.startswith("nproc: ")][0])
    assert absent is None
    assert (result["gpu_count"], result["gpu_product"], result["gpu_memory_mib"]) == (2, "NVIDIA H200", 143771)
    assert (result["driver_version"], result["cuda_version"]) == ("580.159.04", "13.0")
    assert result["cpu"]["logical_cores"] == nproc == 32
    assert result["cpu"]["bf16_supported"] is True
    assert result["cpu"]["numa_nodes"] == 1


def test_two_gpus_meet_two_and_miss_three(tmp_path):
    result, absent = collected(tmp_path)
    options = dict(host="h200x2", allow_cpu=False, min_driver_version="580.65.06", min_cuda_version="13.0")
    mode, problems, _warnings = facts.check_expectations(result, min_gpus=2, gpu_absent_reason=absent, **options)
    assert (mode, problems) == ("gpu", [])
    mode, problems, _warnings = facts.check_expectations(result, min_gpus=3, gpu_absent_reason=absent, **options)
    assert problems and problems[0].startswith(
        "found 2 GPU(s) on h200x2 (0: NVIDIA H200, 1: NVIDIA H200), min_gpus is 3"
    )


def test_the_real_two_gpu_node_plans_the_seed_model_with_tp_inside_it(tmp_path):
    """From the recorded node to a plan: 70B bf16 on one host with 2 x H200 is TP=2, PP=1, no cross-node traffic."""
    from ansible_collections.llmops.ray_vllm.plugins.module_utils import _deployment_plan as dp

    result, _absent = collected(tmp_path)
    node = {
        "name": "h200x2",
        "gpus": result["gpu_count"],
        "gpu_memory_mib": result["gpu_memory_mib"],
        "gpu_product": result["gpu_product"],
        "cpus": result["cpu"]["logical_cores"],
        "memory_mib": result["memory_mib"],
    }
    model_dir = os.path.join(H200X2, "..", "..", "models", "deepseek-r1-distill-llama-70b")
    plan = dp.plan_from_options(
        {"nodes": [node], "model_path": model_dir, "platform": "hosts", "max_model_len": 8096, "dtype": "bfloat16"}
    )
    assert (plan["tensor_parallel_size"], plan["pipeline_parallel_size"], plan["world_size"]) == (2, 1, 2)
    assert plan["cross_node_tensor_parallel"] is False
    assert plan["memory"]["fits"] is True
