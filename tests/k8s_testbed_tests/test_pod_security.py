# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pod Security admission (pod_security.py) and NetworkPolicy validation (validation.py) of the emulated API server:
the checks themselves, then the server refusing a pod its namespace's level forbids, and a bad NetworkPolicy."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from k8s_testbed import pod_security, validation

LOCKED = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def pod(context=None, **spec):
    container = {"name": "ray", "image": "ray-vllm:cpu"}
    if context is not None:
        container["securityContext"] = context
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": dict({"containers": [container]}, **spec),
    }


def namespace(level=None):
    labels = {pod_security.ENFORCE_LABEL: level} if level else {}
    return {"metadata": {"name": "llm", "labels": labels}}


def test_the_collections_locked_down_root_pod_passes_baseline_and_fails_restricted_only_on_non_root():
    locked = pod(LOCKED)
    assert pod_security.violations(locked, "baseline") == []
    (only,) = pod_security.violations(locked, "restricted")
    assert only.startswith("runAsNonRoot != true")
    assert pod_security.violations(pod(dict(LOCKED, runAsNonRoot=True)), "restricted") == []


def test_baseline_refuses_what_the_standard_names():
    assert pod_security.violations(
        pod(dict(LOCKED, capabilities={"drop": ["ALL"], "add": ["IPC_LOCK"]})), "baseline"
    ) == ['non-default capabilities (container "ray" must not include "IPC_LOCK" in securityContext.capabilities.add)']
    # Adding a capability baseline lists is fine; restricted wants ALL dropped and at most NET_BIND_SERVICE.
    assert pod_security.violations(pod({"capabilities": {"add": ["CHOWN"]}}), "baseline") == []
    assert pod_security.violations(pod({"privileged": True}), "baseline") == [
        'privileged (container "ray" must not set securityContext.privileged=true)'
    ]
    found = pod_security.violations(
        pod(
            {"seccompProfile": {"type": "Unconfined"}},
            hostNetwork=True,
            volumes=[{"name": "root", "hostPath": {"path": "/"}}],
        ),
        "baseline",
    )
    assert [line.split(" (")[0] for line in found] == ["host namespaces", "hostPath volumes", "seccompProfile"]


def test_restricted_asks_for_escalation_seccomp_capabilities_and_volume_types():
    found = pod_security.violations(pod({"runAsNonRoot": True}, volumes=[{"name": "n", "nfs": {}}]), "restricted")
    assert [line.split(" (")[0] for line in found] == [
        "restricted volume types",
        "allowPrivilegeEscalation != false",
        "seccompProfile",
        "unrestricted capabilities",
    ]
    # The pod's seccomp profile and runAsNonRoot cover its containers.
    spec = {"securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}}
    context = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}
    assert pod_security.violations(pod(context, **spec), "restricted") == []


def test_the_namespace_label_decides_and_privileged_or_none_admits_all():
    privileged = pod({"privileged": True})
    assert pod_security.admission_error(privileged, namespace()) is None
    assert pod_security.admission_error(privileged, namespace("privileged")) is None
    assert pod_security.admission_error(privileged, None) is None
    assert pod_security.admission_error(privileged, namespace("baseline")) == (
        'pods "p" is forbidden: violates PodSecurity "baseline:latest": '
        'privileged (container "ray" must not set securityContext.privileged=true)'
    )
    assert pod_security.namespace_label_errors(namespace("strict")) == [
        (
            "metadata.labels[pod-security.kubernetes.io/enforce]",
            "strict",
            "must be one of privileged, baseline, restricted",
        )
    ]


POLICY = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "NetworkPolicy",
    "metadata": {"name": "llm-raycluster", "namespace": "llm"},
    "spec": {
        "podSelector": {"matchLabels": {"ray.io/cluster": "llm-raycluster"}},
        "policyTypes": ["Ingress"],
        "ingress": [
            {"from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/instance": "llm"}}}]},
            {"ports": [{"port": 8265, "protocol": "TCP"}], "from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]},
        ],
    },
}


def test_a_network_policy_the_api_server_accepts_passes():
    assert validation.validate_builtin(copy.deepcopy(POLICY)) == ([], [])


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("policyTypes",), ["Ingress", "Sideways"], 'spec.policyTypes[1]: Unsupported value: "Sideways"'),
        (
            ("ingress", 1, "ports", 0, "protocol"),
            "HTTP",
            'spec.ingress[1].ports[0].protocol: Unsupported value: "HTTP"',
        ),
        (("ingress", 1, "ports", 0, "port"), 70000, "spec.ingress[1].ports[0].port: Invalid value: 70000"),
        (("ingress", 1, "ports", 0, "endPort"), 80, "must be greater than or equal to `port`"),
        (("ingress", 1, "from", 0, "ipBlock", "cidr"), "10.0.0.300/8", "must be a valid CIDR value"),
        (("ingress", 1, "from", 0, "ipBlock", "except"), ["192.168.0.0/16"], "must be a strict subset of `cidr`"),
        (("ingress", 1, "from", 0, "podSelector"), {}, "may not specify both ipBlock and another peer"),
        (("ingress", 0, "from", 0), {}, "spec.ingress[0].from[0]: Required value: must specify a peer"),
        (("podSelector", "matchLabels"), {"ray.io/cluster": "-bad-"}, "spec.podSelector.matchLabels: Invalid value"),
    ],
)
def test_the_api_servers_network_policy_refusals(path, value, expected):
    policy = copy.deepcopy(POLICY)
    node = policy["spec"]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    errors, _warnings = validation.validate_builtin(policy)
    assert any(expected in str(error) for error in errors), errors


@pytest.mark.integration
def test_the_server_refuses_a_pod_its_namespace_forbids_and_a_bad_network_policy(testbed):
    labels = {pod_security.ENFORCE_LABEL: "restricted"}
    status, body = testbed.request(
        "POST",
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "psa", "labels": labels}},
    )
    assert status == 201, body
    status, body = testbed.request("POST", "/api/v1/namespaces/psa/pods", pod(LOCKED))
    assert (status, body["reason"]) == (403, "Forbidden"), body
    assert 'violates PodSecurity "restricted:latest": runAsNonRoot != true' in body["message"]
    status, body = testbed.request("POST", "/api/v1/namespaces/psa/pods", pod(dict(LOCKED, runAsNonRoot=True)))
    assert status == 201, body
    bad = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "psa2", "labels": {pod_security.ENFORCE_LABEL: "x"}},
    }
    assert testbed.request("POST", "/api/v1/namespaces", bad)[0] == 403
    policy = copy.deepcopy(POLICY)
    policy["metadata"]["namespace"] = "psa"
    policy["spec"]["policyTypes"] = ["Sideways"]
    path = "/apis/networking.k8s.io/v1/namespaces/psa/networkpolicies"
    status, body = testbed.request("POST", path, policy)
    assert (status, body["reason"]) == (422, "Invalid"), body
    policy["spec"]["policyTypes"] = ["Ingress"]
    assert testbed.request("POST", path, policy)[0] == 201
