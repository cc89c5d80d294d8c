# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The real backends behind the test bed's Services, for every suite that deploys inventories/prod to it.

The test bed (tests/k8s_testbed) runs no container for GPU plans, so what the gates must really reach runs on this
machine and is mapped to the Services the roles create: a Ray cluster whose workers offer one GPU each behind
`llm-raycluster-head-svc:8265`, and a vLLM CPU server with the API-key middleware behind `llm-vllm:8000`. Used by
conftest.py (keyed_vllm), test_site_kubernetes.py and tests/awx_tests/test_awx_jobs.py.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

COLLECTION_ROOT = Path(__file__).resolve().parents[2]
# One vLLM server with an API key and the collection's X-API-Key middleware (as the Kubernetes Deployment runs it):
# it serves the demo model under the demo name and under the seed's name.
SHARED_VLLM_KEY = "shared-kubernetes-test-key-7c2e"
SHARED_VLLM_NAMES = ("smollm2-135m-instruct", "deepseek-r1-distill-llama-70b")


@contextlib.contextmanager
def keyed_vllm_server(folder):
    """A started vLLM server (vllm_local.VllmServer) keyed with SHARED_VLLM_KEY; stopped on exit."""
    import vllm_local

    Path(folder).mkdir(parents=True, exist_ok=True)
    server = vllm_local.VllmServer(
        vllm_local.ensure_demo_model(),
        str(folder),
        served_name=SHARED_VLLM_NAMES,
        api_key=SHARED_VLLM_KEY,
        extra_args=["--middleware", "llmops_api_key_header.ApiKeyHeaderMiddleware"],
        env={"PYTHONPATH": str(COLLECTION_ROOT / "roles" / "vllm_serve" / "files")},
    )
    try:
        server.start()
        server.wait_ready(timeout=600)
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def three_gpu_ray_cluster():
    """A head and three workers with one GPU each: what the plan lays out on the three-node seed, and at least what
    it lays out on the two-node seed (the Ray gate checks minimums). Started with retries because a busy two-core
    machine sometimes loses a worker's first start."""
    import ray_local

    for attempt in range(3):
        cluster = ray_local.LocalRayCluster()
        try:
            cluster.start_head(num_cpus=1)
            for _worker in range(3):
                cluster.add_worker(num_cpus=1, num_gpus=1)
            break
        except Exception:
            cluster.stop()
            if attempt == 2:
                raise
    try:
        yield cluster
    finally:
        cluster.stop()


def map_backends(bed, dashboard_url, vllm_url, namespace="llm"):
    """Send the Ray dashboard's and vLLM's Services of ``namespace`` to the given local servers."""
    bed.admin(
        "PUT",
        "service-backends",
        {f"{namespace}/llm-raycluster-head-svc:8265": dashboard_url, f"{namespace}/llm-vllm:8000": vllm_url},
    )
