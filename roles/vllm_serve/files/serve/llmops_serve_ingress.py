# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Ray Serve LLM's OpenAI ingress with an API-key check (llmops.ray_vllm, several replicas behind one endpoint).

Ray Serve LLM has no API-key option. ``KeyedOpenAiIngress`` is Ray's ``OpenAiIngress`` plus a pure ASGI middleware
that answers 401 ``{"error": "Unauthorized"}`` (the body and status vLLM's own ``--api-key`` check gives) to a
request without the right key. The key comes as ``Authorization: Bearer <key>`` or, behind a Kubernetes API server
proxy that strips ``Authorization``, as ``X-API-Key``.

The key itself never reaches Serve: the application's config (shown by the Ray dashboard and ``serve status``)
carries only a PBKDF2-SHA256 digest of it (``api_key_digest``: salt, iterations, hex digest). A key that matched
once is remembered by its SHA-256, so only the first request of a client pays for the key derivation.

Used through Ray Serve LLM's public builder arguments::

    import_path: ray.serve.llm:build_openai_app
    args:
      ingress_cls_config:
        ingress_cls: llmops_serve_ingress:KeyedOpenAiIngress
        ingress_extra_kwargs: {api_key_digest: {salt: ..., iterations: ..., digest: ...}}

with this file in the application's ``runtime_env.working_dir``. The middleware wraps the ingress replica's ASGI
app where Serve sets it (``_set_asgi_app``, Ray 2.60's ``ASGIAppReplicaWrapper``); a Ray that no longer calls that
hook makes the replica fail its start with the message below instead of serving without the check.
"""

from __future__ import annotations

import hashlib
import hmac
import json

from ray.serve.llm.ingress import OpenAiIngress

__all__ = ["ApiKeyCheck", "ApiKeyMiddleware", "KeyedOpenAiIngress"]

_AUTHORIZATION = b"authorization"
_API_KEY = b"x-api-key"
_UNAUTHORIZED = json.dumps({"error": "Unauthorized"}).encode()
# Answered here, unguarded, as vLLM's own server does: 200 once this ingress replica serves. Whether the engines live
# is Serve's per-replica health check (serve_status reads it); whether they answer, a real completion.
HEALTH_PATH = "/health"
# Keys that matched, by SHA-256; bounded so that a flood of wrong keys cannot grow it (wrong keys are not stored).
_REMEMBERED_KEYS = 64


class ApiKeyCheck:
    """Whether a presented key matches ``digest`` (``{"salt", "iterations", "digest"}``, PBKDF2-SHA256, hex)."""

    def __init__(self, digest):
        self.salt = bytes.fromhex(digest["salt"])
        self.iterations = int(digest["iterations"])
        self.digest = bytes.fromhex(digest["digest"])
        self._matched = set()

    def matches(self, key):
        if not key:
            return False
        fingerprint = hashlib.sha256(key).digest()
        if fingerprint in self._matched:
            return True
        derived = hashlib.pbkdf2_hmac("sha256", key, self.salt, self.iterations)
        if not hmac.compare_digest(derived, self.digest):
            return False
        if len(self._matched) < _REMEMBERED_KEYS:
            self._matched.add(fingerprint)
        return True


def presented_key(headers):
    """The key an ASGI request carries: ``Authorization: Bearer K``, else ``X-API-Key: K``; bytes, or b""."""
    by_name = {name.lower(): value for name, value in headers}
    authorization = by_name.get(_AUTHORIZATION, b"")
    scheme, _sep, token = authorization.partition(b" ")
    if scheme.lower() == b"bearer" and token.strip():
        return token.strip()
    return by_name.get(_API_KEY, b"").strip()


class ApiKeyMiddleware:
    """Pure ASGI middleware: ``/health`` answers 200; other HTTP requests without the right key get 401; lifespan
    and the rest pass through."""

    def __init__(self, app, check):
        self.app = app
        self.check = check

    async def __call__(self, scope, receive, send):
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
        elif scope.get("path") == HEALTH_PATH:
            await _answer(send, 200, b"")
        elif not self.check.matches(presented_key(scope.get("headers") or [])):
            await _answer(send, 401, _UNAUTHORIZED, [(b"www-authenticate", b"Bearer")])
        else:
            await self.app(scope, receive, send)


async def _answer(send, status, body, headers=()):
    await send(
        {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json"), *headers]}
    )
    await send({"type": "http.response.body", "body": body})


class KeyedOpenAiIngress(OpenAiIngress):
    """OpenAiIngress whose HTTP app checks the API key first (``api_key_digest``; see the module's docstring)."""

    def __init__(self, llm_deployments, model_cards, *, api_key_digest=None, **kwargs):
        super().__init__(llm_deployments, model_cards, **kwargs)
        if not api_key_digest:
            raise ValueError(
                "KeyedOpenAiIngress needs api_key_digest (ingress_extra_kwargs); without it the endpoint would be "
                "open. llmops.ray_vllm's serve_app module computes it from the API key file."
            )
        self._llmops_key_check = ApiKeyCheck(api_key_digest)
        self._llmops_key_wrapped = False

    def _set_asgi_app(self, app):
        super()._set_asgi_app(ApiKeyMiddleware(app, self._llmops_key_check))
        self._llmops_key_wrapped = True

    async def check_health(self):
        if not self._llmops_key_wrapped:
            raise RuntimeError(
                "The API-key middleware was never installed: this Ray no longer sets the ingress app through "
                "_set_asgi_app, so the endpoint would be open. Pin Ray 2.60 or update llmops_serve_ingress.py."
            )
        await super().check_health()
