"""The API-key ingress that Ray Serve runs (roles/vllm_serve/files/serve/llmops_serve_ingress.py), as pure ASGI:
imported with the real Ray 2.60 it subclasses, driven with ASGI messages. The digest it checks is the one
plugins/module_utils/_serve_llm.py computes for the application's config, so the two sides are tested together.
The deployed ingress answering 401 and 200 is tested in test_site_local_replicas.py.
"""

from __future__ import annotations

import asyncio
import importlib
import sys

import pytest
import vllm_local
from playbook_runner import REPO


def imported(name):
    """The ingress module (from the role's files) or the collection's _serve_llm, with their paths importable."""
    vllm_local.collections_path()
    folder = str(REPO / "roles" / "vllm_serve" / "files" / "serve")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module(name)


ingress = imported("llmops_serve_ingress")
api_key_digest = imported("ansible_collections.llmops.ray_vllm.plugins.module_utils._serve_llm").api_key_digest

pytestmark = pytest.mark.integration
KEY = "k" * 40


def call(path, headers=(), scope_type="http"):
    """``(status, body, whether the app behind was reached)`` for one request through the middleware."""
    reached = []
    sent = []

    async def app(scope, receive, send):
        reached.append(scope["path"] if scope_type == "http" else scope_type)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"from the app"})

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b""}

    middleware = ingress.ApiKeyMiddleware(app, ingress.ApiKeyCheck(api_key_digest(KEY, "llm")))
    scope = {"type": scope_type, "path": path, "headers": [(name.encode(), value.encode()) for name, value in headers]}
    asyncio.run(middleware(scope, receive, send))
    status = next((m["status"] for m in sent if m["type"] == "http.response.start"), None)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body, bool(reached)


def test_a_request_without_the_key_gets_vllms_401():
    assert call("/v1/models") == (401, b'{"error": "Unauthorized"}', False)


def test_a_wrong_key_gets_401():
    assert call("/v1/models", [("authorization", "Bearer " + "x" * 40)])[:2] == (401, b'{"error": "Unauthorized"}')


def test_the_key_as_bearer_or_x_api_key_reaches_the_app():
    assert call("/v1/chat/completions", [("Authorization", "Bearer " + KEY)]) == (200, b"from the app", True)
    assert call("/v1/chat/completions", [("x-api-key", KEY)]) == (200, b"from the app", True)


def test_health_answers_without_a_key_and_other_scopes_pass():
    assert call("/health") == (200, b"", False)
    assert call("", scope_type="lifespan")[2] is True


def test_the_digest_of_another_application_does_not_take_the_key():
    other = ingress.ApiKeyCheck(api_key_digest(KEY, "another-app"))
    assert other.matches(KEY.encode()) is True
    assert api_key_digest(KEY, "llm") != api_key_digest(KEY, "another-app")
    assert api_key_digest(KEY, "llm") == api_key_digest(KEY, "llm")


def test_an_ingress_without_a_digest_refuses_to_start():
    with pytest.raises(ValueError, match="api_key_digest"):
        ingress.KeyedOpenAiIngress({}, {})
