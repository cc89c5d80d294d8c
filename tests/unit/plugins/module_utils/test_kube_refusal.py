"""The API server's own refusals through the service proxy, told from the service's (a Ray token, a vLLM key).

The refusal bodies come from the test bed's RBAC (tests/k8s_testbed/rbac.py), which writes kube-apiserver's 403."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from ansible_collections.llmops.ray_vllm.plugins.module_utils._kube_refusal import api_server_refusal
from ansible_collections.llmops.ray_vllm.plugins.module_utils._ray_job import describe_http_error
from ansible_collections.llmops.ray_vllm.plugins.module_utils._vllm_health import classify

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from k8s_testbed import rbac

PATH = "/api/v1/namespaces/llm/services/llm-raycluster-head-svc:8265/proxy/api/serve/applications/"
USER = rbac.User.service_account("llm", "ray-vllm-deployer")


def _forbidden(method, path):
    return json.dumps(rbac.forbidden_status(USER, rbac.request_attributes(method, path)))


def test_an_rbac_refusal_names_the_verb_the_resource_and_the_fix():
    message = api_server_refusal(403, _forbidden("PUT", PATH), "PUT", "https://api" + PATH)
    assert message.startswith(f"the Kubernetes API server refused PUT https://api{PATH} (403 Forbidden, a permission")
    assert 'User "system:serviceaccount:llm:ray-vllm-deployer" cannot update resource "services/proxy"' in message
    assert 'needs a rule granting verb "update" on resource "services/proxy" of API group ""' in message
    assert "docs/least-privilege.md" in message


def test_the_ray_clients_message_is_the_refusal_not_a_wrong_ray_token():
    message = describe_http_error("https://api/x", "GET", "/api/jobs/", 403, _forbidden("GET", PATH))
    assert "permission problem" in message and "Ray token" not in message
    # The dashboard's own 403 (a wrong Ray token) still reads as one.
    ray = describe_http_error("https://api/x", "GET", "/api/jobs/", 403, "Forbidden: invalid token")
    assert "Ray token wrong" in ray and "permission problem" not in ray


@pytest.mark.parametrize(
    "status, body",
    [
        (403, "Forbidden: invalid token"),  # Ray's dashboard
        (401, json.dumps({"error": "Unauthorized"})),  # vLLM's API key
        (403, json.dumps({"kind": "Status", "apiVersion": "v1", "reason": "NotFound", "code": 404})),
        (503, _forbidden("GET", PATH)),
    ],
)
def test_other_answers_are_not_the_api_servers_refusal(status, body):
    assert api_server_refusal(status, body) is None


def test_an_unauthorized_token():
    body = json.dumps(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "message": "Unauthorized",
            "reason": "Unauthorized",
            "code": 401,
        }
    )
    assert "credentials are not accepted" in api_server_refusal(401, body.encode())


def _exchange(status, body):
    return {"url": "", "status": status, "body": body, "error": None, "error_kind": None}


def test_vllm_health_says_the_api_server_refused_not_the_api_key():
    vllm = "/api/v1/namespaces/llm/services/llm-vllm:8000/proxy"
    ok = _exchange(200, "")
    models = _exchange(200, json.dumps({"data": [{"id": "m"}]}))
    refused = _exchange(403, _forbidden("POST", vllm + "/v1/chat/completions"))
    observation = {"url": "https://api" + vllm, "health": ok, "models": models, "completion": refused}
    status, problems = classify(observation, model="m")
    assert status == "unauthorized" and problems[0].startswith(
        f"the Kubernetes API server refused POST https://api{vllm}"
    )
    assert 'cannot create resource "services/proxy"' in problems[0] and "API key" not in problems[0]
    # vLLM's own 401 (a wrong key) still reads as one.
    observation["completion"] = _exchange(401, json.dumps({"error": "Unauthorized"}))
    status, problems = classify(observation, model="m")
    assert status == "unauthorized" and "permission problem" not in problems[0]
