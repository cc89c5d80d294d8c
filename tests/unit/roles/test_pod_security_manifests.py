"""Every pod the roles make, rendered as the roles render them (test_cpu_plan_manifests.render), locked down: no
privilege escalation, every capability dropped (IPC_LOCK added back only for InfiniBand's GPU pods), the runtime's
seccomp profile, no service account token where the pod needs no API access; each passes Pod Security "baseline" as
the test bed's admission checks it (tests/k8s_testbed/pod_security.py), and fails "restricted" only because the
serving images run as root. The NetworkPolicies the roles apply, and what the API server's validation says of them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from ansible_collections.llmops.ray_vllm.tests.unit.roles import test_cpu_plan_manifests as cpu_manifests
from ansible_collections.llmops.ray_vllm.tests.unit.roles import test_serve_llm_manifests as serve_manifests

# The plans those tests render from, as this module's fixtures too.
cpu_plan = cpu_manifests.cpu_plan
fixed_plan = serve_manifests.fixed_plan
autoscaling_plan = serve_manifests.autoscaling_plan
cpu_driver_manifest = cpu_manifests.cpu_driver_manifest
render = cpu_manifests.render
raycluster = serve_manifests.raycluster

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tests"))

from k8s_testbed import pod_security, validation  # noqa: E402

LOCKED = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _pod(spec):
    return {"metadata": {"name": "p"}, "spec": spec}


def _check_locked(spec, *, api_access=False):
    assert spec["automountServiceAccountToken"] is api_access
    for container in spec["containers"]:
        assert container["securityContext"] == LOCKED, container["name"]
    assert pod_security.violations(_pod(spec), "baseline") == []
    (only,) = pod_security.violations(_pod(spec), "restricted")
    assert only.startswith("runAsNonRoot != true"), only


def test_the_ray_pods_are_locked_down_and_only_an_autoscaling_head_gets_a_token(fixed_plan, autoscaling_plan):
    cluster = raycluster(fixed_plan)
    assert cluster["spec"]["headGroupSpec"]["serviceType"] == "ClusterIP"
    _check_locked(cluster["spec"]["headGroupSpec"]["template"]["spec"])
    _check_locked(cluster["spec"]["workerGroupSpecs"][0]["template"]["spec"])
    scaled = raycluster(autoscaling_plan)
    # KubeRay's autoscaler is a sidecar of the head that scales the worker group through the API server.
    _check_locked(scaled["spec"]["headGroupSpec"]["template"]["spec"], api_access=True)
    _check_locked(scaled["spec"]["workerGroupSpecs"][0]["template"]["spec"])
    assert scaled["spec"]["autoscalerOptions"]["securityContext"] == LOCKED


def test_infiniband_adds_ipc_lock_to_the_gpu_pods_only_which_baseline_refuses(fixed_plan):
    cluster = raycluster(fixed_plan, ray_cluster_infiniband=True)
    worker = cluster["spec"]["workerGroupSpecs"][0]["template"]["spec"]
    assert worker["containers"][0]["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["IPC_LOCK"]}
    assert pod_security.violations(_pod(worker), "baseline")[0].startswith("non-default capabilities")
    assert pod_security.violations(_pod(worker), "privileged") == []
    # The head has no GPU here, so no InfiniBand.
    assert cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["securityContext"] == LOCKED


def test_the_vllm_driver_and_the_jobs_are_locked_down_without_a_token(cpu_plan):
    driver = cpu_driver_manifest(cpu_plan)
    _check_locked(yaml.safe_load(driver)["spec"]["template"]["spec"])
    check = render(
        "ray_cluster",
        "image_check_job.yaml.j2",
        "_ray_cluster_k8s",
        {
            "ray_cluster_plan": cpu_plan,
            "ray_cluster_platform": "kubernetes",
            "ray_cluster_kuberay_layout": None,
            "_ray_cluster_image_job": "llm-image-check",
            "_ray_cluster_images": ["ray-vllm:cpu"],
            "_ray_cluster_image_report_script": "print(1)",
        },
    )
    _check_locked(yaml.safe_load(check)["spec"]["template"]["spec"])


def _network_policy(role, fact, variables):
    policy = yaml.safe_load(render(role, "networkpolicy.yaml.j2", fact, variables))
    assert validation.validate_builtin(policy) == ([], []), policy
    return policy


def test_the_ray_pods_admit_the_release_and_the_proxys_ports(fixed_plan):
    given = {"ray_cluster_plan": fixed_plan, "ray_cluster_platform": "kubernetes", "ray_cluster_kuberay_layout": None}
    policy = _network_policy("ray_cluster", "_ray_cluster_k8s", given)
    own = {
        "podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "ray-vllm", "app.kubernetes.io/instance": "llm"}}
    }
    assert policy["metadata"]["name"] == "llm-raycluster"
    assert policy["spec"] == {
        "podSelector": {"matchLabels": {"ray.io/cluster": "llm-raycluster"}},
        "policyTypes": ["Ingress"],
        "ingress": [
            {"from": [own]},
            {"ports": [{"port": 8265, "protocol": "TCP"}, {"port": 8000, "protocol": "TCP"}]},
        ],
    }
    peers = [{"ipBlock": {"cidr": "10.0.0.0/24"}}]
    narrowed = _network_policy(
        "ray_cluster",
        "_ray_cluster_k8s",
        dict(given, ray_cluster_network_policy_from=peers, ray_cluster_serve_port=8100, ray_vllm_release="chat"),
    )
    assert narrowed["spec"]["ingress"][1] == {
        "ports": [{"port": 8265, "protocol": "TCP"}, {"port": 8100, "protocol": "TCP"}],
        "from": peers,
    }
    assert narrowed["spec"]["podSelector"] == {"matchLabels": {"ray.io/cluster": "chat-raycluster"}}


@pytest.mark.parametrize("peers", [[], [{"namespaceSelector": {"matchLabels": {"name": "ingress"}}}]])
def test_the_vllm_driver_admits_the_release_and_its_services_clients(cpu_plan, peers):
    given = {
        "vllm_serve_plan": cpu_plan,
        "vllm_serve_platform": "kubernetes",
        "vllm_serve_port": 8100,
        "vllm_serve_network_policy_from": peers,
    }
    policy = _network_policy("vllm_serve", "_vllm_serve_settings", given)
    assert policy["spec"]["podSelector"] == {
        "matchLabels": {"app.kubernetes.io/instance": "llm", "app.kubernetes.io/name": "vllm"}
    }
    clients = {"ports": [{"port": 8100, "protocol": "TCP"}]}
    if peers:
        clients["from"] = peers
    assert policy["spec"]["ingress"][1] == clients


@pytest.mark.parametrize(
    ("bad", "field"),
    [([{"ipBlock": {"cidr": "10.0.0.0"}}], "spec.ingress[1].from[0].ipBlock.cidr"), ([{}], "spec.ingress[1].from[0]")],
)
def test_a_bad_peer_is_what_the_api_server_refuses(fixed_plan, bad, field):
    given = {
        "ray_cluster_plan": fixed_plan,
        "ray_cluster_platform": "kubernetes",
        "ray_cluster_kuberay_layout": None,
        "ray_cluster_network_policy_from": bad,
    }
    policy = yaml.safe_load(render("ray_cluster", "networkpolicy.yaml.j2", "_ray_cluster_k8s", given))
    errors, _warnings = validation.validate_builtin(policy)
    assert [error["field"] for error in errors] == [field], errors
