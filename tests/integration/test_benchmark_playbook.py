# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""`playbooks/benchmark.yml` (docs/benchmark.md): vLLM's own bench serve against a real vLLM server.

Platform hosts: the shared keyed vLLM CPU server (conftest.py keyed_vllm) is the "deployment", described by an
inventory in the test's folder (localhost as the Ray head, the server's port, its key in the key file vllm_serve
keeps); a small bounded run (8 requests, 2 at a time, 32 tokens in, 16 out) saves vLLM's result JSON, prints the
table, has no failed request and never shows the key. A wrong key fails at vllm_serve's gate with its message;
--check runs nothing.

Platform kubernetes, on the API-only test bed (tests/k8s_testbed, no containers): the vLLM Service is mapped to the
same server for the gate; a run creates the Job (validated by the test bed's API server, read back while it exists:
the key only by secretKeyRef), and the test bed ends its pod with the log that the role's script printed when it
ran for real (tests/fixtures/vllm/bench). The Job's container running bench serve in the image, with the Secret in
its environment and the in-cluster Service URL, is run for real on the test bed's runc pods by
test_site_kubernetes_pods.py (test_the_benchmark_runs_as_a_job_in_a_pod_against_the_service). Untested: --check on
Kubernetes (the API server's dry run of the Job; left out to keep the file near 3 minutes).
"""

from __future__ import annotations

import base64
import json
import sys
import threading
from pathlib import Path

import pytest
import yaml

TESTS_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS_DIR))

import testbed_backends  # noqa: E402
import vllm_local  # noqa: E402
from k8s_testbed.harness import RunningTestBed  # noqa: E402
from playbook_runner import run_playbook  # noqa: E402

pytestmark = pytest.mark.integration

KEY = testbed_backends.SHARED_VLLM_KEY
SERVED = vllm_local.DEMO_SERVED_NAME
FIXTURES = TESTS_DIR / "fixtures" / "vllm" / "bench"
SMALL_LOAD = ["-e", "benchmark_num_prompts=8", "-e", "benchmark_max_concurrency=2"]
SMALL_LOAD += ["-e", "benchmark_input_len=32", "-e", "benchmark_output_len=16"]
# The gate's wait is bounded by the deploy's timeout: a short one keeps a failing check short.
SHORT_WAITS = ["-e", "vllm_serve_startup_timeout=5", "-e", "vllm_serve_health_interval=2"]
NAMESPACE, JOB = "llm", "llm-benchmark"


def _hosts_inventory(folder, server):
    key_file = Path(folder, "vllm-api-key")
    key_file.write_text(KEY)
    key_file.chmod(0o600)
    group_vars = {
        "ray_vllm_platform": "hosts",
        "ray_vllm_state_dir": str(Path(folder, "state")),
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "ray_cluster_node_ip": "127.0.0.1",
        "vllm_serve_venv": str(Path(sys.executable).parents[1]),
        "vllm_serve_host": "127.0.0.1",
        "vllm_serve_port": server.port,
        "vllm_serve_served_model_name": SERVED,
        "vllm_serve_model_path": server.model_dir,
        "vllm_serve_api_key_file": str(key_file),
        "vllm_serve_api_key_controller_file": "",
    }
    inventory = {"all": {"children": {"ray_head": {"hosts": {"bench-head": None}}}, "vars": group_vars}}
    path = Path(folder, "hosts.yml")
    path.write_text(yaml.safe_dump(inventory))
    return str(path)


def _benchmark(folder, inventory, name, *extra, env=None):
    args = [*SHORT_WAITS, *extra]
    return run_playbook(
        "playbooks/benchmark.yml", inventory=inventory, extra_args=args, env=env, log_path=Path(folder, f"{name}.log")
    )


def _flat(output):
    return " ".join(output.split())


def test_a_small_run_on_hosts_saves_the_result_and_prints_the_table(keyed_vllm, tmp_path):
    inventory = _hosts_inventory(tmp_path, keyed_vllm)
    rc, output, recap = _benchmark(tmp_path, inventory, "run", *SMALL_LOAD)
    assert rc == 0, output[-6000:]
    assert recap["bench-head"]["failed"] == 0
    results = list(Path(tmp_path, "state", "benchmarks").glob(f"*-{SERVED}.json"))
    assert len(results) == 1, output[-4000:]
    result = json.loads(results[0].read_text())
    assert (result["backend"], result["num_prompts"], result["max_concurrency"]) == ("openai-chat", 8, 2)
    assert (result["completed"], result["failed"], result["total_output_tokens"]) == (8, 0, 8 * 16)
    assert result["output_throughput"] > 0 and result["p99_ttft_ms"] >= result["p50_ttft_ms"] > 0
    flat = _flat(output)
    assert "requests 8 completed, 0 failed in" in flat, output[-4000:]
    for label in ("request throughput", "output tokens/s", "TTFT p50 / p99", "ITL p50 / p99"):
        assert label in flat
    assert f"result JSON: {results[0]}" in flat
    assert KEY not in output


def test_a_wrong_key_fails_at_the_gate_with_its_message(keyed_vllm, tmp_path):
    inventory = _hosts_inventory(tmp_path, keyed_vllm)
    wrong = "wrong-benchmark-key-5a1e"
    rc, output, _recap = _benchmark(tmp_path, inventory, "wrong-key", *SMALL_LOAD, "-e", f"vllm_serve_api_key={wrong}")
    assert rc != 0
    flat = _flat(output)
    assert "answered 401 (Unauthorized): the API key sent differs from the server's --api-key" in flat, output[-4000:]
    assert "vLLM bench serve:" not in flat
    assert not Path(tmp_path, "state", "benchmarks").exists()
    assert wrong not in output and KEY not in output


def test_check_mode_on_hosts_runs_nothing(keyed_vllm, tmp_path):
    inventory = _hosts_inventory(tmp_path, keyed_vllm)
    rc, output, recap = _benchmark(tmp_path, inventory, "check", "--check")
    assert rc == 0, output[-4000:]
    assert recap["bench-head"]["changed"] == 0
    assert "Check mode: no benchmark was run." in _flat(output)
    assert not Path(tmp_path, "state", "benchmarks").exists()


def _create(bed, path, body):
    status, answer = bed.request("POST", path, body)
    assert status in (201, 409), answer


def _put_vllm_behind_its_service(bed, server):
    """What vllm_serve leaves: the key Secret, the Service (mapped to the real server), the model PVC."""
    base = f"/api/v1/namespaces/{NAMESPACE}"
    _create(bed, "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    secret = {"api-key": base64.b64encode(KEY.encode()).decode()}
    _create(
        bed,
        base + "/secrets",
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "llm-vllm-api-key"}, "data": secret},
    )
    service = {"selector": {"app.kubernetes.io/name": "vllm"}, "ports": [{"name": "http", "port": 8000}]}
    _create(
        bed,
        base + "/services",
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "llm-vllm"}, "spec": service},
    )
    claim = {
        "accessModes": ["ReadWriteMany"],
        "storageClassName": "standard",
        "resources": {"requests": {"storage": "1Gi"}},
    }
    _create(
        bed,
        base + "/persistentvolumeclaims",
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "llm-models"}, "spec": claim},
    )
    bed.admin("PUT", "service-backends", {f"{NAMESPACE}/llm-vllm:8000": server.base_url})


def _watch_job(bed, seen, stop):
    """Keep the benchmark Job as it was while it existed (the role deletes it)."""
    while not stop.is_set():
        status, job = bed.request("GET", f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs/{JOB}")
        if status == 200:
            seen.append(job)
        stop.wait(0.1)


def _kubernetes_run(bed, folder, name, log_fixture, *extra):
    bed.admin("POST", "outcomes", {"kind": "Job", "namespace": NAMESPACE, "name": JOB, "outcome": "Succeeded",
                                   "log": (FIXTURES / log_fixture).read_text()})  # fmt: skip
    args = ["-e", f"ray_vllm_kubeconfig={bed.kubeconfig}", "-e", f"benchmark_result_dir={folder}/results", *extra]
    env = dict(bed.env(), KUBECONFIG=bed.kubeconfig, K8S_AUTH_KUBECONFIG=bed.kubeconfig)
    seen, stop = [], threading.Event()
    watcher = threading.Thread(target=_watch_job, args=(bed, seen, stop), daemon=True)
    watcher.start()
    try:
        rc, output, _recap = _benchmark(folder, "inventories/prod", name, *args, env=env)
    finally:
        stop.set()
        watcher.join(5)
    return rc, output, seen


def test_the_kubernetes_job_is_created_read_and_deleted(keyed_vllm, tmp_path):
    with RunningTestBed(tmp_path / "testbed") as bed:
        _put_vllm_behind_its_service(bed, keyed_vllm)

        rc, output, seen = _kubernetes_run(bed, tmp_path, "k8s-run", "ok-8x2.stdout.txt", *SMALL_LOAD)
        assert rc == 0, output[-6000:]
        assert "requests 8 completed, 0 failed in 13.15 s" in _flat(output)
        assert json.loads(next(Path(tmp_path, "results").glob("*.json")).read_text())["completed"] == 8
        assert bed.request("GET", f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs/{JOB}")[0] == 404
        pod = seen[0]["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert container["image"] == "localhost/llmops/ray-vllm:0.32.0-ray2.60.0"
        assert {
            "name": "OPENAI_API_KEY",
            "valueFrom": {"secretKeyRef": {"name": "llm-vllm-api-key", "key": "api-key"}},
        } in container["env"]
        assert "--base-url" in container["args"] and "http://llm-vllm.llm.svc:8000" in container["args"]
        assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "llm-models"
        assert KEY not in json.dumps(seen) and KEY not in output

        rc, output, _seen = _kubernetes_run(bed, tmp_path, "k8s-401", "unauthorized-4x2.stdout.txt", *SMALL_LOAD)
        assert rc != 0
        flat = _flat(output)
        assert "Expected at most 0 failed request(s) of 4" in flat and "the server refused the API key sent" in flat
        assert bed.request("GET", f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs/{JOB}")[0] == 404
