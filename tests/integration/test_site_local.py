"""site.yml on inventories/local, for real: Ray head + worker on this machine, vLLM on CPU, the demo model.

Order matters and is kept by the file: bad input first (nothing may start), then --check (nothing may start),
then a real run, a second run with changed=0, a dead worker restarted by a re-run, and the teardown.
The ports and Ray temp dirs differ from the inventory's defaults, so a running `make demo` is left alone.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import ray_local
from playbook_runner import REPO, run_playbook

pytestmark = pytest.mark.integration

GCS_PORT = 36400
DASHBOARD_PORT = 38400
VLLM_PORT = 38401
TEMP_PREFIX = "/tmp/ray-llmops-test"
TEST_VARS = [
    "-e", "ray_cluster_port=%d" % GCS_PORT,
    "-e", "ray_cluster_dashboard_port=%d" % DASHBOARD_PORT,
    "-e", "vllm_serve_port=%d" % VLLM_PORT,
    "-e", "ray_cluster_temp_dir_prefix=%s" % TEMP_PREFIX,
    "-e", "ray_cluster_dashboard_agent_port=38402",
]  # fmt: skip
LOG_DIR = REPO / "tests" / "output" / "site_local"
API_KEY_FILE = REPO / ".build" / "local" / "vllm-api-key"
MODEL_DIR = REPO / ".build" / "local" / "models" / "SmolLM2-135M-Instruct"


def node_pids(node):
    """PIDs of the Ray processes of one inventory node of this test (found by its Ray temp dir)."""
    return ray_local.pids_mentioning("%s-%s/session_" % (TEMP_PREFIX, node))


def port_open(port):
    return ray_local.port_is_open("127.0.0.1", port, timeout=1)


def site(name, *extra, check=False):
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    args = list(TEST_VARS) + list(extra) + (["--check", "--diff"] if check else [])
    return run_playbook("site.yml", extra_args=args, log_path=LOG_DIR / ("%s.log" % name))


def assert_nothing_started():
    assert node_pids("ray-head-local") == [] and node_pids("ray-worker-local") == [], "a Ray node was started"
    assert not port_open(VLLM_PORT), "something listens on the vLLM port"


@pytest.fixture(scope="module", autouse=True)
def stop_everything_at_the_end():
    yield
    run_playbook("playbooks/teardown.yml", extra_args=TEST_VARS, log_path=LOG_DIR / "teardown-final.log")
    for node in ("ray-head-local", "ray-worker-local"):
        for pid in node_pids(node):
            os.kill(pid, signal.SIGKILL)


def test_unknown_model_source_fails_before_anything_starts():
    rc, out, _recap = site("bad-source", "-e", "model_storage_source=s3")
    assert rc != 0
    # The role's argument spec names the variable, the accepted values and the value seen.
    out = " ".join(out.split())
    assert "value of model_storage_source must be one of: modelscope, huggingface, local, gguf, got: s3" in out
    assert_nothing_started()


def test_tensor_parallel_that_does_not_divide_the_heads_fails_before_anything_starts():
    rc, out, _recap = site("bad-tp", "-e", "ray_vllm_tensor_parallel_size=2")
    assert rc != 0
    assert "tensor_parallel_size=2" in out and "num_attention_heads=9" in out
    assert_nothing_started()


def test_more_gpus_than_found_fails_before_anything_starts():
    rc, out, _recap = site("bad-gpus", "-e", "cuda_check_allow_cpu=false", "-e", "cuda_check_min_gpus=1")
    assert rc != 0
    assert "no NVIDIA GPU found" in out
    assert "cuda_check_allow_cpu" in out
    assert_nothing_started()


class _Busy(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"not vllm")

    def log_message(self, *args):
        pass


def test_port_in_use_fails_before_anything_starts():
    server = HTTPServer(("127.0.0.1", VLLM_PORT), _Busy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        rc, out, _recap = site("port-in-use")
    finally:
        server.shutdown()
        server.server_close()
    assert rc != 0
    assert "port %d" % VLLM_PORT in out and "already in use by another process" in out
    assert node_pids("ray-head-local") == [] and node_pids("ray-worker-local") == []


def test_check_mode_shows_the_plan_and_starts_nothing():
    rc, out, recap = site("check", check=True)
    assert rc == 0, out[-6000:]
    assert "TP" in out and "PP" in out, "the plan table is not in the output"
    assert_nothing_started()


def ask(question, key):
    body = json.dumps(
        {"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": question}], "max_tokens": 16}
    ).encode()
    request = urllib.request.Request(
        "http://127.0.0.1:%d/v1/chat/completions" % VLLM_PORT,
        data=body,
        headers={"Content-Type": "application/json", "Authorization": "Bearer %s" % key},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.load(response)["choices"][0]["message"]["content"]


def test_deploy_is_real_idempotent_heals_and_tears_down():
    rc, out, recap = site("converge")
    assert rc == 0, out[-8000:]
    assert set(recap) == {"ray-head-local", "ray-worker-local"}
    assert "Endpoint: http://127.0.0.1:%d/v1" % VLLM_PORT in out
    assert "A: " in out
    key = API_KEY_FILE.read_text().strip()
    assert len(key) >= 32
    assert key not in out, "the API key leaked into the play output"
    assert ask("Say hello.", key).strip()
    assert node_pids("ray-head-local") and node_pids("ray-worker-local")

    start = time.monotonic()
    rc, out, recap = site("idempotence")
    assert rc == 0, out[-8000:]
    assert all(host["changed"] == 0 for host in recap.values()), recap
    print("idempotent re-run took %.1f s" % (time.monotonic() - start))

    # A dead worker is started again by a re-run, and the gate sees both nodes.
    for pid in node_pids("ray-worker-local"):
        os.kill(pid, signal.SIGKILL)
    time.sleep(1)
    assert node_pids("ray-worker-local") == []
    rc, out, recap = site("heal")
    assert rc == 0, out[-8000:]
    assert recap["ray-worker-local"]["changed"] >= 1
    assert recap["ray-head-local"]["changed"] == 0
    assert node_pids("ray-worker-local")
    assert ask("Say hello again.", key).strip()

    rc, out, recap = run_playbook("playbooks/teardown.yml", extra_args=TEST_VARS, log_path=LOG_DIR / "teardown.log")
    assert rc == 0, out[-6000:]
    assert node_pids("ray-head-local") == [] and node_pids("ray-worker-local") == []
    deadline = time.monotonic() + 30
    while port_open(VLLM_PORT) and time.monotonic() < deadline:
        time.sleep(1)
    assert not port_open(VLLM_PORT)
    assert (MODEL_DIR / "config.json").exists(), "teardown removed the model cache without being asked"
