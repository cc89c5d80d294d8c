"""A real Prometheus server (Debian's prometheus 2.42, installed by make setup) for the monitoring tests: its
scrape jobs are the ones roles/monitoring writes, reading the target files the role wrote; the dashboard's queries
are evaluated through its HTTP API."""

from __future__ import annotations

import json
import math
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

# What Grafana substitutes in the dashboard's queries: a window of several scrapes (the tests scrape every second).
RATE_INTERVAL = "30s"


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Prometheus:
    """``prometheus`` scraping the jobs of the role's scrape configuration file, with its data in ``folder``."""

    def __init__(self, scrape_configs_file, folder):
        self.binary = shutil.which("prometheus") or "/usr/bin/prometheus"
        self.folder = Path(folder)
        self.port = _free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        jobs = yaml.safe_load(Path(scrape_configs_file).read_text())["scrape_configs"]
        # Prometheus 2.42 has no scrape_config_files (2.43+): the role's jobs go into prometheus.yml as the role's
        # report tells a user to do.
        self.config = self.folder / "prometheus.yml"
        self.config.write_text(yaml.safe_dump({"global": {"evaluation_interval": "1s"}, "scrape_configs": jobs}))
        self.process = None
        self.log = None

    def check_config(self):
        """``promtool check config``: (rc, output)."""
        done = subprocess.run(
            [shutil.which("promtool") or "/usr/bin/promtool", "check", "config", str(self.config)],
            capture_output=True,
            text=True,
            check=False,
        )
        return done.returncode, done.stdout + done.stderr

    def start(self, timeout=60):
        self.log = open(self.folder / "prometheus.log", "w")
        self.process = subprocess.Popen(
            [
                self.binary,
                "--config.file=%s" % self.config,
                "--storage.tsdb.path=%s" % (self.folder / "data"),
                "--web.listen-address=127.0.0.1:%d" % self.port,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, (self.folder / "prometheus.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.5)
        raise AssertionError("Prometheus not ready in %d s" % timeout)

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.log:
            self.log.close()

    def api(self, path, **params):
        query = ("?" + urllib.parse.urlencode(params)) if params else ""
        with urllib.request.urlopen(self.url + "/api/v1/" + path + query, timeout=20) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]

    def targets(self):
        """``{job: [(scrape url, health, last error)]}`` of the active targets."""
        found = {}
        for target in self.api("targets", state="active")["activeTargets"]:
            entry = (target["scrapeUrl"], target["health"], target.get("lastError", ""))
            found.setdefault(target["labels"]["job"], []).append(entry)
        return found

    def query(self, expr):
        """The instant vector of ``expr``, Grafana's $__rate_interval replaced: ``[(labels, value)]``."""
        result = self.api("query", query=expr.replace("$__rate_interval", RATE_INTERVAL))["result"]
        return [(series["metric"], float(series["value"][1])) for series in result]


def numbers(series):
    """The values of a query's series that are numbers (NaN: no event in the window)."""
    return [value for _labels, value in series if not math.isnan(value)]


SERVE_NAMES = ("ray_vllm_", "ray_serve_")


def queries_for(queries, engine):
    """The dashboard queries a deployment with ``engine`` (vllm: one vLLM server; serve_llm: Ray Serve LLM
    replicas) answers: vLLM's own names, or Serve's; Ray's node metrics in both."""
    chosen = []
    for title, ref, expr in queries:
        serve = any(name in expr for name in SERVE_NAMES)
        vllm = "vllm:" in expr
        if (engine == "serve_llm" and serve) or (engine == "vllm" and vllm) or not (serve or vllm):
            chosen.append((title, ref, expr))
    return chosen


def queries_without_data(prometheus, queries):
    """The ``(panel, refId, expr)`` of ``queries`` that return no number now."""
    return [query for query in queries if not numbers(prometheus.query(query[2]))]
