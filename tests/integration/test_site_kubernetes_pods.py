# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""`site.yml -i inventories/prod` on the seed cluster whose pods run as containers (seed_pods.py): what a bad image
does, for real.

The deployment that serves (converge, changed=0 on a re-run, the gates through the service proxy, `ray status` in
the head, the vLLM server killed and a worker pod deleted, teardown leaving no container) is molecule/kubernetes,
which runs the same SeedPods setup; this module proves, on one test bed in order:

- --check on the fresh cluster creates nothing;
- the image without Ray (images/ray-vllm/local-cpu.yaml's variant, vLLM alone as vLLM's own images are) is refused
  by the image gate, whose Job really runs the image's Python, before any Ray pod exists;
- with the gate turned off, KubeRay's pods really crash (bash: ray: command not found, exit 127) and the RayCluster
  gate reports the CrashLoopBackOff with the containers' last log lines.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import seed_pods

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

pytestmark = pytest.mark.integration

NAMESPACE = seed_pods.NAMESPACE


@pytest.fixture(scope="module")
def pods(tmp_path_factory):
    with seed_pods.SeedPods(tmp_path_factory.mktemp("seed-pods")) as running:
        yield running


def _items(bed, path):
    status, body = bed.request("GET", path)
    assert status in (200, 404), body
    return body.get("items", []) if status == 200 else []


def _flat(output):
    return " ".join(output.split())


def test_check_mode_creates_nothing(pods):
    rc, output, recap = pods.site("check", "--check", "--diff")
    assert rc == 0, output[-8000:]
    assert _items(pods.bed, f"/apis/ray.io/v1/namespaces/{NAMESPACE}/rayclusters") == []
    assert _items(pods.bed, f"/api/v1/namespaces/{NAMESPACE}/pods") == []
    assert "TP" in output  # the plan table is shown before anything changes


def test_the_image_gate_refuses_the_image_without_ray(pods):
    image = ["-e", f"ray_cluster_image={seed_pods.SERVING_IMAGE_WITHOUT_RAY}"]
    image += ["-e", f"vllm_serve_image={seed_pods.SERVING_IMAGE_WITHOUT_RAY}"]
    rc, output, recap = pods.site("no-ray", *image)
    flat = _flat(output)
    assert rc != 0, output[-8000:]
    assert seed_pods.SERVING_IMAGE_WITHOUT_RAY in flat and "ray_cluster_image" in flat, output[-8000:]
    assert "Ray" in flat and "images/README.md" in flat, output[-8000:]
    assert _items(pods.bed, f"/apis/ray.io/v1/namespaces/{NAMESPACE}/rayclusters") == []
    # The model came through the download Job's container from the local hub before the gate ran.
    jobs = {j["metadata"]["name"]: j for j in _items(pods.bed, f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs")}
    assert jobs[f"{seed_pods.RELEASE}-model-download"]["status"].get("succeeded") == 1
    check = next(
        p for p in _items(pods.bed, f"/api/v1/namespaces/{NAMESPACE}/pods") if "image-check" in p["metadata"]["name"]
    )
    assert check["status"]["containerStatuses"][0]["imageID"].startswith("localhost/llmops/ray-vllm@sha256:")


def test_without_the_gate_the_raycluster_gate_reports_the_crash_loop_and_its_logs(pods):
    extra = ["-e", f"ray_cluster_image={seed_pods.SERVING_IMAGE_WITHOUT_RAY}", "-e", "ray_cluster_image_check=false"]
    # The head exits at once (exit 127) and waits in CrashLoopBackOff from its first restart on.
    extra += ["-e", "ray_cluster_kuberay_timeout=45", "-e", "ray_cluster_kuberay_delay=5"]
    rc, output, recap = pods.site("crash-loop", *extra)
    flat = _flat(output)
    assert rc != 0, output[-8000:]
    assert "CrashLoopBackOff" in flat, output[-8000:]
    assert "last exit 127" in flat, output[-8000:]
    assert "ray: command not found" in flat, output[-8000:]
    assert "ray_cluster_image" in flat


def test_teardown_leaves_no_container(pods):
    rc, output, recap = pods.site("teardown", playbook="playbooks/teardown.yml")
    assert rc == 0, output[-8000:]

    def serving_pods():
        """Pods that are not a finished Job's (teardown keeps the Jobs, whose containers have exited)."""
        listed = _items(pods.bed, f"/api/v1/namespaces/{NAMESPACE}/pods")
        return [p["metadata"]["name"] for p in listed if "job-name" not in p["metadata"].get("labels", {})]

    seed_pods.wait_until("the Ray pods gone", lambda: not serving_pods(), timeout=120)
    assert seed_pods.runc_containers() == []
