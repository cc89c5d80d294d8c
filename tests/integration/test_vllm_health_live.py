# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""vllm_health against one real vLLM CPU server (started with --api-key) and a real nginx in front of it.

One server for the whole module, since start-up takes one to two minutes on two cores:
- its start-up is watched directly (connection refused: ``unreachable``) and through nginx (502: ``loading``);
- then ready (with a completion), wrong key, no key, wrong model, an expect that fails;
- last, its EngineCore is killed: ``engine_dead``. The server runs with VLLM_KEEP_ALIVE_ON_ENGINE_DEATH=1 so the API
  server stays up after that; with vLLM's default it exits at the first failed request (recorded in
  tests/fixtures/vllm/), after which the gate reports ``unreachable``.

Run: .venv/bin/python -m pytest tests/integration/test_vllm_health_live.py -m integration
"""

from __future__ import annotations

import os
import signal
import time

import pytest
import vllm_local

vllm_local._ensure_collection_importable()

from ansible_collections.llmops.ray_vllm.plugins.module_utils._vllm_health import observe  # noqa: E402

pytestmark = pytest.mark.integration

API_KEY = "live-test-key"
SERVED = vllm_local.DEMO_SERVED_NAME
STARTUP_TIMEOUT_S = 480


def collapse(statuses):
    """Consecutive repeats removed: ['unreachable', 'unreachable', 'ready'] -> ['unreachable', 'ready']."""
    collapsed = []
    for status in statuses:
        if not collapsed or collapsed[-1] != status:
            collapsed.append(status)
    return collapsed


class LiveServer:
    def __init__(self, server, proxy, direct_statuses, proxied_statuses):
        self.server = server
        self.proxy = proxy
        self.direct_statuses = direct_statuses
        self.proxied_statuses = proxied_statuses


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    model_dir = vllm_local.ensure_demo_model()
    workdir = str(tmp_path_factory.mktemp("vllm-health"))
    server = vllm_local.VllmServer(model_dir, workdir, api_key=API_KEY, env={"VLLM_KEEP_ALIVE_ON_ENGINE_DEATH": "1"})
    proxy = vllm_local.NginxProxy(server.port, os.path.join(workdir, "nginx"))
    try:
        proxy.start()
        server.start()
        direct, proxied = [], []
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        # Watch the start-up with the module's own probing, directly and through the proxy.
        while True:
            direct.append(observe(server.base_url, model=SERVED, api_key=API_KEY, request_timeout=10)["status"])
            proxied.append(observe(proxy.base_url, model=SERVED, api_key=API_KEY, request_timeout=10)["status"])
            if direct[-1] == "ready" and proxied[-1] == "ready":
                break
            if not server.alive() or time.monotonic() > deadline:
                raise RuntimeError(
                    f"vLLM did not become ready (alive={server.alive()}); statuses {collapse(direct)}; "
                    f"log {server.log_path}:\n{server.log_tail()}"
                )
            time.sleep(0.5)
        yield LiveServer(server, proxy, direct, proxied)
    finally:
        server.stop()
        proxy.stop()


def health(url, **args):
    args.setdefault("model", SERVED)
    args.setdefault("api_key", API_KEY)
    return vllm_local.run_module("vllm_health", dict(url=url, **args))


def test_nothing_listening_is_unreachable():
    result = health(f"http://127.0.0.1:{vllm_local.free_port()}")
    assert result["failed"] is True
    assert result["status"] == "unreachable" and result["ready"] is False
    assert "ConnectionRefusedError" in result["msg"]
    assert "wait longer" in result["msg"]


def test_startup_seen_directly_is_unreachable_then_ready(live):
    # vLLM binds its port at start but listens only once the engine is up: refused, then ready at once.
    assert collapse(live.direct_statuses) == ["unreachable", "ready"]


def test_startup_seen_through_a_proxy_is_loading_then_ready(live):
    assert collapse(live.proxied_statuses) == ["loading", "ready"]


def test_ready_with_completion(live):
    result = health(live.server.base_url)
    assert result.get("failed") is not True, result["msg"]
    assert result["ready"] is True and result["status"] == "ready"
    assert result["models"] == [SERVED]
    assert result["max_model_len"] == 2048
    assert result["version"] == "0.32.0"
    assert result["completion"]["text"].strip()
    assert result["completion"]["completion_tokens"] > 0
    assert 0 < result["completion"]["latency_s"] < 30
    assert set(result["metrics"]) == {"num_requests_running", "num_requests_waiting", "kv_cache_usage_perc"}
    assert result["problems"] == []
    assert result["endpoints"] == {
        "/health": 200,
        "/v1/models": 200,
        "/version": 200,
        "/metrics": 200,
        "/v1/chat/completions": 200,
    }


def test_ready_with_a_known_answer(live):
    result = health(
        live.server.base_url + "/v1",
        prompt="What is the capital of France? Answer in one word.",
        expect="(?i)paris",
        max_tokens=8,
    )
    assert result["status"] == "ready", result["msg"]
    assert "paris" in result["completion"]["text"].lower()


def test_ready_through_the_proxy(live):
    result = health(live.proxy.base_url)
    assert result["status"] == "ready", result["msg"]


def test_answer_not_matching_expect_is_not_answering(live):
    result = health(live.server.base_url, expect="^never-said-by-this-model$")
    assert result["failed"] is True
    assert result["status"] == "not_answering"
    assert result["completion"]["text"]
    assert "does not match expect" in result["msg"]


def test_wrong_key_is_unauthorized(live):
    result = health(live.server.base_url, api_key="not-the-key")
    assert result["failed"] is True
    assert result["status"] == "unauthorized"
    assert "401" in result["msg"] and "--api-key" in result["msg"]
    # The key is no_log: it must not come back in the result.
    assert "not-the-key" not in str(result)


def test_no_key_is_unauthorized(live):
    result = health(live.server.base_url, api_key=None)
    assert result["status"] == "unauthorized"
    assert "no api_key was sent" in result["msg"]


def test_wrong_model_name_lists_what_is_served(live):
    result = health(live.server.base_url, model="smollm2-1.7b")
    assert result["failed"] is True
    assert result["status"] == "model_missing"
    assert result["models"] == [SERVED]
    assert f"it serves: {SERVED}" in result["msg"]
    assert result["completion"] == {}


def test_wait_polls_until_timeout(live):
    result = health(live.server.base_url, model="smollm2-1.7b", wait=True, timeout=4, interval=1)
    assert result["failed"] is True
    assert result["attempts"] >= 3
    assert result["msg"].startswith(f"After {result['attempts']} attempts")


def test_engine_dead_after_engine_core_killed(live):
    # Last test of the module: it kills the server's engine.
    cores = live.server.engine_core_processes()
    assert cores, f"no EngineCore child under pid {live.server.process.pid}"
    for core in cores:
        os.kill(core.pid, signal.SIGKILL)
    result = health(live.server.base_url)
    assert result["failed"] is True
    assert result["status"] == "engine_dead", result["msg"]
    # Depending on whether vLLM noticed the death yet: /health 503, or /health 200 and the completion failing.
    assert "503" in result["msg"] or "EngineCore encountered an issue" in result["msg"]
    assert "server log" in result["msg"]
    # Once vLLM noticed (about a second), /health itself answers 503 while /v1/models still answers.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        result = health(live.server.base_url, completion=False)
        if result["endpoints"]["/health"] == 503:
            break
        time.sleep(1)
    assert result["endpoints"]["/health"] == 503 and result["endpoints"]["/v1/models"] == 200
    assert result["status"] == "engine_dead"
    proxied = health(live.proxy.base_url, completion=False)
    assert proxied["status"] == "engine_dead", proxied["msg"]
