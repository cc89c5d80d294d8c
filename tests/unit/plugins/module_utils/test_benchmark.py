# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""What roles/benchmark reads from vLLM 0.32's bench serve, on what the role's script printed when it ran for real
against a real vLLM CPU server (tests/fixtures/vllm/bench, README there): a passing run, every request refused for
a wrong key, nothing listening, and a run that died before a result (no tokenizer)."""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.llmops.ray_vllm.plugins.module_utils import _benchmark as benchmark

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.join(HERE, "..", "..", "..", "fixtures", "vllm", "bench")


def read(name):
    with open(os.path.join(BENCH, name), encoding="utf-8") as handle:
        return handle.read()


@pytest.fixture(scope="module")
def ok():
    return benchmark.summarize(read("ok-8x2.stdout.txt"))


def test_the_result_json_is_the_file_vllm_saved(ok):
    assert ok["found"] is True
    assert ok["result"] == json.loads(read("ok-8x2.result.json"))


def test_the_summary_holds_the_metrics_operators_ask_for(ok):
    result = ok["result"]
    assert (ok["model"], ok["backend"], ok["num_prompts"], ok["max_concurrency"]) == (
        "smollm2-135m-instruct",
        "openai-chat",
        8,
        2,
    )
    assert (ok["completed"], ok["failed"], ok["input_tokens"], ok["output_tokens"]) == (8, 0, 496, 128)
    assert ok["request_throughput"] == result["request_throughput"]
    assert ok["output_throughput"] == result["output_throughput"]
    assert ok["ttft_ms"] == {"50": result["p50_ttft_ms"], "99": result["p99_ttft_ms"]}
    assert ok["itl_ms"] == {"50": result["p50_itl_ms"], "99": result["p99_itl_ms"]}
    assert ok["e2el_ms"]["99"] == result["p99_e2el_ms"]
    assert ok["errors"] == [] and ok["file_name"] == "20261206-211714-smollm2-135m-instruct.json"


def test_the_table_is_aligned_and_shows_every_metric(ok):
    lines = benchmark.table_lines(ok)
    assert lines[0] == "requests               8 completed, 0 failed in 13.15 s"
    assert "output tokens/s        9.73" in lines
    assert "TTFT p50 / p99         1059.8 / 2477.8 ms" in lines
    assert "ITL p50 / p99          92.0 / 962.2 ms" in lines
    # The longest label, "E2E latency p50 / p99", sets where every value starts.
    assert all(line[21:23] == "  " and line[23] != " " for line in lines)


def test_a_passing_run_has_no_problem_and_failures_within_the_allowance_pass(ok):
    assert benchmark.problems(ok) == []
    refused = benchmark.summarize(read("unauthorized-4x2.stdout.txt"))
    assert benchmark.problems(refused, max_failed=4) == []


def test_a_wrong_key_names_the_key_as_the_cause():
    summary = benchmark.summarize(read("unauthorized-4x2.stdout.txt"))
    assert (summary["found"], summary["completed"], summary["failed"], summary["errors"]) == (
        True,
        0,
        4,
        ["Unauthorized"],
    )
    (message,) = benchmark.problems(summary, 0, 0, "m at http://x")
    assert message.startswith(
        "Expected at most 0 failed request(s) of 4 against m at http://x; 4 failed (0 completed)."
    )
    assert "Errors: Unauthorized." in message and "the server refused the API key sent" in message
    assert "benchmark_max_failed" in message


def test_a_traceback_per_request_gives_its_exception_once():
    summary = benchmark.summarize(read("refused-4x2.stdout.txt"))
    assert summary["failed"] == 4
    (error,) = summary["errors"]
    assert error.startswith("aiohttp.client_exceptions.ClientConnectorError: Cannot connect to host 127.0.0.1:39599")
    (message,) = benchmark.problems(summary)
    assert "nothing accepted connections at the endpoint" in message


def test_a_run_without_result_shows_its_last_lines_and_cause():
    output = read("no-tokenizer.stdout.txt") + "\n" + read("no-tokenizer.stderr.txt")
    summary = benchmark.summarize(output)
    assert summary["found"] is False and summary["result"] is None
    assert summary["tail"][-1].startswith("OSError: Repo id must be in the form")
    assert not any("nanobind" in line or line.startswith("Traceback") for line in summary["tail"])
    (message,) = benchmark.problems(summary, rc=1, where="m at http://x")
    assert message.startswith("Expected vLLM's bench serve against m at http://x to finish and print its result;")
    assert "it exited 1 without one" in message and "benchmark_tokenizer" in message


def test_a_run_stopped_at_the_timeout_says_so():
    summary = benchmark.summarize(read("no-tokenizer.stdout.txt"))
    (message,) = benchmark.problems(summary, rc=124)
    assert "stopped at benchmark_timeout" in message and "raise benchmark_timeout" in message


def test_no_output_and_a_broken_json_are_no_result():
    assert benchmark.summarize("")["found"] is False
    broken = f"{benchmark.BEGIN}\n{{not json\n{benchmark.END}"
    assert benchmark.extract_result(broken) is None
    assert "(no output)" in benchmark.problems(benchmark.summarize(None), rc=2)[0]
