# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""One readiness test per Kubernetes kind the roles wait for (docs: one .yml per test)."""

from __future__ import annotations

from ansible_collections.llmops.ray_vllm.plugins.module_utils._waiter import (
    clusterpolicies_ready,
    crd_established,
    deployment_available,
    job_finished,
    pod_finished,
    raycluster_provisioned,
    raycluster_ready,
)


class TestModule:
    def tests(self):
        return {
            "deployment_available": deployment_available,
            "raycluster_ready": raycluster_ready,
            "raycluster_provisioned": raycluster_provisioned,
            "crd_established": crd_established,
            "job_finished": job_finished,
            "clusterpolicies_ready": clusterpolicies_ready,
            "pod_finished": pod_finished,
        }
