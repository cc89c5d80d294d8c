# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The deployment_plan module end to end: argument handling, check mode, failures and documentation."""

from __future__ import annotations

import json
import os

import pytest
import yaml
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from ansible_collections.llmops.ray_vllm.plugins.module_utils import _deployment_plan as dp
from ansible_collections.llmops.ray_vllm.plugins.modules import deployment_plan

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(HERE))), "fixtures", "models")

A100 = {"gpus": 1, "gpu_memory_mib": 81920, "gpu_product": "NVIDIA A100-SXM4-80GB"}


class ExitJson(Exception):
    pass


class FailJson(Exception):
    pass


WARNED = []


@pytest.fixture(autouse=True)
def capture_results(monkeypatch):
    def exit_json(self, **result):
        raise ExitJson(result)

    def fail_json(self, msg, **result):
        result["msg"] = msg
        raise FailJson(result)

    def warn(self, warning, **_):
        WARNED.append(warning)

    del WARNED[:]
    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)
    monkeypatch.setattr(basic.AnsibleModule, "warn", warn)


def run(args, outcome=ExitJson):
    with patch_module_args(args), pytest.raises(outcome) as raised:
        deployment_plan.main()
    return raised.value.args[0]


def seed_args(**extra):
    args = {
        "platform": "kubernetes",
        "nodes": [dict(A100, name="gpu-node-0"), dict(A100, name="gpu-node-1")],
        "model_path": os.path.join(MODELS, "deepseek-r1-distill-llama-70b"),
        "model_name": "DeepSeek-R1-Distill-Llama-70B",
        "max_model_len": 8096,
    }
    args.update(extra)
    return args


def test_seed_plan():
    result = run(seed_args())
    assert result["changed"] is False
    assert (result["tensor_parallel_size"], result["pipeline_parallel_size"], result["world_size"]) == (1, 2, 2)
    assert result["ray_layout"]["kuberay"]["worker_group"]["replicas"] == 2
    assert result["memory"]["kv_cache_tokens"] == 21568
    assert (
        result["table_lines"][0] == "deployment plan: DeepSeek-R1-Distill-Llama-70B on kubernetes (bfloat16, KV "
        "bfloat16)"
    )
    assert WARNED == []
    assert "warnings" not in result


def test_idle_gpus_are_ansible_warnings():
    h200 = {"gpus": 8, "gpu_memory_mib": 143771, "gpu_product": "NVIDIA H200"}
    with open(os.path.join(MODELS, "deepseek-r1", "config.json"), encoding="utf-8") as stream:
        config = json.load(stream)
    result = run(
        {
            "platform": "hosts",
            "nodes": [dict(h200, name="h0"), dict(h200, name="h1")],
            "model_config": config,
            "model_params_b": 671,
            "max_gpus": 8,
            "head_gpus": 8,
        }
    )
    assert WARNED == ["8 GPU(s) stay idle: max_gpus=8 caps it."]
    assert result["ray_layout"]["hosts"] == {"head": {"name": "h0", "num_gpus": 8}, "workers": [], "idle": ["h1"]}


def test_check_mode_plans_the_same():
    normal = run(seed_args())
    checked = run(seed_args(_ansible_check_mode=True))
    assert checked == normal


def test_bad_tensor_parallel_size_fails_with_the_choices():
    with open(os.path.join(MODELS, "smollm2-135m-instruct", "config.json"), encoding="utf-8") as stream:
        config = json.load(stream)
    result = run(
        {
            "platform": "hosts",
            "nodes": [dict(A100, name="gpu-node-0", gpus=4)],
            "model_config": config,
            "model_params_b": 0.135,
            "tensor_parallel_size": 4,
        },
        FailJson,
    )
    assert result["msg"] == (
        "tensor_parallel_size=4 does not divide num_attention_heads=9 of the model; choose one of 1, 3, 9."
    )


def test_model_that_does_not_fit_reports_its_sizes():
    result = run(seed_args(nodes=[dict(A100, name="gpu-node-0")], platform="hosts"), FailJson)
    assert "It needs 2 x NVIDIA A100-SXM4-80GB" in result["msg"]
    assert result["memory"]["fits"] is False
    assert (result["tensor_parallel_size"], result["pipeline_parallel_size"]) == (1, 1)


def test_model_config_needs_params():
    result = run(
        {"platform": "hosts", "nodes": [dict(A100, name="n")], "model_config": {"num_hidden_layers": 1}}, FailJson
    )
    assert "model_params_b" in result["msg"]


def test_model_path_and_config_are_exclusive():
    result = run(seed_args(model_config={"num_hidden_layers": 1}, model_params_b=1.0), FailJson)
    assert "mutually exclusive" in result["msg"]


def documented_options():
    return yaml.safe_load(deployment_plan.DOCUMENTATION)["options"]


def spec_shape(spec):
    return {
        name: (value.get("type", "str"), value.get("default"), value.get("choices"), bool(value.get("required")))
        for name, value in spec.items()
    }


def doc_shape(options):
    return {
        name: (value.get("type", "str"), value.get("default"), value.get("choices"), bool(value.get("required")))
        for name, value in options.items()
    }


def test_documentation_matches_the_argument_spec():
    options = documented_options()
    assert doc_shape(options) == spec_shape(deployment_plan.ARGUMENT_SPEC)
    assert doc_shape(options["nodes"]["suboptions"]) == spec_shape(deployment_plan.NODE_OPTIONS)


def test_documentation_returns_every_key_of_a_plan():
    documented = set(yaml.safe_load(deployment_plan.RETURN))
    result = run(seed_args())
    assert set(result) - {"changed", "invocation"} <= documented


def test_documented_defaults_are_the_planner_constants():
    """The documentation must spell defaults out; the argument spec takes them from the planner's constants."""
    options = documented_options()
    assert options["gpu_memory_utilization"]["default"] == dp.DEFAULT_GPU_MEMORY_UTILIZATION
    assert deployment_plan.ARGUMENT_SPEC["gpu_memory_utilization"]["default"] is dp.DEFAULT_GPU_MEMORY_UTILIZATION
    for option, constant in (
        ("dtype", dp.DEFAULT_DTYPE),
        ("kv_cache_dtype", dp.DEFAULT_KV_CACHE_DTYPE),
        ("allow_cross_node_tp", dp.DEFAULT_ALLOW_CROSS_NODE_TP),
        ("device", dp.DEFAULT_DEVICE),
        ("target_concurrency", dp.DEFAULT_TARGET_CONCURRENCY),
    ):
        assert options[option]["default"] == constant == deployment_plan.ARGUMENT_SPEC[option]["default"], option


def test_option_names_are_every_option_but_itself():
    assert set(dp.OPTION_NAMES) == set(deployment_plan.ARGUMENT_SPEC) - {"option_names"}


def test_vllm_args_are_documented_as_the_one_source():
    returned = yaml.safe_load(deployment_plan.RETURN)["vllm_args"]
    assert "the one source of vLLM's parallelism and memory arguments; the vllm_serve role builds its command line" in (
        " ".join(returned["description"])
    )
    assert set(returned["contains"]) == set(run(seed_args())["vllm_args"])


def smollm2_args(**extra):
    with open(os.path.join(MODELS, "smollm2-135m-instruct", "config.json"), encoding="utf-8") as stream:
        config = json.load(stream)
    args = {
        "platform": "hosts",
        "nodes": [dict(A100, name="gpu-node-0", gpus=4)],
        "model_config": config,
        "model_params_b": 0.135,
    }
    args.update(extra)
    return args


def test_option_names_name_the_playbook_variables():
    result = run(
        smollm2_args(tensor_parallel_size=2, option_names={"tensor_parallel_size": "vllm_serve_tensor_parallel_size"}),
        FailJson,
    )
    assert result["msg"] == (
        "vllm_serve_tensor_parallel_size=2 does not divide num_attention_heads=9 of the model; choose one of 1, 3, 9."
    )


def test_unknown_option_names_fail_with_the_valid_ones():
    result = run(smollm2_args(option_names={"tp": "vllm_serve_tensor_parallel_size"}), FailJson)
    assert result["msg"].startswith("option_names has unknown key(s) tp; its keys are deployment_plan's options: ")
    assert "tensor_parallel_size" in result["msg"]


def test_kuberay_layout_replaces_the_planned_one():
    result = run(
        seed_args(
            kuberay_layout={"worker_group": {"cpus": 6, "memory_mib": 65536}},
            option_names={"kuberay_layout": "ray_cluster_kuberay_layout"},
        )
    )
    group = result["ray_layout"]["kuberay"]["worker_group"]
    assert (group["cpus"], group["memory_mib"], group["replicas"], group["num_gpus"]) == (6, 65536, 2, 1)
    assert result["reasons"][-1].startswith("ray_layout.kuberay comes from the user option ray_cluster_kuberay_layout")


def test_kuberay_layout_that_misses_the_world_size_fails():
    result = run(seed_args(kuberay_layout={"worker_group": {"replicas": 1}}), FailJson)
    assert result["msg"].startswith(
        "kuberay_layout gives Ray 1 GPUs (0 on the head pod + replicas=1 x num_of_hosts=1 x num_gpus=1), fewer than "
        "the plan's world size: expected at least 2 (TP=1 x PP=2), seen 1;"
    )


def test_device_cpu_plans_on_the_gpu_nodes_cpus_and_device_gpu_needs_a_gpu():
    nodes = [dict(A100, name="gpu-node-0", cpus=32.0, memory_mib=262144)]
    result = run(smollm2_args(nodes=nodes, device="cpu", max_model_len=2048, cpu_kvcache_space_gib=1))
    assert (result["device"], result["gpus_total"], result["gpus_used"]) == ("CPU", 1, 0)
    assert result["ray_layout"]["hosts"] == {"head": {"name": "gpu-node-0", "num_gpus": 0}, "workers": [], "idle": [
        "gpu-node-0"
    ]}  # fmt: skip
    assert result["env"] == {"VLLM_CPU_KVCACHE_SPACE": "1"}
    refused = run(
        smollm2_args(
            nodes=[{"name": "cpu-0", "memory_mib": 8192}], device="gpu", option_names={"device": "ray_vllm_device"}
        ),
        FailJson,
    )
    assert refused["msg"].startswith("ray_vllm_device=gpu asks for a GPU plan, but no node has a GPU")
    assert "tpu" in run(smollm2_args(device="tpu"), FailJson)["msg"]


def test_kuberay_layout_is_refused_on_hosts():
    result = run(seed_args(platform="hosts", kuberay_layout={"worker_group": {"replicas": 2}}), FailJson)
    assert result["msg"].startswith("kuberay_layout is set, but platform=hosts")


def h100_args(**extra):
    h100 = {"gpus": 8, "gpu_memory_mib": 81559, "gpu_product": "NVIDIA H100 80GB HBM3"}
    return seed_args(nodes=[dict(h100, name="gpu-node-0"), dict(h100, name="gpu-node-1")], **extra)


def test_replicas_and_autoscaling():
    result = run(h100_args(min_replicas=2, max_replicas=4))
    assert (result["replicas"], result["tensor_parallel_size"], result["gpus_used"]) == (2, 4, 16)
    assert result["autoscaling"] == {
        "min_replicas": 2,
        "max_replicas": 4,
        "target_ongoing_requests": 8,
        "max_ongoing_requests": 58,
    }
    assert result["serve"]["engine"] == "serve_llm"
    group = result["ray_layout"]["kuberay"]["worker_group"]
    assert (group["replicas"], group["min_replicas"], group["max_replicas"]) == (2, 2, 4)
    assert set(yaml.safe_load(deployment_plan.RETURN)["autoscaling"]["contains"]) == set(result["autoscaling"])
    assert set(yaml.safe_load(deployment_plan.RETURN)["replica"]["contains"]) == set(result["replica"])
    assert set(yaml.safe_load(deployment_plan.RETURN)["serve"]["contains"]) == set(result["serve"])


def test_replica_options_are_refused_by_their_variable():
    result = run(h100_args(replicas=9, option_names={"replicas": "ray_vllm_replicas"}), FailJson)
    assert result["msg"].startswith(
        "ray_vllm_replicas=9 asks for more replicas than the GPUs hold: expected at most 4, seen 9."
    )
    both = run(h100_args(max_gpus=8, gpu_share=0.5), FailJson)
    assert both["msg"].startswith("max_gpus=8 and gpu_share=0.5 both cap the GPUs the plan uses")
