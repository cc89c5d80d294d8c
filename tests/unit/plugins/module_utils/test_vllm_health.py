# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""vllm_health's parsing and classification, on responses recorded from a real vLLM 0.32 CPU server.

The recordings and how they were made: tests/fixtures/vllm/README.md.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import urllib.error

import pytest

from ansible_collections.llmops.ray_vllm.plugins.module_utils import _vllm_health as health

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "fixtures", "vllm")
URL = "http://127.0.0.1:8000"
SERVED = "smollm2-135m-instruct"


def fixture_text(name):
    path = os.path.join(FIXTURES, name)
    if not os.path.isfile(path):
        raise AssertionError(f"recorded fixture {path} is missing; run tests/fixtures/record_vllm.py")
    with open(path, encoding="utf-8") as fixture:
        return fixture.read()


def exchange(name):
    """A recorded exchange in the shape http_exchange returns (a .txt fixture is a recorded 200 body)."""
    if name.endswith(".txt"):
        return {
            "url": URL + "/metrics",
            "status": 200,
            "body": fixture_text(name),
            "error": None,
            "error_kind": None,
            "elapsed_s": 0.01,
        }
    record = json.loads(fixture_text(name))
    result = {
        "url": URL + record["path"],
        "status": record["status"],
        "body": record.get("body", ""),
        "error": None,
        "error_kind": None,
        "elapsed_s": record["elapsed_s"],
    }
    if record["status"] is None:
        # Rebuild the exception urllib raised (recorded as "ClassName: text") to classify it the same way.
        class_name = record["error"].split(":", 1)[0]
        reason = {"ConnectionRefusedError": ConnectionRefusedError(111, "Connection refused")}[class_name]
        error = urllib.error.URLError(reason)
        result.update(error=record["error"], error_kind=health.error_kind(error))
    return result


def observation(health_name, models_name=None, completion_name=None, api_key_sent=True):
    observed = {"url": URL, "api_key_sent": api_key_sent, "health": exchange(health_name)}
    if models_name:
        observed["models"] = exchange(models_name)
    if completion_name:
        observed["completion"] = exchange(completion_name)
    return observed


class TestParsers:
    def test_models_list_gives_ids_and_context_length(self):
        models = health.parse_models(exchange("models-200.json")["body"])
        assert models == [{"id": SERVED, "max_model_len": 2048}]

    def test_unauthorized_body_is_not_a_model_list(self):
        assert health.parse_models(exchange("models-401-wrong-key.json")["body"]) is None

    def test_version(self):
        assert health.parse_version(exchange("version.json")["body"]) == "0.32.0"

    def test_completion_text_and_tokens(self):
        text, tokens = health.parse_completion(exchange("chat-200.json")["body"])
        recorded = json.loads(exchange("chat-200.json")["body"])
        assert text == recorded["choices"][0]["message"]["content"]
        assert text.strip()
        assert tokens == 16

    @pytest.mark.parametrize(
        "name, expected",
        [
            ("models-401-wrong-key.json", "Unauthorized"),
            (
                "chat-404-wrong-model.json",
                "The model `no-such-model` does not exist. Valid aliases: smollm2-135m-instruct.",
            ),
            (
                "dead-keepalive-v1-chat-completions-500.json",
                "EngineCore encountered an issue. See stack trace (above) for the root cause.",
            ),
            ("startup-nginx-health-502.json", "502 Bad Gateway 502 Bad Gateway nginx/1.22.1"),
        ],
    )
    def test_error_message_from_real_error_bodies(self, name, expected):
        assert health.error_message(exchange(name)["body"]) == expected

    def test_prometheus_samples_keep_labels(self):
        samples = health.parse_prometheus(fixture_text("metrics-after-chat.txt"))
        assert samples["vllm:num_requests_running"] == [({"engine": "0", "model_name": SERVED}, 0.0)]
        reasons = sorted(labels["reason"] for labels, _value in samples["vllm:num_requests_waiting_by_reason"])
        assert reasons == ["capacity", "deferred"]

    def test_prometheus_counters_match_the_completion_in_between(self):
        # The only request between the two scrapes was chat-200.json: the counters moved by its usage.
        idle = health.parse_prometheus(fixture_text("metrics-idle.txt"))
        after = health.parse_prometheus(fixture_text("metrics-after-chat.txt"))
        usage = json.loads(exchange("chat-200.json")["body"])["usage"]

        def total(samples, name):
            return sum(value for _labels, value in samples.get(name, []))

        assert (
            total(after, "vllm:prompt_tokens_total") - total(idle, "vllm:prompt_tokens_total") == usage["prompt_tokens"]
        )
        assert (
            total(after, "vllm:generation_tokens_total") - total(idle, "vllm:generation_tokens_total")
            == usage["completion_tokens"]
        )

    def test_metrics_summary(self):
        summary = health.summarize_metrics(health.parse_prometheus(fixture_text("metrics-after-chat.txt")))
        assert summary == {"num_requests_running": 0, "num_requests_waiting": 0, "kv_cache_usage_perc": 0.0}
        assert isinstance(summary["num_requests_running"], int)

    def test_metrics_summary_accepts_the_older_gauge_name(self):
        # vLLM before the rename exported the same gauge as vllm:gpu_cache_usage_perc; rename it in the real text.
        text = fixture_text("metrics-after-chat.txt").replace("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
        assert "vllm:kv_cache_usage_perc" not in text
        summary = health.summarize_metrics(health.parse_prometheus(text))
        assert summary["kv_cache_usage_perc"] == 0.0

    def test_metrics_summary_without_vllm_metrics_is_empty(self):
        assert health.summarize_metrics(health.parse_prometheus("# HELP nothing\n")) == {}

    @pytest.mark.parametrize(
        "given, expected",
        [
            ("http://h:8000", "http://h:8000"),
            ("http://h:8000/", "http://h:8000"),
            ("http://h:8000/v1", "http://h:8000"),
            ("https://h/prefix/v1/", "https://h/prefix"),
        ],
    )
    def test_base_url(self, given, expected):
        assert health.base_url(given) == expected


class TestClassify:
    def test_refused_connection_is_unreachable(self):
        status, problems = health.classify(observation("startup-direct-health-error.json"))
        assert status == "unreachable"
        assert "ConnectionRefusedError" in problems[0]
        assert "still starting" in problems[0]

    def test_proxy_502_while_vllm_loads_is_loading(self):
        status, problems = health.classify(
            observation("startup-nginx-health-502.json", "startup-nginx-v1-models-502.json")
        )
        assert status == "loading"
        assert "502" in problems[0]

    def test_ready_with_completion(self):
        observed = observation("health-200.json", "models-200.json", "chat-200.json")
        assert health.classify(observed, model=SERVED) == ("ready", [])

    def test_ready_through_the_proxy_once_up(self):
        observed = observation("proxied-health-200.json", "startup-nginx-v1-models-200.json", "chat-200.json")
        assert health.classify(observed, model=SERVED) == ("ready", [])

    def test_ready_without_completion_needs_only_the_listing(self):
        observed = observation("health-200.json", "models-200.json")
        assert health.classify(observed, model=SERVED, completion_wanted=False) == ("ready", [])

    def test_wrong_key_is_unauthorized(self):
        status, problems = health.classify(observation("health-200.json", "models-401-wrong-key.json"))
        assert status == "unauthorized"
        assert "--api-key" in problems[0]
        assert "no api_key was sent" not in problems[0]

    def test_missing_key_says_none_was_sent(self):
        observed = observation("health-200.json", "models-401-no-key.json", api_key_sent=False)
        status, problems = health.classify(observed)
        assert status == "unauthorized"
        assert "no api_key was sent" in problems[0]

    def test_model_not_listed_names_what_is_served(self):
        status, problems = health.classify(observation("health-200.json", "models-200.json"), model="llama-3-8b")
        assert status == "model_missing"
        assert "'llama-3-8b'" in problems[0]
        assert "it serves: smollm2-135m-instruct" in problems[0]
        assert "--served-model-name" in problems[0]

    def test_completion_404_is_model_missing(self):
        observed = observation("health-200.json", "models-200.json", "chat-404-wrong-model.json")
        status, problems = health.classify(observed)
        assert status == "model_missing"
        assert "does not exist" in problems[0]

    def test_health_503_with_models_answering_is_engine_dead(self):
        observed = observation("dead-keepalive-health-503.json", "dead-keepalive-v1-models-200.json")
        status, problems = health.classify(observed, model=SERVED)
        assert status == "engine_dead"
        assert "503" in problems[0]

    def test_health_200_but_completion_engine_error_is_engine_dead(self):
        # Right after the EngineCore died, /health still answered 200 once: only the completion told.
        observed = observation(
            "dead-keepalive-health-200.json",
            "dead-keepalive-v1-models-200.json",
            "dead-keepalive-v1-chat-completions-500.json",
        )
        status, problems = health.classify(observed, model=SERVED)
        assert status == "engine_dead"
        assert "EngineCore encountered an issue" in problems[0]

    def test_default_engine_death_completion_500(self):
        observed = observation(
            "dead-default-health-200.json",
            "dead-default-v1-models-200.json",
            "dead-default-v1-chat-completions-500.json",
        )
        assert health.classify(observed, model=SERVED)[0] == "engine_dead"

    def test_server_gone_during_completion_is_engine_dead(self):
        observed = observation(
            "dead-default-health-200.json",
            "dead-default-v1-models-200.json",
            "dead-default-v1-chat-completions-error.json",
        )
        status, problems = health.classify(observed, model=SERVED)
        assert status == "engine_dead"
        assert "during the test completion" in problems[0]

    def test_server_gone_after_engine_death_is_unreachable(self):
        status = health.classify(observation("dead-default-health-error.json"))[0]
        assert status == "unreachable"

    def test_expect_not_matching_is_not_answering(self):
        observed = observation("health-200.json", "models-200.json", "chat-200.json")
        status, problems = health.classify(observed, model=SERVED, expect=r"^\d+$")
        assert status == "not_answering"
        assert "does not match expect" in problems[0]

    def test_expect_matching_is_ready(self):
        observed = observation("health-200.json", "models-200.json", "chat-200.json")
        text = health.parse_completion(observed["completion"]["body"])[0]
        first_word = text.split()[0]
        assert health.classify(observed, model=SERVED, expect=first_word)[0] == "ready"


def replay(records):
    """An exchange function answering each URL path from a recorded file, as the real server did."""

    def answer(url, method="GET", headers=None, payload=None, timeout=10, validate_certs=True, tls=None):
        path = url[len(URL) :]
        answer.calls.append((method, path, dict(headers or {}), payload))
        answer.tls.append(tls)
        return exchange(records[path])

    answer.calls = []
    answer.tls = []
    return answer


READY_RECORDS = {
    "/health": "health-200.json",
    "/v1/models": "models-200.json",
    "/version": "version.json",
    "/metrics": "metrics-after-chat.txt",
    "/v1/chat/completions": "chat-200.json",
}


class TestObserve:
    def test_key_in_another_header_and_tls_reach_every_request(self):
        answer = replay(READY_RECORDS)
        tls = {"ca_path": "/tmp/ca.crt"}
        proxy_token = {"Authorization": "Bearer api-server-token"}
        result = health.observe(
            URL, model=SERVED, api_key="k", api_key_header="X-API-Key", headers=proxy_token, tls=tls, exchange=answer
        )
        assert result["status"] == "ready"
        assert all(
            h["X-API-Key"] == "k" and h["Authorization"] == "Bearer api-server-token"
            for dummy_method, dummy_path, h, dummy_payload in answer.calls
        )
        assert answer.tls == [tls] * len(answer.calls)

    def test_key_in_authorization_by_default(self):
        answer = replay(READY_RECORDS)
        health.observe(URL, model=SERVED, api_key="k", exchange=answer)
        assert all(
            h == {"Authorization": "Bearer k"} or h.get("Authorization") == "Bearer k"
            for dummy_method, dummy_path, h, dummy_payload in answer.calls
        )
        assert answer.tls == [None] * len(answer.calls)

    def test_ready_result_carries_all_facts(self):
        answer = replay(READY_RECORDS)
        result = health.observe(URL + "/v1", model=SERVED, api_key="k", exchange=answer, prompt="Hi", max_tokens=16)
        assert result["status"] == "ready" and result["ready"] is True
        assert result["models"] == [SERVED]
        assert result["max_model_len"] == 2048
        assert result["version"] == "0.32.0"
        assert result["completion"]["completion_tokens"] == 16
        assert result["completion"]["text"]
        assert result["metrics"] == {"num_requests_running": 0, "num_requests_waiting": 0, "kv_cache_usage_perc": 0.0}
        assert result["endpoints"] == {
            "/health": 200,
            "/v1/models": 200,
            "/version": 200,
            "/metrics": 200,
            "/v1/chat/completions": 200,
        }
        assert result["problems"] == []
        assert "serves smollm2-135m-instruct" in result["msg"] and "0.32.0" in result["msg"]
        method, path, headers, payload = answer.calls[-1]
        assert (method, path) == ("POST", "/v1/chat/completions")
        assert headers["Authorization"] == "Bearer k"
        assert payload["model"] == SERVED and payload["max_tokens"] == 16
        assert payload["messages"] == [{"role": "user", "content": "Hi"}]

    def test_unreachable_asks_nothing_else(self):
        answer = replay({"/health": "startup-direct-health-error.json"})
        result = health.observe(URL, model=SERVED, exchange=answer)
        assert result["status"] == "unreachable" and result["ready"] is False
        assert [call[1] for call in answer.calls] == ["/health"]
        assert result["endpoints"] == {"/health": None}
        assert result["msg"].startswith("Expected vLLM at http://127.0.0.1:8000 serving 'smollm2-135m-instruct'")
        assert "raise timeout" in result["msg"]

    def test_model_missing_sends_no_completion(self):
        answer = replay(READY_RECORDS)
        result = health.observe(URL, model="other", exchange=answer)
        assert result["status"] == "model_missing"
        assert "/v1/chat/completions" not in [call[1] for call in answer.calls]
        assert result["completion"] == {}
        assert "Use one of the served names" in result["msg"]

    @pytest.mark.parametrize("status", [s for s in health.STATUSES if s != "ready"])
    def test_every_failure_status_has_advice(self, status):
        assert health.ADVICE[status]


def probing(records):
    """A probe of the server at URL answered by ``records``."""

    def probe():
        return health.observe(URL, model=SERVED, exchange=replay(records))

    return probe


class TestWatchingServer:
    """A gate that also watches the process serving vLLM stops when that process has ended."""

    STARTING = {"/health": "startup-direct-health-error.json"}

    def test_an_ended_server_ends_the_wait_with_its_message(self):
        ended = "Ray job vllm-1 ended FAILED (exit code 1)."
        result = health.watching_server(probing(self.STARTING), lambda: ended)()
        assert result["status"] == "server_ended" and result["ready"] is False
        assert result["problems"][-1] == ended
        assert result["msg"].startswith("Expected vLLM at http://127.0.0.1:8000 to become ready; it was unreachable")
        assert "Waiting does not help" in result["msg"]

    def test_a_server_still_running_keeps_the_probe_result(self):
        assert health.watching_server(probing(self.STARTING), lambda: None)()["status"] == "unreachable"

    def test_a_ready_server_is_not_asked_about(self):
        asked = []
        result = health.watching_server(probing(READY_RECORDS), lambda: asked.append(1))()
        assert result["ready"] and asked == []


def serve_once(behaviour):
    """A real listening socket on localhost that accepts one connection and does ``behaviour`` with it."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def run():
        connection = listener.accept()[0]
        behaviour(connection)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return listener, thread


class TestHttpExchange:
    """http_exchange against real sockets: how each network failure is classified."""

    def test_closed_port_is_refused(self):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
            # Bound but not listening: exactly what vLLM does while it loads.
            result = health.http_exchange(f"http://127.0.0.1:{port}/health", timeout=2)
        assert result["status"] is None
        assert result["error_kind"] == "refused"

    def test_connection_closed_without_answer(self):
        listener, thread = serve_once(lambda connection: (connection.recv(4096), connection.close()))
        try:
            result = health.http_exchange(f"http://127.0.0.1:{listener.getsockname()[1]}/health", timeout=5)
        finally:
            thread.join(5)
            listener.close()
        assert result["status"] is None
        assert result["error_kind"] == "no_answer"

    def test_accepted_but_silent_times_out_as_no_answer(self):
        hold = threading.Event()
        listener, thread = serve_once(lambda connection: (hold.wait(10), connection.close()))
        try:
            result = health.http_exchange(f"http://127.0.0.1:{listener.getsockname()[1]}/health", timeout=1)
        finally:
            hold.set()
            thread.join(5)
            listener.close()
        assert result["error_kind"] == "no_answer"
        assert result["elapsed_s"] >= 0.9

    def test_unknown_host_is_dns(self):
        result = health.http_exchange("http://name-that-does-not-resolve.invalid:8000/health", timeout=5)
        assert result["error_kind"] == "dns"
