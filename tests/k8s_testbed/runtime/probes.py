# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Probes as the kubelet runs them: exec inside the container, httpGet and tcpSocket against the pod IP.

httpGet succeeds on a status from 200 to 399 (redirects are not followed, as the kubelet counts a redirect to
another host as success); tcpSocket on an accepted connection; exec on exit code 0. Each attempt is bounded by
the probe's timeoutSeconds. ProbeTracker applies initialDelaySeconds, periodSeconds and the success and failure
thresholds.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass


def run_probe(probe, pod_ip: str, exec_argv) -> tuple:
    """(succeeded, message) of one attempt; ``exec_argv(command)`` gives the argv that runs in the container."""
    try:
        if probe.kind == "exec":
            return _exec(probe, exec_argv)
        if probe.kind == "tcpSocket":
            with socket.create_connection((probe.host or pod_ip, probe.port), timeout=probe.timeout):
                return True, ""
        return _http(probe, pod_ip)
    except (OSError, http.client.HTTPException, subprocess.TimeoutExpired) as error:
        return False, _failure_text(probe, pod_ip, error)


def _exec(probe, exec_argv) -> tuple:
    completed = subprocess.run(
        exec_argv(list(probe.command)),
        capture_output=True,
        timeout=probe.timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    output = (completed.stdout + completed.stderr).decode("utf-8", "replace").strip()
    return completed.returncode == 0, output


def _http(probe, pod_ip: str) -> tuple:
    host = probe.host or pod_ip
    if probe.scheme.upper() == "HTTPS":
        context = ssl._create_unverified_context()  # the kubelet does not verify probe certificates either
        connection = http.client.HTTPSConnection(host, probe.port, timeout=probe.timeout, context=context)
    else:
        connection = http.client.HTTPConnection(host, probe.port, timeout=probe.timeout)
    try:
        headers = {"User-Agent": "kube-probe/1.33", "Accept": "*/*"}
        headers.update(dict(probe.headers))
        connection.request("GET", probe.path, headers=headers)
        status = connection.getresponse().status
    finally:
        connection.close()
    if 200 <= status < 400:
        return True, ""
    return False, f"HTTP probe failed with statuscode: {status}"


def _failure_text(probe, pod_ip: str, error: Exception) -> str:
    if isinstance(error, (socket.timeout, subprocess.TimeoutExpired)):
        if probe.kind == "exec":
            return f"command timed out after {probe.timeout:g}s"
        return f'Get "http://{pod_ip}:{probe.port}{probe.path}": context deadline exceeded'
    if probe.kind == "httpGet":
        return f'Get "http://{probe.host or pod_ip}:{probe.port}{probe.path}": dial tcp: {error}'
    return f"dial tcp {probe.host or pod_ip}:{probe.port}: {error}"


@dataclass
class ProbeTracker:
    """One probe of one container instance: when it is due, and what its results add up to."""

    probe: object
    started: float  # monotonic time the container started
    next_due: float = 0.0
    successes: int = 0
    failures: int = 0
    result: bool | None = None  # None until the thresholds decide
    last_message: str = ""

    def __post_init__(self):
        self.next_due = self.started + self.probe.initial_delay

    def due(self, now: float) -> bool:
        return now >= self.next_due

    def record(self, succeeded: bool, message: str, now: float) -> None:
        self.next_due = now + self.probe.period
        self.last_message = message
        if succeeded:
            self.successes, self.failures = self.successes + 1, 0
            if self.successes >= self.probe.success_threshold:
                self.result = True
        else:
            self.failures, self.successes = self.failures + 1, 0
            if self.failures >= self.probe.failure_threshold:
                self.result = False


def clock() -> float:
    return time.monotonic()
