# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The gates through the Kubernetes test bed's service proxy, to a real Ray cluster and a real vLLM CPU server.

The way a gate reaches pods on a real cluster: https to the API server with the kubeconfig's bearer token,
``/api/v1/namespaces/<ns>/services/<svc>:<port>/proxy/...``, the API server forwards to the service. Here the test
bed forwards to the real local processes the test maps to those services.

Like the real API server, the test bed removes the Authorization header once it has authenticated the request,
so a key meant for the backend cannot pass through it in that header: vllm_health sends it as X-API-Key through
the proxy, and the vLLM server (``keyed_vllm`` in conftest.py) runs the collection's middleware that maps it.

Why a mapping and not the pods that run: the gates' edge cases need processes the test starts, stops and delays at
will (a late worker, a server still loading); the gates through the proxy to pods that run are in
molecule/kubernetes (verify) and test_site_kubernetes_pods.py.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import vllm_local
from conftest import SHARED_VLLM_KEY

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from k8s_testbed.harness import RunningTestBed

pytestmark = pytest.mark.integration
NAMESPACE = "llm"


def _service(bed, name, port_name, port):
    manifest = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"selector": {"app": name}, "ports": [{"name": port_name, "port": port}]},
    }
    status, body = bed.request("POST", f"/api/v1/namespaces/{NAMESPACE}/services", manifest)
    assert status == 201, body


@pytest.fixture
def bed(tmp_path):
    with RunningTestBed(tmp_path / "testbed") as running:
        status, body = running.request("POST", "/api/v1/namespaces", {"metadata": {"name": NAMESPACE}})
        assert status == 201, body
        yield running


def test_ray_status_through_the_api_server_proxy(bed, ray_cluster_factory):
    cluster = ray_cluster_factory(head={"num_cpus": 1}, workers=[{"num_cpus": 1, "num_gpus": 1}])
    _service(bed, "rc-head-svc", "dashboard", 8265)
    bed.admin("PUT", "service-backends", {f"{NAMESPACE}/rc-head-svc:8265": cluster.dashboard_url})
    service = {"namespace": NAMESPACE, "name": "rc-head-svc", "port": "dashboard"}
    args = dict(service=service, kubeconfig=bed.kubeconfig, expected_nodes=2, expected_gpus=1, wait=True)
    result = vllm_local.run_module("ray_status", dict(args, timeout=60, interval=1))
    assert not result.get("failed"), {k: result.get(k) for k in ("msg", "exception", "problems", "module_stderr")}
    assert result["ready"] is True and result["nodes"]["alive"] == 2 and result["resources"]["GPU"]["total"] == 1
    assert "through the Kubernetes API server" in result["msg"]
    # The API server is really in the path: with the kubeconfig's certificate context it works too, and with a
    # wrong token (the dashboard URL used by hand) it is refused there.
    by_cert = vllm_local.run_module("ray_status", dict(args, context="testbed-cert", timeout=30))
    assert not by_cert.get("failed"), by_cert.get("msg")
    proxy_url = f"{bed.server_url}/api/v1/namespaces/{NAMESPACE}/services/rc-head-svc:dashboard/proxy"
    refused = vllm_local.run_module(
        "ray_status", dict(dashboard_url=proxy_url, token="not-the-token", validate_certs=False, expected_nodes=2)
    )
    assert refused.get("failed") and "401" in refused["msg"], refused


def test_vllm_health_through_the_api_server_proxy(bed, keyed_vllm):
    _service(bed, "vllm", "http", 8000)
    bed.admin("PUT", "service-backends", {f"{NAMESPACE}/vllm:8000": keyed_vllm.base_url})
    started = time.monotonic()
    result = vllm_local.run_module(
        "vllm_health",
        dict(
            service={"namespace": NAMESPACE, "name": "vllm", "port": "http"},
            kubeconfig=bed.kubeconfig,
            model=vllm_local.DEMO_SERVED_NAME,
            api_key=SHARED_VLLM_KEY,
            completion=True,
            prompt="What is the capital of France? Answer in one word.",
            max_tokens=8,
            expect="(?i)paris",
        ),
    )
    assert not result.get("failed"), {k: result.get(k) for k in ("msg", "exception", "problems", "module_stderr")}
    assert result["status"] == "ready" and time.monotonic() - started < 300
    # A service with no backend mapped answers 503 from the API server, as a service without endpoints does.
    _service(bed, "nothing", "http", 8000)
    missing = vllm_local.run_module(
        "vllm_health",
        dict(service={"namespace": NAMESPACE, "name": "nothing", "port": "http"}, kubeconfig=bed.kubeconfig),
    )
    assert missing.get("failed") and missing["status"] != "ready", missing
