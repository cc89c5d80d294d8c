# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""site.yml on both platforms: a user's own values are honoured when valid and refused, by name, before any change.

- every role's preflight validates its variables against its argument spec first, so a wrongly typed variable of
  any role stops the run before anything changes (recap changed=0; no Ray process, no vLLM port, no Kubernetes object);
- a user's vllm_serve_tensor_parallel_size (or ray_vllm_tensor_parallel_size) is handed to the planner, which
  honours a valid one and refuses a bad one naming the variable; a KubeRay layout override likewise.

The hosts runs use inventories/local with this module's own ports, so a running `make demo` is left alone; the
Kubernetes runs share one test bed of the seed cluster.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import ray_local
from playbook_runner import REPO, run_playbook

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from k8s_testbed.harness import RunningTestBed

pytestmark = pytest.mark.integration

VLLM_PORT = 38501
TEMP_PREFIX = "/tmp/ray-llmops-refusals"
HOSTS_VARS = [
    "-e", "ray_cluster_port=36500",
    "-e", "ray_cluster_dashboard_port=38500",
    "-e", "ray_cluster_dashboard_agent_port=38502",
    "-e", "vllm_serve_port=%d" % VLLM_PORT,
    "-e", "ray_cluster_temp_dir_prefix=%s" % TEMP_PREFIX,
]  # fmt: skip
LOG_DIR = REPO / "tests" / "output" / "site_refusals"
NAMESPACE = "llm"


def flat(text):
    """The yaml callback wraps long messages: compare on the text with its whitespace collapsed."""
    return " ".join(text.split())


def ray_processes():
    return ray_local.pids_mentioning(TEMP_PREFIX)


def port_open(port):
    return ray_local.port_is_open("127.0.0.1", port, timeout=1)


def hosts_site(name, *extra, check=False):
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    args = list(HOSTS_VARS) + list(extra) + (["--check"] if check else [])
    rc, output, recap = run_playbook("site.yml", extra_args=args, log_path=LOG_DIR / ("%s.log" % name))
    return rc, flat(output), recap


def assert_nothing_changed_on_hosts(recap):
    assert recap and all(host["changed"] == 0 for host in recap.values()), recap
    assert ray_processes() == [], "a Ray node was started"
    assert not port_open(VLLM_PORT), "something listens on the vLLM port"


def type_error(variable, kind):
    """What the role's argument spec says of a variable given as text that is not a ``kind``."""
    return "argument '%s' is of type str and we were unable to convert to %s" % (variable, kind)


# What the user set and the sentence that refuses it, by its name; each run must stop before anything changes.
HOSTS_REFUSALS = [
    # One wrongly typed variable per role.
    ("type-model_storage", ["model_storage_timeout=soon"], type_error("model_storage_timeout", "int")),
    ("type-ray_cluster", ["ray_cluster_num_cpus=not-a-number"], type_error("ray_cluster_num_cpus", "int")),
    ("type-vllm_serve", ["vllm_serve_port=eighty"], type_error("vllm_serve_port", "int")),
    ("type-cuda_check", ["cuda_check_allow_cpu=perhaps"], type_error("cuda_check_allow_cpu", "bool")),
    # SmolLM2 has 9 attention heads; the planner names the variable the user set.
    (
        "tp-bad",
        ["vllm_serve_tensor_parallel_size=2"],
        "vllm_serve_tensor_parallel_size=2 does not divide num_attention_heads=9",
    ),
    (
        "tp-both",
        ["vllm_serve_tensor_parallel_size=3", "ray_vllm_tensor_parallel_size=1"],
        "vllm_serve_tensor_parallel_size=3 and ray_vllm_tensor_parallel_size=1 ask the plan for different",
    ),
    (
        "gpus-cap",
        ["ray_cluster_num_gpus=1"],
        "ray_cluster_num_gpus=1 on ray-head-local, but cuda_check found 0 GPU(s) there",
    ),
    (
        "port-clash",
        ["ray_cluster_dashboard_agent_port=%d" % VLLM_PORT],
        "ray_cluster_dashboard_agent_port and vllm_serve_port are both %d" % VLLM_PORT,
    ),
]


@pytest.mark.parametrize(("name", "settings", "refusal"), HOSTS_REFUSALS, ids=[case[0] for case in HOSTS_REFUSALS])
def test_bad_input_on_hosts_is_refused_by_name_before_any_change(name, settings, refusal):
    extra = [arg for setting in settings for arg in ("-e", setting)]
    rc, output, recap = hosts_site(name, *extra)
    assert rc != 0
    assert refusal in output, output[-3000:]
    assert_nothing_changed_on_hosts(recap)


def test_a_valid_tensor_parallel_size_is_honoured_by_the_plan_and_the_command_line():
    # 3 divides SmolLM2's 9 heads and equals its 3 KV heads: the plan takes it where it would choose 1 itself.
    rc, output, recap = hosts_site("tp-good", "-e", "vllm_serve_tensor_parallel_size=3", check=True)
    assert rc == 0, output[-6000:]
    assert "vLLM runs on CPU with TP=3, PP=1" in output, output[-6000:]
    # --check says the command line the server would get.
    assert "-m vllm.entrypoints.openai.api_server --model" in output and "--tensor-parallel-size 3" in output, output[
        -6000:
    ]
    assert ray_processes() == [] and not port_open(VLLM_PORT)


# ---------------------------------------------------------------------------------------------------------------------
# platform kubernetes, on one test bed of the seed cluster (2 nodes x 1 A100)


@pytest.fixture(scope="module")
def seed_bed(tmp_path_factory):
    with RunningTestBed(tmp_path_factory.mktemp("refusals") / "testbed") as bed:
        yield bed


def k8s_site(bed, name, *extra):
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    args = ["-e", "ray_vllm_kubeconfig=%s" % bed.kubeconfig, *extra]
    rc, output, recap = run_playbook(
        "site.yml", inventory="inventories/prod", extra_args=args, env=bed.env(), log_path=LOG_DIR / ("%s.log" % name)
    )
    return rc, flat(output), recap


def assert_nothing_created(bed, recap):
    assert recap["localhost"]["changed"] == 0, recap
    assert bed.request("GET", "/api/v1/namespaces/%s" % NAMESPACE)[0] == 404


K8S_WRONG_TYPES = [
    ("gpu_operator_wait_retries", "lots", "int"),
    ("kuberay_operator_extra_values", "not-a-dict", "dict"),
    ("model_storage_download_backoff_limit", "few", "int"),
    ("ray_cluster_kuberay_timeout", "long", "int"),
    ("vllm_serve_startup_timeout", "slow", "int"),
    ("chat_ui_service_port", "web", "int"),
]


@pytest.mark.parametrize(("variable", "value", "kind"), K8S_WRONG_TYPES, ids=[v[0] for v in K8S_WRONG_TYPES])
def test_a_wrongly_typed_variable_of_each_kubernetes_role_stops_before_any_change(seed_bed, variable, value, kind):
    rc, output, recap = k8s_site(
        seed_bed, "k8s-type-" + variable, "-e", "%s=%s" % (variable, value), "-e", "ray_vllm_chat_ui=true"
    )
    assert rc != 0
    assert "Validation of arguments failed" in output, output[-3000:]
    assert type_error(variable, kind) in output, output[-3000:]
    assert_nothing_created(seed_bed, recap)


def test_a_kuberay_layout_the_gpus_cannot_hold_is_refused_by_its_name(seed_bed):
    layout = {"worker_group": {"replicas": 1, "min_replicas": 1, "max_replicas": 1, "num_gpus": 2}}
    rc, output, recap = k8s_site(seed_bed, "layout-bad", "-e", json.dumps({"ray_cluster_kuberay_layout": layout}))
    assert rc != 0
    assert (
        "ray_cluster_kuberay_layout.worker_group.num_gpus=2 asks for more GPUs in one pod than any node has" in output
    )
    assert_nothing_created(seed_bed, recap)


# Last in the module: it makes the namespace, so that --check can dry-run the RayCluster and show it.
def test_a_valid_kuberay_layout_is_honoured(seed_bed):
    # The head pod carries one of the two GPUs and one worker pod the other: the plan's world size, another shape.
    layout = {
        "head": {"num_gpus": 1, "node": "gpu-worker-1"},
        "worker_group": {"replicas": 1, "min_replicas": 1, "max_replicas": 1, "num_gpus": 1},
    }
    status, _body = seed_bed.request(
        "POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
    )
    assert status == 201
    rc, output, recap = k8s_site(
        seed_bed, "layout-good", "-e", json.dumps({"ray_cluster_kuberay_layout": layout}), "--check", "--diff"
    )
    assert rc == 0, output[-6000:]
    assert "ray_layout.kuberay comes from the user option ray_cluster_kuberay_layout" in output, output[-6000:]
    # The RayCluster the API server dry-ran: the head with a GPU on gpu-worker-1, one worker pod.
    assert "Check mode: the RayCluster llm/llm-raycluster was only sent as a server-side dry run" in output
    diff = output.split("Apply the RayCluster", 1)[1].split("TASK [", 1)[0]
    assert "num-gpus: '1'" in diff and "kubernetes.io/hostname: gpu-worker-1" in diff, diff[-4000:]
    assert "replicas: 1" in diff, diff[-4000:]
    assert seed_bed.request("GET", "/apis/ray.io/v1/namespaces/%s/rayclusters" % NAMESPACE)[1]["items"] == []
