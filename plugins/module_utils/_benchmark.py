# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""Read what vLLM's ``vllm bench serve`` printed (roles/benchmark): the result JSON, the metrics operators ask for,
an aligned table and what went wrong (pure functions).

roles/benchmark/files/llmops_bench_serve.py prints the JSON vLLM saved (``--save-result``) between two marker lines
after vLLM's own report, which lists up to 10 failed requests as ``Error <n>: <text>``. The same output comes from a
command on the Ray head (platform hosts) and from the benchmark Job's log (platform kubernetes).
"""

from __future__ import annotations

import json
import re

BEGIN = "@@llmops-benchmark-result-begin@@"
END = "@@llmops-benchmark-result-end@@"
# vLLM's report of a failed request (vllm/benchmarks/serve.py, calculate_metrics): one line, or a traceback up to
# the next one or to the report's ===== lines.
ERROR_START = re.compile(r"^Error \d+: ", re.M)
REPORT_RULE = re.compile(r"^=+", re.M)
# Traceback frames' headers and what the vLLM wheel's triton prints at exit (nanobind's leak report): never a cause.
NOISE = re.compile(r"^(nanobind: | - |Traceback |The above exception|During handling)")
PERCENTILE_METRICS = ("ttft", "itl", "e2el")
PERCENTILES = ("50", "99")
TAIL_LINES = 3
# Exit codes of a run stopped at benchmark_timeout: timeout(1)'s, and a killed process's (the Job's deadline).
STOPPED_CODES = (124, 137)
STOPPED = (
    "the run was stopped at benchmark_timeout",
    "raise benchmark_timeout, or lower benchmark_num_prompts or benchmark_output_len",
)

# What an error text of a failed request most likely means, and the fix (first match wins).
CAUSES = (
    (
        ("unauthorized", "401", "403"),
        "the server refused the API key sent",
        "send the key the server has (benchmark_api_key; the playbook reads the one vllm_serve keeps)",
    ),
    (
        ("maximum context length", "max_model_len", "bad request", "400"),
        "a prompt and its answer exceed the server's max_model_len",
        "lower benchmark_input_len and benchmark_output_len",
    ),
    (
        ("not found", "404"),
        "the server does not serve that model name or endpoint",
        "set benchmark_model to the served model name (GET /v1/models lists it)",
    ),
    (
        ("cannot connect", "connection refused", "connect call failed", "name or service not known", "clientconnector"),
        "nothing accepted connections at the endpoint",
        "check that vLLM runs (playbooks/verify.yml) and that benchmark_url reaches it from where the benchmark runs",
    ),
    (
        ("repo id must be", "tokenizer", "no such file", "does not appear to have"),
        "the tokenizer (benchmark_tokenizer) is not a model directory where the benchmark runs",
        "set benchmark_tokenizer to the model directory on the Ray head (hosts) or under the model mount (kubernetes)",
    ),
    (
        ("timeout", "timed out"),
        "requests timed out",
        "lower benchmark_max_concurrency or benchmark_output_len",
    ),
)


def extract_result(output):
    """The result JSON printed between the markers, or None when the run printed none."""
    text = output or ""
    start, end = text.rfind(BEGIN), text.rfind(END)
    if start < 0 or end < start:
        return None
    try:
        return json.loads(text[start + len(BEGIN) : end])
    except ValueError:
        return None


def _error_text(block):
    """The error of one block: its line, or a traceback's last unindented line (the exception)."""
    lines = [line for line in REPORT_RULE.split(block, 1)[0].splitlines() if line.strip()]
    if lines and lines[0].startswith("Traceback"):
        return [line for line in lines if not line[0].isspace()][-1]
    return lines[0].strip() if lines else ""


def request_errors(output):
    """The distinct error texts of failed requests vLLM listed, in order."""
    text = output or ""
    starts = list(ERROR_START.finditer(text))
    ends = [match.start() for match in starts[1:]] + [len(text)]
    return list(dict.fromkeys(_error_text(text[match.end() : end]) for match, end in zip(starts, ends)))


def _tail(output):
    """The last unindented lines (messages and exceptions, not code or the exit noise)."""
    lines = [line for line in (output or "").splitlines() if line.strip() and not line[0].isspace()]
    return [line for line in lines if not NOISE.match(line)][-TAIL_LINES:]


def _percentiles(result, metric):
    return {p: result.get(f"p{p}_{metric}_ms") for p in PERCENTILES}


def summarize(output):
    """Summary of one run's output: the metrics of the result JSON, the failed requests' errors, and (when no result
    was printed) the last lines, for the failure message."""
    result = extract_result(output)
    summary = {"found": result is not None, "errors": request_errors(output), "result": result}
    if result is None:
        summary["tail"] = _tail(output)
        return summary
    summary.update(
        date=result.get("date"),
        model=result.get("model_id"),
        backend=result.get("backend"),
        num_prompts=result.get("num_prompts"),
        max_concurrency=result.get("max_concurrency"),
        completed=result.get("completed", 0),
        failed=result.get("failed", 0),
        duration_s=result.get("duration"),
        input_tokens=result.get("total_input_tokens"),
        output_tokens=result.get("total_output_tokens"),
        request_throughput=result.get("request_throughput"),
        output_throughput=result.get("output_throughput"),
        total_token_throughput=result.get("total_token_throughput"),
        file_name="{}-{}.json".format(result.get("date"), re.sub(r"[^A-Za-z0-9._-]", "_", str(result.get("model_id")))),
    )
    summary.update({f"{metric}_ms": _percentiles(result, metric) for metric in PERCENTILE_METRICS})
    return summary


def _number(value, digits=2):
    return "?" if value is None else f"{value:.{digits}f}"


def _pair(values):
    return " / ".join(_number(values.get(p), 1) for p in PERCENTILES)


def table_lines(summary):
    """The summary as aligned ``label  value`` lines."""
    rows = [
        (
            "requests",
            f"{summary['completed']} completed, {summary['failed']} failed in {_number(summary['duration_s'])} s",
        ),
        ("concurrency", str(summary["max_concurrency"])),
        ("request throughput", f"{_number(summary['request_throughput'])} req/s"),
        ("output tokens/s", _number(summary["output_throughput"])),
        ("total tokens/s", _number(summary["total_token_throughput"])),
        ("tokens in / out", f"{summary['input_tokens']} / {summary['output_tokens']}"),
        ("TTFT p50 / p99", _pair(summary["ttft_ms"]) + " ms"),
        ("ITL p50 / p99", _pair(summary["itl_ms"]) + " ms"),
        ("E2E latency p50 / p99", _pair(summary["e2el_ms"]) + " ms"),
    ]
    width = max(len(label) for label, _value in rows)
    return [f"{label:<{width}}  {value}" for label, value in rows]


def likely_cause(texts):
    """(cause, fix) for the first text that says something known, else a generic pair."""
    for text in texts:
        lowered = text.lower()
        for needles, cause, fix in CAUSES:
            if any(needle in lowered for needle in needles):
                return cause, fix
    return "see the lines above", "run playbooks/verify.yml, then read the server's log"


def problems(summary, max_failed=0, rc=0, where="the endpoint"):
    """Failure messages (expected, seen, cause, fix); empty when the run printed a result with few enough failures."""
    if not summary["found"]:
        tail = summary.get("tail") or ["(no output)"]
        cause, fix = STOPPED if rc in STOPPED_CODES else likely_cause(summary["errors"] + tail)
        return [
            f"Expected vLLM's bench serve against {where} to finish and print its result; it exited {rc} without one. "
            f"Last lines: {' | '.join(tail).rstrip('.')}. Likely cause: {cause}. Fix: {fix}."
        ]
    if summary["failed"] <= max_failed:
        return []
    errors = summary["errors"] or ["(vLLM listed no error text)"]
    cause, fix = likely_cause(errors)
    return [
        f"Expected at most {max_failed} failed request(s) of {summary['num_prompts']} against {where}; "
        f"{summary['failed']} failed ({summary['completed']} completed). Errors: {'; '.join(errors[:3]).rstrip('.')}. "
        f"Likely cause: {cause}. Fix: {fix}; or allow some with benchmark_max_failed."
    ]
