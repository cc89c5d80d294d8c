# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Bad input, one table: every case is refused before any change, by a message naming the variable and what it accepts.

The table (BAD_INPUT, listed in docs/bad-input.md) covers every role, both platforms and the modules called directly:
types, ranges, unknown choices, paths, names Kubernetes rejects, ports, versions, TP/PP against heads, layers and
GPUs, conflicting options, and a missing kubeconfig or context. Each case runs where a user meets it:

- ``hosts-site`` / ``k8s-site``: the whole site.yml (inventories/local with this module's own ports, so a running
  `make demo` is left alone; inventories/prod on one test bed of the seed cluster). The recap says changed=0, and no
  Ray process, vLLM port or Kubernetes namespace exists afterwards.
- ``hosts-role:ROLE`` / ``k8s-role:ROLE``: the role's preflight, as a user's own playbook calls it
  (``include_role: tasks_from: preflight.yml``), all cases of a platform in one ansible-playbook run (each in a
  block whose rescue records the refusal); the run's recap says changed=0.
- ``module:NAME``: the module called directly with the bad option, all in one run, each refusal changed=false.

Beside them, a user's valid TP and KubeRay layout are honoured.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import NamedTuple

import pytest
import ray_local
import yaml
from playbook_runner import REPO, run_playbook

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from k8s_testbed.harness import RunningTestBed

pytestmark = pytest.mark.integration

VLLM_PORT = 38501
TEMP_PREFIX = "/tmp/ray-llmops-refusals"
HOSTS_VARS = {
    "ray_cluster_port": 36500,
    "ray_cluster_dashboard_port": 38500,
    "ray_cluster_dashboard_agent_port": 38502,
    "vllm_serve_port": VLLM_PORT,
    "ray_cluster_temp_dir_prefix": TEMP_PREFIX,
}
LOG_DIR = REPO / "tests" / "output" / "bad_input"
NAMESPACE = "llm"
DOCS = REPO / "docs" / "bad-input.md"


class Case(NamedTuple):
    """One bad input: where it is given, what the user set, and the words the refusal must hold."""

    id: str
    where: str
    settings: dict
    refusal: tuple


def type_error(variable, kind):
    """What an argument spec says of a variable given as text that is not a ``kind``."""
    return "argument '%s' is of type str and we were unable to convert to %s" % (variable, kind)


def bad_value(variable, value, accepted):
    return "%s=%s: expected %s" % (variable, value, accepted)


DNS_LABEL = "a DNS-1123 label: lower-case letters, digits and '-', starting and ending with a letter or digit"
PORT = "a whole number from 1 to 65535"
# SmolLM2-135M-Instruct (the demo model): 9 attention heads, 3 KV heads, 30 layers.
SMOLLM2 = {
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "num_hidden_layers": 30,
    "vocab_size": 49152,
    "max_position_embeddings": 8192,
    "torch_dtype": "bfloat16",
}
TWO_A100_NODES = [{"name": "gpu-%d" % n, "gpus": 1, "gpu_memory_mib": 81920, "gpu_product": "A100"} for n in (1, 2)]


def plan_args(**options):
    base = dict(platform="kubernetes", nodes=TWO_A100_NODES, model_config=SMOLLM2, model_params_b=0.135)
    return dict(base, **options)


BAD_INPUT = [
    # -- site.yml on hosts: one wrongly typed variable per role, then relations only the plan and the head can judge.
    Case("hosts-type-model_storage", "hosts-site", {"model_storage_timeout": "soon"},
         (type_error("model_storage_timeout", "int"),)),
    Case("hosts-type-ray_cluster", "hosts-site", {"ray_cluster_num_cpus": "not-a-number"},
         (type_error("ray_cluster_num_cpus", "int"),)),
    Case("hosts-type-vllm_serve", "hosts-site", {"vllm_serve_port": "eighty"}, (type_error("vllm_serve_port", "int"),)),
    Case("hosts-type-cuda_check", "hosts-site", {"cuda_check_allow_cpu": "perhaps"},
         (type_error("cuda_check_allow_cpu", "bool"),)),
    Case("hosts-tp-heads", "hosts-site", {"vllm_serve_tensor_parallel_size": 2},
         ("vllm_serve_tensor_parallel_size=2 does not divide num_attention_heads=9",)),
    Case("hosts-tp-conflict", "hosts-site", {"vllm_serve_tensor_parallel_size": 3, "ray_vllm_tensor_parallel_size": 1},
         ("vllm_serve_tensor_parallel_size=3 and ray_vllm_tensor_parallel_size=1 ask the plan for different",)),
    Case("hosts-gpus-absent", "hosts-site", {"ray_cluster_num_gpus": 1},
         ("ray_cluster_num_gpus=1 on ray-head-local, but cuda_check found 0 GPU(s) there",)),
    Case("hosts-port-clash", "hosts-site", {"ray_cluster_dashboard_agent_port": VLLM_PORT},
         ("ray_cluster_dashboard_agent_port and vllm_serve_port are both %d" % VLLM_PORT,)),
    # -- site.yml on Kubernetes: wrongly typed variables (the other roles' below, in their preflights), a layout
    # the GPUs cannot hold, a TP the GPUs cannot hold, no kubeconfig, an unknown context.
    Case("k8s-type-gpu_operator", "k8s-site", {"gpu_operator_wait_retries": "lots"},
         (type_error("gpu_operator_wait_retries", "int"),)),
    Case("k8s-type-kuberay_operator", "k8s-site", {"kuberay_operator_extra_values": "not-a-dict"},
         (type_error("kuberay_operator_extra_values", "dict"),)),
    Case("k8s-layout-gpus", "k8s-site",
         {"ray_cluster_kuberay_layout": {"worker_group": {"replicas": 1, "min_replicas": 1, "max_replicas": 1,
                                                          "num_gpus": 2}}},
         ("ray_cluster_kuberay_layout.worker_group.num_gpus=2 asks for more GPUs in one pod than any node has",)),
    Case("k8s-tp-gpus", "k8s-site", {"vllm_serve_tensor_parallel_size": 4}, ("vllm_serve_tensor_parallel_size=4",)),
    Case("k8s-no-kubeconfig", "k8s-site", {"ray_vllm_kubeconfig": "/nonexistent/kubeconfig"},
         ("ray_vllm_kubeconfig", "/nonexistent/kubeconfig")),
    Case("k8s-unknown-context", "k8s-site", {"ray_vllm_kube_context": "no-such-context"},
         ("ray_vllm_kube_context", "no-such-context")),
    # -- each role's preflight on hosts.
    Case("ms-unknown-source", "hosts-role:model_storage", {"model_storage_source": "s3"},
         ("value of model_storage_source must be one of: modelscope, huggingface, local, gguf, got: s3",)),
    Case("ms-relative-path", "hosts-role:model_storage", {"model_storage_path": "models/smollm2"},
         (bad_value("model_storage_path", "'models/smollm2'", "an absolute path"),)),
    Case("ms-model-id-missing", "hosts-role:model_storage",
         {"model_storage_source": "huggingface", "model_storage_model_id": ""},
         ("model_storage_source=huggingface needs model_storage_model_id",)),
    Case("ms-gguf-file-missing", "hosts-role:model_storage",
         {"model_storage_source": "gguf", "model_storage_gguf_file": "", "model_storage_gguf_package": ""},
         ("model_storage_source=gguf needs model_storage_gguf_file",)),
    Case("ms-endpoint-not-url", "hosts-role:model_storage", {"model_storage_endpoint": "hub.internal:8080"},
         (bad_value("model_storage_endpoint", "'hub.internal:8080'", "an http:// or https:// URL"),)),
    Case("rc-port-range", "hosts-role:ray_cluster", {"ray_cluster_port": 70000},
         (bad_value("ray_cluster_port", 70000, PORT),)),
    Case("rc-port-shared", "hosts-role:ray_cluster", {"ray_cluster_port": 36400, "ray_cluster_dashboard_port": 36400},
         ("ray_cluster_port and ray_cluster_dashboard_port are both 36400",)),
    Case("rc-negative-gpus", "hosts-role:ray_cluster", {"ray_cluster_num_gpus": -1},
         (bad_value("ray_cluster_num_gpus", -1, "a whole number of at least 0"),)),
    Case("rc-relative-temp-dir", "hosts-role:ray_cluster", {"ray_cluster_temp_dir_prefix": "tmp/ray"},
         (bad_value("ray_cluster_temp_dir_prefix", "'tmp/ray'", "an absolute path"),)),
    Case("rc-unknown-auth-mode", "hosts-role:ray_cluster", {"ray_cluster_auth_mode": "none"},
         ("value of ray_cluster_auth_mode must be one of: token, disabled, got: none",)),
    Case("rc-short-token", "hosts-role:ray_cluster", {"ray_cluster_auth_token": "short"},
         (bad_value("ray_cluster_auth_token", "'short'", "text of at least 32 characters"),)),
    Case("rc-tiny-object-store", "hosts-role:ray_cluster", {"ray_cluster_object_store_memory": 1024},
         (bad_value("ray_cluster_object_store_memory", 1024, "a whole number of at least 78643200"),)),
    Case("vs-gpu-memory-utilization", "hosts-role:vllm_serve", {"vllm_serve_gpu_memory_utilization": 1.5},
         (bad_value("vllm_serve_gpu_memory_utilization", 1.5, "a number above 0 and at most 1"),)),
    Case("vs-max-model-len", "hosts-role:vllm_serve", {"vllm_serve_max_model_len": 0},
         (bad_value("vllm_serve_max_model_len", 0, "a whole number of at least 1"),)),
    Case("vs-pipeline-zero", "hosts-role:vllm_serve", {"vllm_serve_pipeline_parallel_size": 0},
         (bad_value("vllm_serve_pipeline_parallel_size", 0, "a whole number of at least 1"),)),
    Case("vs-port-zero", "hosts-role:vllm_serve", {"vllm_serve_port": 0}, (bad_value("vllm_serve_port", 0, PORT),)),
    Case("vs-empty-name", "hosts-role:vllm_serve", {"vllm_serve_served_model_name": ""},
         (bad_value("vllm_serve_served_model_name", "''", "a value that is not empty"),)),
    Case("vs-port-is-dashboard", "hosts-role:vllm_serve",
         {"vllm_serve_port": 8265, "vllm_serve_dashboard_url": "http://127.0.0.1:8265"},
         ("vllm_serve_port=8265 is the port of the Ray dashboard",)),
    Case("vs-unknown-executor", "hosts-role:vllm_serve", {"vllm_serve_executor_backend": "slurm"},
         ("value of vllm_serve_executor_backend must be one of",)),
    Case("cc-driver-version", "hosts-role:cuda_check", {"cuda_check_min_driver_version": "latest"},
         (bad_value("cuda_check_min_driver_version", "'latest'", "dotted numbers"),)),
    Case("cc-negative-gpus", "hosts-role:cuda_check", {"cuda_check_min_gpus": -2},
         (bad_value("cuda_check_min_gpus", -2, "a whole number of at least 0"),)),
    Case("cc-unknown-platform", "hosts-role:cuda_check", {"cuda_check_platform": "slurm"},
         ("value of cuda_check_platform must be one of: hosts, kubernetes, got: slurm",)),
    # -- each Kubernetes role's preflight.
    Case("k8s-type-model_storage", "k8s-role:model_storage", {"model_storage_download_backoff_limit": "few"},
         (type_error("model_storage_download_backoff_limit", "int"),)),
    Case("k8s-type-ray_cluster", "k8s-role:ray_cluster", {"ray_cluster_kuberay_timeout": "long"},
         (type_error("ray_cluster_kuberay_timeout", "int"),)),
    Case("k8s-type-vllm_serve", "k8s-role:vllm_serve", {"vllm_serve_startup_timeout": "slow"},
         (type_error("vllm_serve_startup_timeout", "int"),)),
    Case("k8s-type-chat_ui", "k8s-role:chat_ui", {"chat_ui_service_port": "web"},
         (type_error("chat_ui_service_port", "int"),)),
    Case("k8s-ms-namespace", "k8s-role:model_storage", {"model_storage_namespace": "LLM_Prod"},
         ("the namespace 'LLM_Prod'", "is not a valid Kubernetes namespace name")),
    Case("k8s-ms-release", "k8s-role:model_storage", {"ray_vllm_release": "Bad_Release"},
         ("model_storage_release (from ray_vllm_release) 'Bad_Release'",)),
    Case("k8s-rc-memory", "k8s-role:ray_cluster", {"ray_cluster_head_memory": "lots"},
         (bad_value("ray_cluster_head_memory", "'lots'", "a Kubernetes quantity"),)),
    Case("k8s-rc-images", "k8s-role:ray_cluster",
         {"ray_cluster_head_image": "rayproject/ray:2.60.0", "ray_cluster_worker_image": "rayproject/ray:2.49.0"},
         ("ray_cluster_head_image is rayproject/ray:2.60.0 (tag 2.60.0) but ray_cluster_worker_image",)),
    Case("k8s-rc-request-ratio", "k8s-role:ray_cluster", {"ray_cluster_worker_request_ratio": 1.5},
         (bad_value("ray_cluster_worker_request_ratio", 1.5, "a number above 0 and at most 1"),)),
    Case("k8s-vs-node-port", "k8s-role:vllm_serve", {"vllm_serve_node_port": 8080},
         (bad_value("vllm_serve_node_port", 8080, "a whole number from 30000 to 32767"),)),
    Case("k8s-vs-release", "k8s-role:vllm_serve", {"ray_vllm_release": "llm_prod"},
         (bad_value("vllm_serve_release", "'llm_prod'", DNS_LABEL),)),
    Case("k8s-chat-node-port", "k8s-role:chat_ui", {"chat_ui_node_port": 8080},
         (bad_value("chat_ui_node_port", 8080, "a whole number from 30000 to 32767"),)),
    Case("k8s-chat-url", "k8s-role:chat_ui", {"chat_ui_openai_url": "llm-vllm:8000"},
         (bad_value("chat_ui_openai_url", "'llm-vllm:8000'", "an http:// or https:// URL"),)),
    Case("k8s-gpu-namespace", "k8s-role:gpu_operator", {"gpu_operator_namespace": "GPU Operator"},
         (bad_value("gpu_operator_namespace", "'GPU Operator'", DNS_LABEL),)),
    Case("k8s-gpu-mode", "k8s-role:gpu_operator", {"gpu_operator_mode": "upgrade"},
         ("value of gpu_operator_mode must be one of: install, verify, got: upgrade",)),
    Case("k8s-gpu-retries", "k8s-role:gpu_operator", {"gpu_operator_wait_retries": 0},
         (bad_value("gpu_operator_wait_retries", 0, "a whole number of at least 1"),)),
    Case("k8s-kuberay-release", "k8s-role:kuberay_operator", {"kuberay_operator_release_name": "kuberay_op"},
         (bad_value("kuberay_operator_release_name", "'kuberay_op'", DNS_LABEL),)),
    Case("k8s-kuberay-tag", "k8s-role:kuberay_operator", {"kuberay_operator_image_tag": ""},
         (bad_value("kuberay_operator_image_tag", "''", "a value that is not empty"),)),
    Case("k8s-kuberay-watch", "k8s-role:kuberay_operator", {"kuberay_operator_watch_namespaces": ["other"]},
         ("kuberay_operator_watch_namespaces (other) leaves out llm",)),
    # -- the modules, called directly.
    Case("plan-tp-heads", "module:deployment_plan", plan_args(tensor_parallel_size=4),
         ("tensor_parallel_size=4", "num_attention_heads=9")),
    Case("plan-pp-layers", "module:deployment_plan", plan_args(pipeline_parallel_size=31),
         ("pipeline_parallel_size=31", "num_hidden_layers=30")),
    Case("plan-gpu-memory-utilization", "module:deployment_plan", plan_args(gpu_memory_utilization=1.5),
         ("gpu_memory_utilization=1.5",)),
    Case("plan-unknown-platform", "module:deployment_plan", dict(plan_args(), platform="slurm"),
         ("value of platform must be one of: kubernetes, hosts, got: slurm",)),
    Case("plan-unknown-node-option", "module:deployment_plan",
         plan_args(nodes=[{"name": "a", "gpus": 1, "gpu_memory_gib": 80}]),
         ("Unsupported parameters", "nodes.gpu_memory_gib", "gpu_memory_mib")),
    Case("status-address", "module:ray_status", {"address": "no-port"},
         (bad_value("address", "'no-port'", "HOST:PORT with a port from 1 to 65535"),)),
    Case("status-expected-nodes", "module:ray_status", {"address": "127.0.0.1:6379", "expected_nodes": -1},
         (bad_value("expected_nodes", -1, "a whole number of at least 1"),)),
    Case("status-interval", "module:ray_status", {"address": "127.0.0.1:6379", "wait": True, "interval": 0},
         (bad_value("interval", 0, "a whole number of at least 1"),)),
    Case("health-url-not-http", "module:vllm_health", {"url": "ftp://127.0.0.1:8000"},
         (bad_value("url", "'ftp://127.0.0.1:8000'", "an http:// or https:// URL"),)),
    Case("health-negative-timeout", "module:vllm_health", {"url": "http://127.0.0.1:1", "wait": True, "timeout": -5},
         (bad_value("timeout", -5, "a whole number of at least 0"),)),
    Case("job-unknown-state", "module:ray_job",
         {"dashboard_url": "http://127.0.0.1:1", "name": "x", "state": "running"},
         ("value of state must be one of: present, absent, got: running",)),
    Case("job-dashboard-url", "module:ray_job",
         {"dashboard_url": "127.0.0.1:8265", "name": "x", "entrypoint": "true"},
         (bad_value("dashboard_url", "'127.0.0.1:8265'", "an http:// or https:// URL"),)),
    Case("node-port-range", "module:ray_node",
         {"name": "h", "role": "head", "ray_path": "/bin/true", "temp_dir": "/tmp/bad-input-node", "port": 70000},
         (bad_value("port", 70000, PORT),)),
    Case("node-worker-without-head", "module:ray_node",
         {"name": "w", "role": "worker", "ray_path": "/bin/true", "temp_dir": "/tmp/bad-input-node"},
         ("role is worker but all of the following are missing: head_address",)),
    Case("node-relative-temp-dir", "module:ray_node",
         {"name": "h", "role": "head", "ray_path": "/bin/true", "temp_dir": "tmp/ray"},
         (bad_value("temp_dir", "'tmp/ray'", "an absolute path"),)),
    Case("download-unknown-source", "module:model_download", {"dest": "/tmp/bad-input-model", "source": "s3"},
         ("value of source must be one of: modelscope, huggingface, local, got: s3",)),
    Case("download-relative-dest", "module:model_download", {"dest": "models/x", "model_id": "ORG/NAME"},
         (bad_value("dest", "'models/x'", "an absolute path"),)),
    Case("download-endpoint-not-url", "module:model_download",
         {"dest": "/tmp/bad-input-model", "model_id": "ORG/NAME", "source": "huggingface", "endpoint": "hub:8080"},
         (bad_value("endpoint", "'hub:8080'", "an http:// or https:// URL"),)),
    Case("gguf-missing-file", "module:gguf_convert", {"dest": "/tmp/bad-input-gguf", "src": "/nonexistent/model.gguf"},
         ("src /nonexistent/model.gguf is not a file",)),
    Case("serve-unknown-proxy-location", "module:serve_app",
         {"name": "x", "dashboard_url": "http://127.0.0.1:1", "proxy_location": "Everywhere"},
         ("value of proxy_location must be one of: HeadOnly, EveryNode, Disabled, got: Everywhere",)),
    Case("serve-status-no-dashboard", "module:serve_status", {"name": "x"},
         ("one of the following is required: dashboard_url, service",)),
    Case("port-holder-port-range", "module:port_holder", {"port": 0},
         (bad_value("port", 0, PORT),)),
]  # fmt: skip


def cases_where(prefix):
    return [case for case in BAD_INPUT if case.where.startswith(prefix)]


def flat(text):
    """The yaml callback wraps long messages: compare on the text with its whitespace collapsed."""
    return " ".join(str(text).split())


def extra_vars(settings):
    return ["-e", json.dumps(settings)]


def assert_refused(case, message):
    for words in case.refusal:
        assert flat(words) in flat(message), "%s: %r not in the refusal: %s" % (case.id, words, flat(message)[-3000:])


# ---------------------------------------------------------------------------------------------------------------------
# Roles' preflights and modules: each platform's cases in one ansible-playbook run.


def batch_playbook(cases, hosts):
    """One play: per case a block running it, and a rescue that records the refusal under the case's id."""
    tasks = []
    for case in cases:
        kind, name = (case.where.split(":", 1) + [""])[:2]
        if kind == "module":
            run = {"name": "Run " + case.id, "llmops.ray_vllm." + name: case.settings}
        else:
            run = {
                "name": "Run " + case.id,
                "ansible.builtin.include_role": {"name": "llmops.ray_vllm." + name, "tasks_from": "preflight.yml"},
                "vars": case.settings,
            }
        tasks.append(
            {
                "name": "Case " + case.id,
                "block": [run, {"name": "ACCEPTED " + case.id, "ansible.builtin.debug": {"msg": "accepted"}}],
                "rescue": [{"name": "REFUSED " + case.id, "ansible.builtin.debug": {"var": "ansible_failed_result"}}],
            }
        )
    return [{"name": "Bad input", "hosts": hosts, "gather_facts": False, "tasks": tasks}]


def json_report(output):
    """The json callback's report: the last JSON document of the output (task profiling lines come before it)."""
    start = output.index("\n{\n") + 1 if not output.startswith("{") else 0
    return json.JSONDecoder().raw_decode(output[start:])[0]


def run_batch(tmp_path, name, cases, hosts, inventory, extra=(), env=None):
    """Run the cases; returns ({case id: (refused, result)}, stats)."""
    playbook = tmp_path / ("%s.yml" % name)
    playbook.write_text(yaml.safe_dump(batch_playbook(cases, hosts), sort_keys=False))
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    run_env = dict(env or {}, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json")
    rc, output, _recap = run_playbook(
        str(playbook), inventory=inventory, extra_args=list(extra), env=run_env, log_path=LOG_DIR / ("%s.log" % name)
    )
    report = json_report(output)
    outcomes = {}
    for task in report["plays"][0]["tasks"]:
        verdict, case_id = (task["task"]["name"].split(" ", 1) + [""])[:2]
        if verdict in ("ACCEPTED", "REFUSED"):
            result = next(iter(task["hosts"].values()))
            outcomes[case_id] = (verdict == "REFUSED", result.get("ansible_failed_result", result))
    return rc, outcomes, report["stats"]


def assert_batch_case(batch, case):
    rc, outcomes, stats = batch
    assert rc == 0, "the batch run itself failed: %s" % stats
    assert case.id in outcomes, "%s never ran: %s" % (case.id, sorted(outcomes))
    refused, result = outcomes[case.id]
    assert refused, "%s was accepted" % case.id
    assert result.get("changed") in (False, None), result
    assert_refused(case, result.get("msg", ""))
    assert all(host["changed"] == 0 for host in stats.values()), stats


@pytest.fixture(scope="module")
def hosts_roles_batch(tmp_path_factory):
    cases = cases_where("hosts-role:")
    return run_batch(tmp_path_factory.mktemp("bad-input"), "hosts-roles", cases, "ray_head", "inventories/local")


@pytest.fixture(scope="module")
def modules_batch(tmp_path_factory):
    cases = cases_where("module:")
    extra = ["-c", "local", "-e", "ansible_python_interpreter=%s" % sys.executable]
    return run_batch(tmp_path_factory.mktemp("bad-input"), "modules", cases, "localhost", "localhost,", extra)


@pytest.mark.parametrize("case", cases_where("hosts-role:"), ids=lambda case: case.id)
def test_a_roles_preflight_on_hosts_refuses_bad_input_by_name(hosts_roles_batch, case):
    assert_batch_case(hosts_roles_batch, case)


@pytest.mark.parametrize("case", cases_where("module:"), ids=lambda case: case.id)
def test_a_module_called_directly_refuses_bad_input_by_name(modules_batch, case):
    assert_batch_case(modules_batch, case)
    assert not Path("/tmp/bad-input-node").exists() and not Path("/tmp/bad-input-model").exists()


# ---------------------------------------------------------------------------------------------------------------------
# site.yml on hosts


def ray_processes():
    return ray_local.pids_mentioning(TEMP_PREFIX)


def port_open(port):
    return ray_local.port_is_open("127.0.0.1", port, timeout=1)


def hosts_site(name, settings, check=False):
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    args = extra_vars(dict(HOSTS_VARS, **settings)) + (["--check"] if check else [])
    rc, output, recap = run_playbook("site.yml", extra_args=args, log_path=LOG_DIR / ("%s.log" % name))
    return rc, flat(output), recap


def assert_nothing_changed_on_hosts(recap):
    assert recap and all(host["changed"] == 0 for host in recap.values()), recap
    assert ray_processes() == [], "a Ray node was started"
    assert not port_open(VLLM_PORT), "something listens on the vLLM port"


@pytest.mark.parametrize("case", cases_where("hosts-site"), ids=lambda case: case.id)
def test_site_on_hosts_refuses_bad_input_by_name_before_any_change(case):
    rc, output, recap = hosts_site(case.id, case.settings)
    assert rc != 0
    assert_refused(case, output)
    assert_nothing_changed_on_hosts(recap)


def test_a_valid_tensor_parallel_size_is_honoured_by_the_plan_and_the_command_line():
    # 3 divides SmolLM2's 9 heads and equals its 3 KV heads: the plan takes it where it would choose 1 itself.
    rc, output, recap = hosts_site("tp-good", {"vllm_serve_tensor_parallel_size": 3}, check=True)
    assert rc == 0, output[-6000:]
    assert "vLLM runs on CPU with TP=3, PP=1" in output, output[-6000:]
    # --check says the command line the server would get.
    assert "-m vllm.entrypoints.openai.api_server --model" in output and "--tensor-parallel-size 3" in output, output[
        -6000:
    ]
    # The monitoring role (on in inventories/local) finds no Ray to read targets from, and says so without failing.
    assert "is not there yet (the Ray cluster is not running)" in output, output[-6000:]
    assert ray_processes() == [] and not port_open(VLLM_PORT)


# ---------------------------------------------------------------------------------------------------------------------
# platform kubernetes, on one test bed of the seed cluster (2 nodes x 1 A100)


@pytest.fixture(scope="module")
def seed_bed(tmp_path_factory):
    with RunningTestBed(tmp_path_factory.mktemp("refusals") / "testbed") as bed:
        yield bed


def k8s_site(bed, name, settings, *extra):
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    args = extra_vars(dict({"ray_vllm_kubeconfig": bed.kubeconfig}, **settings)) + list(extra)
    rc, output, recap = run_playbook(
        "site.yml", inventory="inventories/prod", extra_args=args, env=bed.env(), log_path=LOG_DIR / ("%s.log" % name)
    )
    return rc, flat(output), recap


def assert_nothing_created(bed, recap):
    assert recap["localhost"]["changed"] == 0, recap
    assert bed.request("GET", "/api/v1/namespaces/%s" % NAMESPACE)[0] == 404


@pytest.fixture(scope="module")
def k8s_roles_batch(seed_bed, tmp_path_factory):
    cases = cases_where("k8s-role:")
    extra = extra_vars({"ray_vllm_kubeconfig": seed_bed.kubeconfig})
    return run_batch(
        tmp_path_factory.mktemp("bad-input"),
        "k8s-roles",
        cases,
        "kubernetes_api",
        "inventories/prod",
        extra,
        env=seed_bed.env(),
    )


@pytest.mark.parametrize("case", cases_where("k8s-role:"), ids=lambda case: case.id)
def test_a_kubernetes_roles_preflight_refuses_bad_input_by_name(seed_bed, k8s_roles_batch, case):
    assert_batch_case(k8s_roles_batch, case)
    assert seed_bed.request("GET", "/api/v1/namespaces/%s" % NAMESPACE)[0] == 404


@pytest.mark.parametrize("case", cases_where("k8s-site"), ids=lambda case: case.id)
def test_site_on_kubernetes_refuses_bad_input_by_name_before_any_change(seed_bed, case):
    rc, output, recap = k8s_site(seed_bed, case.id, case.settings)
    assert rc != 0
    assert_refused(case, output)
    assert_nothing_created(seed_bed, recap)


def test_the_docs_list_every_case():
    listed = DOCS.read_text()
    missing = [case.id for case in BAD_INPUT if "`%s`" % case.id not in listed]
    assert not missing, "docs/bad-input.md does not list: %s" % missing
    assert len(BAD_INPUT) >= 40


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
    rc, output, recap = k8s_site(seed_bed, "layout-good", {"ray_cluster_kuberay_layout": layout}, "--check", "--diff")
    assert rc == 0, output[-6000:]
    assert "ray_layout.kuberay comes from the user option ray_cluster_kuberay_layout" in output, output[-6000:]
    # The RayCluster the API server dry-ran: the head with a GPU on gpu-worker-1, one worker pod.
    assert "Check mode: the RayCluster llm/llm-raycluster was only sent as a server-side dry run" in output
    diff = output.split("Apply the RayCluster", 1)[1].split("TASK [", 1)[0]
    assert "num-gpus: '1'" in diff and "kubernetes.io/hostname: gpu-worker-1" in diff, diff[-4000:]
    assert "replicas: 1" in diff, diff[-4000:]
    assert seed_bed.request("GET", "/apis/ray.io/v1/namespaces/%s/rayclusters" % NAMESPACE)[1]["items"] == []
