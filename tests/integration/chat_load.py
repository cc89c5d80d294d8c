"""A bounded load of chat completions against an OpenAI endpoint, on loopback: a fixed number of requests, a fixed
concurrency, each request retried a few times. Used by the replica tests and by make bench's throughput rows.

Every request has its own prompt, so Serve's prefix-aware router has no shared prefix to pin them to one replica.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

QUESTIONS = (
    "Who wrote Hamlet?",
    "Name a colour of the sky.",
    "What is two plus two?",
    "Name a fruit.",
    "Which planet do we live on?",
    "Say a greeting.",
)


class LoadReport:
    """What a load run saw: requests that failed at first and after their retries, and the time it took."""

    def __init__(self):
        self.lock = threading.Lock()
        self.ok = 0
        self.first_attempt_failures = 0
        self.failed = 0
        self.retries = 0
        self.errors = []
        self.completion_tokens = 0
        self.seconds = 0.0

    def as_dict(self):
        return {
            "ok": self.ok,
            "failed_after_retries": self.failed,
            "failed_first_attempt": self.first_attempt_failures,
            "retries": self.retries,
            "seconds": round(self.seconds, 2),
            "completion_tokens": self.completion_tokens,
            "errors": self.errors[:10],
        }


def chat(url, key, model, prompt, max_tokens, timeout=120):
    """One chat completion: ``(completion tokens, text)``; raises on an HTTP error or a broken connection."""
    body = json.dumps(
        {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens}
    ).encode()
    request = urllib.request.Request(
        url.rstrip("/") + "/v1/chat/completions",
        data=body,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        answer = json.load(response)
    return answer["usage"]["completion_tokens"], answer["choices"][0]["message"]["content"]


def _one(report, target, index, attempts, backoff):
    prompt = f"Request {index}. {QUESTIONS[index % len(QUESTIONS)]}"
    for attempt in range(attempts):
        try:
            url, key, model, max_tokens = target
            tokens, _text = chat(url, key, model, prompt, max_tokens)
        except (urllib.error.URLError, OSError, ValueError, KeyError) as error:
            with report.lock:
                report.first_attempt_failures += attempt == 0
                report.retries += attempt + 1 < attempts
                report.errors.append(f"request {index} attempt {attempt + 1}: {error}")
            time.sleep(backoff * (attempt + 1))
            continue
        with report.lock:
            report.ok += 1
            report.completion_tokens += tokens
        return
    with report.lock:
        report.failed += 1


def run_load(target, requests, concurrency, attempts=4, backoff=2.0):
    """Send ``requests`` chat completions, ``concurrency`` at a time; ``target``: (url, key, model, max_tokens)."""
    report = LoadReport()
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for index in range(requests):
            pool.submit(_one, report, target, index, attempts, backoff)
    report.seconds = time.monotonic() - start
    return report


class BackgroundLoad:
    """run_load in a thread, so that a test can break something while requests are in flight."""

    def __init__(self, target, requests, concurrency, attempts=4, backoff=2.0):
        self.report = None
        self._thread = threading.Thread(
            target=self._run, args=(target, requests, concurrency, attempts, backoff), daemon=True
        )

    def _run(self, *args):
        self.report = run_load(*args)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._thread.join()

    def wait(self, timeout=None):
        self._thread.join(timeout)
        return self.report
