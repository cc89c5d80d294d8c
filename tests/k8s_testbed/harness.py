# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Run a test bed as a real process from a test, and talk to its admin API.

with RunningTestBed(tmp_path, seed="gpu-nodes-3") as bed:
    bed.kubeconfig            # path for kubernetes.core / the kubernetes client / kubectl
    bed.admin("PUT", "service-backends", {"llm/ray-head-svc:8265": "http://127.0.0.1:8265"})
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

TESTS_DIR = Path(__file__).resolve().parents[1]
REQUEST_TIMEOUT_S = 120


class RunningTestBed:
    def __init__(
        self,
        state_dir,
        seed: str = "gpu-nodes-2",
        controllers=None,
        start_timeout: float = 60,
        runtime: str = "none",
        rbac: bool = False,
    ):
        self.state_dir = Path(state_dir)
        self.seed = seed
        self.controllers = controllers
        self.runtime = runtime  # "runc": pods whose images are stored locally run as containers
        self.rbac = rbac  # RBAC authorizes the tokens of mint_token (the admin token stays all-powerful)
        self.start_timeout = start_timeout
        self.process = None
        self.kubeconfig = str(self.state_dir / "kubeconfig")
        # The dynamic client caches discovery under TMPDIR: a private one per test bed keeps runs apart.
        self.tmpdir = self.state_dir / "tmp"

    def start(self) -> RunningTestBed:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.tmpdir.mkdir(exist_ok=True)
        command = [sys.executable, "-m", "k8s_testbed", "run", "--state-dir", str(self.state_dir), "--seed", self.seed]
        command += ["--runtime", self.runtime] + (["--rbac"] if self.rbac else [])
        if self.controllers is not None:
            command += ["--controllers", ",".join(self.controllers)]
        env = dict(os.environ, PYTHONPATH=str(TESTS_DIR))
        self._log = open(self.state_dir / "server.log", "ab")
        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        deadline = time.monotonic() + self.start_timeout
        while not os.path.exists(self.kubeconfig):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"test bed did not start:\n{self.server_log()[-4000:]}")
            time.sleep(0.05)
        config = yaml.safe_load(Path(self.kubeconfig).read_text())
        self.server_url = config["clusters"][0]["cluster"]["server"]
        self.token = config["users"][0]["user"]["token"]
        self.ca_path = str(self.state_dir / "pki" / "ca.crt")
        return self

    def env(self) -> dict:
        """Environment for a client process (ansible-playbook, kubectl) using this test bed."""
        return dict(
            os.environ, KUBECONFIG=self.kubeconfig, TMPDIR=str(self.tmpdir), K8S_AUTH_KUBECONFIG=self.kubeconfig
        )

    def server_log(self) -> str:
        path = self.state_dir / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def request(self, method: str, path: str, body=None, content_type="application/json", token=None):
        """(status, parsed JSON or text) for a raw API request."""
        data = None
        if body is not None:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        request = urllib.request.Request(self.server_url + path, data=data, method=method)
        if token is not False:
            request.add_header("Authorization", f"Bearer {token or self.token}")
        if data is not None:
            request.add_header("Content-Type", content_type)
        context = ssl.create_default_context(cafile=self.ca_path)
        try:
            # Generous: on CI's 2 cores, with the other lane busy, the 64-node seed's controllers have kept the
            # server's event loop from a TLS handshake for over 30 s.
            with urllib.request.urlopen(request, context=context, timeout=REQUEST_TIMEOUT_S) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def admin(self, method: str, path: str, body=None):
        status, answer = self.request(method, "/testbed/v1/" + path, body)
        if status >= 300:
            raise RuntimeError(f"test bed admin {method} {path}: {status} {answer}")
        return answer

    def mint_token(self, service_account: str = "", user: str = "", groups=()) -> str:
        """A bearer token for the ServiceAccount ``<namespace>/<name>`` (it must exist) or for ``user``."""
        body = {"serviceAccount": service_account} if service_account else {"user": user, "groups": list(groups)}
        return self.admin("POST", "tokens", body)["token"]

    def kubeconfig_for(self, token: str, path) -> str:
        """Write a kubeconfig like this test bed's whose only user is ``token``; returns its path."""
        config = yaml.safe_load(Path(self.kubeconfig).read_text())
        config["users"] = [{"name": "testbed-token", "user": {"token": token}}]
        config["contexts"] = [c for c in config["contexts"] if c["name"] == "testbed"]
        Path(path).write_text(yaml.safe_dump(config, sort_keys=False))
        Path(path).chmod(0o600)
        return str(path)

    def api_client(self):
        """A kubernetes.client.ApiClient for this test bed (the real client, TLS and token from the kubeconfig)."""
        from kubernetes import config

        return config.new_client_from_config(config_file=self.kubeconfig)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(60 if self.runtime != "none" else 10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        if getattr(self, "_log", None):
            self._log.close()

    def __enter__(self) -> RunningTestBed:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class TestBeds:
    """Test beds started on demand under one folder (one each test), all stopped by ``stop_all``."""

    __test__ = False  # a helper, not a pytest test class

    def __init__(self, folder):
        self.folder = Path(folder)
        self.beds = []

    def start(self, seed: str = "gpu-nodes-2", controllers=None) -> RunningTestBed:
        bed = RunningTestBed(self.folder / f"bed{len(self.beds)}", seed=seed, controllers=controllers).start()
        self.beds.append(bed)
        return bed

    def stop_all(self) -> None:
        for bed in self.beds:
            bed.stop()
