# -*- coding: utf-8 -*-
# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""Tell the Kubernetes API server's own refusals (401, 403) from the refusals of the service behind its proxy.

Requests through ``services/<name>:<port>/proxy`` are answered either by the service (Ray's dashboard: a wrong Ray
token is 403; vLLM: a wrong API key is 401) or, before they get there, by the API server: its authorizer refuses a
kubeconfig user without the RBAC rule with a ``Status`` of reason ``Forbidden`` (kube-apiserver v1.33,
``responsewriters.Forbidden``). Those must not read as a wrong token or key: :func:`api_server_refusal` says which
it is, and what rule is missing.
"""

from __future__ import annotations

import json
import re

VERBS = {"GET": "get", "HEAD": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
LEAST_PRIVILEGE_DOC = "docs/least-privilege.md"
_CANNOT = re.compile(r'cannot (?P<verb>\S+) resource "(?P<resource>[^"]+)" in API group "(?P<group>[^"]*)"')


def api_server_status(body):
    """The API server's ``Status`` object in ``body`` (bytes, text or dict) when it is one with code 401 or 403."""
    if isinstance(body, (bytes, bytearray)):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            return None
    if not isinstance(body, dict) or body.get("kind") != "Status" or body.get("apiVersion") != "v1":
        return None
    if body.get("reason") not in ("Forbidden", "Unauthorized") or body.get("code") not in (401, 403):
        return None
    return body


def api_server_refusal(status, body, method="GET", where=""):
    """A message when ``status``/``body`` is the API server refusing the kubeconfig's user, else None."""
    if status not in (401, 403):
        return None
    refusal = api_server_status(body)
    if refusal is None:
        return None
    target = f" {method} {where}" if where else ""
    if refusal["code"] == 401:
        return (
            f"the Kubernetes API server refused{target}: 401 Unauthorized: the kubeconfig's credentials are not "
            "accepted (an expired or revoked token, a deleted ServiceAccount); check ray_vllm_kubeconfig and "
            "ray_vllm_kube_context"
        )
    message = refusal.get("message") or "Forbidden"
    match = _CANNOT.search(message)
    if match:
        rule = 'verb "{}" on resource "{}" of API group "{}"'.format(
            match.group("verb"), match.group("resource"), match.group("group")
        )
    else:
        rule = 'verb "{}" on what{} names'.format(VERBS.get(method.upper(), method.lower()), target or " it")
    return (
        f"the Kubernetes API server refused{target} (403 Forbidden, a permission problem of the kubeconfig's user, "
        f"not of the service behind the proxy): {message}. The user's Role or ClusterRole needs a rule granting "
        f"{rule}; {LEAST_PRIVILEGE_DOC} lists every rule the collection's roles need"
    )
