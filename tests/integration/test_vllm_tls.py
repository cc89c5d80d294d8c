# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""TLS for the vLLM endpoint, against one real vLLM CPU server started with the collection's TLS command line.

The server's command line comes from the collection's builder (plugins/module_utils/_vllm_command.py: serving_settings
with ``tls``, server_args), so it runs with --ssl-certfile/--ssl-keyfile/--enable-ssl-refresh as the role launches it;
the certificates are made here (a throwaway CA and a server certificate for 127.0.0.1, tests/k8s_testbed/tls.py, and
a second CA that issued nothing of it). tests/integration/playbooks/vllm_tls.yml then checks, with the real modules
and the role's own tasks:

- the role's TLS preflight: the matching files pass; a key of another certificate, a CA that did not issue it, a
  missing file and a Secret on platform hosts are refused, each by name;
- vllm_health: the right CA gives ready with a completion; a wrong CA fails at once (tls_error) naming the certificate
  problem; plain http to the TLS server fails saying so; through the test bed's API server with service.scheme
  https (``services/https:llm-vllm:8000/proxy``) ready; ca_path with service refused;
- the role on Kubernetes (the test bed, no pods run: the Service is mapped to the TLS vLLM): a Secret whose key is
  another certificate's is refused before the driver is applied; with the right Secret the exported endpoint is
  https and the role's gate passes through ``services/https:``.

Run: .venv/bin/python -m pytest tests/integration/test_vllm_tls.py -m integration
"""

from __future__ import annotations

import base64
import json
import sys
import time
from pathlib import Path

import pytest
import vllm_local
from playbook_runner import REPO, run_playbook

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from k8s_testbed.harness import RunningTestBed
from k8s_testbed.tls import write_certificates

vllm_local._ensure_collection_importable()

from ansible_collections.llmops.ray_vllm.plugins.module_utils._vllm_command import (  # noqa: E402
    server_args,
    serving_settings,
)
from ansible_collections.llmops.ray_vllm.plugins.module_utils._vllm_health import observe  # noqa: E402

pytestmark = pytest.mark.integration

API_KEY = "tls-test-key"
SERVED = vllm_local.DEMO_SERVED_NAME
LOG_DIR = REPO / "tests" / "output" / "vllm_tls"


def tls_server(model_dir, log_dir, paths):
    """A VllmServer whose command line is the collection's for a CPU plan with TLS (and the X-API-Key middleware)."""
    port = vllm_local.free_port()
    effective = serving_settings(
        {
            "device": "cpu",
            "dtype": "float32",
            "max_model_len": 2048,
            "cpu_kvcache_space_gib": 1,
            "model": model_dir,
            "served_model_name": SERVED,
            "host": "127.0.0.1",
            "port": port,
            "tls": {"certfile": paths["server.crt"], "keyfile": paths["server.key"]},
            # As the Kubernetes Deployment runs it: the key arrives as X-API-Key through the API server's proxy.
            "middleware": "llmops_api_key_header.ApiKeyHeaderMiddleware",
            "env": {"PYTHONPATH": str(REPO / "roles" / "vllm_serve" / "files")},
        }
    )
    args = server_args(effective)
    assert "--ssl-certfile" in args and "--enable-ssl-refresh" in args and "--middleware" in args
    server = vllm_local.VllmServer(model_dir, log_dir, api_key=API_KEY, port=port)
    server.args = [vllm_local.PYTHON, "-m", "vllm.entrypoints.openai.api_server", *args, "--api-key", API_KEY]
    server.env.update(effective["env"])
    return server


def wait_ready(server, url, ca_path, timeout=480):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.alive():
            raise RuntimeError(f"vLLM exited before it was ready; log {server.log_path}:\n{server.log_tail()}")
        result = observe(url, model=SERVED, api_key=API_KEY, completion_wanted=False, tls={"ca_path": ca_path})
        if result["ready"]:
            return
        assert result["status"] in ("unreachable", "loading"), result["msg"]
        time.sleep(2)
    raise RuntimeError(f"vLLM not ready over TLS after {timeout}s; log {server.log_path}:\n{server.log_tail()}")


def prepare_kubernetes(bed, paths, other_paths):
    """What the user and model_storage would have made: the model claim, the TLS Secret, and one whose key is another
    certificate's."""
    claim = {
        "metadata": {"name": "llm-models"},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    assert bed.request("POST", "/api/v1/namespaces/llm/persistentvolumeclaims", claim)[0] == 201

    def encoded(path):
        return base64.b64encode(Path(path).read_bytes()).decode()

    for name, key in (("llm-vllm-tls", paths["server.key"]), ("llm-vllm-tls-bad", other_paths["server.key"])):
        secret = {
            "metadata": {"name": name},
            "type": "kubernetes.io/tls",
            "data": {"tls.crt": encoded(paths["server.crt"]), "tls.key": encoded(key)},
        }
        assert bed.request("POST", "/api/v1/namespaces/llm/secrets", secret)[0] == 201


@pytest.fixture(scope="module")
def tls_setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vllm-tls")
    paths = write_certificates(str(folder / "pki"))
    server = tls_server(vllm_local.ensure_demo_model(), str(folder), paths)
    try:
        server.start()
        # The test bed starts while vLLM loads.
        with RunningTestBed(folder / "testbed") as bed:
            service = {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "llm-vllm", "namespace": "llm"},
                "spec": {"ports": [{"name": "https", "port": 8000, "targetPort": "https", "appProtocol": "https"}]},
            }
            namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "llm"}}
            assert bed.request("POST", "/api/v1/namespaces", namespace)[0] in (201, 409)
            assert bed.request("POST", "/api/v1/namespaces/llm/services", service)[0] == 201
            prepare_kubernetes(bed, paths, write_certificates(str(folder / "other-pki")))
            bed.admin("PUT", "service-backends", {"llm/llm-vllm:8000": f"https://127.0.0.1:{server.port}"})
            wait_ready(server, f"https://127.0.0.1:{server.port}", paths["ca.crt"])
            yield {"server": server, "folder": folder, "kubeconfig": bed.kubeconfig, "env": bed.env()}
    finally:
        server.stop()


def test_tls_preflight_and_gates(tls_setup):
    folder, server = tls_setup["folder"], tls_setup["server"]
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    extra = {
        "tls_dir": str(folder / "pki"),
        "tls_other_dir": str(folder / "other-pki"),
        "tls_free_port": vllm_local.free_port(),
        "tls_vllm_port": server.port,
        "tls_model": SERVED,
        "tls_api_key": API_KEY,
        "tls_kubeconfig": tls_setup["kubeconfig"],
    }
    rc, output, recap = run_playbook(
        "tests/integration/playbooks/vllm_tls.yml",
        inventory="localhost,",
        extra_args=["-e", json.dumps(extra)],
        env=tls_setup["env"],
        log_path=LOG_DIR / "vllm_tls.log",
    )
    assert rc == 0 and recap["localhost"]["failed"] == 0, output[-6000:]
    # The five refusals (four of the preflight on hosts, the wrong Secret on Kubernetes) were each met by the rescue
    # that checks their message.
    assert recap["localhost"]["rescued"] == 5, output[-6000:]
    assert "Endpoint (in the cluster): https://llm-vllm.llm.svc:8000/v1" in output
    assert API_KEY not in output
