"""Service proxy endpoints and transports built from real kubeconfigs (token, client certificate, contexts)."""

from __future__ import annotations

import base64
import json

import pytest
import yaml
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args

from ansible_collections.llmops.ray_vllm.plugins.module_utils import _kube_proxy
from ansible_collections.llmops.ray_vllm.plugins.module_utils._kube_proxy import (
    KubeProxyError,
    Transport,
    endpoint,
    module_transport,
    proxy_path,
    service_transport,
)
from ansible_collections.llmops.ray_vllm.tests.unit.failing_module import FailingModule
from ansible_collections.llmops.ray_vllm.tests.unit.json_http_server import json_server

CA_PEM = b"-----BEGIN CERTIFICATE-----\nMIIBdGVzdA==\n-----END CERTIFICATE-----\n"


def _kubeconfig(tmp_path, users, current="token"):
    data = base64.b64encode(CA_PEM).decode()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://10.1.2.3:6443", "certificate-authority-data": data}}],
        "users": [{"name": name, "user": user} for name, user in users.items()],
        "contexts": [{"name": name, "context": {"cluster": "c", "user": name}} for name in users],
        "current-context": current,
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.mark.parametrize(
    "port, expected",
    [
        ("8265", "/api/v1/namespaces/llm/services/head-svc:8265/proxy"),
        ("dashboard", "/api/v1/namespaces/llm/services/head-svc:dashboard/proxy"),
        (None, "/api/v1/namespaces/llm/services/head-svc/proxy"),
        ("", "/api/v1/namespaces/llm/services/head-svc/proxy"),
    ],
)
def test_proxy_path(port, expected):
    assert proxy_path("llm", "head-svc", port) == expected


def test_proxy_path_over_https_names_the_scheme_first():
    # kube-apiserver's [scheme:]name[:port] (net.SplitSchemeNamePort): it then speaks TLS to the pod.
    assert proxy_path("llm", "llm-vllm", "8000", "https") == "/api/v1/namespaces/llm/services/https:llm-vllm:8000/proxy"
    assert proxy_path("llm", "llm-vllm", "8000", "http") == "/api/v1/namespaces/llm/services/llm-vllm:8000/proxy"
    with pytest.raises(KubeProxyError, match="must be http or https"):
        proxy_path("llm", "llm-vllm", "8000", "ftp")


def test_token_user_gives_a_bearer_header_and_the_cluster_ca(tmp_path):
    path = _kubeconfig(tmp_path, {"token": {"token": "abc123"}})
    found = endpoint({"namespace": "llm", "name": "llm-vllm", "port": "http"}, kubeconfig=path)
    assert found["url"] == "https://10.1.2.3:6443/api/v1/namespaces/llm/services/llm-vllm:http/proxy"
    assert found["headers"] == {"Authorization": "Bearer abc123"}
    with open(found["ca_path"], "rb") as handle:
        assert handle.read() == CA_PEM
    assert found["client_cert"] is None and found["validate_certs"] is True


def test_certificate_context_gives_client_certificate_files(tmp_path):
    cert = base64.b64encode(b"CERT").decode()
    key = base64.b64encode(b"KEY").decode()
    users = {"token": {"token": "abc"}, "cert": {"client-certificate-data": cert, "client-key-data": key}}
    path = _kubeconfig(tmp_path, users)
    found = endpoint({"namespace": "llm", "name": "svc", "port": None}, kubeconfig=path, context="cert")
    assert found["headers"] == {}
    with open(found["client_cert"], "rb") as handle:
        assert handle.read() == b"CERT"
    with open(found["client_key"], "rb") as handle:
        assert handle.read() == b"KEY"


def test_unknown_context_names_the_file_and_context(tmp_path):
    path = _kubeconfig(tmp_path, {"token": {"token": "abc"}})
    with pytest.raises(KubeProxyError) as error:
        endpoint({"namespace": "llm", "name": "svc"}, kubeconfig=path, context="nope")
    assert path in str(error.value) and "context nope" in str(error.value)


def test_service_transport_carries_the_proxy_url_token_and_tls_files(tmp_path):
    cert = base64.b64encode(b"CERT").decode()
    key = base64.b64encode(b"KEY").decode()
    users = {"token": {"token": "abc"}, "cert": {"client-certificate-data": cert, "client-key-data": key}}
    path = _kubeconfig(tmp_path, users)
    by_token = service_transport({"namespace": "llm", "name": "llm-vllm", "port": "http"}, kubeconfig=path)
    assert by_token.url == "https://10.1.2.3:6443/api/v1/namespaces/llm/services/llm-vllm:http/proxy"
    assert by_token.headers == {"Authorization": "Bearer abc"} and by_token.validate_certs is True
    assert list(by_token.tls) == ["ca_path"]
    by_cert = service_transport({"namespace": "llm", "name": "svc"}, kubeconfig=path, context="cert")
    assert sorted(by_cert.tls) == ["ca_path", "client_cert", "client_key"] and by_cert.headers == {}


def test_the_transports_headers_win_and_the_callers_token_goes_as_x_ray_authorization():
    # The API server authenticates with Authorization and removes it; Ray's dashboard reads X-Ray-Authorization.
    transport = Transport("https://api:6443/proxy", headers={"Authorization": "Bearer api-server"})
    assert transport.with_headers({"Authorization": "Bearer ray-token", "X-API-Key": "k"}) == {
        "Authorization": "Bearer api-server",
        "X-Ray-Authorization": "Bearer ray-token",
        "X-API-Key": "k",
    }
    assert Transport("http://vllm:8000").tls == {} and Transport("http://vllm:8000").with_headers(None) == {}


def test_module_transport_reads_the_options_and_fails_with_the_callers_result(tmp_path):
    path = _kubeconfig(tmp_path, {"token": {"token": "abc"}})
    params = {"service": {"namespace": "llm", "name": "svc", "port": "8265"}, "kubeconfig": path, "context": None}
    given = json.loads(json.dumps(params))
    transport = module_transport(FailingModule(params), ready=False)
    assert transport.url.endswith("/services/svc:8265/proxy") and params == given
    wrong = FailingModule(dict(params, context="nope"))
    with pytest.raises(SystemExit):
        module_transport(wrong, ready=False, status="unreachable")
    assert wrong.failed["ready"] is False and wrong.failed["status"] == "unreachable"
    assert "context nope" in wrong.failed["msg"]


@pytest.fixture
def http_server():
    """A local HTTP server that answers every GET with the request's headers, as JSON."""
    with json_server(lambda headers: headers) as url:
        yield url


def test_fetch_sends_the_transport_headers_and_leaves_the_module_params_alone(tmp_path, http_server):
    args = {"validate_certs": True, "_ansible_remote_tmp": str(tmp_path), "_ansible_keep_remote_files": False}
    with patch_module_args(args):
        module = AnsibleModule(argument_spec=dict(validate_certs=dict(type="bool", default=True)))
    transport = Transport(http_server, headers={"Authorization": "Bearer abc"}, validate_certs=False)
    response, info = transport.fetch(module, http_server + "/api/cluster_status", headers={"Accept": "x/y"})
    assert info["status"] == 200
    sent = json.loads(response.read())
    assert sent["Authorization"] == "Bearer abc" and sent["Accept"] == "x/y"
    assert module.params == {"validate_certs": True}


def test_fetch_url_gets_the_transports_tls_settings(monkeypatch):
    seen = {}

    def fake_fetch_url(module, url, headers=None, ca_path=None, **kwargs):
        seen.update(params=dict(module.params), ca_path=ca_path, tmpdir=module.tmpdir)
        return None, {"status": -1}

    monkeypatch.setattr(_kube_proxy, "fetch_url", fake_fetch_url)
    module = FailingModule({"validate_certs": True, "client_cert": None, "timeout": 5})
    module.tmpdir = "/tmp/module-tmp"
    transport = Transport("https://api", validate_certs=False, ca_path="/ca.crt", client_cert="/c", client_key="/k")
    transport.fetch(module, "https://api/x")
    assert seen == {
        "params": {"validate_certs": False, "client_cert": "/c", "client_key": "/k", "timeout": 5},
        "ca_path": "/ca.crt",
        "tmpdir": "/tmp/module-tmp",
    }
    assert module.params == {"validate_certs": True, "client_cert": None, "timeout": 5}
