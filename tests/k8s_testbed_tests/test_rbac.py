# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The test bed's RBAC (tests/k8s_testbed/rbac.py): request attributes, rule matching, bindings, the 403 body,
and minted tokens on a running test bed (the real `kubernetes` client reading the refusal)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from k8s_testbed import rbac
from k8s_testbed.harness import RunningTestBed

SA = rbac.User.service_account("llm", "deployer")


@pytest.mark.parametrize(
    "method, path, query, expected",
    [
        ("GET", "/api/v1/namespaces/llm/pods", "", ("list", "", "llm", "pods", "")),
        ("GET", "/api/v1/namespaces/llm/pods", "watch=true", ("watch", "", "llm", "pods", "")),
        ("GET", "/api/v1/namespaces/llm/pods", "fieldSelector=metadata.name%3Dp1", ("list", "", "llm", "pods", "p1")),
        ("GET", "/api/v1/namespaces/llm/pods/p1/log", "", ("get", "", "llm", "pods/log", "p1")),
        ("POST", "/api/v1/namespaces/llm/pods/p1/exec", "", ("create", "", "llm", "pods/exec", "p1")),
        (
            "GET",
            "/api/v1/namespaces/llm/services/s:8265/proxy/api/x",
            "",
            ("get", "", "llm", "services/proxy", "s:8265"),
        ),
        (
            "POST",
            "/api/v1/namespaces/llm/services/s:8265/proxy/",
            "",
            ("create", "", "llm", "services/proxy", "s:8265"),
        ),
        (
            "DELETE",
            "/apis/apps/v1/namespaces/llm/deployments",
            "",
            ("deletecollection", "apps", "llm", "deployments", ""),
        ),
        ("PATCH", "/apis/ray.io/v1/namespaces/llm/rayclusters/c", "", ("patch", "ray.io", "llm", "rayclusters", "c")),
        (
            "PUT",
            "/apis/apps/v1/namespaces/llm/deployments/d/scale",
            "",
            ("update", "apps", "llm", "deployments/scale", "d"),
        ),
        ("GET", "/api/v1/nodes", "", ("list", "", "", "nodes", "")),
        # The namespace of a namespace is itself; status and finalize are its subresources.
        ("GET", "/api/v1/namespaces/llm", "", ("get", "", "llm", "namespaces", "llm")),
        ("PUT", "/api/v1/namespaces/llm/finalize", "", ("update", "", "llm", "namespaces/finalize", "llm")),
        ("POST", "/api/v1/namespaces", "", ("create", "", "", "namespaces", "")),
    ],
)
def test_request_attributes(method, path, query, expected):
    attributes = rbac.request_attributes(method, path, query)
    assert attributes.resource_request
    seen = (attributes.verb, attributes.api_group, attributes.namespace)
    assert seen + (attributes.resource_with_subresource, attributes.name) == expected


@pytest.mark.parametrize("path", ["/api", "/api/v1", "/apis/apps/v1", "/version", "/openapi/v2", "/metrics"])
def test_non_resource_paths(path):
    attributes = rbac.request_attributes("GET", path)
    assert not attributes.resource_request and attributes.path == path


def _allows(rule, method, path, query=""):
    return rbac.rule_allows(rule, rbac.request_attributes(method, path, query))


def test_rules_match_verbs_groups_resources_names_and_wildcards():
    pods_log = {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}
    assert _allows(pods_log, "GET", "/api/v1/namespaces/llm/pods/p/log")
    assert not _allows(pods_log, "GET", "/api/v1/namespaces/llm/pods/p")  # the subresource is not the resource
    assert not _allows(
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]}, "GET", "/api/v1/namespaces/l/pods/p/log"
    )
    assert _allows(
        {"apiGroups": [""], "resources": ["*/log"], "verbs": ["get"]}, "GET", "/api/v1/namespaces/l/pods/p/log"
    )
    assert _allows({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}, "DELETE", "/apis/ray.io/v1/rayclusters")
    proxy = {
        "apiGroups": [""],
        "resources": ["services/proxy"],
        "verbs": ["get", "create"],
        "resourceNames": ["s:8265"],
    }
    assert _allows(proxy, "POST", "/api/v1/namespaces/llm/services/s:8265/proxy/api/jobs/")
    assert not _allows(proxy, "DELETE", "/api/v1/namespaces/llm/services/s:8265/proxy/api/jobs/x")
    assert not _allows(proxy, "GET", "/api/v1/namespaces/llm/services/s:8000/proxy/")
    apps = {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"], "resourceNames": ["d"]}
    assert not _allows(apps, "GET", "/api/v1/namespaces/llm/deployments/d")  # the core group is not apps
    assert not _allows(apps, "GET", "/apis/apps/v1/namespaces/llm/deployments")  # a list has no name
    assert _allows(
        {**apps, "verbs": ["list"]}, "GET", "/apis/apps/v1/namespaces/llm/deployments", "fieldSelector=metadata.name=d"
    )
    urls = {"verbs": ["get"], "nonResourceURLs": ["/metrics", "/logs/*"]}
    assert _allows(urls, "GET", "/metrics") and _allows(urls, "GET", "/logs/a/b")
    assert not _allows(urls, "GET", "/metricsx") and not _allows(urls, "POST", "/metrics")


def _store(*objects):
    def lookup(kind, namespace):
        return [
            o for o in objects if o["kind"] == kind and (not namespace or o["metadata"].get("namespace") == namespace)
        ]

    return lookup


def _role(kind, name, rules, namespace=None):
    metadata = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"kind": kind, "metadata": metadata, "rules": rules}


def _binding(kind, name, role_kind, role, subjects, namespace=None):
    metadata = {"name": name, **({"namespace": namespace} if namespace else {})}
    role_ref = {"apiGroup": rbac.RBAC_GROUP, "kind": role_kind, "name": role}
    return {"kind": kind, "metadata": metadata, "roleRef": role_ref, "subjects": subjects}


def _decide(lookup, user, method, path, query=""):
    return rbac.authorize(lookup, user, rbac.request_attributes(method, path, query))


def test_bindings_grant_where_they_are_and_to_whom_they_name():
    read_pods = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]
    lookup = _store(
        _role("Role", "pods", read_pods, "llm"),
        _binding("RoleBinding", "b", "Role", "pods", [{"kind": "ServiceAccount", "name": "deployer"}], "llm"),
        _role("ClusterRole", "nodes", [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"]}]),
        _binding("ClusterRoleBinding", "n", "ClusterRole", "nodes", [{"kind": "Group", "name": "ops"}]),
        _role("ClusterRole", "pods-anywhere", read_pods),
        _binding("RoleBinding", "c", "ClusterRole", "pods-anywhere", [{"kind": "User", "name": "alice"}], "team"),
    )
    assert _decide(lookup, SA, "GET", "/api/v1/namespaces/llm/pods") == (True, "")
    assert _decide(lookup, SA, "GET", "/api/v1/namespaces/other/pods")[0] is False
    assert _decide(lookup, SA, "DELETE", "/api/v1/namespaces/llm/pods/p")[0] is False
    assert (
        _decide(lookup, rbac.User.service_account("other", "deployer"), "GET", "/api/v1/namespaces/llm/pods")[0]
        is False
    )
    assert _decide(lookup, SA, "GET", "/api/v1/nodes")[0] is False
    ops = rbac.User("bob", ("ops", rbac.AUTHENTICATED))
    assert _decide(lookup, ops, "GET", "/api/v1/nodes")[0] is True
    alice = rbac.User("alice", (rbac.AUTHENTICATED,))
    assert _decide(lookup, alice, "GET", "/api/v1/namespaces/team/pods")[0] is True
    assert _decide(lookup, alice, "GET", "/api/v1/namespaces/llm/pods")[0] is False  # a RoleBinding: its namespace
    assert _decide(lookup, alice, "GET", "/api/v1/pods")[0] is False  # nor all namespaces
    # Discovery and /version for every authenticated user (system:discovery, system:public-info-viewer).
    assert _decide(lookup, SA, "GET", "/apis")[0] and _decide(lookup, SA, "GET", "/version")[0]
    assert not _decide(lookup, SA, "GET", "/metrics")[0]


def test_a_missing_role_is_the_reason():
    lookup = _store(_binding("RoleBinding", "b", "Role", "gone", [{"kind": "User", "name": "u"}], "llm"))
    allowed, reason = _decide(lookup, rbac.User("u", (rbac.AUTHENTICATED,)), "GET", "/api/v1/namespaces/llm/pods")
    assert not allowed and reason == 'RBAC: role.rbac.authorization.k8s.io "gone" not found'


def test_forbidden_bodies_are_the_api_servers():
    user = rbac.User.service_account("llm", "deployer")
    named = rbac.forbidden_status(user, rbac.request_attributes("GET", "/api/v1/namespaces/llm/pods/p1/log"))
    assert named == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'pods "p1" is forbidden: User "system:serviceaccount:llm:deployer" cannot get resource "pods/log" '
        'in API group "" in the namespace "llm"',
        "reason": "Forbidden",
        "details": {"name": "p1", "kind": "pods"},
        "code": 403,
    }
    listed = rbac.forbidden_status(user, rbac.request_attributes("GET", "/apis/storage.k8s.io/v1/storageclasses"))
    assert listed["message"] == (
        'storageclasses.storage.k8s.io is forbidden: User "system:serviceaccount:llm:deployer" cannot list resource '
        '"storageclasses" in API group "storage.k8s.io" at the cluster scope'
    )
    assert listed["details"] == {"group": "storage.k8s.io", "kind": "storageclasses"}
    path = rbac.forbidden_status(user, rbac.request_attributes("GET", "/metrics"))
    assert path["message"] == 'forbidden: User "system:serviceaccount:llm:deployer" cannot get path "/metrics"'


@pytest.fixture(scope="module")
def rbac_bed(tmp_path_factory):
    with RunningTestBed(tmp_path_factory.mktemp("rbac-testbed"), rbac=True) as bed:
        for doc in (
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "llm"}},
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "deployer", "namespace": "llm"}},
        ):
            path = "/api/v1/namespaces" + ("/llm/serviceaccounts" if doc["kind"] == "ServiceAccount" else "")
            assert bed.request("POST", path, doc)[0] == 201
        role = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "config", "namespace": "llm"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "create"]}],
        }
        binding = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "config", "namespace": "llm"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "config"},
            "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": "llm"}],
        }
        assert bed.request("POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/llm/roles", role)[0] == 201
        assert bed.request("POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/llm/rolebindings", binding)[0] == 201
        yield bed


def test_a_minted_token_gets_what_its_bindings_grant(rbac_bed):
    token = rbac_bed.mint_token(service_account="llm/deployer")
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}}
    assert rbac_bed.request("POST", "/api/v1/namespaces/llm/configmaps", cm, token=token)[0] == 201
    assert rbac_bed.request("GET", "/api/v1/namespaces/llm/configmaps/c", token=token)[0] == 200
    status, body = rbac_bed.request("DELETE", "/api/v1/namespaces/llm/configmaps/c", token=token)
    assert status == 403 and body["message"] == (
        'configmaps "c" is forbidden: User "system:serviceaccount:llm:deployer" cannot delete resource "configmaps" '
        'in API group "" in the namespace "llm"'
    )
    assert rbac_bed.request("GET", "/api/v1/namespaces/default/configmaps", token=token)[0] == 403
    assert rbac_bed.request("GET", "/apis", token=token)[0] == 200  # discovery for every authenticated user
    assert rbac_bed.request("GET", "/testbed/v1/state", token=token)[0] == 403  # the admin API is the admin's
    assert rbac_bed.request("GET", "/api/v1/namespaces/llm/configmaps", token="not-minted")[0] == 401
    # The admin token stays all-powerful; every request of a minted token is in the audit.
    assert rbac_bed.request("DELETE", "/api/v1/namespaces/llm/configmaps/c")[0] == 200
    audit = rbac_bed.admin("GET", "rbac")["audit"]
    assert {"verb": "delete", "resource": "configmaps", "allowed": False}.items() <= audit[2].items()


def test_the_real_client_sees_the_403(rbac_bed, tmp_path):
    from kubernetes import client, config
    from kubernetes.client.rest import ApiException

    token = rbac_bed.mint_token(service_account="llm/deployer")
    api = client.CoreV1Api(config.new_client_from_config(config_file=rbac_bed.kubeconfig_for(token, tmp_path / "kc")))
    assert api.list_namespaced_config_map("llm").kind == "ConfigMapList"
    with pytest.raises(ApiException) as raised:
        api.list_namespaced_secret("llm")
    body = json.loads(raised.value.body)
    assert raised.value.status == 403 and body["reason"] == "Forbidden"
    assert 'cannot list resource "secrets" in API group "" in the namespace "llm"' in body["message"]


def test_a_user_token_and_switching_rbac_off(rbac_bed):
    token = rbac_bed.mint_token(user="alice", groups=["team"])
    assert rbac_bed.request("GET", "/api/v1/nodes", token=token)[0] == 403
    rbac_bed.admin("PUT", "rbac", {"enabled": False})
    try:
        assert rbac_bed.request("GET", "/api/v1/nodes", token=token)[0] == 200  # authenticated, always allowed
    finally:
        rbac_bed.admin("PUT", "rbac", {"enabled": True})
    status, body = rbac_bed.request("POST", "/testbed/v1/tokens", {"serviceAccount": "llm/nobody"})
    assert status == 400 and "no ServiceAccount llm/nobody" in body["message"]


def test_a_deleted_service_accounts_token_is_refused(rbac_bed):
    sa = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "short-lived"}}
    assert rbac_bed.request("POST", "/api/v1/namespaces/llm/serviceaccounts", sa)[0] == 201
    token = rbac_bed.mint_token(service_account="llm/short-lived")
    assert rbac_bed.request("GET", "/version", token=token)[0] == 200
    assert rbac_bed.request("DELETE", "/api/v1/namespaces/llm/serviceaccounts/short-lived")[0] == 200
    assert rbac_bed.request("GET", "/version", token=token)[0] == 401


def test_an_exec_upgrade_needs_get_and_create():
    get_only = _store(
        _role("Role", "r", [{"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["get"]}], "llm"),
        _binding("RoleBinding", "b", "Role", "r", [{"kind": "ServiceAccount", "name": "deployer"}], "llm"),
    )
    authorizer = rbac.Authorizer(enabled=True)
    denied = authorizer.check(get_only, SA, "GET", "/api/v1/namespaces/llm/pods/p/exec", "command=ls")
    assert 'cannot create resource "pods/exec"' in denied["message"]
    both = _store(
        _role("Role", "r", [{"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["get", "create"]}], "llm"),
        _binding("RoleBinding", "b", "Role", "r", [{"kind": "ServiceAccount", "name": "deployer"}], "llm"),
    )
    assert authorizer.check(both, SA, "GET", "/api/v1/namespaces/llm/pods/p/exec", "command=ls") is None
