# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""`playbooks/verify.yml -i inventories/prod` against the API-only test bed (tests/k8s_testbed): the read-only health
check's messages on the Kubernetes platform, where they are cheap to reach.

Nothing deployed: both gates fail, each with its own message naming what is down, changed=0, the same under --check.
Then a real Ray head with token authentication (one node, no GPU: the expectations are lowered to it) behind the head
Service, its token in the Secret ray_cluster keeps: the Ray gate reports it healthy through the API server's service
proxy while vLLM is still down. The healthy vLLM message and the hosts platform are proved by hand on a deployment
(docs/verify.md); the deploy, verify, teardown round is the AWX runner tests'.
"""

from __future__ import annotations

import base64
import sys
from pathlib import Path

import pytest
from playbook_runner import run_playbook

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from k8s_testbed.harness import RunningTestBed

pytestmark = pytest.mark.integration

NAMESPACE = "llm"
RAY_TOKEN = "verify0test0ray0token0" + "5f" * 16
# The gates' waits are bounded by the deploy's timeouts: short ones keep a failing check short.
SHORT_WAITS = ["-e", "ray_cluster_wait_timeout=5", "-e", "vllm_serve_startup_timeout=5"]
SHORT_WAITS += ["-e", "vllm_serve_health_interval=2"]


def _verify(bed, log_dir, name, *extra):
    """verify.yml with the kubeconfig given both ways the AWX job template gives it, extra vars only."""
    env = dict(bed.env(), KUBECONFIG=bed.kubeconfig, K8S_AUTH_KUBECONFIG=bed.kubeconfig)
    args = ["-e", f"ray_vllm_kubeconfig={bed.kubeconfig}", *SHORT_WAITS, *extra]
    return run_playbook(
        "playbooks/verify.yml",
        inventory="inventories/prod",
        extra_args=args,
        env=env,
        log_path=Path(log_dir) / f"{name}.log",
    )


def _create(bed, path, body):
    status, answer = bed.request("POST", path, body)
    assert status in (201, 409), answer


def _put_ray_head_behind_its_service(bed, dashboard_url):
    """What ray_cluster leaves for the gate: the token Secret and the head Service, mapped to a real Ray head."""
    _create(bed, "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    _create(
        bed,
        f"/api/v1/namespaces/{NAMESPACE}/secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {"name": "llm-ray-auth", "namespace": NAMESPACE},
            "data": {"auth_token": base64.b64encode(RAY_TOKEN.encode()).decode()},
        },
    )
    _create(
        bed,
        f"/api/v1/namespaces/{NAMESPACE}/services",
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "llm-raycluster-head-svc", "namespace": NAMESPACE},
            "spec": {
                "selector": {"ray.io/cluster": "llm-raycluster", "ray.io/node-type": "head"},
                "ports": [{"name": "dashboard", "port": 8265, "targetPort": 8265}],
            },
        },
    )
    bed.admin("PUT", "service-backends", {f"{NAMESPACE}/llm-raycluster-head-svc:8265": dashboard_url})


def test_verify_names_what_is_down_and_reports_what_is_healthy(tmp_path, ray_cluster_factory):
    with RunningTestBed(tmp_path / "testbed", seed="gpu-nodes-3") as bed:
        for name, extra in (("bare", ()), ("bare-check", ("--check",))):
            rc, output, recap = _verify(bed, tmp_path, name, *extra)
            assert rc != 0, output[-6000:]
            assert recap["localhost"]["changed"] == 0, recap
            summary = output[output.index("TASK [Fail with what is unhealthy]") :]
            assert "Ray: Ray cluster not ready" in summary, summary[-4000:]
            assert "llm-raycluster-head-svc" in summary and "not found" in summary, summary[-4000:]
            assert "vLLM: " in summary and "llm-vllm" in summary, summary[-4000:]

        ray = ray_cluster_factory(head={"num_cpus": 1}, token=RAY_TOKEN)
        _put_ray_head_behind_its_service(bed, ray.dashboard_url)
        rc, output, recap = _verify(
            bed, tmp_path, "ray-up", "-e", "ray_cluster_expected_nodes=1", "-e", "ray_cluster_expected_gpus=0"
        )
        assert rc != 0, output[-6000:]
        assert recap["localhost"]["changed"] == 0, recap
        assert "Ray healthy: 1 of 1 nodes alive, 0 GPUs, 1.0 CPUs (RayCluster llm/llm-raycluster)" in " ".join(
            output.split()
        ), output[-6000:]
        summary = output[output.index("TASK [Fail with what is unhealthy]") :]
        assert "Ray:" not in summary and "vLLM: " in summary, summary[-4000:]
        assert RAY_TOKEN not in output
