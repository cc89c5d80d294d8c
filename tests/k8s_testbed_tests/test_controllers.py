# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The emulated control plane: seeds, scheduling, workloads, storage, KubeRay and the GPU operator, on a bare Store."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import copy
import json

import pytest
from k8s_testbed import controllers, resources, seeding, state, store


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture(autouse=True)
def fake_clock(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(controllers.base, "clock", clock)
    return clock


def make_bed(seed_name: str = "gpu-nodes-2", seed: dict | None = None):
    registry = resources.ResourceRegistry()
    objects = store.Store(registry)
    bed = state.TestBedState(registry=registry, objects=objects, seed=seed or controllers.load_seed(seed_name))
    controllers.apply_seed(bed)
    bed.loops = [cls(bed) for cls in controllers.CONTROLLERS.values()]
    converge(bed)
    return bed


def converge(bed, rounds: int = 60, advance: float = 0.0) -> None:
    """Run every controller until a round writes nothing; `advance` moves the fake clock each round."""
    for _dummy in range(rounds):
        before = bed.objects.current_resource_version
        bed.objects.finish_terminations()
        for loop in bed.loops:
            loop.reconcile()
        controllers.base.clock.now += advance
        if bed.objects.current_resource_version == before:
            return
    raise AssertionError("controllers did not converge")


def settle(bed, seconds: float = 3.0, step: float = 0.5) -> None:
    """Let emulated time pass (Job pods finishing, crash loops) and converge."""
    for _dummy in range(int(seconds / step)):
        controllers.base.clock.now += step
        converge(bed)


def rtype(bed, api_version, kind):
    return bed.type_of(api_version, kind)


def create(bed, obj):
    resource_type = rtype(bed, obj["apiVersion"], obj["kind"])
    namespace = obj["metadata"].get("namespace", "default") if resource_type.namespaced else None
    created, dummy = bed.objects.create(resource_type, namespace, obj)
    return created


def get(bed, api_version, kind, name, namespace="default"):
    resource_type = rtype(bed, api_version, kind)
    return bed.objects.get(resource_type, namespace if resource_type.namespaced else None, name)


def listing(bed, api_version, kind, namespace=None, labels=None):
    return bed.objects.list(rtype(bed, api_version, kind), namespace, label_selector=labels)


def patch_spec(bed, obj, change):
    new = copy.deepcopy(obj)
    change(new)
    new["metadata"].pop("resourceVersion", None)
    resource_type = rtype(bed, obj["apiVersion"], obj["kind"])
    bed.objects.update(resource_type, obj["metadata"].get("namespace"), obj["metadata"]["name"], new)


def delete(bed, obj):
    resource_type = rtype(bed, obj["apiVersion"], obj["kind"])
    bed.objects.delete(resource_type, obj["metadata"].get("namespace"), obj["metadata"]["name"])


def pod(name, gpus=0, **spec):
    container = {"name": "main", "image": "busybox:1.36", "command": ["sleep", "infinity"]}
    if gpus:
        container["resources"] = {"limits": {"nvidia.com/gpu": str(gpus)}}
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": [container], **spec},
    }
    return body


def condition(obj, kind):
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == kind), None)


def events_for(bed, name, reason):
    return [e for e in listing(bed, "v1", "Event") if e["involvedObject"]["name"] == name and e["reason"] == reason]


# ---- seeds and nodes -------------------------------------------------------------------------------------------


def test_default_seed_has_three_control_plane_and_two_gpu_nodes():
    bed = make_bed()
    nodes = listing(bed, "v1", "Node")
    assert len(nodes) == 5
    gpu = [n for n in nodes if n["status"]["allocatable"].get("nvidia.com/gpu")]
    assert [n["status"]["allocatable"]["nvidia.com/gpu"] for n in gpu] == ["1", "1"]
    assert {n["metadata"]["labels"]["nvidia.com/gpu.product"] for n in gpu} == {"NVIDIA-A100-SXM4-80GB"}
    labels = gpu[0]["metadata"]["labels"]
    assert labels["nvidia.com/gpu.memory"] == "81920"
    assert (
        labels["nvidia.com/cuda.driver.major"],
        labels["nvidia.com/cuda.driver.minor"],
        labels["nvidia.com/cuda.driver.rev"],
    ) == ("580", "95", "05")
    assert (labels["nvidia.com/cuda.runtime.major"], labels["nvidia.com/cuda.runtime.minor"]) == ("13", "0")
    assert labels["nvidia.com/gpu.family"] == "ampere" and labels["nvidia.com/gpu.compute.major"] == "8"
    control = [n for n in nodes if "node-role.kubernetes.io/control-plane" in n["metadata"]["labels"]]
    assert len(control) == 3
    assert all(n["spec"]["taints"][0]["key"] == "node-role.kubernetes.io/control-plane" for n in control)
    node = nodes[0]
    assert condition(node, "Ready")["status"] == "True"
    assert condition(node, "MemoryPressure")["status"] == "False"
    assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.33.0"
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"] == "containerd://2.0.5"
    assert {a["type"] for a in node["status"]["addresses"]} == {"InternalIP", "Hostname"}
    policy = get(bed, "nvidia.com/v1", "ClusterPolicy", "cluster-policy")
    assert policy["status"]["state"] == "ready" and condition(policy, "Ready")["status"] == "True"
    operator = get(bed, "apps/v1", "Deployment", "kuberay-operator", "kuberay-system")
    assert operator["spec"]["template"]["spec"]["containers"][0]["image"] == "quay.io/kuberay/operator:v1.7.0"
    assert operator["status"]["availableReplicas"] == 1
    plugin = get(bed, "apps/v1", "DaemonSet", "nvidia-device-plugin-daemonset", "gpu-operator")
    assert plugin["status"]["desiredNumberScheduled"] == 2 and plugin["status"]["numberReady"] == 2
    classes = listing(bed, "storage.k8s.io/v1", "StorageClass")
    assert {c["metadata"]["name"] for c in classes} == {"standard", "object-storage"}


def test_nodes_and_pods_are_typed_client_deserializable():
    kubernetes = pytest.importorskip("kubernetes")
    bed = make_bed()
    create(bed, pod("typed", gpus=1))
    converge(bed)
    client = kubernetes.client.ApiClient()
    node = client.deserialize(json.dumps(listing(bed, "v1", "Node")[3]), "V1Node", "application/json")
    assert node.status.node_info.kubelet_version == "v1.33.0"
    typed = client.deserialize(json.dumps(get(bed, "v1", "Pod", "typed")), "V1Pod", "application/json")
    assert typed.status.phase == "Running" and typed.status.container_statuses[0].state.running.started_at
    assert typed.status.pod_ip.startswith("10.244.")


def test_gpu_nodes_64_seed():
    bed = make_bed("gpu-nodes-64")
    nodes = listing(bed, "v1", "Node")
    gpu = [n for n in nodes if n["status"]["allocatable"].get("nvidia.com/gpu") == "8"]
    assert len(gpu) == 64
    assert gpu[0]["metadata"]["labels"]["nvidia.com/gpu.product"] == "NVIDIA-H200"
    assert gpu[0]["metadata"]["labels"]["nvidia.com/gpu.memory"] == "143771"
    assert gpu[0]["metadata"]["name"] == "h200-01"


def test_without_gpu_operator_no_node_has_gpus():
    seed = controllers.load_seed("gpu-nodes-2")
    seed["platform"]["gpu_operator"] = "absent"
    bed = make_bed(seed=seed)
    for node in listing(bed, "v1", "Node"):
        assert "nvidia.com/gpu" not in node["status"]["capacity"]
        assert "nvidia.com/gpu" not in node["status"]["allocatable"]
        assert not any(key.startswith("nvidia.com/") for key in node["metadata"]["labels"])
    create(bed, pod("wants-gpu", gpus=1))
    converge(bed)
    message = condition(get(bed, "v1", "Pod", "wants-gpu"), "PodScheduled")["message"]
    assert "2 Insufficient nvidia.com/gpu" in message
    # installing the operator (its CRD and a ClusterPolicy) brings the GPUs
    for crd in controllers.crds_for_group("nvidia.com"):
        create(bed, crd)
    create(bed, seeding.cluster_policy(seed))
    create(bed, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "gpu-operator"}})
    converge(bed)
    assert get(bed, "v1", "Pod", "wants-gpu")["status"]["phase"] == "Running"


def test_reconcile_with_nothing_to_do_writes_nothing():
    bed = make_bed()
    create(bed, pod("a", gpus=1))
    create(bed, pod("b", gpus=1))
    create(bed, pod("c", gpus=1))
    converge(bed)
    before = bed.objects.current_resource_version
    for loop in bed.loops:
        loop.reconcile()
    assert bed.objects.current_resource_version == before


# ---- scheduling ----------------------------------------------------------------------------------------------


def test_gpu_pods_fill_the_gpu_nodes_and_the_third_stays_pending():
    bed = make_bed()
    create(bed, pod("gpu-a", gpus=1))
    create(bed, pod("gpu-b", gpus=1))
    converge(bed)
    placed = {get(bed, "v1", "Pod", n)["spec"]["nodeName"] for n in ("gpu-a", "gpu-b")}
    assert placed == {"gpu-worker-1", "gpu-worker-2"}
    running = get(bed, "v1", "Pod", "gpu-a")
    assert running["status"]["phase"] == "Running" and condition(running, "Ready")["status"] == "True"
    assert [line for dummy, line in bed.pod_logs[("default", "gpu-a", "main")]][0].startswith("emulated container main")
    create(bed, pod("gpu-c", gpus=1))
    for _dummy in range(5):
        converge(bed)
        for loop in bed.loops:
            loop.reconcile()
    pending = get(bed, "v1", "Pod", "gpu-c")
    assert pending["status"]["phase"] == "Pending" and "nodeName" not in pending["spec"]
    scheduled = condition(pending, "PodScheduled")
    assert scheduled["status"] == "False" and scheduled["reason"] == "Unschedulable"
    assert scheduled["message"] == (
        "0/5 nodes are available: 2 Insufficient nvidia.com/gpu, 3 node(s) had untolerated taint "
        "{node-role.kubernetes.io/control-plane: }. preemption: 0/5 nodes are available: "
        "2 No preemption victims found for incoming pod, 3 Preemption is not helpful for scheduling."
    )
    events = events_for(bed, "gpu-c", "FailedScheduling")
    assert len(events) == 1 and events[0]["type"] == "Warning" and events[0]["count"] == 1
    controllers.base.clock.now += 120
    converge(bed)
    events = events_for(bed, "gpu-c", "FailedScheduling")
    assert len(events) == 1 and events[0]["count"] == 2
    # freeing a GPU lets it run
    delete(bed, get(bed, "v1", "Pod", "gpu-a"))
    converge(bed)
    assert get(bed, "v1", "Pod", "gpu-c")["status"]["phase"] == "Running"


def test_control_plane_taint_toleration_and_node_selector():
    bed = make_bed()
    selector = {"node-role.kubernetes.io/control-plane": ""}
    create(bed, pod("on-cp", nodeSelector=selector))
    converge(bed)
    assert "nodeName" not in get(bed, "v1", "Pod", "on-cp")["spec"]
    toleration = [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}]
    create(bed, pod("tolerant", nodeSelector=selector, tolerations=toleration))
    create(bed, pod("pinned", nodeSelector={"kubernetes.io/hostname": "gpu-worker-2"}))
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "nvidia.com/gpu.present", "operator": "DoesNotExist"}]}
                ]
            }
        }
    }
    create(bed, pod("no-gpu-node", affinity=affinity, tolerations=toleration))
    converge(bed)
    assert get(bed, "v1", "Pod", "tolerant")["spec"]["nodeName"].startswith("control-plane-")
    assert get(bed, "v1", "Pod", "pinned")["spec"]["nodeName"] == "gpu-worker-2"
    assert get(bed, "v1", "Pod", "no-gpu-node")["spec"]["nodeName"].startswith("control-plane-")


def test_cpu_requests_are_counted_against_allocatable():
    bed = make_bed()
    big = pod("big")
    big["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "20"}}
    create(bed, big)
    second = copy.deepcopy(big)
    second["metadata"]["name"] = "big-2"
    create(bed, second)
    third = copy.deepcopy(big)
    third["metadata"]["name"] = "big-3"
    create(bed, third)
    converge(bed)
    nodes = {get(bed, "v1", "Pod", n)["spec"].get("nodeName") for n in ("big", "big-2", "big-3")}
    assert None in nodes and {"gpu-worker-1", "gpu-worker-2"} <= nodes
    pending = next(n for n in ("big", "big-2", "big-3") if not get(bed, "v1", "Pod", n)["spec"].get("nodeName"))
    assert "2 Insufficient cpu" in condition(get(bed, "v1", "Pod", pending), "PodScheduled")["message"]


def test_not_ready_node_taints_and_pod_readiness():
    """As the node lifecycle controller (Kubernetes v1.33) does once a kubelet stops posting: tryUpdateNodeHealth's
    Unknown conditions, SwapNodeControllerTaint's taints with timeAdded, MarkPodsNotReady's Ready=False (reason and
    message kept, ContainersReady untouched) and its events."""
    bed = make_bed()
    create(bed, pod("victim", nodeSelector={"kubernetes.io/hostname": "gpu-worker-1"}))
    converge(bed)
    bed.not_ready_nodes.add("gpu-worker-1")
    converge(bed)
    node = get(bed, "v1", "Node", "gpu-worker-1")
    ready = condition(node, "Ready")
    assert (ready["status"], ready["reason"], ready["message"]) == (
        "Unknown",
        "NodeStatusUnknown",
        "Kubelet stopped posting node status.",
    )
    assert {(t["key"], t["effect"]) for t in node["spec"]["taints"]} == {
        ("node.kubernetes.io/unreachable", "NoSchedule"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
    }
    assert all(t.get("timeAdded") for t in node["spec"]["taints"]), node["spec"]["taints"]
    victim = get(bed, "v1", "Pod", "victim")
    assert condition(victim, "Ready")["status"] == "False" and "reason" not in condition(victim, "Ready")
    assert condition(victim, "ContainersReady")["status"] == "True"
    assert victim["status"]["phase"] == "Running"
    (pod_event,) = events_for(bed, "victim", "NodeNotReady")
    assert (pod_event["type"], pod_event["message"], pod_event["source"]["component"]) == (
        "Warning",
        "Node is not ready",
        "node-controller",
    )
    (node_event,) = events_for(bed, "gpu-worker-1", "NodeNotReady")
    assert node_event["message"] == "Node gpu-worker-1 status is now: NodeNotReady"
    bed.not_ready_nodes.discard("gpu-worker-1")
    converge(bed)
    node = get(bed, "v1", "Node", "gpu-worker-1")
    assert condition(node, "Ready")["status"] == "True" and "taints" not in node["spec"]
    assert condition(get(bed, "v1", "Pod", "victim"), "Ready")["status"] == "True"


def test_crash_looping_pod():
    bed = make_bed()
    create(bed, pod("crashy"))
    converge(bed)
    bed.crashlooping_pods[("default", "crashy")] = "boom"
    settle(bed, 3)
    status = get(bed, "v1", "Pod", "crashy")["status"]
    entry = status["containerStatuses"][0]
    assert entry["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert entry["restartCount"] >= 2 and entry["lastState"]["terminated"]["exitCode"] == 1
    assert condition({"status": status}, "Ready")["status"] == "False"
    del bed.crashlooping_pods[("default", "crashy")]
    converge(bed)
    entry = get(bed, "v1", "Pod", "crashy")["status"]["containerStatuses"][0]
    assert "running" in entry["state"] and entry["ready"]


# ---- workloads -----------------------------------------------------------------------------------------------


def deployment(name="web", replicas=2, image="nginx:1.27"):
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [{"name": "web", "image": image, "ports": [{"name": "http", "containerPort": 80}]}]
                },
            },
        },
    }


def test_deployment_rolls_a_new_replica_set_and_reports_ready():
    bed = make_bed()
    create(bed, deployment())
    create(
        bed,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 8080, "targetPort": "http"}]},
        },
    )
    converge(bed)
    status = get(bed, "apps/v1", "Deployment", "web")["status"]
    assert status["readyReplicas"] == 2 and status["availableReplicas"] == 2 and status["updatedReplicas"] == 2
    assert condition({"status": status}, "Progressing")["reason"] == "NewReplicaSetAvailable"
    assert condition({"status": status}, "Available")["status"] == "True"
    first = listing(bed, "apps/v1", "ReplicaSet", "default")
    assert len(first) == 1 and len(first[0]["metadata"]["name"]) == len("web-") + 10
    assert first[0]["metadata"]["ownerReferences"][0]["controller"] is True
    service = get(bed, "v1", "Service", "web")
    assert service["spec"]["clusterIP"].startswith("10.96.")
    endpoints = get(bed, "v1", "Endpoints", "web")
    assert len(endpoints["subsets"][0]["addresses"]) == 2 and endpoints["subsets"][0]["ports"][0]["port"] == 80
    patch_spec(
        bed,
        get(bed, "apps/v1", "Deployment", "web"),
        lambda d: d["spec"]["template"]["spec"]["containers"][0].update(image="nginx:1.28"),
    )
    converge(bed)
    sets = {rs["metadata"]["name"]: rs for rs in listing(bed, "apps/v1", "ReplicaSet", "default")}
    assert len(sets) == 2
    new = next(rs for rs in sets.values() if rs["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.28")
    old = next(rs for rs in sets.values() if rs is not new)
    assert new["spec"]["replicas"] == 2 and old["spec"]["replicas"] == 0
    assert new["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    pods = listing(bed, "v1", "Pod", "default", "app=web")
    assert len(pods) == 2 and all(p["metadata"]["name"].startswith(new["metadata"]["name"] + "-") for p in pods)
    patch_spec(bed, get(bed, "apps/v1", "Deployment", "web"), lambda d: d["spec"].update(replicas=3))
    converge(bed)
    assert get(bed, "apps/v1", "Deployment", "web")["status"]["readyReplicas"] == 3


def test_statefulset_and_daemonset():
    bed = make_bed()
    labels = {"app": "db"}
    create(
        bed,
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "db", "namespace": "default"},
            "spec": {
                "replicas": 3,
                "serviceName": "db",
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "db", "image": "postgres:16"}]},
                },
            },
        },
    )
    create(
        bed,
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": "default"},
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "template": {
                    "metadata": {"labels": {"app": "agent"}},
                    "spec": {"containers": [{"name": "agent", "image": "busybox"}]},
                },
            },
        },
    )
    converge(bed)
    sts = get(bed, "apps/v1", "StatefulSet", "db")
    assert sts["status"]["readyReplicas"] == 3 and sts["status"]["currentRevision"] == sts["status"]["updateRevision"]
    assert sorted(p["metadata"]["name"] for p in listing(bed, "v1", "Pod", "default", "app=db")) == [
        "db-0",
        "db-1",
        "db-2",
    ]
    ds = get(bed, "apps/v1", "DaemonSet", "agent")["status"]
    assert ds["desiredNumberScheduled"] == 2 and ds["numberReady"] == 2 and ds["numberMisscheduled"] == 0
    patch_spec(bed, sts, lambda s: s["spec"].update(replicas=1))
    converge(bed)
    assert [p["metadata"]["name"] for p in listing(bed, "v1", "Pod", "default", "app=db")] == ["db-0"]


def job(name="train", backoff=1):
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "backoffLimit": backoff,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "python:3.12", "command": ["python", "-c", "print(1)"]}],
                }
            },
        },
    }


def test_job_succeeds():
    bed = make_bed()
    create(bed, job())
    settle(bed)
    status = get(bed, "batch/v1", "Job", "train")["status"]
    assert status["succeeded"] == 1 and status["completionTime"] and status["startTime"]
    assert {c["type"] for c in status["conditions"]} == {"SuccessCriteriaMet", "Complete"}
    pods = listing(bed, "v1", "Pod", "default", "batch.kubernetes.io/job-name=train")
    assert len(pods) == 1 and pods[0]["status"]["phase"] == "Succeeded"
    assert pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0


def test_job_requested_failure_with_log_and_retries():
    bed = make_bed()
    bed.requested_outcomes[("Job", "default", "broken")] = {"outcome": "Failed", "log": "Traceback\nValueError: x"}
    create(bed, job("broken", backoff=1))
    settle(bed, 5)
    status = get(bed, "batch/v1", "Job", "broken")["status"]
    assert status["failed"] == 2
    failed = condition({"status": status}, "Failed")
    assert failed["status"] == "True" and failed["reason"] == "BackoffLimitExceeded"
    assert condition({"status": status}, "FailureTarget")["status"] == "True"
    pods = listing(bed, "v1", "Pod", "default", "job-name=broken")
    assert len(pods) == 2 and all(p["status"]["phase"] == "Failed" for p in pods)
    assert pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 1
    lines = [line for dummy, line in bed.pod_logs[("default", pods[0]["metadata"]["name"], "main")]]
    assert lines[-2:] == ["Traceback", "ValueError: x"]


# ---- storage -------------------------------------------------------------------------------------------------


def claim(name, storage_class=None, size="10Gi", modes=("ReadWriteOnce",)):
    spec = {"accessModes": list(modes), "resources": {"requests": {"storage": size}}}
    if storage_class is not None:
        spec["storageClassName"] = storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }


def test_dynamic_provisioning_and_wait_for_first_consumer():
    bed = make_bed()
    create(bed, claim("models", "object-storage", "100Gi", ("ReadWriteMany",)))
    create(bed, claim("scratch"))  # the default class (WaitForFirstConsumer)
    converge(bed)
    models = get(bed, "v1", "PersistentVolumeClaim", "models")
    assert models["status"]["phase"] == "Bound" and models["status"]["capacity"] == {"storage": "100Gi"}
    volume = get(bed, "v1", "PersistentVolume", models["spec"]["volumeName"])
    assert volume["metadata"]["name"] == "pvc-" + models["metadata"]["uid"]
    assert volume["spec"]["csi"]["driver"] == "ru.yandex.s3.csi" and volume["status"]["phase"] == "Bound"
    assert volume["spec"]["claimRef"]["name"] == "models"
    scratch = get(bed, "v1", "PersistentVolumeClaim", "scratch")
    assert scratch["spec"]["storageClassName"] == "standard" and scratch["status"]["phase"] == "Pending"
    consumer = pod("consumer", volumes=[{"name": "s", "persistentVolumeClaim": {"claimName": "scratch"}}])
    create(bed, consumer)
    converge(bed)
    assert get(bed, "v1", "PersistentVolumeClaim", "scratch")["status"]["phase"] == "Bound"
    assert get(bed, "v1", "Pod", "consumer")["status"]["phase"] == "Running"
    delete(bed, get(bed, "v1", "PersistentVolumeClaim", "models"))
    converge(bed)
    assert not any(v["metadata"]["name"] == volume["metadata"]["name"] for v in listing(bed, "v1", "PersistentVolume"))


def test_static_binding_and_release():
    bed = make_bed()
    create(
        bed,
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": "nfs-1"},
            "spec": {
                "capacity": {"storage": "50Gi"},
                "accessModes": ["ReadWriteMany"],
                "storageClassName": "",
                "persistentVolumeReclaimPolicy": "Retain",
                "nfs": {"server": "nfs", "path": "/x"},
            },
        },
    )
    converge(bed)
    assert get(bed, "v1", "PersistentVolume", "nfs-1")["status"]["phase"] == "Available"
    create(bed, claim("shared", "", "20Gi", ("ReadWriteMany",)))
    converge(bed)
    shared = get(bed, "v1", "PersistentVolumeClaim", "shared")
    assert shared["spec"]["volumeName"] == "nfs-1" and shared["status"]["capacity"] == {"storage": "50Gi"}
    assert get(bed, "v1", "PersistentVolume", "nfs-1")["status"]["phase"] == "Bound"
    delete(bed, shared)
    converge(bed)
    assert get(bed, "v1", "PersistentVolume", "nfs-1")["status"]["phase"] == "Released"


def test_missing_storage_class_stays_pending_with_an_event():
    bed = make_bed()
    create(bed, claim("lost", "no-such-class"))
    converge(bed)
    converge(bed)
    assert get(bed, "v1", "PersistentVolumeClaim", "lost")["status"]["phase"] == "Pending"
    events = events_for(bed, "lost", "ProvisioningFailed")
    assert len(events) == 1 and events[0]["message"] == 'storageclass.storage.k8s.io "no-such-class" not found'
    assert events[0]["type"] == "Warning"


# ---- KubeRay ---------------------------------------------------------------------------------------------------


def ray_cluster(name="llm", replicas=1, hosts=2):
    ray_container = {
        "name": "ray-head",
        "image": "rayproject/ray:2.49.0",
        "resources": {"limits": {"cpu": "2", "memory": "8Gi"}, "requests": {"cpu": "2", "memory": "8Gi"}},
        "ports": [
            {"name": "gcs-server", "containerPort": 6379},
            {"name": "dashboard", "containerPort": 8265},
            {"name": "client", "containerPort": 10001},
        ],
    }
    worker = {
        "name": "ray-worker",
        "image": "rayproject/ray:2.49.0",
        "resources": {
            "limits": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"},
            "requests": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"},
        },
    }
    tolerate = [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}]
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "headGroupSpec": {
                "rayStartParams": {"num-gpus": "0"},
                "template": {"spec": {"containers": [ray_container], "tolerations": tolerate}},
            },
            "workerGroupSpecs": [
                {
                    "groupName": "gpu",
                    "replicas": replicas,
                    "minReplicas": 0,
                    "maxReplicas": 4,
                    "numOfHosts": hosts,
                    "rayStartParams": {},
                    "template": {"spec": {"containers": [worker]}},
                }
            ],
        },
    }


def test_raycluster_pods_service_and_status():
    bed = make_bed()
    create(bed, ray_cluster())
    converge(bed)
    pods = listing(bed, "v1", "Pod", "default", "ray.io/cluster=llm")
    heads = [p for p in pods if p["metadata"]["labels"]["ray.io/node-type"] == "head"]
    workers = [p for p in pods if p["metadata"]["labels"]["ray.io/node-type"] == "worker"]
    assert len(heads) == 1 and len(workers) == 2
    head = heads[0]
    assert head["metadata"]["name"].startswith("llm-head-") and len(head["metadata"]["name"]) == len("llm-head-") + 5
    assert workers[0]["metadata"]["name"].startswith("llm-gpu-worker-")
    labels = workers[0]["metadata"]["labels"]
    assert labels["ray.io/group"] == "gpu" and labels["ray.io/is-ray-node"] == "yes"
    assert labels["app.kubernetes.io/created-by"] == "kuberay-operator" and labels["ray.io/identifier"] == "llm-worker"
    assert head["metadata"]["labels"]["ray.io/group"] == "headgroup"
    env = {e["name"]: e.get("value") for e in workers[0]["spec"]["containers"][0]["env"]}
    assert env["FQ_RAY_IP"] == "llm-head-svc.default.svc.cluster.local" and env["RAY_IP"] == "llm-head-svc"
    assert env["RAY_ADDRESS"] == "llm-head-svc.default.svc.cluster.local:6379"
    assert "--num-gpus=1" in env["KUBERAY_GEN_RAY_START_CMD"] and "--block" in env["KUBERAY_GEN_RAY_START_CMD"]
    head_env = {e["name"]: e.get("value") for e in head["spec"]["containers"][0]["env"]}
    assert head_env["KUBERAY_GEN_RAY_START_CMD"].startswith("ray start --head")
    assert "--dashboard-host=0.0.0.0" in head_env["KUBERAY_GEN_RAY_START_CMD"]
    assert head_env["RAY_ADDRESS"] == "127.0.0.1:6379" and head_env["RAY_USAGE_STATS_KUBERAY_IN_USE"] == "1"
    assert workers[0]["spec"]["initContainers"][0]["name"] == "wait-gcs-ready"
    assert {p["spec"]["nodeName"] for p in workers} == {"gpu-worker-1", "gpu-worker-2"}
    service = get(bed, "v1", "Service", "llm-head-svc")
    assert service["spec"]["selector"]["ray.io/node-type"] == "head"
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {
        "client": 10001,
        "dashboard": 8265,
        "gcs-server": 6379,
        "metrics": 8080,
    }
    status = get(bed, "ray.io/v1", "RayCluster", "llm")["status"]
    assert status["state"] == "ready"
    assert status["desiredWorkerReplicas"] == 2 and status["readyWorkerReplicas"] == 2
    assert status["availableWorkerReplicas"] == 2 and status["maxWorkerReplicas"] == 8
    assert status["desiredGPU"] == "2" and status["desiredCPU"] == "10" and status["desiredMemory"] == "40Gi"
    assert status["desiredTPU"] == "0"
    assert status["head"]["podIP"] == get(bed, "v1", "Pod", head["metadata"]["name"])["status"]["podIP"]
    assert status["head"]["serviceName"] == "llm-head-svc" and status["head"]["podName"] == head["metadata"]["name"]
    assert status["endpoints"] == {"client": "10001", "dashboard": "8265", "gcs-server": "6379", "metrics": "8080"}
    assert condition({"status": status}, "HeadPodReady")["status"] == "True"
    assert condition({"status": status}, "RayClusterProvisioned")["reason"] == "AllPodRunningAndReadyFirstTime"
    endpoints = get(bed, "v1", "Endpoints", "llm-head-svc")
    assert endpoints["subsets"][0]["addresses"][0]["ip"] == status["head"]["podIP"]


def pin_kuberay_operator_to_control_plane(bed):
    """So that failing a GPU node does not also take the emulated operator down (it runs as a pod too)."""

    def pin(deployment):
        spec = deployment["spec"]["template"]["spec"]
        spec["nodeSelector"] = {"node-role.kubernetes.io/control-plane": ""}
        spec["tolerations"] = [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}]

    patch_spec(bed, get(bed, "apps/v1", "Deployment", "kuberay-operator", "kuberay-system"), pin)
    converge(bed)
    operator_pods = listing(bed, "v1", "Pod", "kuberay-system")
    assert len(operator_pods) == 1 and operator_pods[0]["spec"]["nodeName"].startswith("control-plane-")


def test_raycluster_scaling_node_failure_and_deletion():
    bed = make_bed()
    pin_kuberay_operator_to_control_plane(bed)
    create(bed, ray_cluster(replicas=2, hosts=1))
    converge(bed)
    assert len(listing(bed, "v1", "Pod", "default", "ray.io/node-type=worker")) == 2
    patch_spec(
        bed, get(bed, "ray.io/v1", "RayCluster", "llm"), lambda c: c["spec"]["workerGroupSpecs"][0].update(replicas=1)
    )
    converge(bed)
    workers = listing(bed, "v1", "Pod", "default", "ray.io/node-type=worker")
    assert len(workers) == 1
    status = get(bed, "ray.io/v1", "RayCluster", "llm")["status"]
    assert status["desiredWorkerReplicas"] == 1 and status["readyWorkerReplicas"] == 1 and status["desiredGPU"] == "1"
    # the worker's node goes away: readiness drops (KubeRay keeps state "ready"; conditions and counts change)
    bed.not_ready_nodes.add(workers[0]["spec"]["nodeName"])
    converge(bed)
    status = get(bed, "ray.io/v1", "RayCluster", "llm")["status"]
    assert status["readyWorkerReplicas"] == 0 and status["state"] == "ready"
    bed.not_ready_nodes.clear()
    converge(bed)
    assert get(bed, "ray.io/v1", "RayCluster", "llm")["status"]["readyWorkerReplicas"] == 1
    head = listing(bed, "v1", "Pod", "default", "ray.io/node-type=head")[0]
    bed.not_ready_nodes.add(head["spec"]["nodeName"])
    converge(bed)
    head_ready = condition(get(bed, "ray.io/v1", "RayCluster", "llm"), "HeadPodReady")
    assert head_ready["status"] == "False"
    bed.not_ready_nodes.clear()
    converge(bed)
    delete(bed, get(bed, "ray.io/v1", "RayCluster", "llm"))
    converge(bed)
    assert listing(bed, "v1", "Pod", "default", "ray.io/cluster=llm") == []
    assert not any(s["metadata"]["name"] == "llm-head-svc" for s in listing(bed, "v1", "Service", "default"))


def test_raycluster_waits_for_the_kuberay_operator():
    seed = controllers.load_seed("gpu-nodes-2")
    seed["platform"]["kuberay_operator"] = "absent"
    bed = make_bed(seed=seed)
    assert bed.registry.for_kind("ray.io/v1", "RayCluster") is None
    for crd in controllers.crds_for_group("ray.io"):
        create(bed, crd)
    create(bed, ray_cluster())
    converge(bed)
    assert listing(bed, "v1", "Pod", "default") == []
    create(bed, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kuberay-system"}})
    create(bed, seeding.kuberay_operator_deployment("kuberay-system"))
    converge(bed)
    assert get(bed, "ray.io/v1", "RayCluster", "llm")["status"]["state"] == "ready"


def test_ray_start_command_matches_kuberay():
    command = controllers.ray_start_command(
        "worker",
        {"address": "svc:6379", "block": "true", "metrics-export-port": "8080"},
        {"limits": {"cpu": "1500m", "memory": "1Gi", "nvidia.com/gpu": "2"}},
    )
    assert command == (
        "ray start  --address=svc:6379  --block  --memory=1073741824  --metrics-export-port=8080  "
        "--num-cpus=2  --num-gpus=2 "
    )


def test_seed_objects_pass_the_servers_validation(tmp_path):
    pytest.importorskip("aiohttp")
    from k8s_testbed import server

    bed = server.TestBed(controllers.load_seed("gpu-nodes-2"), "token", exec_root=str(tmp_path))
    nodes = bed.state.objects.list(bed.state.type_of("v1", "Node"))
    assert len(nodes) == 5 and all(condition(n, "Ready")["status"] == "True" for n in nodes)
    assert bed.state.registry.for_kind("ray.io/v1", "RayCluster") is not None
    assert bed.state.registry.for_kind("nvidia.com/v1", "ClusterPolicy") is not None
