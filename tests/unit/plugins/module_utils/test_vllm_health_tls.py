"""vllm_health against a real TLS listener on this host: the certificate verified with a CA, a wrong CA, the wrong
scheme either way. The listener is Python's own HTTP server wrapped in TLS with a certificate made here (what vLLM's
uvicorn does with --ssl-certfile); the same checks against a real vLLM are tests/integration/test_vllm_tls.py."""

from __future__ import annotations

import http.server
import json
import ssl
import threading

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from ansible_collections.llmops.ray_vllm.plugins.module_utils import _vllm_health as health
from ansible_collections.llmops.ray_vllm.tests.unit.plugins.module_utils.test_tls_check import key_pem, sign


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"path": self.path}).encode()
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _serve(context=None):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    ca_key, other_key, server_key = (ec.generate_private_key(ec.SECP256R1()) for dummy in range(3))
    files = {
        "ca.crt": sign("test-ca", "test-ca", ca_key.public_key(), ca_key, ca=True),
        "other-ca.crt": sign("other-ca", "other-ca", other_key.public_key(), other_key, ca=True),
        "server.crt": sign("vllm", "test-ca", server_key.public_key(), ca_key),
        "server.key": key_pem(server_key),
    }
    for name, text in files.items():
        (folder / name).write_text(text)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(folder / "server.crt"), str(folder / "server.key"))
    tls_server, plain_server = _serve(context), _serve()
    yield {
        "https": f"https://127.0.0.1:{tls_server.server_address[1]}",
        "plain_port": plain_server.server_address[1],
        "tls_port": tls_server.server_address[1],
        "ca": str(folder / "ca.crt"),
        "other_ca": str(folder / "other-ca.crt"),
    }
    for server in (tls_server, plain_server):
        server.shutdown()
        server.server_close()


def test_the_certificate_verifies_with_its_ca(servers):
    answer = health.http_exchange(servers["https"] + "/health", tls={"ca_path": servers["ca"]}, timeout=5)
    assert answer["status"] == 200, answer


def test_a_wrong_ca_is_a_tls_error_naming_the_certificate_problem(servers):
    result = health.observe(servers["https"], tls={"ca_path": servers["other_ca"]}, request_timeout=5)
    assert result["status"] == "tls_error" and not result["ready"]
    problem = result["problems"][0]
    assert "certificate does not verify" in problem and "CERTIFICATE_VERIFY_FAILED" in problem
    assert f"ca_path={servers['other_ca']}" in problem and "names 127.0.0.1 in its subjectAltName" in problem
    assert "Waiting does not help" in result["msg"]


def test_plain_http_to_a_tls_server_says_use_https(servers):
    result = health.observe(f"http://127.0.0.1:{servers['tls_port']}", request_timeout=5)
    assert result["status"] == "tls_error"
    assert "is plain http, but the server there serves TLS" in result["problems"][0]
    assert "over https it answered 200" in result["problems"][0]


def test_https_to_a_plain_server_says_it_speaks_http(servers):
    result = health.observe(f"https://127.0.0.1:{servers['plain_port']}", tls={"ca_path": servers["ca"]})
    assert result["status"] == "tls_error"
    assert "the server speaks plain HTTP, not TLS" in result["problems"][0], result["problems"]


def test_plain_http_to_nothing_listening_stays_unreachable(servers):
    # The https look is only taken when a connection was accepted without an answer.
    server = _serve()
    port = server.server_address[1]
    server.shutdown()
    server.server_close()
    assert health.observe(f"http://127.0.0.1:{port}", request_timeout=5)["status"] == "unreachable"


@pytest.mark.parametrize(
    "error",
    [
        # Go's crypto/tls client (kube-apiserver, service.scheme https) meeting a plain HTTP server.
        "tls: first record does not look like a TLS handshake",
        # Go's net/http transport in the same case.
        "http: server gave HTTP response to HTTPS client",
    ],
)
def test_a_proxy_that_speaks_another_scheme_is_a_tls_error(error):
    # The shape of kube-apiserver's proxy answer (a 503 Status "error trying to reach service: <Go error>"), made
    # here: the test bed's proxy is Python and does not produce Go's texts.
    body = json.dumps({"kind": "Status", "code": 503, "message": f"error trying to reach service: {error}"})
    failed = {"url": "x", "status": 503, "body": body, "error": None, "error_kind": None}
    observed = {"url": "https://api:6443/api/v1/namespaces/llm/services/https:llm-vllm:8000/proxy", "health": failed}
    status, problems = health.classify(observed, completion_wanted=False)
    assert status == "tls_error" and "set service.scheme to https exactly when the server serves TLS" in problems[0]
