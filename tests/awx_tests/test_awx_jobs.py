# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The job templates that playbooks/awx_configure.yml creates, launched as AWX 24.6.1 launches them.

The configuration is applied for real (awx.awx 24.6.1) to the AWX API double; each launch reads the template, its
survey and its credentials from the double, is refused with AWX's messages when the survey answers are, and runs
otherwise in a private data dir laid out as AWX lays it out (tests/awx_double/runner.py), with ansible-runner.
One deploy per platform, then verify and teardown on the same deployment (on Kubernetes the plan first, in check
mode, which must leave the test bed as it was):

* Kubernetes: inventories/prod (the template's own inventory source) against the test bed, the kubeconfig given to
  the job only by the Kubeconfig credential's injectors; Ray and vLLM are real processes behind the Services
  (tests/integration/testbed_backends.py), as in test_site_kubernetes.py.
* Hosts: inventories/local (Ray head + worker and vLLM on CPU on this machine, ports 8000/8265), then the question.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import secrets
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

import testbed_backends
from awx_double import runner
from k8s_testbed.harness import RunningTestBed
from playbook_runner import REPO, run_playbook
from testbed_images import image_check_outcome

pytestmark = pytest.mark.integration

NAME = "llmops.ray_vllm"
SCM_URL = "https://git.example.com/platform/llmops-ray-vllm.git"
NAMESPACE = "llm"
LOCAL_PORTS = (8000, 8265)
TESTBED_KEY = testbed_backends.SHARED_VLLM_KEY  # the key of the vLLM server behind the test bed's Service
# A fresh key per run for the local endpoint; it reaches the job only through the vLLM API key credential.
LOCAL_KEY = "sk-awx-local-" + secrets.token_hex(12)
# The local inventory's model (inventories/local/group_vars/all.yml): SmolLM2-135M-Instruct from its GGUF package,
# with the context the plan was made for.
LOCAL_CREDENTIALS = [{"name": "local endpoint key", "type": "vllm_api_key", "inputs": {"api_key": LOCAL_KEY}}]
LOCAL_ANSWERS = {"model_storage_model_id": "HuggingFaceTB/SmolLM2-135M-Instruct", "vllm_serve_max_model_len": 2048}
# Where inventories/local keeps the converted model (model_storage_path: <ray_vllm_state_dir>/models/...).
LOCAL_MODEL_DIR = REPO / ".build" / "local" / "models" / "SmolLM2-135M-Instruct"


def _template(kind):
    return "%s %s" % (NAME, kind)


def _apply(awx_double, folder, credentials):
    """ansible-playbook playbooks/awx_configure.yml against the double (as the admin, from this machine)."""
    extra = {
        "awx_config_scm_url": SCM_URL,
        "awx_config_ee_image": "registry.example.com/llmops/ray-vllm-ee:0.1.0",
        "awx_config_credentials": credentials,
        # localhost's Python is this venv's: interpreter discovery would pick another python3 on PATH.
        "ansible_python_interpreter": sys.executable,
    }

    extra_file = Path(folder) / "awx-config.json"
    extra_file.write_text(json.dumps(extra))
    extra_file.chmod(0o600)  # credential inputs
    env = {
        "CONTROLLER_HOST": awx_double.url,
        "CONTROLLER_USERNAME": awx_double.username,
        "CONTROLLER_PASSWORD": awx_double.password,
        "CONTROLLER_VERIFY_SSL": "false",
    }
    rc, output, _recap = run_playbook(
        "playbooks/awx_configure.yml", inventory="localhost,", extra_args=["-e", "@%s" % extra_file], env=env
    )
    assert rc == 0, output[-6000:]


@pytest.fixture(scope="module")
def awx(awx_double, tmp_path_factory):
    """The double with the configuration applied, the project's checkout being this repository."""
    awx_double.reset()
    awx_double.project_dirs[SCM_URL] = str(REPO)
    _apply(awx_double, tmp_path_factory.mktemp("awx-config"), LOCAL_CREDENTIALS)
    return awx_double


def _assert_successful(job):
    stats = job.stats()
    assert (job.status, job.rc) == ("successful", 0), job.stdout()[-12000:]
    assert stats and not stats["failures"] and not stats["dark"], stats


def _flat(text):
    return " ".join(text.split())


def _assert_a_healthy_read_only_verify(job, served_model_name):
    """verify.yml changed nothing and printed each gate's health line (ray_cluster's and vllm_serve's verify.yml)
    and its summary (playbooks/tasks/verify_report.yml); vLLM was asked for the deploy's model."""
    _assert_successful(job)
    assert not any(job.stats()["changed"].values()), job.stats()
    stdout = _flat(job.stdout())
    assert "Ray healthy: " in stdout, stdout[-6000:]
    assert "vLLM healthy: serves %s " % served_model_name in stdout, stdout[-6000:]
    assert "Ray and vLLM are healthy (read-only check, nothing changed)." in stdout, stdout[-6000:]


# ---------------------------------------------------------------------------------------------------------------------
# Refused launches
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer, message",
    [
        ({"vllm_serve_gpu_memory_utilization": 1.5}, "'vllm_serve_gpu_memory_utilization' value 1.5 is too large"),
        ({"vllm_serve_max_model_len": 128}, "'vllm_serve_max_model_len' value 128 is too small (must be at least 256)"),
    ],
)
def test_an_answer_out_of_bounds_is_refused_before_anything_starts(awx, tmp_path, answer, message):
    children = {p.pid for p in psutil.Process().children(recursive=True)}
    answers = runner.survey_form(awx, _template("deploy"), {**LOCAL_ANSWERS, **answer})
    with pytest.raises(runner.LaunchRefused) as refused:
        runner.launch(awx, _template("deploy"), answers, base_dir=tmp_path)
    assert list(refused.value.body) == ["variables_needed_to_start"]
    assert [m for m in refused.value.messages if m.startswith(message)], refused.value.messages
    assert list(tmp_path.iterdir()) == []  # no private data dir
    assert {p.pid for p in psutil.Process().children(recursive=True)} <= children  # no ansible-playbook


# ---------------------------------------------------------------------------------------------------------------------
# Kubernetes: inventories/prod on the test bed
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="class")
def testbed(awx, tmp_path_factory):
    """The three-GPU-node seed with real Ray and vLLM behind its Services, and the credentials a cluster admin adds
    to AWX for it: the test bed's kubeconfig (its content, as pasted in AWX) and the endpoint's key."""
    folder = tmp_path_factory.mktemp("awx-k8s")
    with contextlib.ExitStack() as stack:
        ray = stack.enter_context(testbed_backends.three_gpu_ray_cluster())
        vllm = stack.enter_context(testbed_backends.keyed_vllm_server(folder / "vllm"))
        bed = stack.enter_context(RunningTestBed(folder / "testbed", seed="gpu-nodes-3"))
        bed.admin("POST", "outcomes", image_check_outcome())
        testbed_backends.map_backends(bed, ray.dashboard_url, vllm.base_url, NAMESPACE)
        credentials = LOCAL_CREDENTIALS + [
            {"name": "testbed kubeconfig", "type": "kubeconfig", "inputs": {"kubeconfig": _kubeconfig_text(bed)}},
            {"name": "testbed endpoint key", "type": "vllm_api_key", "inputs": {"api_key": TESTBED_KEY}},
        ]
        _apply(awx, folder, credentials)
        yield bed


def _kubeconfig_text(bed):
    return Path(bed.kubeconfig).read_text()


def _k8s_launch(awx, kind, answers, tmp_path_factory):
    """A launch with the test bed's credentials (the templates ask for credentials on launch)."""
    return runner.launch(
        awx,
        _template(kind),
        runner.survey_form(awx, _template(kind), answers),
        credentials=["testbed kubeconfig", "testbed endpoint key"],
        # Set by the admin on the AWX inventory: the test bed's pods are records, their exec runs on this machine
        # where the model volume's files are not (tests/k8s_testbed/README.md), as test_site_kubernetes.py does.
        inventory_variables={"model_storage_look_from_pods": False},
        base_dir=tmp_path_factory.mktemp("awx-jobs"),
    )


def _ray_clusters(bed):
    status, body = bed.request("GET", f"/apis/ray.io/v1/namespaces/{NAMESPACE}/rayclusters")
    return body.get("items", []) if status == 200 else []


# What a plan must leave as it found it on the test bed (the namespace's objects the deploy creates).
PLAN_UNTOUCHED = [
    "/api/v1/namespaces",
    f"/apis/ray.io/v1/namespaces/{NAMESPACE}/rayclusters",
    f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments",
    f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs",
    f"/api/v1/namespaces/{NAMESPACE}/pods",
    f"/api/v1/namespaces/{NAMESPACE}/services",
    f"/api/v1/namespaces/{NAMESPACE}/persistentvolumeclaims",
    f"/api/v1/namespaces/{NAMESPACE}/secrets",
]


def _names(bed):
    listed = {}
    for path in PLAN_UNTOUCHED:
        status, body = bed.request("GET", path)
        listed[path] = sorted(item["metadata"]["name"] for item in body.get("items", [])) if status == 200 else status
    return listed


class TestKubernetes:
    def test_the_plan_runs_in_check_mode_with_diff_and_creates_nothing(self, awx, testbed, tmp_path_factory):
        before = _names(testbed)
        job = _k8s_launch(awx, "plan", {}, tmp_path_factory)
        _assert_successful(job)
        command = json.loads((job.artifacts_dir / "command").read_text())["command"]
        assert "--check" in command and "--diff" in command, command
        stdout = _flat(job.stdout())
        # playbooks/tasks/plan_kubernetes.yml's "Show the plan": the plan's table.
        assert "TASK [Show the plan]" in stdout and "replicas x (TP x PP)" in stdout, stdout[-6000:]
        assert _ray_clusters(testbed) == []
        assert _names(testbed) == before

    def test_deploy_with_the_kubeconfig_credential(self, awx, testbed, tmp_path_factory):
        start = time.monotonic()
        job = _k8s_launch(awx, "deploy", {}, tmp_path_factory)
        print("AWX job deploy (kubernetes) took %.0f s" % (time.monotonic() - start))
        _assert_successful(job)
        assert TESTBED_KEY not in job.stdout()
        assert [c["metadata"]["name"] for c in _ray_clusters(testbed)] == ["llm-raycluster"]
        _assert_the_kubeconfig_came_through_the_injectors(job, testbed)

    def test_verify(self, awx, testbed, tmp_path_factory):
        if not (REPO / "playbooks" / "verify.yml").is_file():
            pytest.fail("playbooks/verify.yml is missing")
        # The deploy took the survey's defaults: so does verify (inventories/prod names the model by its id).
        job = _k8s_launch(awx, "verify", {}, tmp_path_factory)
        _assert_a_healthy_read_only_verify(job, "deepseek-r1-distill-llama-70b")

    def test_teardown(self, awx, testbed, tmp_path_factory):
        job = _k8s_launch(awx, "teardown", {"ray_vllm_teardown_confirm": "yes"}, tmp_path_factory)
        _assert_successful(job)
        assert _ray_clusters(testbed) == []


def _assert_the_kubeconfig_came_through_the_injectors(job, bed):
    """The job's only kubeconfig is the file the injector wrote in env/; K8S_AUTH_KUBECONFIG and
    ray_vllm_kubeconfig name it, and no KUBECONFIG reached the run."""
    env = json.loads((job.private_data_dir / "env" / "envvars").read_text())
    injected = Path(env["K8S_AUTH_KUBECONFIG"])
    assert injected.parent == job.private_data_dir / "env" and injected.read_text() == _kubeconfig_text(bed)
    assert "KUBECONFIG" not in env
    command = json.loads((job.artifacts_dir / "command").read_text())
    assert "KUBECONFIG" not in command["env"]
    files = [Path(arg[1:]) for arg in command["command"] if arg.startswith("@")]
    assert any(f"ray_vllm_kubeconfig': !unsafe '{injected}'" in path.read_text() for path in files), files


# ---------------------------------------------------------------------------------------------------------------------
# Hosts: inventories/local on this machine
# ---------------------------------------------------------------------------------------------------------------------


def _listening(ports=LOCAL_PORTS):
    """The ports of ``ports`` that something on this machine listens on where the local deployment binds them.

    Only loopback and wildcard addresses count: the test bed of the other lane forwards its Services' ClusterIPs
    (10.96.0.0/12 on its bridge) on the same port numbers, 8000 among them, and those are not the local deployment.
    """
    found = set()
    for connection in psutil.net_connections(kind="tcp"):
        if connection.status != psutil.CONN_LISTEN or connection.laddr.port not in ports:
            continue
        address = ipaddress.ip_address(connection.laddr.ip.split("%")[0])
        if address.is_loopback or address.is_unspecified:
            found.add(connection.laddr.port)
    return sorted(found)


def _wait_for_free_ports(timeout=3600):
    """Another run (make demo) may hold 8000/8265: wait for it to end rather than stop what it started."""
    deadline = time.monotonic() + timeout
    while _listening():
        assert time.monotonic() < deadline, "ports %s stay in use" % _listening()
        time.sleep(10)


def _local_launch(awx, kind, answers, base_dir, inventory_variables=None):
    # The AWX inventory imported from inventories/local keeps its variables but not where they were read from:
    # ray_vllm_repo_dir is derived from inventory_dir, which in a job is the private data dir's inventory/. The admin
    # sets it on the AWX inventory to where the hosts keep the runtime and state (this checkout: .venv, .build/local).
    return runner.launch(
        awx,
        _template(kind),
        runner.survey_form(awx, _template(kind), answers),
        credentials=["local endpoint key"],
        inventory_source="inventories/local/hosts.yml",
        inventory_variables=dict(inventory_variables or {}, ray_vllm_repo_dir=str(REPO)),
        base_dir=base_dir,
    )


@pytest.fixture(scope="class")
def local_jobs(awx, tmp_path_factory):
    """Where the local jobs' private data dirs go; the deployment is torn down at the end, pass or fail."""
    _wait_for_free_ports()
    yield tmp_path_factory.mktemp("awx-local")
    if _listening():
        rc, output, _recap = run_playbook("playbooks/teardown.yml", inventory="inventories/local")
        assert rc == 0, output[-4000:]


def _ask(question):
    body = {
        "model": "smollm2-135m-instruct",
        "messages": [{"role": "user", "content": question}],
        "max_tokens": 48,
        "temperature": 0,
    }
    request = urllib.request.Request(
        "http://127.0.0.1:8000/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": "Bearer " + LOCAL_KEY},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())["choices"][0]["message"]["content"]


class TestHosts:
    def test_deploy_then_the_endpoint_answers(self, awx, local_jobs):
        start = time.monotonic()
        job = _local_launch(awx, "deploy", LOCAL_ANSWERS, local_jobs)
        print("AWX job deploy (local) took %.0f s" % (time.monotonic() - start))
        _assert_successful(job)
        assert LOCAL_KEY not in job.stdout()
        assert "shakespeare" in _ask("Who wrote Hamlet?").lower()

    def test_verify(self, awx, local_jobs):
        if not (REPO / "playbooks" / "verify.yml").is_file():
            pytest.fail("playbooks/verify.yml is missing")
        # Answered as the deploy was (docs/awx.md): the survey's defaults are the prod model's, not the local one's.
        job = _local_launch(awx, "verify", LOCAL_ANSWERS, local_jobs)
        _assert_a_healthy_read_only_verify(job, "smollm2-135m-instruct")

    def test_benchmark(self, awx, local_jobs):
        answers = {"benchmark_num_prompts": 8, "benchmark_max_concurrency": 2}
        # Short prompts and answers, set by the admin on the AWX inventory: the survey asks only for the load's size.
        lengths = {"benchmark_input_len": 32, "benchmark_output_len": 16}
        job = _local_launch(awx, "benchmark", answers, local_jobs, inventory_variables=lengths)
        _assert_successful(job)
        assert LOCAL_KEY not in job.stdout()
        assert "requests 8 completed, 0 failed in" in " ".join(job.stdout().split()), job.stdout()[-4000:]

    def test_a_teardown_answered_no_removes_nothing(self, awx, local_jobs):
        answers = {"ray_vllm_teardown_confirm": "no", "model_storage_model_id": LOCAL_ANSWERS["model_storage_model_id"]}
        job = _local_launch(awx, "teardown", answers, local_jobs)
        assert job.status == "failed" and job.rc != 0
        assert "Nothing was removed" in job.stdout()
        assert _listening() == list(LOCAL_PORTS)

    def test_teardown_keeps_the_model_unless_asked(self, awx, local_jobs):
        assert (LOCAL_MODEL_DIR / "config.json").is_file()  # the deploy's model
        answers = {
            "ray_vllm_teardown_confirm": "yes",
            "model_storage_model_id": LOCAL_ANSWERS["model_storage_model_id"],
        }
        job = _local_launch(awx, "teardown", answers, local_jobs)
        _assert_successful(job)
        assert job.extra_vars["ray_vllm_teardown_remove_model"] == "false"  # the survey's default
        # The model stays, complete: a later deploy serves it without fetching it again.
        assert (LOCAL_MODEL_DIR / "config.json").is_file() and (LOCAL_MODEL_DIR / ".ray_vllm_complete.json").is_file()
        # As test_site_local's teardown test: a stopped vLLM process may hold its port for a moment while it exits.
        deadline = time.monotonic() + 30
        while _listening() and time.monotonic() < deadline:
            time.sleep(1)
        assert _listening() == []
