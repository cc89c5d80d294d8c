# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""`site.yml -i inventories/prod` against the emulated seed cluster (tests/k8s_testbed), gates to real servers.

The test bed plays the cluster (API server, scheduler, kubelet, KubeRay, GPU operator); it runs no containers.
So the two things the gates must really reach run on this machine and are mapped to the Services the roles
create: a real Ray cluster whose two workers offer one GPU each (as the plan's KubeRay layout has it) behind
`llm-raycluster-head-svc:8265`, and a real vLLM CPU server with the API-key middleware the roles deploy behind
`llm-vllm:8000`, serving the demo model under the seed's served name. Every manifest the roles send is validated
by the test bed (built-in schemas and the KubeRay CRD schema; unknown fields are refused).

Order: --check (nothing created), a real run, a second run with changed=0, teardown (model volume kept).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import vllm_local
from playbook_runner import REPO, run_playbook

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from k8s_testbed.harness import RunningTestBed

pytestmark = pytest.mark.integration

NAMESPACE = "llm"
API_KEY = "site-kubernetes-test-key"
SERVED = "deepseek-r1-distill-llama-70b"  # inventories/prod serves the seed model under this name
MIDDLEWARE_DIR = REPO / "roles" / "vllm_serve" / "files"


@pytest.fixture(scope="module")
def keyed_vllm(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("vllm-site-k8s"))
    server = vllm_local.VllmServer(
        vllm_local.ensure_demo_model(),
        workdir,
        served_name=SERVED,
        api_key=API_KEY,
        extra_args=["--middleware", "llmops_api_key_header.ApiKeyHeaderMiddleware"],
        env={"PYTHONPATH": str(MIDDLEWARE_DIR)},
    )
    try:
        server.start()
        server.wait_ready(timeout=480)
        yield server
    finally:
        server.stop()


def _list(bed, path):
    status, body = bed.request("GET", path)
    assert status in (200, 404), body
    return body.get("items", []) if status == 200 else []


def _site(bed, log_dir, name, *extra):
    env = bed.env()
    args = ["-e", f"ray_vllm_kubeconfig={bed.kubeconfig}", "-e", f"vllm_serve_api_key={API_KEY}", *extra]
    return run_playbook(
        "site.yml", inventory="inventories/prod", extra_args=args, env=env, log_path=Path(log_dir) / f"{name}.log"
    )


def test_site_on_the_seed_cluster(tmp_path, ray_cluster_factory, keyed_vllm):
    ray = ray_cluster_factory(head={"num_cpus": 1}, workers=[{"num_cpus": 1, "num_gpus": 1}] * 2)
    with RunningTestBed(tmp_path / "testbed") as bed:
        bed.admin(
            "PUT",
            "service-backends",
            {
                f"{NAMESPACE}/llm-raycluster-head-svc:8265": ray.dashboard_url,
                f"{NAMESPACE}/llm-vllm:8000": keyed_vllm.base_url,
            },
        )
        rc, output, recap = _site(bed, tmp_path, "check", "--check", "--diff")
        assert rc == 0, output[-8000:]
        assert _list(bed, f"/apis/ray.io/v1/namespaces/{NAMESPACE}/rayclusters") == []
        assert _list(bed, f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments") == []
        assert "TP" in output  # the plan table is shown before anything changes

        rc, output, recap = _site(bed, tmp_path, "run")
        assert rc == 0, output[-12000:] + "\n--- test bed ---\n" + bed.server_log()[-3000:]
        assert API_KEY not in output
        clusters = _list(bed, f"/apis/ray.io/v1/namespaces/{NAMESPACE}/rayclusters")
        assert [c["status"].get("state") for c in clusters] == ["ready"]
        group = clusters[0]["spec"]["workerGroupSpecs"][0]
        assert group["replicas"] == 2  # the plan: TP=2 over the two A100 nodes, the head without a GPU
        deployments = {
            d["metadata"]["name"]: d for d in _list(bed, f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments")
        }
        command = json.dumps(deployments["llm-vllm"]["spec"]["template"]["spec"]["containers"][0])
        assert "--tensor-parallel-size" in command and "--distributed-executor-backend" in command

        rc, output, recap = _site(bed, tmp_path, "rerun")
        assert rc == 0, output[-8000:]
        assert recap["localhost"]["changed"] == 0, output[-8000:]

        rc, output, recap = run_playbook(
            "playbooks/teardown.yml",
            inventory="inventories/prod",
            extra_args=["-e", f"ray_vllm_kubeconfig={bed.kubeconfig}"],
            env=bed.env(),
            log_path=tmp_path / "teardown.log",
        )
        assert rc == 0, output[-8000:]
        assert _list(bed, f"/apis/ray.io/v1/namespaces/{NAMESPACE}/rayclusters") == []
        assert "llm-vllm" not in {
            d["metadata"]["name"] for d in _list(bed, f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments")
        }
        claims = [c["metadata"]["name"] for c in _list(bed, f"/api/v1/namespaces/{NAMESPACE}/persistentvolumeclaims")]
        assert "llm-models" in claims  # the model volume stays unless asked
