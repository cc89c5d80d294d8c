# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The ``gpu_operator`` controller: the NVIDIA GPU operator, active while a ClusterPolicy exists.

GPU feature discovery labels and ``nvidia.com/gpu`` capacity/allocatable on the seed's GPU nodes, ClusterPolicy
status ready, and the operand DaemonSets (device plugin, GPU feature discovery, DCGM exporter, container toolkit,
validator) whose pods the workloads controller places. Without the operator no node carries ``nvidia.com/gpu``.
"""

from __future__ import annotations

from ..jsondata import json_copy
from ..seeding import GPU_OPERATOR_VERSION, seed_gpu_nodes
from .base import Controller, labels_of, owner_reference, set_condition

_OPERANDS = (
    # name, app label, image, deploy label
    (
        "nvidia-device-plugin-daemonset",
        "nvidia-device-plugin-daemonset",
        "nvcr.io/nvidia/k8s-device-plugin:v0.18.0",
        "device-plugin",
    ),
    (
        "gpu-feature-discovery",
        "gpu-feature-discovery",
        "nvcr.io/nvidia/k8s-device-plugin:v0.18.0",
        "gpu-feature-discovery",
    ),
    (
        "nvidia-dcgm-exporter",
        "nvidia-dcgm-exporter",
        "nvcr.io/nvidia/k8s/dcgm-exporter:4.4.1-4.6.0-ubuntu22.04",
        "dcgm-exporter",
    ),
    (
        "nvidia-container-toolkit-daemonset",
        "nvidia-container-toolkit-daemonset",
        "nvcr.io/nvidia/k8s/container-toolkit:v1.18.0",
        "container-toolkit",
    ),
    (
        "nvidia-operator-validator",
        "nvidia-operator-validator",
        f"nvcr.io/nvidia/cloud-native/gpu-operator-validator:{GPU_OPERATOR_VERSION}",
        "operator-validator",
    ),
)
_FAMILIES = {"7": "volta", "8": "ampere", "9": "hopper", "10": "blackwell", "12": "blackwell"}


def gfd_labels(gpu: dict, mig_strategy: str = "single") -> dict:
    """The labels GPU feature discovery, NFD and the GPU operator put on a GPU node."""
    driver = str(gpu.get("driver_version", "580.95.05")).split(".")
    runtime = str(gpu.get("cuda_runtime", "13.0")).split(".")
    compute = str(gpu.get("compute_capability", "8.0")).split(".")
    driver += ["0"] * (3 - len(driver))
    runtime += ["0"] * (2 - len(runtime))
    family = gpu.get("family") or _FAMILIES.get(compute[0], "unknown")
    labels = {
        "feature.node.kubernetes.io/pci-10de.present": "true",
        "nvidia.com/gpu.present": "true",
        "nvidia.com/gpu.product": str(gpu.get("product", "NVIDIA-A100-SXM4-80GB")).replace(" ", "-"),
        "nvidia.com/gpu.memory": str(gpu.get("memory_mib", 81920)),
        "nvidia.com/gpu.count": str(gpu.get("count", 1)),
        "nvidia.com/gpu.family": family,
        "nvidia.com/gpu.compute.major": compute[0],
        "nvidia.com/gpu.compute.minor": compute[1] if len(compute) > 1 else "0",
        "nvidia.com/gpu.machine": str(gpu.get("machine", "emulated")),
        "nvidia.com/gpu.mode": "compute",
        "nvidia.com/gpu.replicas": "1",
        "nvidia.com/gpu.sharing-strategy": "none",
        "nvidia.com/cuda.driver.major": driver[0],
        "nvidia.com/cuda.driver.minor": driver[1],
        "nvidia.com/cuda.driver.rev": driver[2],
        "nvidia.com/cuda.driver-version.major": driver[0],
        "nvidia.com/cuda.driver-version.minor": driver[1],
        "nvidia.com/cuda.driver-version.revision": driver[2],
        "nvidia.com/cuda.driver-version.full": ".".join(driver[:3]),
        "nvidia.com/cuda.runtime.major": runtime[0],
        "nvidia.com/cuda.runtime.minor": runtime[1],
        "nvidia.com/cuda.runtime-version.major": runtime[0],
        "nvidia.com/cuda.runtime-version.minor": runtime[1],
        "nvidia.com/cuda.runtime-version.full": ".".join(runtime[:2]),
        "nvidia.com/mig.capable": "true" if gpu.get("mig_capable") else "false",
        "nvidia.com/mig.strategy": mig_strategy,
        "nvidia.com/mps.capable": "false",
        "nvidia.com/vgpu.present": "false",
        "nvidia.com/gpu.deploy.container-toolkit": "true",
        "nvidia.com/gpu.deploy.dcgm": "true",
        "nvidia.com/gpu.deploy.dcgm-exporter": "true",
        "nvidia.com/gpu.deploy.device-plugin": "true",
        "nvidia.com/gpu.deploy.driver": "pre-installed",
        "nvidia.com/gpu.deploy.gpu-feature-discovery": "true",
        "nvidia.com/gpu.deploy.node-status-exporter": "true",
        "nvidia.com/gpu.deploy.operator-validator": "true",
    }
    if gpu.get("mig_capable"):
        labels["nvidia.com/gpu.deploy.mig-manager"] = "true"
    return labels


def _is_gpu_label(key: str) -> bool:
    return key.startswith("nvidia.com/") or key == "feature.node.kubernetes.io/pci-10de.present"


class GpuOperatorController(Controller):
    name = "gpu-operator"

    def reconcile(self) -> None:
        policies = self.live("nvidia.com/v1", "ClusterPolicy")
        gpu_nodes = seed_gpu_nodes(self.state.seed or {}) if policies else {}
        mig = ((policies[0].get("spec") or {}).get("mig") or {}).get("strategy", "single") if policies else "single"
        for node in list(self.objects("v1", "Node")):
            self._node(node, gpu_nodes.get(node["metadata"]["name"]), mig)
        namespace = self._namespace()
        for policy in policies:
            if namespace:
                for operand in _OPERANDS:
                    self.ensure(_operand_daemon_set(policy, namespace, *operand))
            self.write_status(policy, _ready_status(policy, namespace))

    def _namespace(self) -> str:
        """Where the operator runs: its Deployment's namespace, else the seed's namespace for it if that exists."""
        wanted = (self.state.seed.get("platform") or {}).get("gpu_operator_namespace") if self.state.seed else None
        for deployment in self.objects("apps/v1", "Deployment"):
            labels = labels_of(deployment)
            if labels.get("app") == "gpu-operator" or labels.get("app.kubernetes.io/component") == "gpu-operator":
                return deployment["metadata"]["namespace"]
        if wanted and self.peek("v1", "Namespace", None, wanted) is not None:
            return wanted
        return ""

    def _node(self, node: dict, gpu: dict | None, mig: str) -> None:
        """GPU feature discovery labels and nvidia.com/gpu capacity on a GPU node, none on any other."""
        labels = dict(labels_of(node))
        wanted = {k: v for k, v in labels.items() if not _is_gpu_label(k)}
        if gpu is not None:
            wanted.update(gfd_labels(gpu, mig))
        if wanted != labels:
            new = json_copy(node)
            new["metadata"]["labels"] = wanted
            node = self.update(new)
        status = json_copy(node.get("status") or {})
        for key in ("capacity", "allocatable"):
            resources = status.setdefault(key, {})
            if gpu is not None:
                resources["nvidia.com/gpu"] = str(gpu.get("count", 1))
            else:
                resources.pop("nvidia.com/gpu", None)
        self.write_status(node, status)


def _ready_status(policy: dict, namespace: str) -> dict:
    status = json_copy(policy.get("status") or {})
    status["state"] = "ready"
    status["namespace"] = namespace or ""
    message = "ClusterPolicy is ready as all resources have been successfully reconciled"
    status["conditions"] = set_condition(status.get("conditions"), "Ready", "True", "Reconciled", message, meta=True)
    status["conditions"] = set_condition(status["conditions"], "Error", "False", "Ready", meta=True)
    return status


def _operand_daemon_set(policy: dict, namespace: str, name: str, app: str, image: str, deploy: str) -> dict:
    """One operand DaemonSet, on the nodes GPU feature discovery marks for it."""
    labels = {"app": app, "app.kubernetes.io/managed-by": "gpu-operator", "app.kubernetes.io/part-of": "nvidia-gpu"}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": dict(labels),
            "ownerReferences": [owner_reference(policy)],
        },
        "spec": {
            "selector": {"matchLabels": {"app": app}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    "nodeSelector": {f"nvidia.com/gpu.deploy.{deploy}": "true"},
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                    "priorityClassName": "system-node-critical",
                    "serviceAccountName": app.replace("-daemonset", ""),
                    "containers": [{"name": deploy.replace("operator-", ""), "image": image}],
                },
            },
        },
    }
