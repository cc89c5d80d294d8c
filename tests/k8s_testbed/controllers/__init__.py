# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The emulated cluster's control plane and nodes: what the scheduler, kubelets and operators would write.

One controller a module (``base`` holds what they share, ``kuberay_pods`` is the kuberay controller's pod
builder); ``CONTROLLERS`` names them as ``--controllers`` and the admin API do. Each module's docstring says what it
emulates. What none emulates: preemption, pod/node (anti-)affinity between pods, topology spread, host ports,
resource quotas, evictions (NoExecute taints do not evict), container restarts other than requested crash loops,
probes, image pulls, volume attachment, Deployment surge/unavailability maths, ReplicaSet history pruning, HPA,
CronJobs, EndpointSlices, RayJob/RayService/RayCronJob, KubeRay's autoscaler, and GCS fault tolerance beyond the
env and annotations KubeRay puts on the pods.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..seeding import crds_for_group, load_seed, seed_objects
from .base import Controller
from .gpu_operator import GpuOperatorController
from .kubelet import KubeletController
from .kuberay import KubeRayController, ray_start_command
from .nodes import NodesController, node_status_fields
from .storage import StorageController
from .workloads import WorkloadsController

if TYPE_CHECKING:
    from ..state import TestBedState

__all__ = ["CONTROLLERS", "Controller", "apply_seed", "crds_for_group", "load_seed", "ray_start_command"]

CONTROLLERS: dict = {
    "nodes": NodesController,
    "kubelet": KubeletController,
    "workloads": WorkloadsController,
    "storage": StorageController,
    "kuberay": KubeRayController,
    "gpu_operator": GpuOperatorController,
}


def apply_seed(state: TestBedState) -> None:
    """Create what the seed describes; nodes start with the status their kubelet posts, Ready."""
    writer = Controller(state)
    writer.name = "testbed-seed"
    for obj in seed_objects(state.seed or {}):
        is_node = obj["kind"] == "Node"
        if is_node:
            obj["status"].update(node_status_fields(obj, ready=True))
        writer.ensure(obj, keep_status=is_node)
