# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Authentication of extra bearer tokens, and the RBAC authorizer (Role, ClusterRole, RoleBinding,
ClusterRoleBinding), as kube-apiserver v1.33 does them.

What this follows (read in the Kubernetes v1.33 source, not copied):
- the request's attributes: `staging/src/k8s.io/apiserver/pkg/endpoints/request/requestinfo.go` (verb from the
  method, list/watch/deletecollection, the namespace of a namespace is itself, `metadata.name` field selectors name
  the object of a list or watch, subresources, the rest of a proxy path);
- rule matching: `pkg/apis/rbac/v1/evaluation_helpers.go` (verbs, API groups, resources with `*` and `*/<sub>`,
  resourceNames, nonResourceURLs with a trailing `*`);
- which bindings apply: `plugin/pkg/auth/authorizer/rbac/rbac.go` and `pkg/registry/rbac/validation/rule.go`
  (subjects User, Group, ServiceAccount; a RoleBinding grants only in its namespace; a missing role is a reason);
- the 403 body: `staging/src/k8s.io/apiserver/pkg/endpoints/handlers/responsewriters/errors.go` (forbiddenMessage)
  and `staging/src/k8s.io/apimachinery/pkg/api/errors/errors.go` (NewForbidden);
- service account user names and groups: `staging/src/k8s.io/apiserver/pkg/authentication/serviceaccount/util.go`;
- the default `system:discovery`, `system:basic-user` and `system:public-info-viewer` bindings to every
  authenticated user (`plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go`): discovery, /version, health.

Not emulated: aggregated ClusterRoles (aggregationRule), the escalation and `bind` checks on writing roles and
bindings, impersonation, SelfSubjectAccessReview/SubjectAccessReview, the other bootstrap roles (admin, edit, view,
system:*), Node and Webhook authorizers.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from urllib.parse import parse_qs

RBAC_GROUP = "rbac.authorization.k8s.io"
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
AUTHENTICATED = "system:authenticated"
# system:discovery and system:public-info-viewer, bound to system:authenticated by the bootstrap policy.
DEFAULT_NON_RESOURCE_URLS = (
    "/api",
    "/api/*",
    "/apis",
    "/apis/*",
    "/healthz",
    "/livez",
    "/readyz",
    "/openapi",
    "/openapi/*",
    "/version",
    "/version/",
)
NAMESPACE_SUBRESOURCES = ("status", "finalize")
UPGRADE_SUBRESOURCES = ("exec", "attach", "portforward")
WRITE_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple = ()

    @classmethod
    def service_account(cls, namespace: str, name: str) -> User:
        return cls(
            f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}",
            ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", AUTHENTICATED),
        )

    def service_account_ref(self):
        """(namespace, name) of a service account user, else None."""
        if not self.name.startswith(SERVICE_ACCOUNT_PREFIX):
            return None
        namespace, name = (self.name[len(SERVICE_ACCOUNT_PREFIX) :].split(":", 1) + [""])[:2]
        return namespace, name


@dataclass
class Attributes:
    """What the authorizer is asked: requestinfo.go's RequestInfo plus the user."""

    verb: str
    path: str
    resource_request: bool = False
    api_group: str = ""
    api_version: str = ""
    namespace: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""

    @property
    def resource_with_subresource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


def request_attributes(method: str, path: str, query: str = "") -> Attributes:
    """A request's authorization attributes, as requestinfo.go derives them."""
    method = method.upper()
    verb = "get" if method in ("GET", "HEAD") else WRITE_VERBS.get(method, method.lower())
    parts = [p for p in path.split("/") if p]
    if not parts or parts[0] not in ("api", "apis"):
        return Attributes(verb=verb, path=path)
    if parts[0] == "api":
        group, rest_at = "", 1
    else:
        if len(parts) < 3:
            return Attributes(verb=verb, path=path)
        group, rest_at = parts[1], 2
    if len(parts) < rest_at + 2:  # /api/v1, /apis/<group>/<version>: discovery
        return Attributes(verb=verb, path=path)
    version, rest = parts[rest_at], parts[rest_at + 1 :]
    info = Attributes(verb=verb, path=path, resource_request=True, api_group=group, api_version=version)
    if rest[0] == "namespaces" and len(rest) > 1:
        info.namespace = rest[1]
        if len(rest) > 2 and rest[2] not in NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    info.resource = rest[0]
    info.name = rest[1] if len(rest) > 1 else ""
    info.subresource = rest[2] if len(rest) > 2 else ""
    if not info.name:
        params = parse_qs(query)
        if verb == "get":
            info.verb = "watch" if (params.get("watch") or [""])[0].lower() in ("1", "true") else "list"
        elif verb == "delete":
            info.verb = "deletecollection"
        if info.verb in ("list", "watch"):
            info.name = _name_from_field_selector((params.get("fieldSelector") or [""])[0])
    return info


def _name_from_field_selector(selector: str) -> str:
    for term in selector.split(","):
        for operator in ("==", "="):
            key, sep, value = term.partition(operator)
            if sep and key.strip() == "metadata.name" and "!" not in key:
                return value.strip()
    return ""


# ---- rules ------------------------------------------------------------------------------------------------------
def _verb_matches(rule, verb):
    verbs = rule.get("verbs") or []
    return "*" in verbs or verb in verbs


def _group_matches(rule, group):
    groups = rule.get("apiGroups") or []
    return "*" in groups or group in groups


def _resource_matches(rule, attributes):
    combined = attributes.resource_with_subresource
    for resource in rule.get("resources") or []:
        if resource == "*" or resource == combined:
            return True
        if attributes.subresource and resource == "*/" + attributes.subresource:
            return True
    return False


def _name_matches(rule, name):
    names = rule.get("resourceNames") or []
    return not names or name in names


def _non_resource_matches(rule, path):
    for url in rule.get("nonResourceURLs") or []:
        if url == "*" or url == path or (url.endswith("*") and path.startswith(url[:-1])):
            return True
    return False


def rule_allows(rule: dict, attributes: Attributes) -> bool:
    """One PolicyRule against one request (evaluation_helpers.go's RuleAllows)."""
    if attributes.resource_request:
        return (
            _verb_matches(rule, attributes.verb)
            and _group_matches(rule, attributes.api_group)
            and _resource_matches(rule, attributes)
            and _name_matches(rule, attributes.name)
        )
    return _verb_matches(rule, attributes.verb) and _non_resource_matches(rule, attributes.path)


def _subject_matches(subject: dict, user: User, binding_namespace: str) -> bool:
    kind = subject.get("kind")
    if kind == "User":
        return subject.get("name") == user.name
    if kind == "Group":
        return subject.get("name") in user.groups
    if kind == "ServiceAccount":
        ref = user.service_account_ref()
        return ref is not None and ref == (subject.get("namespace") or binding_namespace, subject.get("name"))
    return False


def _default_allows(attributes: Attributes) -> bool:
    if attributes.resource_request:
        # system:basic-user: reviews about oneself.
        return (
            attributes.api_group == "authorization.k8s.io"
            and attributes.verb == "create"
            and (attributes.resource in ("selfsubjectaccessreviews", "selfsubjectrulesreviews"))
        )
    rule = {"verbs": ["get"], "nonResourceURLs": list(DEFAULT_NON_RESOURCE_URLS)}
    return rule_allows(rule, attributes)


def authorize(lookup, user: User, attributes: Attributes) -> tuple[bool, str]:
    """(allowed, reason). ``lookup(kind, namespace)`` lists the stored RBAC objects of a kind (namespace "" for
    cluster-scoped kinds or for all namespaces)."""
    if AUTHENTICATED in user.groups and _default_allows(attributes):
        return True, ""
    errors = []

    def rules_of(role_ref, binding_namespace):
        kind, name = role_ref.get("kind"), role_ref.get("name")
        scope = binding_namespace if kind == "Role" else ""
        found = [r for r in lookup(kind, scope) if r["metadata"]["name"] == name]
        if not found:
            errors.append(f'{kind.lower()}.{RBAC_GROUP} "{name}" not found')
            return []
        return found[0].get("rules") or []

    for binding in lookup("ClusterRoleBinding", ""):
        if any(_subject_matches(s, user, "") for s in binding.get("subjects") or []):
            if any(rule_allows(rule, attributes) for rule in rules_of(binding.get("roleRef") or {}, "")):
                return True, ""
    if attributes.namespace:
        for binding in lookup("RoleBinding", attributes.namespace):
            namespace = binding["metadata"]["namespace"]
            if any(_subject_matches(s, user, namespace) for s in binding.get("subjects") or []):
                if any(rule_allows(rule, attributes) for rule in rules_of(binding.get("roleRef") or {}, namespace)):
                    return True, ""
    return False, ("RBAC: " + ", ".join(errors)) if errors else ""


def forbidden_status(user: User, attributes: Attributes, reason: str = "") -> dict:
    """The 403 Status kube-apiserver writes (responsewriters.Forbidden, errors.NewForbidden)."""
    if not attributes.resource_request:
        message = f'User "{user.name}" cannot {attributes.verb} path "{attributes.path}"'
    elif attributes.namespace:
        message = (
            f'User "{user.name}" cannot {attributes.verb} resource "{attributes.resource_with_subresource}" '
            f'in API group "{attributes.api_group}" in the namespace "{attributes.namespace}"'
        )
    else:
        message = (
            f'User "{user.name}" cannot {attributes.verb} resource "{attributes.resource_with_subresource}" '
            f'in API group "{attributes.api_group}" at the cluster scope'
        )
    if reason:
        message = f"{message}: {reason}"
    details = {}
    if attributes.resource_request:
        qualified = attributes.resource + (f".{attributes.api_group}" if attributes.api_group else "")
        if attributes.name:
            message = f'{qualified} "{attributes.name}" is forbidden: {message}'
        else:
            message = f"{qualified} is forbidden: {message}"
        if attributes.name:
            details["name"] = attributes.name
        if attributes.api_group:
            details["group"] = attributes.api_group
        details["kind"] = attributes.resource
    else:
        message = f"forbidden: {message}"
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "Forbidden",
        "details": details,
        "code": 403,
    }


# ---- the test bed's side: tokens, switch, audit ----------------------------------------------------------------
@dataclass
class Authorizer:
    """Per test bed: minted tokens, whether RBAC decides, and what non-admin users asked for (the audit)."""

    enabled: bool = False
    tokens: dict = field(default_factory=dict)  # token -> User
    audit: list = field(default_factory=list)  # one dict per request of a minted token

    def mint(self, *, service_account: str = "", user: str = "", groups=()) -> tuple[str, User]:
        """A token for ``<namespace>/<name>`` of a service account, or for a user (with extra groups)."""
        if bool(service_account) == bool(user):
            raise ValueError("give either serviceAccount (<namespace>/<name>) or user")
        if service_account:
            namespace, sep, name = service_account.partition("/")
            if not sep or not namespace or not name:
                raise ValueError(f"serviceAccount {service_account!r} must look like <namespace>/<name>")
            principal = User.service_account(namespace, name)
        else:
            principal = User(user, tuple(dict.fromkeys([*groups, AUTHENTICATED])))
        token = secrets.token_urlsafe(24)
        self.tokens[token] = principal
        return token, principal

    def user_for(self, header: str):
        if not header.startswith("Bearer "):
            return None
        return self.tokens.get(header[len("Bearer ") :])

    def check(self, lookup, user: User, method: str, path: str, query: str):
        """None when allowed, else the 403 Status body. Every request is recorded in ``audit``."""
        attributes = request_attributes(method, path, query)
        allowed, reason = (True, "") if not self.enabled else authorize(lookup, user, attributes)
        if allowed and self.enabled and attributes.verb == "get" and attributes.subresource in UPGRADE_SUBRESOURCES:
            # A websocket upgrade (GET) of exec, attach or portforward needs create too (Kubernetes >= 1.30:
            # AuthorizePodWebsocketUpgradeCreatePermission), and is refused as a create when that is missing.
            attributes.verb = "create"
            allowed, reason = authorize(lookup, user, attributes)
        self.audit.append(
            {
                "user": user.name,
                "verb": attributes.verb,
                "group": attributes.api_group,
                "resource": attributes.resource_with_subresource,
                "namespace": attributes.namespace,
                "name": attributes.name,
                "path": "" if attributes.resource_request else attributes.path,
                "allowed": allowed,
            }
        )
        return None if allowed else forbidden_status(user, attributes, reason)

    def admin(self, method: str, parts: list, body: dict, service_account_exists) -> tuple[dict, int]:
        """The admin API's ``rbac`` and ``tokens`` requests: (answer, HTTP status). ValueError: a bad request;
        LookupError: no such endpoint."""
        if parts == ["rbac"] and method == "GET":
            return {"enabled": self.enabled, "audit": self.audit}, 200
        if parts == ["rbac"] and method == "PUT":
            self.enabled = bool(body.get("enabled"))
            return {"enabled": self.enabled}, 200
        if parts == ["rbac", "audit"] and method == "DELETE":
            self.audit.clear()
            return {}, 200
        if parts == ["tokens"] and method == "POST":
            service_account = body.get("serviceAccount") or ""
            if service_account and not service_account_exists(*service_account.partition("/")[::2]):
                raise ValueError(f"no ServiceAccount {service_account}: create it first (the token needs it)")
            token, principal = self.mint(
                service_account=service_account, user=body.get("user") or "", groups=body.get("groups") or ()
            )
            return {"token": token, "user": principal.name, "groups": list(principal.groups)}, 201
        raise LookupError(method)
