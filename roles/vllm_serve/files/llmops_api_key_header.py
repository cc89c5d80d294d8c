# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Let vLLM accept its API key in an ``X-API-Key`` header (llmops.ray_vllm, platform kubernetes).

A Kubernetes API server removes the ``Authorization`` header of a request it has authenticated before it proxies
the request to a service, so a key sent through ``/api/v1/namespaces/<ns>/services/<svc>:<port>/proxy/`` never
reaches vLLM in that header. This pure ASGI middleware copies ``X-API-Key`` into ``Authorization: Bearer <key>``
for HTTP requests that carry no ``Authorization`` header; every other request passes through untouched, and vLLM's
own AuthenticationMiddleware still decides whether the key is right.

Loaded with ``--middleware llmops_api_key_header.ApiKeyHeaderMiddleware`` (the file's directory on PYTHONPATH).
vLLM adds ``--middleware`` classes after its AuthenticationMiddleware, and Starlette runs the middleware added last
first, so this one sees the request before the key is checked. Standard library only.
"""

from __future__ import annotations

__all__ = ["ApiKeyHeaderMiddleware"]

_AUTHORIZATION = b"authorization"
_API_KEY = b"x-api-key"


class ApiKeyHeaderMiddleware:
    """ASGI middleware: ``x-api-key: K`` without ``authorization`` becomes ``authorization: Bearer K``."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope.get("type") == "http":
            headers = scope.get("headers") or []
            # ASGI header names are lower-case bytes.
            names = [name.lower() for name, _value in headers]
            if _AUTHORIZATION not in names and _API_KEY in names:
                key = headers[names.index(_API_KEY)][1].strip()
                if key:
                    scope = dict(scope)
                    scope["headers"] = [*headers, (_AUTHORIZATION, b"Bearer " + key)]
        await self.app(scope, receive, send)
