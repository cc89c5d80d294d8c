# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""_cluster_stamp: the record a full run leaves in the cluster and the re-run's one look, on the Nodes the Kubernetes
test bed's API server listed (tests/fixtures/kubernetes), the Ray nodes a real Ray 2.60 dashboard listed
(tests/fixtures/ray) and what a real vLLM 0.32 answered (tests/fixtures/vllm).

No Deployment, RayCluster, ClusterPolicy, ConfigMap, Pod or API server refusal is recorded anywhere in the repository:
the ones below are hand-made, with only the fields the code reads, and their variants are copies edited in each test.
The model look runs for real: the look program _model_volume sends into a pod runs here, with python3, on a model
folder marked complete by _model_dir's own write_marker."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ansible_collections.llmops.ray_vllm.plugins.module_utils import _cluster_stamp as stamps
from ansible_collections.llmops.ray_vllm.plugins.module_utils import _deployment_stamp
from ansible_collections.llmops.ray_vllm.plugins.module_utils import _vllm_health as health
from ansible_collections.llmops.ray_vllm.plugins.module_utils._kube_proxy import proxy_path
from ansible_collections.llmops.ray_vllm.plugins.module_utils._model_dir import (
    build_marker,
    model_files,
    restore_access,
    write_marker,
)
from ansible_collections.llmops.ray_vllm.plugins.module_utils._model_volume import look_program
from ansible_collections.llmops.ray_vllm.plugins.module_utils._ray_status import nodes_from_state_api

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures"
KUBERNETES = FIXTURES / "kubernetes"
RAY = FIXTURES / "ray" / "2.60.0-local-head1cpu-worker1cpu1gpu"
VLLM = FIXTURES / "vllm"
HEAD_ID = "078b18378b03be9c4330460bca578b2d5fb103fb327a0b5cd7189ab9"
WORKER_ID = "6f370cb1a5051d4ad3cc6f8d4b17b23f0338e69efca339d7f75fede2"
SERVED = "smollm2-135m-instruct"
# The uids the test bed gave the nodes of the gpu-nodes-2 capture.
NODE_UIDS = {
    "control-plane-1": "bf7844b6-da77-474d-a2ea-8b1e38cbfcf5",
    "control-plane-2": "a56b053a-805c-4ffb-a660-927dccac31f8",
    "control-plane-3": "3765a441-737a-4c9d-b461-71e88b1af928",
    "gpu-worker-1": "b1eb2658-443f-491a-adc4-c8182c46b3df",
    "gpu-worker-2": "ba603bfd-9033-409d-aba6-205ae509d24f",
}
SELECTOR = {"labelSelector": "app.kubernetes.io/part-of=ray-vllm"}
API = "https://127.0.0.1:6443"


def recorded_json(path):
    assert path.is_file(), f"missing recording {path} (see the README.md beside it)"
    return json.loads(path.read_text())


def recorded_nodes(capture="gpu-nodes-2"):
    """The NodeList the test bed's API server answered (``kubectl get nodes -o json``)."""
    return recorded_json(KUBERNETES / f"nodes-{capture}.json")


def node_named(node_list, name):
    return next(node for node in node_list["items"] if node["metadata"]["name"] == name)


def without_node(node_list, name):
    return dict(node_list, items=[node for node in node_list["items"] if node["metadata"]["name"] != name])


# --- hand-made objects (no recording of these kinds exists) -------------------------------------------------------

PART_OF = {"app.kubernetes.io/part-of": "ray-vllm"}
VLLM_DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {
        "name": "llm-vllm",
        "namespace": "llm",
        "uid": "5d0c7f0e-1111-4a4a-9a9a-000000000001",
        "generation": 2,
        "resourceVersion": "4711",
        "labels": PART_OF,
    },
    "status": {
        "observedGeneration": 2,
        "updatedReplicas": 1,
        "availableReplicas": 1,
        "conditions": [{"type": "Available", "status": "True"}],
    },
}
RAYCLUSTER = {
    "apiVersion": "ray.io/v1",
    "kind": "RayCluster",
    "metadata": {
        "name": "llm-raycluster",
        "namespace": "llm",
        "uid": "5d0c7f0e-1111-4a4a-9a9a-000000000002",
        "generation": 1,
        "resourceVersion": "4650",
        "labels": PART_OF,
    },
    "status": {"state": "ready", "readyWorkerReplicas": 1},
}
# ConfigMaps, Secrets and Services have no metadata.generation: they are known by resourceVersion.
CONFIGMAP = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {
        "name": "llm-vllm-config",
        "namespace": "llm",
        "uid": "5d0c7f0e-1111-4a4a-9a9a-000000000003",
        "resourceVersion": "4702",
        "labels": PART_OF,
    },
}
CLUSTER_POLICY = {
    "apiVersion": "nvidia.com/v1",
    "kind": "ClusterPolicy",
    "metadata": {"name": "cluster-policy", "uid": "5d0c7f0e-1111-4a4a-9a9a-000000000004", "generation": 1},
    "status": {"state": "ready"},
}
KUBERAY_OPERATOR = copy.deepcopy(VLLM_DEPLOYMENT)
KUBERAY_OPERATOR["metadata"].update(
    name="kuberay-operator", namespace="kuberay-system", uid="5d0c7f0e-1111-4a4a-9a9a-000000000005", generation=1
)
KUBERAY_OPERATOR["metadata"].pop("labels")
KUBERAY_OPERATOR["status"]["observedGeneration"] = 1
OPERATOR_REF = {
    "api_version": "apps/v1",
    "kind": "Deployment",
    "namespace": "kuberay-system",
    "name": "kuberay-operator",
}
OPERATOR_PATH = "/apis/apps/v1/namespaces/kuberay-system/deployments/kuberay-operator"
# What api_request makes of the API server's text answer for a resource it does not serve (a CRD not installed).
NOT_FOUND = (404, {"message": "404 page not found\n"})
# The Status the API server answers a list RBAC does not allow, as the test bed's RBAC words it (test_rbac.py).
FORBIDDEN_SECRETS = (
    403,
    {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": 'secrets is forbidden: User "system:serviceaccount:llm:deployer" cannot list resource "secrets" in '
        'API group "" in the namespace "llm"',
        "reason": "Forbidden",
        "code": 403,
    },
)


def listing(*objects):
    return (200, {"kind": "List", "apiVersion": "v1", "metadata": {}, "items": [copy.deepcopy(o) for o in objects]})


class Api:
    """The API server as ClusterObserver asks it: ``(status, body)`` by path, every GET kept with its query. A path
    not answered is a resource it does not serve (404)."""

    def __init__(self, **changes):
        self.answers = {
            "/api/v1/nodes": (200, recorded_nodes()),
            "/apis/nvidia.com/v1/clusterpolicies": listing(CLUSTER_POLICY),
            "/api/v1/namespaces/llm/configmaps": listing(CONFIGMAP),
            "/api/v1/namespaces/llm/secrets": listing(),
            "/api/v1/namespaces/llm/services": listing(),
            "/api/v1/namespaces/llm/persistentvolumeclaims": listing(),
            "/apis/apps/v1/namespaces/llm/deployments": listing(VLLM_DEPLOYMENT),
            "/apis/networking.k8s.io/v1/namespaces/llm/networkpolicies": listing(),
            "/apis/networking.k8s.io/v1/namespaces/llm/ingresses": listing(),
            "/apis/ray.io/v1/namespaces/llm/rayclusters": listing(RAYCLUSTER),
            "/apis/ray.io/v1/namespaces/llm/rayservices": listing(),
            # No Prometheus operator: podmonitors and servicemonitors are not served.
            OPERATOR_PATH: (200, copy.deepcopy(KUBERAY_OPERATOR)),
        }
        self.answers.update(changes)
        self.asked = []

    def get(self, path, query=None):
        self.asked.append((path, query))
        return self.answers.get(path, NOT_FOUND)

    def paths(self):
        return [path for path, _query in self.asked]


def namespaced_paths(namespace):
    return ["%s/namespaces/%s/%s" % (prefix, namespace, plural) for prefix, plural, _kind in stamps.NAMESPACED_KINDS]


# --- Ray and vLLM as the HeadObserver asks them through the Services' proxies ------------------------------------

RAY_URL = API + proxy_path("llm", "llm-raycluster-head-svc", "8265")
VLLM_URL = API + proxy_path("llm", "llm-vllm", "8000")
VLLM_ANSWERS = {
    ("GET", "/health"): "health-200.json",
    ("GET", "/v1/models"): "models-200.json",
    ("GET", "/version"): "version.json",
    ("GET", "/metrics"): "metrics-idle.txt",
    ("POST", "/v1/chat/completions"): "chat-200.json",
}
# What _vllm_health.observe makes of the recorded chat-200.json (its text, elapsed_s and usage).
COMPLETION = {
    "text": "I'm glad you're enjoying the service. I'm here to help with any",
    "latency_s": 2.177,
    "completion_tokens": 16,
    "model": SERVED,
}


def vllm_exchange(url, method="GET", headers=None, payload=None, timeout=10, validate_certs=True, tls=None):
    """http_exchange answering what the recorded vLLM answered, by method and path."""
    assert url.startswith(VLLM_URL), url
    name = VLLM_ANSWERS[(method, url[len(VLLM_URL) :])]
    if name.endswith(".txt"):
        status, body, elapsed = 200, (VLLM / name).read_text(), 0.01
    else:
        record = recorded_json(VLLM / name)
        status, body, elapsed = record["status"], record["body"], record["elapsed_s"]
    return {"url": url, "status": status, "body": body, "error": None, "error_kind": None, "elapsed_s": elapsed}


def nodes_seen(step):
    """What the dashboard told of Ray's nodes at a recorded step (idle, worker-killed)."""
    rows = nodes_from_state_api(recorded_json(RAY / f"{step}-dashboard-v0-nodes-detail.json"))
    return {"source_error": None, "node_details": rows}


class Sources:
    """Ray's dashboard and vLLM as a HeadObserver asks them, every ask kept; the cluster's record has no job."""

    def __init__(self, ray_step="idle"):
        self.ray_step = ray_step
        self.asked = []

    def ray(self, url, token):
        self.asked.append("ray")
        return nodes_seen(self.ray_step)

    def jobs(self, url, token):
        raise AssertionError("the Jobs API was asked")

    def vllm(self, **asked):
        self.asked.append("vllm")
        return health.observe(exchange=vllm_exchange, **asked)

    def observer(self, head):
        """As cluster_stamp's head_observer makes it: the proxies' URLs added to the recorded head."""
        return _deployment_stamp.HeadObserver(
            dict(head, dashboard_url=RAY_URL, vllm_url=VLLM_URL), self.ray, self.jobs, self.vllm, read=lambda p: ""
        )


HEAD_WHERE = {
    "dashboard": {"namespace": "llm", "name": "llm-raycluster-head-svc", "port": "8265"},
    "vllm": {"namespace": "llm", "name": "llm-vllm", "port": "8000", "scheme": "http"},
    "endpoint": "http://llm-vllm.llm.svc:8000/v1",
    "model": SERVED,
    "prompt": "Say hello.",
    "max_tokens": 16,
}


def recorded_stamp(api=None, digest="d1"):
    """The record a full run leaves: what ClusterObserver saw, and the head as cluster_stamp records it (the Ray
    nodes alive, without the proxies' URLs)."""
    head, why_not = _deployment_stamp.recorded_head(HEAD_WHERE, Sources().observer(HEAD_WHERE))
    assert why_not is None
    observer = stamps.ClusterObserver((api or Api()).get)
    return stamps.new_stamp(digest, observer.cluster(["llm"], [OPERATOR_REF]), head)


def no_cluster():
    raise AssertionError("a ClusterObserver was made")


def no_head(head):
    raise AssertionError("the head was asked")


# --- API paths -----------------------------------------------------------------------------------------------------


def test_list_paths_of_cluster_wide_and_namespaced_kinds():
    assert stamps.list_path("/api/v1", "nodes") == "/api/v1/nodes"
    assert stamps.list_path("/apis/nvidia.com/v1", "clusterpolicies") == "/apis/nvidia.com/v1/clusterpolicies"
    assert stamps.list_path("/apis/ray.io/v1", "rayclusters", "llm") == "/apis/ray.io/v1/namespaces/llm/rayclusters"


def test_named_path_of_a_deployment():
    assert stamps.named_path(OPERATOR_REF) == OPERATOR_PATH


@pytest.mark.parametrize(
    "api_version, kind",
    [("apps/v1", "StatefulSet"), ("extensions/v1beta1", "Deployment"), ("ray.io/v1", "RayCluster")],
)
def test_named_path_refuses_a_kind_not_in_named_kinds(api_version, kind):
    with pytest.raises(stamps.ClusterStampError) as raised:
        stamps.named_path(dict(OPERATOR_REF, api_version=api_version, kind=kind))
    assert str(raised.value) == "objects: %s %s cannot be looked at by name (only apps/v1 Deployment)" % (
        api_version,
        kind,
    )


# --- what is compared of an object ---------------------------------------------------------------------------------


def test_an_available_deployment_is_known_by_uid_and_generation_and_ready():
    assert stamps.object_print("Deployment", VLLM_DEPLOYMENT) == {
        "uid": "5d0c7f0e-1111-4a4a-9a9a-000000000001",
        "generation": 2,
        "ready": True,
    }


def test_a_deployment_that_lost_its_available_replica_is_not_ready():
    lost = copy.deepcopy(VLLM_DEPLOYMENT)
    # Its only pod went away: no replica available, Available False.
    lost["status"].update(availableReplicas=0, conditions=[{"type": "Available", "status": "False"}])
    assert stamps.object_print("Deployment", lost) == {
        "uid": "5d0c7f0e-1111-4a4a-9a9a-000000000001",
        "generation": 2,
        "ready": False,
    }


def test_a_raycluster_is_ready_once_kuberay_said_so():
    assert stamps.object_print("RayCluster", RAYCLUSTER) == {
        "uid": "5d0c7f0e-1111-4a4a-9a9a-000000000002",
        "generation": 1,
        "ready": True,
    }
    provisioning = copy.deepcopy(RAYCLUSTER)
    # KubeRay has not yet seen every pod ready: no state.
    provisioning["status"] = {"readyWorkerReplicas": 0}
    assert stamps.object_print("RayCluster", provisioning)["ready"] is False


def test_a_clusterpolicy_is_ready_in_state_ready():
    assert stamps.object_print("ClusterPolicy", CLUSTER_POLICY) == {
        "uid": "5d0c7f0e-1111-4a4a-9a9a-000000000004",
        "generation": 1,
        "ready": True,
    }
    converging = copy.deepcopy(CLUSTER_POLICY)
    # The GPU operator is rolling its operands out again.
    converging["status"]["state"] = "notReady"
    assert stamps.object_print("ClusterPolicy", converging)["ready"] is False


def test_a_configmap_without_generation_is_known_by_resource_version_and_has_no_readiness():
    assert stamps.object_print("ConfigMap", CONFIGMAP) == {
        "uid": "5d0c7f0e-1111-4a4a-9a9a-000000000003",
        "resourceVersion": "4702",
    }


def test_objects_print_keys_objects_by_kind_namespace_and_name():
    printed = stamps.objects_print(
        [("ClusterPolicy", [CLUSTER_POLICY]), ("ConfigMap", [CONFIGMAP]), ("Deployment", [VLLM_DEPLOYMENT])]
    )
    assert printed == {
        "ClusterPolicy cluster-policy": {"uid": "5d0c7f0e-1111-4a4a-9a9a-000000000004", "generation": 1, "ready": True},
        "ConfigMap llm/llm-vllm-config": {"uid": "5d0c7f0e-1111-4a4a-9a9a-000000000003", "resourceVersion": "4702"},
        "Deployment llm/llm-vllm": {"uid": "5d0c7f0e-1111-4a4a-9a9a-000000000001", "generation": 2, "ready": True},
    }


# --- object differences --------------------------------------------------------------------------------------------

LISTINGS = [("ConfigMap", [CONFIGMAP]), ("Deployment", [VLLM_DEPLOYMENT]), ("RayCluster", [RAYCLUSTER])]


def printed(*edits):
    """objects_print of LISTINGS with ``(kind, edited object)`` put in place of the one of that kind."""
    replaced = dict(LISTINGS)
    replaced.update({kind: [obj] for kind, obj in edits})
    return stamps.objects_print(list(replaced.items()))


def test_identical_objects_do_not_differ():
    assert stamps.object_differences(printed(), printed()) == []


def test_an_object_gone_and_one_new_are_named():
    seen = stamps.objects_print(LISTINGS[1:])  # the ConfigMap was deleted
    assert stamps.object_differences(printed(), seen) == [
        "ConfigMap llm/llm-vllm-config is gone (it was there after the last full run)"
    ]
    chat = copy.deepcopy(VLLM_DEPLOYMENT)
    # Another labelled Deployment appeared (the chat front end of another run).
    chat["metadata"].update(name="llm-chat-ui", uid="5d0c7f0e-1111-4a4a-9a9a-000000000009")
    seen = stamps.objects_print(LISTINGS + [("Deployment", [chat])])
    assert stamps.object_differences(printed(), seen) == [
        "Deployment llm/llm-chat-ui is there now; it was not after the last full run"
    ]


def test_an_object_made_again_is_named_by_its_uids_before_anything_else():
    again = copy.deepcopy(RAYCLUSTER)
    # Deleted and created again: a new uid, and KubeRay has not provisioned it yet.
    again["metadata"]["uid"] = "5d0c7f0e-2222-4a4a-9a9a-000000000002"
    again["status"] = {}
    assert stamps.object_differences(printed(), printed(("RayCluster", again))) == [
        "RayCluster llm/llm-raycluster was made again since the last full run (uid "
        "5d0c7f0e-2222-4a4a-9a9a-000000000002, was 5d0c7f0e-1111-4a4a-9a9a-000000000002)"
    ]


def test_a_changed_generation_is_named_once_rolled_out_and_as_not_ready_before():
    edited = copy.deepcopy(VLLM_DEPLOYMENT)
    # Its spec was edited and the controller has rolled the edit out.
    edited["metadata"]["generation"] = 3
    edited["status"]["observedGeneration"] = 3
    assert stamps.object_differences(printed(), printed(("Deployment", edited))) == [
        "Deployment llm/llm-vllm was changed since the last full run (generation 3, was 2)"
    ]
    # The controller has not seen the edit yet: not available, which is said first.
    edited["status"]["observedGeneration"] = 2
    assert stamps.object_differences(printed(), printed(("Deployment", edited))) == [
        "Deployment llm/llm-vllm is not ready"
    ]


def test_a_changed_resource_version_is_named_for_a_kind_without_generation():
    edited = copy.deepcopy(CONFIGMAP)
    edited["metadata"]["resourceVersion"] = "5120"  # its data was edited
    assert stamps.object_differences(printed(), printed(("ConfigMap", edited))) == [
        "ConfigMap llm/llm-vllm-config was changed since the last full run (resourceVersion 5120, was 4702)"
    ]


def test_an_object_no_longer_ready_or_ready_now_is_named():
    lost = copy.deepcopy(VLLM_DEPLOYMENT)
    # Its pod went away: no replica available, Available False.
    lost["status"].update(availableReplicas=0, conditions=[{"type": "Available", "status": "False"}])
    assert stamps.object_differences(printed(), printed(("Deployment", lost))) == [
        "Deployment llm/llm-vllm is not ready"
    ]
    assert stamps.object_differences(printed(("Deployment", lost)), printed()) == [
        "Deployment llm/llm-vllm is ready now (it was not after the last full run)"
    ]


def test_object_differences_come_one_per_object_sorted_by_key():
    recorded = stamps.objects_print(list(reversed(LISTINGS)))  # listed in another order than the keys sort
    edited = copy.deepcopy(CONFIGMAP)
    edited["metadata"]["resourceVersion"] = "5120"  # its data was edited
    chat = copy.deepcopy(VLLM_DEPLOYMENT)
    # Another labelled Deployment appeared, and the RayCluster was deleted.
    chat["metadata"].update(name="llm-chat-ui", uid="5d0c7f0e-1111-4a4a-9a9a-000000000009")
    seen = stamps.objects_print([("ConfigMap", [edited]), ("Deployment", [VLLM_DEPLOYMENT, chat])])
    assert stamps.object_differences(recorded, seen) == [
        "ConfigMap llm/llm-vllm-config was changed since the last full run (resourceVersion 5120, was 4702)",
        "Deployment llm/llm-chat-ui is there now; it was not after the last full run",
        "RayCluster llm/llm-raycluster is gone (it was there after the last full run)",
    ]


# --- nodes ---------------------------------------------------------------------------------------------------------


def test_nodes_print_is_the_uid_and_allocatable_gpus_of_each_recorded_node():
    assert stamps.nodes_print(recorded_nodes()["items"]) == {
        name: {"uid": uid, "gpus": 1 if name.startswith("gpu-worker") else 0} for name, uid in NODE_UIDS.items()
    }


def test_nodes_without_the_gpu_operator_offer_no_gpus():
    nodes = stamps.nodes_print(recorded_nodes("gpu-nodes-2-operator-absent")["items"])
    assert {name: entry["gpus"] for name, entry in nodes.items()} == dict.fromkeys(NODE_UIDS, 0)


def test_nodes_print_of_64_h200_nodes():
    nodes = stamps.nodes_print(recorded_nodes("gpu-nodes-64")["items"])
    assert len(nodes) == 67
    assert nodes["h200-01"] == {"uid": "788271b5-75b4-49b4-8fb9-1de01a525c59", "gpus": 8}
    assert sum(entry["gpus"] == 8 for entry in nodes.values()) == 64


def test_the_same_nodes_do_not_differ():
    recorded = stamps.nodes_print(recorded_nodes()["items"])
    assert stamps.node_differences(recorded, stamps.nodes_print(recorded_nodes()["items"])) == []


def test_a_node_gone_or_joined_is_named():
    everyone = stamps.nodes_print(recorded_nodes()["items"])
    # gpu-worker-2 was removed from the cluster.
    fewer = stamps.nodes_print(without_node(recorded_nodes(), "gpu-worker-2")["items"])
    assert stamps.node_differences(everyone, fewer) == ["the node gpu-worker-2 is gone"]
    assert stamps.node_differences(fewer, everyone) == ["the node gpu-worker-2 joined the cluster (1 GPUs)"]


def test_a_node_replaced_under_its_name_is_named_by_its_uids():
    node_list = recorded_nodes()
    # gpu-worker-1 was deleted and registered again: the same name, a new uid.
    node_named(node_list, "gpu-worker-1")["metadata"]["uid"] = "00000000-0000-4000-8000-000000000001"
    assert stamps.node_differences(
        stamps.nodes_print(recorded_nodes()["items"]), stamps.nodes_print(node_list["items"])
    ) == [
        "the node gpu-worker-1 was replaced (uid 00000000-0000-4000-8000-000000000001, was "
        "b1eb2658-443f-491a-adc4-c8182c46b3df)"
    ]


def test_a_node_whose_device_plugin_stopped_offers_other_gpus():
    stopped = recorded_nodes("gpu-nodes-2-no-device-plugin")
    before = copy.deepcopy(stopped)
    # Before the capture's change: gpu-worker-1's device plugin still registered its one GPU.
    node_named(before, "gpu-worker-1")["status"]["allocatable"]["nvidia.com/gpu"] = "1"
    assert stamps.node_differences(stamps.nodes_print(before["items"]), stamps.nodes_print(stopped["items"])) == [
        "the node gpu-worker-1 offers 0 GPUs, not 1"
    ]


def test_another_cluster_under_the_same_node_names_has_every_node_replaced_whatever_its_gpus():
    # Two test beds: the same names, other uids; gpu-worker-1/-2 also lost their GPUs (operator absent).
    lines = stamps.node_differences(
        stamps.nodes_print(list(reversed(recorded_nodes()["items"]))),  # the lines are sorted by name all the same
        stamps.nodes_print(recorded_nodes("gpu-nodes-2-operator-absent")["items"]),
    )
    assert [line.split(" (")[0] for line in lines] == ["the node %s was replaced" % name for name in NODE_UIDS]


# --- the record ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [None, {}, {"record.json": ""}, {"record.json": "{not json"}, {"record.json": "[]"}, {"other": "{}"}],
)
def test_no_record_is_read_from_data_without_one(data):
    assert stamps.parse_stamp(data) is None


def test_a_record_of_another_version_is_none():
    stamp = recorded_stamp()
    data = stamps.record_configmap("ray-vllm-record", "llm", dict(stamp, version=stamps.STAMP_VERSION + 1))["data"]
    assert stamps.parse_stamp(data) is None


def test_the_record_configmap_carries_the_record_labels_and_reads_back_as_written():
    stamp = recorded_stamp()
    configmap = stamps.record_configmap("ray-vllm-record", "llm", stamp)
    assert {key: configmap[key] for key in ("apiVersion", "kind", "metadata")} == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "ray-vllm-record",
            "namespace": "llm",
            "labels": {
                "app.kubernetes.io/managed-by": "llmops.ray_vllm",
                "app.kubernetes.io/component": "deployment-record",
            },
        },
    }
    # Not labelled part-of: the look's list of ConfigMaps leaves the record out, so writing it changes nothing.
    assert "app.kubernetes.io/part-of" not in configmap["metadata"]["labels"]
    assert configmap["metadata"]["labels"] is not stamps.RECORD_LABELS
    assert list(configmap["data"]) == ["record.json"]
    assert configmap["data"]["record.json"].endswith("}\n")
    assert stamps.parse_stamp(configmap["data"]) == stamp


def test_a_new_stamp_holds_the_cluster_the_digest_and_the_head():
    stamp = recorded_stamp()
    assert sorted(stamp) == ["digest", "head", "named", "named_refs", "namespaces", "nodes", "objects", "version"]
    assert (stamp["version"], stamp["digest"]) == (1, "d1")
    assert stamp["head"] == dict(HEAD_WHERE, node_ids=[HEAD_ID, WORKER_ID])


def test_settings_differ_without_a_record_or_with_another_digest():
    # _deployment_stamp's comparison, worded for the cluster by look().
    assert stamps.settings_differences(None, "d1", where="in the cluster") == ["no record of a full run in the cluster"]
    assert stamps.settings_differences({"digest": "d0"}, "d1") == [
        "the settings or the collection changed since the last full run"
    ]
    assert stamps.settings_differences({"digest": "d1"}, "d1") == []


# --- the cluster: nodes, then objects, then named objects, stopping at the first difference -----------------------


class Observer:
    """A ClusterObserver's answers, set, every call kept."""

    def __init__(self, stamp, **answers):
        self.answers = dict(nodes=stamp["nodes"], objects=stamp["objects"], named=stamp["named"])
        self.answers.update(answers)
        self.called = []

    def nodes(self):
        self.called.append("nodes")
        return self.answers["nodes"]

    def objects(self, namespaces):
        self.called.append(("objects", namespaces))
        return self.answers["objects"]

    def named(self, refs):
        self.called.append(("named", refs))
        return self.answers["named"]


def test_a_node_difference_ends_the_cluster_look_before_the_objects():
    stamp = recorded_stamp()
    observer = Observer(stamp, nodes=stamps.nodes_print(without_node(recorded_nodes(), "gpu-worker-2")["items"]))
    assert stamps.cluster_differences(stamp, observer) == ["the node gpu-worker-2 is gone"]
    assert observer.called == ["nodes"]


def test_an_object_difference_ends_the_cluster_look_before_the_named_objects():
    stamp = recorded_stamp()
    seen = dict(stamp["objects"])
    seen.pop("RayCluster llm/llm-raycluster")  # the RayCluster was deleted
    observer = Observer(stamp, objects=seen)
    assert stamps.cluster_differences(stamp, observer) == [
        "RayCluster llm/llm-raycluster is gone (it was there after the last full run)"
    ]
    assert observer.called == ["nodes", ("objects", ["llm"])]


def test_a_named_object_difference_is_found_last():
    stamp = recorded_stamp()
    lost = copy.deepcopy(KUBERAY_OPERATOR)
    # The KubeRay operator's pod went away.
    lost["status"].update(availableReplicas=0, conditions=[{"type": "Available", "status": "False"}])
    observer = Observer(stamp, named=stamps.objects_print([("Deployment", [lost])]))
    assert stamps.cluster_differences(stamp, observer) == ["Deployment kuberay-system/kuberay-operator is not ready"]
    assert observer.called == ["nodes", ("objects", ["llm"]), ("named", [OPERATOR_REF])]


def test_the_same_cluster_does_not_differ_after_all_three_looks():
    stamp = recorded_stamp()
    observer = Observer(stamp)
    assert stamps.cluster_differences(stamp, observer) == []
    assert observer.called == ["nodes", ("objects", ["llm"]), ("named", [OPERATOR_REF])]


# --- the look ------------------------------------------------------------------------------------------------------


def test_a_look_without_a_record_or_with_another_digest_makes_no_cluster_observer():
    assert stamps.look(None, "d1", no_cluster, no_head, _deployment_stamp.head_differences) == (
        ["no record of a full run in the cluster"],
        None,
    )
    assert stamps.look(recorded_stamp(digest="d0"), "d1", no_cluster, no_head, _deployment_stamp.head_differences) == (
        ["the settings or the collection changed since the last full run"],
        None,
    )


def test_a_look_stops_at_a_cluster_difference_before_asking_the_head():
    stamp = recorded_stamp()
    # gpu-worker-2 left the cluster since the record.
    api = Api(**{"/api/v1/nodes": (200, without_node(recorded_nodes(), "gpu-worker-2"))})
    lines, answer = stamps.look(
        stamp, "d1", lambda: stamps.ClusterObserver(api.get), no_head, _deployment_stamp.head_differences
    )
    assert (lines, answer) == (["the node gpu-worker-2 is gone"], None)
    assert api.paths() == ["/api/v1/nodes"]


def test_a_look_stops_at_a_gone_ray_node_before_asking_vllm():
    stamp = recorded_stamp()
    sources = Sources(ray_step="worker-killed")
    lines, answer = stamps.look(
        stamp, "d1", lambda: stamps.ClusterObserver(Api().get), sources.observer, _deployment_stamp.head_differences
    )
    assert (lines, answer) == (["Ray nodes alive after the last full run are gone: %s" % WORKER_ID], None)
    assert sources.asked == ["ray"]


def test_a_look_finding_nothing_asks_every_part_once_and_returns_vllms_answer():
    stamp = recorded_stamp()
    api, sources = Api(), Sources()
    lines, answer = stamps.look(
        stamp, "d1", lambda: stamps.ClusterObserver(api.get), sources.observer, _deployment_stamp.head_differences
    )
    assert (lines, answer) == ([], COMPLETION)
    assert api.paths() == ["/api/v1/nodes", "/apis/nvidia.com/v1/clusterpolicies"] + namespaced_paths("llm") + [
        OPERATOR_PATH
    ]
    assert sources.asked == ["ray", "vllm"]


def test_a_record_read_back_from_its_configmap_looks_the_same_as_the_record():
    data = stamps.record_configmap("ray-vllm-record", "llm", recorded_stamp())["data"]
    lines, answer = stamps.look(
        stamps.parse_stamp(data),
        "d1",
        lambda: stamps.ClusterObserver(Api().get),
        Sources().observer,
        _deployment_stamp.head_differences,
    )
    assert (lines, answer) == ([], COMPLETION)


def test_a_look_at_a_record_without_a_head_compares_the_cluster_only():
    # cluster_stamp records head None where its head option is not given; such a look never asks Ray or vLLM.
    stamp = stamps.new_stamp("d1", stamps.ClusterObserver(Api().get).cluster(["llm"], [OPERATOR_REF]), None)
    assert stamp["head"] is None
    api = Api()
    assert stamps.look(
        stamp, "d1", lambda: stamps.ClusterObserver(api.get), no_head, _deployment_stamp.head_differences
    ) == ([], None)
    assert api.paths() == ["/api/v1/nodes", "/apis/nvidia.com/v1/clusterpolicies"] + namespaced_paths("llm") + [
        OPERATOR_PATH
    ]


# --- ClusterObserver against the API server ------------------------------------------------------------------------


def test_the_nodes_are_listed_without_a_selector():
    api = Api()
    assert stamps.ClusterObserver(api.get).nodes() == stamps.nodes_print(recorded_nodes()["items"])
    assert api.asked == [("/api/v1/nodes", None)]


def test_the_objects_are_the_clusterpolicies_and_each_namespaces_labelled_objects():
    api = Api()
    assert stamps.ClusterObserver(api.get).objects(["llm"]) == {
        "ClusterPolicy cluster-policy": {"uid": "5d0c7f0e-1111-4a4a-9a9a-000000000004", "generation": 1, "ready": True},
        "ConfigMap llm/llm-vllm-config": {"uid": "5d0c7f0e-1111-4a4a-9a9a-000000000003", "resourceVersion": "4702"},
        "Deployment llm/llm-vllm": {"uid": "5d0c7f0e-1111-4a4a-9a9a-000000000001", "generation": 2, "ready": True},
        "RayCluster llm/llm-raycluster": {
            "uid": "5d0c7f0e-1111-4a4a-9a9a-000000000002",
            "generation": 1,
            "ready": True,
        },
    }
    assert api.asked == [("/apis/nvidia.com/v1/clusterpolicies", None)] + [
        (path, SELECTOR) for path in namespaced_paths("llm")
    ]


def test_each_namespace_is_listed_once_in_order():
    api = Api()
    stamps.ClusterObserver(api.get).objects(["monitoring", "llm", "llm"])
    assert api.paths() == ["/apis/nvidia.com/v1/clusterpolicies"] + namespaced_paths("llm") + namespaced_paths(
        "monitoring"
    )


def test_a_kind_the_api_server_does_not_serve_has_no_objects():
    api = Api(
        **{"/apis/nvidia.com/v1/clusterpolicies": NOT_FOUND, "/apis/ray.io/v1/namespaces/llm/rayclusters": NOT_FOUND}
    )
    assert sorted(stamps.ClusterObserver(api.get).objects(["llm"])) == [
        "ConfigMap llm/llm-vllm-config",
        "Deployment llm/llm-vllm",
    ]


def test_a_list_refused_names_the_answer_the_path_and_the_fix_and_ends_the_look():
    api = Api(**{"/api/v1/namespaces/llm/secrets": FORBIDDEN_SECRETS})
    with pytest.raises(stamps.ClusterStampError) as raised:
        stamps.ClusterObserver(api.get).objects(["llm"])
    assert str(raised.value) == (
        'the API server answered 403 to GET /api/v1/namespaces/llm/secrets: secrets is forbidden: User "system:'
        'serviceaccount:llm:deployer" cannot list resource "secrets" in API group "" in the namespace "llm". Fix: '
        "grant list on secrets (docs/least-privilege.md), or set ray_vllm_fast_rerun=false"
    )
    assert api.paths()[-1] == "/api/v1/namespaces/llm/secrets"


def test_an_api_server_not_reached_is_named_by_its_connection_error():
    # api_request answers status 0 with the error's reason where the connection fails.
    api = Api(**{"/api/v1/nodes": (0, {"message": "[Errno 111] Connection refused"})})
    with pytest.raises(stamps.ClusterStampError) as raised:
        stamps.ClusterObserver(api.get).nodes()
    assert str(raised.value) == (
        "the API server does not answer GET /api/v1/nodes: [Errno 111] Connection refused. Fix: check the "
        "kubeconfig's server"
    )


def test_a_named_object_is_read_by_name_and_absent_when_not_found():
    api = Api()
    assert stamps.ClusterObserver(api.get).named([OPERATOR_REF]) == {
        "Deployment kuberay-system/kuberay-operator": {
            "uid": "5d0c7f0e-1111-4a4a-9a9a-000000000005",
            "generation": 1,
            "ready": True,
        }
    }
    assert api.asked == [(OPERATOR_PATH, None)]
    gone = Api(**{OPERATOR_PATH: (404, {"kind": "Status", "reason": "NotFound", "code": 404})})
    assert stamps.ClusterObserver(gone.get).named([OPERATOR_REF]) == {}


# The Status the API server answers a GET RBAC does not allow, worded as FORBIDDEN_SECRETS is (hand-made).
FORBIDDEN_OPERATOR = (
    403,
    {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": 'deployments.apps "kuberay-operator" is forbidden: User "system:serviceaccount:llm:deployer" cannot '
        'get resource "deployments" in API group "apps" in the namespace "kuberay-system"',
        "reason": "Forbidden",
        "code": 403,
    },
)


def test_a_named_object_refused_names_the_answer_the_path_and_the_get_to_grant():
    api = Api(**{OPERATOR_PATH: FORBIDDEN_OPERATOR})
    with pytest.raises(stamps.ClusterStampError) as raised:
        stamps.ClusterObserver(api.get).named([OPERATOR_REF])
    assert str(raised.value) == (
        "the API server answered 403 to GET /apis/apps/v1/namespaces/kuberay-system/deployments/kuberay-operator: "
        'deployments.apps "kuberay-operator" is forbidden: User "system:serviceaccount:llm:deployer" cannot get '
        'resource "deployments" in API group "apps" in the namespace "kuberay-system". Fix: grant get on Deployment '
        "(docs/least-privilege.md), or set ray_vllm_fast_rerun=false"
    )


def test_a_named_object_not_reached_names_the_connection_error():
    api = Api(**{OPERATOR_PATH: (0, {"message": "timed out"})})
    with pytest.raises(stamps.ClusterStampError) as raised:
        stamps.ClusterObserver(api.get).named([OPERATOR_REF])
    assert str(raised.value) == (
        "the API server does not answer GET %s: timed out. Fix: check the kubeconfig's server" % OPERATOR_PATH
    )


def test_the_cluster_part_of_a_record():
    api = Api()
    cluster = stamps.ClusterObserver(api.get).cluster(["llm", "llm"], (OPERATOR_REF,))
    assert cluster == {
        "namespaces": ["llm"],
        "nodes": stamps.nodes_print(recorded_nodes()["items"]),
        "objects": stamps.ClusterObserver(Api().get).objects(["llm"]),
        "named_refs": [OPERATOR_REF],
        "named": {
            "Deployment kuberay-system/kuberay-operator": {
                "uid": "5d0c7f0e-1111-4a4a-9a9a-000000000005",
                "generation": 1,
                "ready": True,
            }
        },
    }
    assert len(cluster["objects"]) == 4
    assert api.paths() == ["/api/v1/nodes", "/apis/nvidia.com/v1/clusterpolicies"] + namespaced_paths("llm") + [
        OPERATOR_PATH
    ]


# --- what site.yml prints and decides ------------------------------------------------------------------------------

STANDING = {
    "changed": False,
    "current": True,
    "differences": [],
    "written": False,
    "answer": COMPLETION,
    "endpoint": {
        "url": "Service llm/llm-vllm:8000",
        "endpoint": "http://llm-vllm.llm.svc:8000/v1",
        "model": SERVED,
        "question": "Say hello.",
    },
}
STANDS = (
    "The deployment stands as the last full run left it: the same settings and collection, the same nodes, the "
    "objects the roles made unchanged and ready, the same Ray nodes alive and vLLM answering. The roles are skipped "
    "(ray_vllm_fast_rerun=false runs them all)."
)


def test_a_skipped_look_is_a_difference():
    summary = stamps.summarize_look({"changed": False, "skipped": True, "skip_reason": "Conditional result was False"})
    assert summary == {
        "standing": False,
        "lines": [
            "A full run follows; the cluster differs from the last full run's record:",
            "no look (ray_vllm_fast_rerun is off)",
        ],
    }


def test_a_look_that_found_differences_lists_them_under_the_heading():
    look_result = dict(
        STANDING,
        current=False,
        differences=["the node gpu-worker-2 is gone", "Deployment llm/llm-vllm is not ready"],
    )
    del look_result["answer"]
    assert stamps.summarize_look(look_result) == {
        "standing": False,
        "lines": [
            "A full run follows; the cluster differs from the last full run's record:",
            "the node gpu-worker-2 is gone",
            "Deployment llm/llm-vllm is not ready",
        ],
    }


def test_a_deployment_that_stands_prints_the_endpoint_the_question_and_the_answer():
    assert stamps.summarize_look(STANDING) == {
        "standing": True,
        "lines": [
            STANDS,
            "Endpoint: http://llm-vllm.llm.svc:8000/v1 (model smollm2-135m-instruct)",
            "Q: Say hello.",
            "A: I'm glad you're enjoying the service. I'm here to help with any (2.177 s)",
        ],
    }


def test_without_a_client_url_the_endpoint_is_the_service():
    summary = stamps.summarize_look(dict(STANDING, endpoint=dict(STANDING["endpoint"], endpoint="")))
    assert summary["lines"][1] == "Endpoint: Service llm/llm-vllm:8000 (model smollm2-135m-instruct)"


def test_a_standing_look_without_an_answer_prints_one_line_that_claims_no_ray_nodes_or_vllm():
    # A record without a head: the look compared the cluster only, so Ray and vLLM are not said to answer.
    look_result = {key: value for key, value in STANDING.items() if key not in ("answer", "endpoint")}
    assert stamps.summarize_look(look_result) == {
        "standing": True,
        "lines": [
            "The deployment stands as the last full run left it: the same settings and collection, the same nodes, "
            "the objects the roles made unchanged and ready. The roles are skipped (ray_vllm_fast_rerun=false runs "
            "them all)."
        ],
    }


# --- the model's files, as a running pod that mounts the claim reads them -----------------------------------------

CLAIM = "llm-models"
PODS_PATH = "/api/v1/namespaces/llm/pods"
SMOLLM2_CONFIG = FIXTURES / "models" / "smollm2-135m-instruct" / "config.json"
# As cluster_stamp records it (action=record, model option): where the download Job mounts the claim, the model's
# folder there, and the record's namespace.
MODEL = {"claim": CLAIM, "path": "/models/SmolLM2-135M-Instruct", "claim_root": "/models", "namespace": "llm"}
# setpriv drops what the serving containers lack (as test_model_dir_access.py does): root reads through a chmod 000.
WITHOUT_DAC = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-all"]


@pytest.fixture
def claim(tmp_path):
    """The claim's files as the pod mounts them: the model's folder with a real config.json, marked complete by
    _model_dir's own write_marker with the inventory of its files (as the download Job leaves it)."""
    root = tmp_path / "models"
    folder = root / "SmolLM2-135M-Instruct"
    folder.mkdir(parents=True)
    assert SMOLLM2_CONFIG.is_file(), f"missing recording {SMOLLM2_CONFIG} (see the README.md beside it)"
    shutil.copy(SMOLLM2_CONFIG, folder / "config.json")
    (folder / "tokenizer.json").write_text("{}" * 50)
    (folder / "model.safetensors").write_bytes(b"\0" * 128)
    marker = build_marker(
        "huggingface", "HuggingFaceTB/SmolLM2-135M-Instruct", "main", None, files=model_files(str(folder))
    )
    write_marker(str(folder), marker)
    yield root
    restore_access(str(folder))


def vllm_pod(mount_path, name="llm-vllm-7c9d8f6b5-x2x4k", phase="Running", ready="True"):
    """A vLLM pod as vllm_serve's deployment.yaml.j2 makes it, with only what claim_reader reads (hand-made: no pod
    is recorded): container vllm mounting the claim read-only at ``mount_path`` (/models on the cluster)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "llm", "labels": dict(PART_OF)},
        "spec": {
            "containers": [
                {
                    "name": "vllm",
                    "volumeMounts": [
                        {"name": "models", "mountPath": str(mount_path), "readOnly": True},
                        {"name": "dshm", "mountPath": "/dev/shm"},
                    ],
                }
            ],
            "volumes": [
                {"name": "models", "persistentVolumeClaim": {"claimName": CLAIM, "readOnly": True}},
                {"name": "dshm", "emptyDir": {"medium": "Memory"}},
            ],
        },
        "status": {"phase": phase, "conditions": [{"type": "Ready", "status": ready}]},
    }


class Pods:
    """Exec into a pod, for real: the command runs here, as the container would run it; every exec kept."""

    def __init__(self, without_dac=False):
        self.without_dac = without_dac
        self.ran = []

    def run_in_pod(self, namespace, pod, container, argv):
        self.ran.append((namespace, pod, container, argv))
        prefix = WITHOUT_DAC if self.without_dac else []
        return subprocess.run([*prefix, *argv], capture_output=True, text=True, check=True).stdout


def model_stamp(api=None):
    return dict(recorded_stamp(api), model=dict(MODEL))


def test_the_model_look_runs_the_look_program_in_the_running_pod_that_mounts_the_claim(claim):
    api, pods = Api(**{PODS_PATH: listing(vllm_pod(claim))}), Pods()
    reader, answer = stamps.ClusterObserver(api.get, pods.run_in_pod).model(MODEL)
    folder = str(claim / "SmolLM2-135M-Instruct")
    assert reader == {"pod": "llm-vllm-7c9d8f6b5-x2x4k", "container": "vllm", "path": folder}
    assert api.asked == [(PODS_PATH, None)]
    assert pods.ran == [("llm", "llm-vllm-7c9d8f6b5-x2x4k", "vllm", ["python3", "-c", look_program(), folder])]
    look = json.loads(answer)
    assert look["states"] == {
        "config.json": SMOLLM2_CONFIG.stat().st_size,
        "model.safetensors": 128,
        "tokenizer.json": 100,
    }
    assert look["marker"]["model_id"] == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_an_intact_model_does_not_differ(claim):
    api, pods = Api(**{PODS_PATH: listing(vllm_pod(claim))}), Pods()
    assert stamps.model_differences(MODEL, *stamps.ClusterObserver(api.get, pods.run_in_pod).model(MODEL)) == []


def test_a_file_the_marker_lists_removed_is_the_damage_named_with_the_claim_and_the_pod(claim):
    (claim / "SmolLM2-135M-Instruct" / "tokenizer.json").unlink()
    api, pods = Api(**{PODS_PATH: listing(vllm_pod(claim))}), Pods()
    assert stamps.model_differences(MODEL, *stamps.ClusterObserver(api.get, pods.run_in_pod).model(MODEL)) == [
        "the model on llm-models is damaged, as pod llm-vllm-7c9d8f6b5-x2x4k reads it: tokenizer.json is missing "
        "(the completion marker lists it, 100 bytes)"
    ]


def test_a_truncated_file_and_a_removed_one_are_named_in_one_line(claim):
    (claim / "SmolLM2-135M-Instruct" / "tokenizer.json").unlink()
    (claim / "SmolLM2-135M-Instruct" / "model.safetensors").write_bytes(b"\0" * 10)
    api, pods = Api(**{PODS_PATH: listing(vllm_pod(claim))}), Pods()
    assert stamps.model_differences(MODEL, *stamps.ClusterObserver(api.get, pods.run_in_pod).model(MODEL)) == [
        "the model on llm-models is damaged, as pod llm-vllm-7c9d8f6b5-x2x4k reads it: model.safetensors has 10 "
        "bytes where the completion marker says 128; tokenizer.json is missing (the completion marker lists it, 100 "
        "bytes)"
    ]


def test_a_removed_marker_is_named(claim):
    folder = claim / "SmolLM2-135M-Instruct"
    (folder / ".ray_vllm_complete.json").unlink()
    api, pods = Api(**{PODS_PATH: listing(vllm_pod(claim))}), Pods()
    assert stamps.model_differences(MODEL, *stamps.ClusterObserver(api.get, pods.run_in_pod).model(MODEL)) == [
        "the model on llm-models is damaged, as pod llm-vllm-7c9d8f6b5-x2x4k reads it: %s has no completion marker "
        ".ray_vllm_complete.json." % folder
    ]


def test_a_model_folder_locked_by_chmod_is_named_as_a_reader_without_dac_override_sees_it(claim):
    # Root reads through mode 000 with CAP_DAC_OVERRIDE; the serving containers have none, and neither has setpriv's.
    if os.geteuid() == 0 and not shutil.which("setpriv"):
        pytest.skip("as root, needs setpriv to drop CAP_DAC_OVERRIDE")
    folder = claim / "SmolLM2-135M-Instruct"
    os.chmod(folder, 0)
    api, pods = Api(**{PODS_PATH: listing(vllm_pod(claim))}), Pods(without_dac=os.geteuid() == 0)
    assert stamps.model_differences(MODEL, *stamps.ClusterObserver(api.get, pods.run_in_pod).model(MODEL)) == [
        "the model on llm-models is damaged, as pod llm-vllm-7c9d8f6b5-x2x4k reads it: %s/.ray_vllm_complete.json "
        "cannot be read (Permission denied)." % folder
    ]


def test_no_running_ready_pod_mounting_the_claim_is_the_no_reader_line_and_nothing_runs(claim):
    other = vllm_pod(claim, name="llm-chat-ui-5b6c7d8e9f-abcde")
    other["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] = "llm-chat-data"
    pods_seen = [
        vllm_pod(claim, name="llm-vllm-7c9d8f6b5-pend1", phase="Pending", ready="False"),
        vllm_pod(claim, name="llm-vllm-7c9d8f6b5-start", ready="False"),  # still loading the weights
        other,
    ]
    for answer in (listing(*pods_seen), listing()):
        api, pods = Api(**{PODS_PATH: answer}), Pods()
        reader, seen = stamps.ClusterObserver(api.get, pods.run_in_pod).model(MODEL)
        assert (reader, seen, pods.ran) == (None, "", [])
        assert stamps.model_differences(MODEL, reader, seen) == [
            "no running pod mounts the claim llm-models to look at the model's files"
        ]


def test_a_pod_list_refused_names_the_list_on_pods_to_grant():
    forbidden = copy.deepcopy(FORBIDDEN_SECRETS)
    forbidden[1]["message"] = forbidden[1]["message"].replace("secrets", "pods")
    api = Api(**{PODS_PATH: forbidden})
    with pytest.raises(stamps.ClusterStampError) as raised:
        stamps.ClusterObserver(api.get, Pods().run_in_pod).model(MODEL)
    assert str(raised.value) == (
        'the API server answered 403 to GET /api/v1/namespaces/llm/pods: pods is forbidden: User "system:'
        'serviceaccount:llm:deployer" cannot list resource "pods" in API group "" in the namespace "llm". Fix: '
        "grant list on pods (docs/least-privilege.md), or set ray_vllm_fast_rerun=false"
    )


def test_an_exec_that_printed_no_look_finds_no_damage():
    # Cluster.run_in_pod answers "" where exec is refused or fails, and seen_damage takes that as no look: the model
    # look then finds nothing to say (what the code does now; the report of this change names it).
    reader = {"pod": "llm-vllm-7c9d8f6b5-x2x4k", "container": "vllm", "path": "/models/SmolLM2-135M-Instruct"}
    assert stamps.model_differences(MODEL, reader, "") == []


def test_a_look_with_a_model_reads_it_after_the_cluster_and_before_the_head(claim):
    api, pods, sources = Api(**{PODS_PATH: listing(vllm_pod(claim))}), Pods(), Sources()
    stamp = model_stamp()
    lines, answer = stamps.look(
        stamp,
        "d1",
        lambda: stamps.ClusterObserver(api.get, pods.run_in_pod),
        sources.observer,
        _deployment_stamp.head_differences,
    )
    assert (lines, answer) == ([], COMPLETION)
    assert api.paths() == ["/api/v1/nodes", "/apis/nvidia.com/v1/clusterpolicies"] + namespaced_paths("llm") + [
        OPERATOR_PATH,
        PODS_PATH,
    ]
    assert len(pods.ran) == 1 and sources.asked == ["ray", "vllm"]


def test_a_look_at_a_damaged_model_stops_before_the_head(claim):
    (claim / "SmolLM2-135M-Instruct" / "model.safetensors").unlink()
    api, pods = Api(**{PODS_PATH: listing(vllm_pod(claim))}), Pods()
    lines, answer = stamps.look(
        model_stamp(),
        "d1",
        lambda: stamps.ClusterObserver(api.get, pods.run_in_pod),
        no_head,
        _deployment_stamp.head_differences,
    )
    assert (lines, answer) == (
        [
            "the model on llm-models is damaged, as pod llm-vllm-7c9d8f6b5-x2x4k reads it: model.safetensors is "
            "missing (the completion marker lists it, 128 bytes)"
        ],
        None,
    )


def test_a_look_with_a_cluster_difference_does_not_look_at_the_model(claim):
    api = Api(**{"/api/v1/nodes": (200, without_node(recorded_nodes(), "gpu-worker-2")), PODS_PATH: listing()})
    pods = Pods()
    lines, _answer = stamps.look(
        model_stamp(),
        "d1",
        lambda: stamps.ClusterObserver(api.get, pods.run_in_pod),
        no_head,
        _deployment_stamp.head_differences,
    )
    assert lines == ["the node gpu-worker-2 is gone"]
    assert PODS_PATH not in api.paths() and pods.ran == []


def test_a_look_at_a_record_without_a_head_still_looks_at_the_model(claim):
    stamp = dict(stamps.new_stamp("d1", stamps.ClusterObserver(Api().get).cluster(["llm"], [OPERATOR_REF]), None))
    stamp["model"] = dict(MODEL)
    api, pods = Api(**{PODS_PATH: listing()}), Pods()
    assert stamps.look(
        stamp,
        "d1",
        lambda: stamps.ClusterObserver(api.get, pods.run_in_pod),
        no_head,
        _deployment_stamp.head_differences,
    ) == (["no running pod mounts the claim llm-models to look at the model's files"], None)
