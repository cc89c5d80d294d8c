"""Service proxy endpoints built from real kubeconfigs (token, client certificate, contexts)."""

from __future__ import annotations

import base64

import pytest
import yaml

from ansible_collections.llmops.ray_vllm.plugins.module_utils._kube_proxy import KubeProxyError, endpoint, proxy_path

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
