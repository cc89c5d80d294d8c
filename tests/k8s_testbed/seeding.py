# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Seeds: the YAML files in ``seeds/`` that describe an emulated cluster, and the objects a seed creates.

``seed_objects()`` lists them in creation order; ``controllers.apply_seed()`` writes them into the store and gives
every node the status its kubelet would post. The format is documented at the top of ``seeds/gpu-nodes-2.yaml``;
besides it, ``platform.prometheus_operator: installed`` (default absent) installs the Prometheus Operator's
PodMonitor and ServiceMonitor CRDs (only those).
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from .quantity import parse_quantity

HERE = Path(__file__).resolve().parent
SEED_DIR = HERE / "seeds"
CRD_DIR = HERE / "crds"

# The operator versions a seed installs, which the kuberay and gpu_operator controllers emulate.
KUBERAY_VERSION = "v1.7.0"
KUBERAY_IMAGE = "quay.io/kuberay/operator:v1.7.0"
# The feature gates the kuberay-operator chart's values.yaml (v1.7.0) turns on and off; the kuberay controller
# emulates RayClusterStatusConditions and RayMultiHostIndexing on, RayClusterMTLS and RayClusterHistoryServer off.
KUBERAY_FEATURE_GATES = (
    ("RayClusterStatusConditions", True),
    ("RayJobDeletionPolicy", True),
    ("RayMultiHostIndexing", True),
    ("RayServiceIncrementalUpgrade", True),
    ("RayCronJob", False),
    ("RayClusterMTLS", False),
    ("RayClusterNetworkPolicy", False),
    ("RayClusterHistoryServer", False),
)
GPU_OPERATOR_VERSION = "v25.10.0"
# The Prometheus Operator release whose PodMonitor and ServiceMonitor CRDs ``crds/monitoring.coreos.com_*.yaml`` are.
# Only the CRDs are installed: no operator Deployment and no Prometheus, so monitors are validated and stored, never
# turned into scrape configurations.
PROMETHEUS_OPERATOR_VERSION = "v0.93.0"
BUILTIN_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def load_seed(name_or_path: str) -> dict:
    """A seed by name (``seeds/<name>.yaml``) or by path."""
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = SEED_DIR / f"{name_or_path}.yaml"
    with open(path, encoding="utf-8") as handle:
        seed = yaml.safe_load(handle) or {}
    seed.setdefault("name", path.stem)
    return seed


def seed_objects(seed: dict) -> list:
    """What the seed creates, in creation order: namespaces, nodes (capacity only), storage classes, operators, and
    the Prometheus Operator's monitor CRDs."""
    platform = seed.get("platform") or {}
    objects = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}} for name in _namespaces(seed)]
    objects += [build_node(name, group, index) for name, group, index in seed_nodes(seed)]
    objects += [_storage_class(storage_class) for storage_class in seed.get("storage_classes") or []]
    if platform.get("kuberay_operator") == "installed":
        namespace = _kuberay_namespace(platform)
        objects += crds_for_group("ray.io")
        objects += [_service_account("kuberay-operator", namespace), kuberay_operator_deployment(namespace)]
    if platform.get("gpu_operator") == "installed":
        namespace = _gpu_namespace(platform)
        objects += crds_for_group("nvidia.com")
        objects += [_service_account("gpu-operator", namespace), gpu_operator_deployment(namespace)]
        objects.append(cluster_policy(seed))
    if platform.get("prometheus_operator") == "installed":
        objects += crds_for_group("monitoring.coreos.com")
    return objects


def seed_nodes(seed: dict) -> list:
    """(name, group, index in the cluster) for every node the seed describes."""
    nodes = []
    for group in seed.get("node_groups") or []:
        name_format = group.get("name_format") or (group.get("name_prefix", "node") + "-{index}")
        for index in range(1, int(group.get("count", 1)) + 1):
            nodes.append((name_format.format(index=index), group, len(nodes)))
    return nodes


def seed_gpu_nodes(seed: dict) -> dict:
    """Node name -> the seed's ``gpu`` block, for the nodes that have GPUs (the GPU operator advertises them)."""
    return {name: _gpu_info(group) for name, group, dummy in seed_nodes(seed) if _gpu_info(group)}


def _gpu_info(group: dict) -> dict | None:
    gpu = group.get("gpu")
    if not gpu or not int(gpu.get("count", 0)):
        return None
    return gpu


def _namespaces(seed: dict) -> list:
    """The built-in namespaces, the seed's, and those of the installed operators."""
    platform = seed.get("platform") or {}
    names = list(BUILTIN_NAMESPACES)
    names += [name for name in seed.get("namespaces") or [] if name not in names]
    for operator, namespace in (
        ("kuberay_operator", _kuberay_namespace(platform)),
        ("gpu_operator", _gpu_namespace(platform)),
    ):
        if platform.get(operator) == "installed" and namespace not in names:
            names.append(namespace)
    return names


def _kuberay_namespace(platform: dict) -> str:
    return platform.get("kuberay_operator_namespace", "kuberay-system")


def _gpu_namespace(platform: dict) -> str:
    return platform.get("gpu_operator_namespace", "gpu-operator")


def build_node(name: str, group: dict, index: int) -> dict:
    """A node of a group: labels, taints, its pod CIDR (from its index) and capacity; conditions come later."""
    taints = [dict(t) for t in group.get("taints") or []]
    memory = parse_quantity(group.get("memory", "16Gi"))
    storage = parse_quantity(group.get("ephemeral_storage", "100Gi"))
    capacity = {
        "cpu": str(group.get("cpu", "4")),
        "ephemeral-storage": _ki(storage),
        "hugepages-1Gi": "0",
        "hugepages-2Mi": "0",
        "memory": _ki(memory),
        "pods": str(group.get("pods", 110)),
    }
    allocatable = dict(capacity)
    allocatable["memory"] = _ki(memory - 100 * 1024**2)  # the default hard eviction threshold
    allocatable["ephemeral-storage"] = str(int(storage * 9 // 10))  # nodefs.available<10%
    spec = {"podCIDR": f"10.244.{index}.0/24", "podCIDRs": [f"10.244.{index}.0/24"]}
    if taints:
        spec["taints"] = taints
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": _node_labels(name, group),
            "annotations": {
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
        },
        "spec": spec,
        "status": {"capacity": capacity, "allocatable": allocatable},
    }


def _node_labels(name: str, group: dict) -> dict:
    labels = {
        "beta.kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
    }
    if group.get("role") == "control-plane":
        labels["node-role.kubernetes.io/control-plane"] = ""
        labels["node.kubernetes.io/exclude-from-external-load-balancers"] = ""
    labels.update({k: str(v) for k, v in (group.get("labels") or {}).items()})
    return labels


def _ki(quantity) -> str:
    return f"{int(parse_quantity(quantity) // 1024)}Ki"


def _storage_class(storage_class: dict) -> dict:
    body = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": storage_class["name"]},
        "provisioner": storage_class["provisioner"],
        "reclaimPolicy": storage_class.get("reclaim_policy", "Delete"),
        "volumeBindingMode": storage_class.get("volume_binding_mode", "Immediate"),
        "allowVolumeExpansion": bool(storage_class.get("allow_volume_expansion", False)),
    }
    if storage_class.get("default"):
        body["metadata"]["annotations"] = {"storageclass.kubernetes.io/is-default-class": "true"}
    if storage_class.get("parameters"):
        body["parameters"] = {k: str(v) for k, v in storage_class["parameters"].items()}
    return body


def _service_account(name: str, namespace: str) -> dict:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}}


def crds_for_group(group: str) -> list:
    """Copies of the CRDs shipped in ``crds/`` for an API group (a minimal ClusterPolicy CRD when none is)."""
    found = [c for c in _crd_documents() if (c.get("spec") or {}).get("group") == group]
    if not found and group == "nvidia.com":
        found = [copy.deepcopy(_MINIMAL_CLUSTERPOLICY_CRD)]
    return found


def _crd_documents() -> list:
    cached = _CRD_CACHE.get("all")
    if cached is None:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        cached = []
        for path in sorted(CRD_DIR.glob("*.yaml")):
            with open(path, encoding="utf-8") as handle:
                for document in yaml.load_all(handle, Loader=loader):
                    if isinstance(document, dict) and document.get("kind") == "CustomResourceDefinition":
                        cached.append(document)
        _CRD_CACHE["all"] = cached
    return copy.deepcopy(cached)


_CRD_CACHE: dict = {}

_MINIMAL_CLUSTERPOLICY_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "clusterpolicies.nvidia.com"},
    "spec": {
        "group": "nvidia.com",
        "names": {
            "kind": "ClusterPolicy",
            "listKind": "ClusterPolicyList",
            "plural": "clusterpolicies",
            "singular": "clusterpolicy",
        },
        "scope": "Cluster",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
            }
        ],
    },
}


def kuberay_operator_deployment(namespace: str) -> dict:
    """The Deployment ``helm install kuberay-operator kuberay/kuberay-operator --version 1.7.0`` renders with the
    chart's default values (helm-chart/kuberay-operator/templates/deployment.yaml and _helpers.tpl at v1.7.0; the
    chart has no appVersion, so no app.kubernetes.io/version label)."""
    selector = {"app.kubernetes.io/name": "kuberay-operator", "app.kubernetes.io/instance": "kuberay-operator"}
    labels = {
        **selector,
        "helm.sh/chart": "kuberay-operator-" + KUBERAY_VERSION[1:],
        "app.kubernetes.io/managed-by": "Helm",
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "kuberay-operator",
            "namespace": namespace,
            "labels": labels,
            "annotations": {
                "meta.helm.sh/release-name": "kuberay-operator",
                "meta.helm.sh/release-namespace": namespace,
            },
        },
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": {**selector, "app.kubernetes.io/component": "kuberay-operator"}},
                "spec": {"serviceAccountName": "kuberay-operator", "containers": [_kuberay_operator_container()]},
            },
        },
    }


def _kuberay_operator_container() -> dict:
    probe = {"httpGet": {"path": "/metrics", "port": "http"}, "initialDelaySeconds": 10, "periodSeconds": 5}
    gates = ",".join(f"{name}={str(enabled).lower()}" for name, enabled in KUBERAY_FEATURE_GATES)
    return {
        "name": "kuberay-operator",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "image": KUBERAY_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "command": ["/manager"],
        "args": [
            "--log-stdout-encoder",
            "json",
            "--log-file-encoder",
            "json",
            "--enable-leader-election=true",
            "--enable-metrics=true",
            "--reconcile-concurrency=1",
            "--qps=100",
            "--burst=200",
            f"--feature-gates={gates}",
        ],
        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
        "livenessProbe": {**copy.deepcopy(probe), "failureThreshold": 5},
        "readinessProbe": {**copy.deepcopy(probe), "failureThreshold": 5},
        "resources": {"limits": {"cpu": "100m", "memory": "512Mi"}},
    }


def gpu_operator_deployment(namespace: str) -> dict:
    labels = {
        "app": "gpu-operator",
        "app.kubernetes.io/component": "gpu-operator",
        "app.kubernetes.io/managed-by": "Helm",
        "helm.sh/chart": f"gpu-operator-{GPU_OPERATOR_VERSION}",
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "gpu-operator",
            "namespace": namespace,
            "labels": labels,
            "annotations": {"meta.helm.sh/release-name": "gpu-operator", "meta.helm.sh/release-namespace": namespace},
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "gpu-operator", "app.kubernetes.io/component": "gpu-operator"}},
            "template": {
                "metadata": {"labels": {"app": "gpu-operator", "app.kubernetes.io/component": "gpu-operator"}},
                "spec": {
                    "serviceAccountName": "gpu-operator",
                    "tolerations": [
                        {
                            "key": "node-role.kubernetes.io/control-plane",
                            "operator": "Equal",
                            "value": "",
                            "effect": "NoSchedule",
                        }
                    ],
                    "containers": [
                        {
                            "name": "gpu-operator",
                            "image": f"nvcr.io/nvidia/gpu-operator:{GPU_OPERATOR_VERSION}",
                            "command": ["gpu-operator"],
                            "args": ["--leader-elect", "--zap-time-encoding=epoch", "--zap-log-level=info"],
                            "resources": {
                                "limits": {"cpu": "500m", "memory": "350Mi"},
                                "requests": {"cpu": "200m", "memory": "100Mi"},
                            },
                        }
                    ],
                },
            },
        },
    }


def cluster_policy(seed: dict) -> dict:
    mig = (seed.get("platform") or {}).get("mig_strategy", "single")
    return {
        "apiVersion": "nvidia.com/v1",
        "kind": "ClusterPolicy",
        "metadata": {"name": "cluster-policy", "labels": {"app.kubernetes.io/component": "gpu-operator"}},
        "spec": {
            "operator": {"defaultRuntime": "containerd"},
            "daemonsets": {"updateStrategy": "RollingUpdate"},
            "driver": {"enabled": False},
            "toolkit": {"enabled": True},
            "devicePlugin": {"enabled": True},
            "dcgm": {"enabled": False},
            "dcgmExporter": {"enabled": True},
            "gfd": {"enabled": True},
            "migManager": {"enabled": False},
            "nodeStatusExporter": {"enabled": False},
            "validator": {"plugin": {"env": [{"name": "WITH_WORKLOAD", "value": "false"}]}},
            "mig": {"strategy": mig},
        },
    }
