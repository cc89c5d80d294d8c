# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The kuberay controller against KubeRay v1.7.0: the pods of ray-operator/controllers/ray/common/pod.go, the
Services of common/service.go, the spec checks of utils/validation.go and the operator Deployment of its chart.

The expected values are read off the v1.7.0 sources (file:line in each test); the bed is a bare Store driven by
the controllers, as in test_controllers.py."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import copy

import pytest
from k8s_testbed import controllers, resources, seeding, state, store
from k8s_testbed.controllers import kuberay, kuberay_pods

NS = "default"
FQDN = "llm-head-svc.default.svc.cluster.local"
ULIMIT = "ulimit -n ${RAY_START_ULIMIT_OPEN_FILES:-65536}"


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture(autouse=True)
def fake_clock(monkeypatch):
    monkeypatch.setattr(controllers.base, "clock", FakeClock())


def make_bed():
    registry = resources.ResourceRegistry()
    bed = state.TestBedState(
        registry=registry, objects=store.Store(registry), seed=controllers.load_seed("gpu-nodes-2")
    )
    controllers.apply_seed(bed)
    bed.loops = [cls(bed) for cls in controllers.CONTROLLERS.values()]
    converge(bed)
    return bed


def converge(bed, rounds: int = 60) -> None:
    for _dummy in range(rounds):
        before = bed.objects.current_resource_version
        bed.objects.finish_terminations()
        for loop in bed.loops:
            loop.reconcile()
        if bed.objects.current_resource_version == before:
            return
    raise AssertionError("controllers did not converge")


def listing(bed, api_version, kind, labels=None):
    return bed.objects.list(bed.type_of(api_version, kind), NS, label_selector=labels)


def apply_cluster(bed, cluster):
    bed.objects.create(bed.type_of("ray.io/v1", "RayCluster"), NS, cluster)
    converge(bed)
    return listing(bed, "v1", "Pod", "ray.io/cluster=" + cluster["metadata"]["name"])


def container(name="ray", cpu="4", memory="16Gi", gpus=0, **extra):
    limits = {"cpu": cpu, "memory": memory, **({"nvidia.com/gpu": str(gpus)} if gpus else {})}
    return {"name": name, "image": "rayproject/ray:2.60.0", "resources": {"limits": limits}, **extra}


def cluster(name="llm", ray_version="2.60.0", head=None, worker=None, **group):
    """A RayCluster as the API server stores it (CRD defaults applied), one worker group "gpu"."""
    worker_group = {"groupName": "gpu", "replicas": 1, "minReplicas": 0, "maxReplicas": 4, "numOfHosts": 1}
    worker_group.update(rayStartParams={}, template={"spec": {"containers": [worker or container(gpus=1)]}})
    worker_group.update(group)
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": name, "namespace": NS, "uid": "uid-1", "generation": 1},
        "spec": {
            "rayVersion": ray_version,
            "headGroupSpec": {"rayStartParams": {}, "template": {"spec": {"containers": [head or container()]}}},
            "workerGroupSpecs": [worker_group],
        },
    }


def env_of(pod_container) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in pod_container.get("env") or []}


# ---- the ray container's command (pod.go:878-913, 1390-1544) ------------------------------------------------------


def test_head_command_is_ulimit_then_ray_start_block():
    pod = kuberay_pods.build_pod(cluster(), "head", cluster()["spec"]["headGroupSpec"])
    ray = pod["spec"]["containers"][0]
    start = (
        "ray start --head  --block  --dashboard-agent-listen-port=52365  --dashboard-host=0.0.0.0  "
        "--memory=17179869184  --metrics-export-port=8080  --num-cpus=4 "
    )
    assert ray["command"] == ["/bin/bash", "-c", "--"]  # utils/util.go:1005 (ENABLE_LOGIN_SHELL unset)
    assert ray["args"] == [f"{ULIMIT}; {start}"]
    assert env_of(ray)["KUBERAY_GEN_RAY_START_CMD"] == start


def test_worker_runs_its_own_args_first_then_ray_start():
    worker = container(gpus=2, args=["pip list"])
    spec = cluster(worker=worker, rayStartParams={"num-gpus": "1"})
    pod = kuberay_pods.build_pod(spec, "worker", spec["spec"]["workerGroupSpecs"][0], (0, "", 0))
    start = (
        f"ray start  --address={FQDN}:6379  --block  --dashboard-agent-listen-port=52365  "
        "--memory=17179869184  --metrics-export-port=8080  --num-cpus=4  --num-gpus=1 "
    )
    assert pod["spec"]["containers"][0]["args"] == [f" pip list  && {ULIMIT}; {start}"]


def test_start_command_takes_group_resources_labels_and_accelerators():
    """pod.go:1649 (resources), 1630 (labels), 1432 (num-gpus, TPU as a Ray resource), 1530 (explicit false)."""
    params = {"log-color": "false", "include-dashboard": "false", "disable-usage-stats": "false", "port": "6380"}
    kuberay_pods._resources_to_params(params, {"CPU": "1500m", "memory": "2Gi", "custom": "0.5"})
    kuberay_pods._labels_to_params(params, {"zone": "a", "tier": "gpu"})
    command = kuberay_pods.ray_start_command("head", params, {"limits": {"google.com/tpu": "4", "nvidia.com/gpu": "2"}})
    assert command == (
        "ray start --head  --include-dashboard=false  --labels=tier=gpu,zone=a  --log-color=false  "
        '--memory=2147483648  --num-cpus=2  --num-gpus=2  --port=6380  --resources=\'{"TPU":4,"custom":0.5}\' '
    )


def test_a_command_that_starts_ray_or_the_overwrite_annotation_is_kept():
    own = container(command=["bash", "-c"], args=["ray start --head --block"])
    spec = cluster(head=own)
    pod = kuberay_pods.build_pod(spec, "head", spec["spec"]["headGroupSpec"])
    assert pod["spec"]["containers"][0]["args"] == ["ray start --head --block"]
    spec = cluster(head=container(args=["sleep 1"]))
    spec["metadata"]["annotations"] = {"ray.io/overwrite-container-cmd": "true"}
    pod = kuberay_pods.build_pod(spec, "head", spec["spec"]["headGroupSpec"])
    assert pod["spec"]["containers"][0]["args"] == ["sleep 1"] and "command" not in pod["spec"]["containers"][0]
    assert pod["metadata"]["annotations"]["ray.io/overwrite-container-cmd"] == "true"


# ---- env (pod.go:1207-1343) --------------------------------------------------------------------------------------


def test_env_names_order_and_values():
    spec = cluster()
    head = kuberay_pods.build_pod(spec, "head", spec["spec"]["headGroupSpec"])["spec"]["containers"][0]
    worker = kuberay_pods.build_pod(spec, "worker", spec["spec"]["workerGroupSpecs"][0], (0, "", 0))
    names = [
        "RAY_CLUSTER_NAME",
        "RAY_CLUSTER_NAMESPACE",
        "RAY_CLOUD_INSTANCE_ID",
        "RAY_NODE_TYPE_NAME",
        "KUBERAY_GEN_RAY_START_CMD",
        "RAY_PORT",
        "RAY_ADDRESS",
        "RAY_USAGE_STATS_KUBERAY_IN_USE",
    ]
    assert [e["name"] for e in head["env"]] == [
        *names,
        "RAY_USAGE_STATS_EXTRA_TAGS",
        "RAY_DASHBOARD_ENABLE_K8S_DISK_USAGE",
    ]
    worker_ray = worker["spec"]["containers"][0]
    assert [e["name"] for e in worker_ray["env"]] == [
        "FQ_RAY_IP",
        "RAY_IP",
        *names,
        "RAY_DASHBOARD_ENABLE_K8S_DISK_USAGE",
    ]
    env = env_of(head)
    assert env["RAY_CLUSTER_NAME"] == {"fieldRef": {"fieldPath": "metadata.labels['ray.io/cluster']"}}
    assert env["RAY_CLUSTER_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["RAY_CLOUD_INSTANCE_ID"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["RAY_NODE_TYPE_NAME"] == {"fieldRef": {"fieldPath": "metadata.labels['ray.io/group']"}}
    assert (env["RAY_PORT"], env["RAY_ADDRESS"], env["RAY_USAGE_STATS_KUBERAY_IN_USE"]) == (
        "6379",
        "127.0.0.1:6379",
        "1",
    )
    assert env["RAY_USAGE_STATS_EXTRA_TAGS"] == "kuberay_version=v1.7.0;kuberay_crd=RayCluster"
    worker_env = env_of(worker_ray)
    assert (worker_env["FQ_RAY_IP"], worker_env["RAY_IP"]) == (FQDN, "llm-head-svc")
    assert worker_env["RAY_ADDRESS"] == f"{FQDN}:6379"


def test_template_env_wins_where_kuberay_only_fills_gaps():
    head = container(env=[{"name": "RAY_ADDRESS", "value": "auto"}, {"name": "RAY_PORT", "value": "1"}])
    spec = cluster(head=head)
    env = kuberay_pods.build_pod(spec, "head", spec["spec"]["headGroupSpec"])["spec"]["containers"][0]["env"]
    assert [e["value"] for e in env if e["name"] == "RAY_ADDRESS"] == ["auto"]
    assert [e["value"] for e in env if e["name"] == "RAY_PORT"] == ["1"]


# ---- probes (pod.go:721-829, utils/constant.go:306-344) ----------------------------------------------------------


def test_ray_2_53_and_later_get_http_probes_on_the_agent_port():
    spec = cluster(ray_version="2.60.0")
    head = kuberay_pods.build_pod(spec, "head", spec["spec"]["headGroupSpec"])["spec"]["containers"][0]
    worker = kuberay_pods.build_pod(spec, "worker", spec["spec"]["workerGroupSpecs"][0], (0, "", 0))
    worker = worker["spec"]["containers"][0]
    http = {"httpGet": {"path": "/api/healthz", "port": 52365}}
    timings = {"periodSeconds": 5, "successThreshold": 1}
    assert head["livenessProbe"] == {
        **http,
        **timings,
        "initialDelaySeconds": 30,
        "timeoutSeconds": 5,
        "failureThreshold": 120,
    }
    assert head["readinessProbe"] == {
        **http,
        **timings,
        "initialDelaySeconds": 10,
        "timeoutSeconds": 5,
        "failureThreshold": 10,
    }
    assert worker["livenessProbe"]["timeoutSeconds"] == 2 and worker["readinessProbe"]["timeoutSeconds"] == 2
    assert worker["readinessProbe"]["httpGet"] == {"path": "/api/healthz", "port": 52365}


def test_older_ray_gets_wget_exec_probes():
    spec = cluster(ray_version="2.49.0")
    spec["spec"]["headGroupSpec"]["rayStartParams"] = {"dashboard-agent-listen-port": "52366", "dashboard-port": "8266"}
    head = kuberay_pods.build_pod(spec, "head", spec["spec"]["headGroupSpec"])["spec"]["containers"][0]
    raylet = "wget --tries 1 -T 2 -q -O- http://localhost:52366/api/local_raylet_healthz | grep success"
    gcs = "wget --tries 1 -T 10 -q -O- http://localhost:8266/api/gcs_healthz | grep success"
    assert head["livenessProbe"]["exec"] == {"command": ["bash", "-c", f"{raylet} && {gcs}"]}
    assert head["readinessProbe"]["exec"] == head["livenessProbe"]["exec"] and "httpGet" not in head["readinessProbe"]
    worker = kuberay_pods.build_pod(spec, "worker", spec["spec"]["workerGroupSpecs"][0], (0, "", 0))
    command = worker["spec"]["containers"][0]["readinessProbe"]["exec"]["command"][2]
    assert command == raylet.replace("52366", "52365")


@pytest.mark.parametrize(
    ("version", "http"),
    [
        ("2.53.0", True),
        ("2.53", True),
        ("2.53.0rc1", True),
        ("v2.60.1", True),
        ("2.52.9", False),
        ("2", False),
        ("", False),
    ],
)
def test_unified_health_check_version_rule(version, http):
    """pod.go:721 supportsUnifiedHealthCheck with k8s.io/apimachinery version.ParseGeneric."""
    assert kuberay_pods.ray_version_at_least(version, kuberay_pods.UNIFIED_HEALTH_CHECK_SINCE) is http


def test_a_templates_own_probes_are_kept():
    probe = {"tcpSocket": {"port": 8265}}
    spec = cluster(head=container(livenessProbe=probe))
    head = kuberay_pods.build_pod(spec, "head", spec["spec"]["headGroupSpec"])["spec"]["containers"][0]
    assert head["livenessProbe"] == probe and "httpGet" in head["readinessProbe"]


def test_rayservice_workers_also_check_the_serve_proxy():
    spec = cluster(ray_version="2.60.0")
    spec["metadata"]["labels"] = {"ray.io/originated-from-crd": "RayService"}
    worker = kuberay_pods.build_pod(spec, "worker", spec["spec"]["workerGroupSpecs"][0], (0, "", 0))
    readiness = worker["spec"]["containers"][0]["readinessProbe"]
    serve = "wget --tries 1 -T 10 -q -O- http://localhost:8000/-/healthz | grep success"
    assert readiness["exec"]["command"][2].endswith(f" && {serve}") and "httpGet" not in readiness
    assert readiness["failureThreshold"] == 1 and worker["metadata"]["labels"]["ray.io/serve"] == "true"
    assert env_of(worker["spec"]["containers"][0])["RAY_SERVE_KV_TIMEOUT_S"] == "5"


# ---- /dev/shm (pod.go:855-861, 1548-1627) ------------------------------------------------------------------------


def test_shared_memory_is_a_memory_emptydir_sized_by_the_memory_limit():
    head = container(memory="16Gi")
    head["resources"]["requests"] = {"memory": "8Gi"}
    spec = cluster(head=head)
    pod = kuberay_pods.build_pod(spec, "head", spec["spec"]["headGroupSpec"])
    assert pod["spec"]["volumes"] == [{"name": "shared-mem", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}}]
    assert pod["spec"]["containers"][0]["volumeMounts"] == [{"mountPath": "/dev/shm", "name": "shared-mem"}]
    requests_only = container()
    requests_only["resources"] = {"requests": {"memory": "1024Mi"}}
    spec = cluster(head=requests_only)
    pod = kuberay_pods.build_pod(spec, "head", spec["spec"]["headGroupSpec"])
    assert pod["spec"]["volumes"][0]["emptyDir"] == {"medium": "Memory", "sizeLimit": "1Gi"}


def test_no_shared_memory_when_mounted_already_or_with_a_plasma_directory():
    mounted = container(volumeMounts=[{"name": "dshm", "mountPath": "/dev/shm"}])
    spec = cluster(head=mounted)
    spec["spec"]["headGroupSpec"]["template"]["spec"]["volumes"] = [{"name": "dshm", "emptyDir": {"medium": "Memory"}}]
    pod = kuberay_pods.build_pod(spec, "head", spec["spec"]["headGroupSpec"])
    assert [v["name"] for v in pod["spec"]["volumes"]] == ["dshm"]
    spec = cluster()
    spec["spec"]["headGroupSpec"]["rayStartParams"] = {"plasma-directory": "/data/plasma"}
    pod = kuberay_pods.build_pod(spec, "head", spec["spec"]["headGroupSpec"])
    assert "volumes" not in pod["spec"] and "volumeMounts" not in pod["spec"]["containers"][0]


# ---- ports, init container, labels, annotations, names -----------------------------------------------------------


def test_metrics_port_and_the_wait_gcs_ready_init_container():
    worker = container(gpus=1, env=[{"name": "HF_HOME", "value": "/models"}], imagePullPolicy="Always")
    spec = cluster(worker=worker)
    pod = kuberay_pods.build_pod(spec, "worker", spec["spec"]["workerGroupSpecs"][0], (0, "", 0))
    assert pod["spec"]["containers"][0]["ports"] == [{"name": "metrics", "containerPort": 8080}]
    (init,) = pod["spec"]["initContainers"]
    assert (init["name"], init["image"], init["imagePullPolicy"]) == ("wait-gcs-ready", worker["image"], "Always")
    assert init["command"] == ["/bin/bash", "-c", "--"]
    assert f"if ray health-check --address {FQDN}:6379 > /dev/null 2>&1; then" in init["args"][0]
    assert init["args"][0].startswith("\n\t\t\t\t\tSECONDS=0\n") and init["args"][0].endswith("done\n\t\t\t\t")
    fixed = {"cpu": "200m", "memory": "256Mi"}
    assert init["resources"] == {"limits": fixed, "requests": fixed}
    assert [e["name"] for e in init["env"]] == ["HF_HOME", "FQ_RAY_IP", "RAY_IP"]  # pod.go:639, 1193-1205


def test_labels_annotations_and_generated_names():
    spec = cluster()
    spec["spec"]["headGroupSpec"]["template"]["metadata"] = {"labels": {"app": "llm", "ray.io/group": "mine"}}
    head = kuberay_pods.build_pod(spec, "head", spec["spec"]["headGroupSpec"])
    assert head["metadata"]["generateName"] == "llm-head-" and head["metadata"]["name"].startswith("llm-head-")
    assert head["metadata"]["labels"] == {
        "app": "llm",
        "ray.io/is-ray-node": "yes",
        "ray.io/cluster": "llm",
        "ray.io/node-type": "head",
        "ray.io/group": "headgroup",
        "ray.io/identifier": "llm-head",
        "app.kubernetes.io/name": "kuberay",
        "app.kubernetes.io/created-by": "kuberay-operator",
    }
    annotations = head["metadata"]["annotations"]
    assert annotations["ray.io/ft-enabled"] == "false" and annotations["ray.io/kuberay-version"] == "v1.7.0"
    assert len(annotations["ray.io/upgrade-strategy-recreate-hash"]) == 32
    assert head["metadata"]["ownerReferences"][0]["controller"] is True
    worker = kuberay_pods.build_pod(spec, "worker", spec["spec"]["workerGroupSpecs"][0], (3, "", 0))
    assert worker["metadata"]["generateName"] == "llm-gpu-worker-"
    assert worker["metadata"]["labels"]["ray.io/worker-group-replica-index"] == "3"
    assert "annotations" not in worker["metadata"]


def test_gcs_fault_tolerance_env_and_annotations():
    spec = cluster()
    spec["spec"]["gcsFaultToleranceOptions"] = {
        "redisAddress": "redis:6379",
        "redisPassword": {"valueFrom": {"secretKeyRef": {"name": "redis", "key": "password"}}},
    }
    head = kuberay_pods.build_pod(spec, "head", spec["spec"]["headGroupSpec"])
    env = env_of(head["spec"]["containers"][0])
    assert head["metadata"]["annotations"]["ray.io/ft-enabled"] == "true"
    assert head["metadata"]["annotations"]["ray.io/external-storage-namespace"] == "uid-1"
    assert env["RAY_external_storage_namespace"] == "uid-1" and env["RAY_REDIS_ADDRESS"] == "redis:6379"
    assert env["REDIS_PASSWORD"] == {"secretKeyRef": {"name": "redis", "key": "password"}}
    assert "--redis-password=$REDIS_PASSWORD" in env["KUBERAY_GEN_RAY_START_CMD"]
    worker = kuberay_pods.build_pod(spec, "worker", spec["spec"]["workerGroupSpecs"][0], (0, "", 0))
    assert env_of(worker["spec"]["containers"][0])["RAY_gcs_rpc_server_reconnect_timeout_s"] == "600"


def test_embedded_gcs_storage_mounts_its_claim():
    spec = cluster()
    spec["spec"]["gcsFaultToleranceOptions"] = {"backend": "rocksdb", "storage": {"subPath": "gcs"}}
    head = kuberay_pods.build_pod(spec, "head", spec["spec"]["headGroupSpec"])
    ray = head["spec"]["containers"][0]
    assert (env_of(ray)["RAY_gcs_storage"], env_of(ray)["RAY_gcs_storage_path"]) == ("rocksdb", "/data/gcs")
    assert {"name": "gcs-storage", "mountPath": "/data/gcs", "subPath": "gcs"} in ray["volumeMounts"]
    claim = {"name": "gcs-storage", "persistentVolumeClaim": {"claimName": "llm-gcs-pvc"}}
    assert claim in head["spec"]["volumes"] and "RAY_REDIS_ADDRESS" not in env_of(ray)


# ---- the controller: Services, replica groups, validation, status ------------------------------------------------


def test_head_service_is_headless_with_kuberays_ports_and_labels():
    bed = make_bed()
    apply_cluster(bed, cluster())
    (service,) = listing(bed, "v1", "Service", "ray.io/cluster=llm")
    selector = {
        "ray.io/cluster": "llm",
        "ray.io/node-type": "head",
        "ray.io/identifier": "llm-head",
        "app.kubernetes.io/name": "kuberay",
        "app.kubernetes.io/created-by": "kuberay-operator",
    }
    assert service["metadata"]["labels"] == selector and service["spec"]["selector"] == selector
    assert (service["spec"]["clusterIP"], service["spec"]["publishNotReadyAddresses"]) == ("None", True)
    names = ["client", "dashboard", "gcs-server", "metrics", "serve"]
    assert [p["name"] for p in service["spec"]["ports"]] == names  # service.go:436 defaults, sorted (:135-139)
    assert {p["appProtocol"] for p in service["spec"]["ports"]} == {"tcp"}
    assert service["metadata"]["ownerReferences"][0]["kind"] == "RayCluster"


def test_a_custom_head_service_keeps_its_ports_type_and_name():
    spec = cluster()
    spec["spec"]["headGroupSpec"]["headService"] = {
        "metadata": {"name": "ray-api", "labels": {"team": "ml"}},
        "spec": {"type": "NodePort", "ports": [{"name": "extra", "port": 9000}]},
    }
    bed = make_bed()
    pods = apply_cluster(bed, spec)
    service = next(s for s in listing(bed, "v1", "Service") if s["metadata"]["name"] == "ray-api")
    assert service["spec"]["type"] == "NodePort" and service["spec"]["ports"][0]["name"] == "extra"
    assert service["metadata"]["labels"]["team"] == "ml" and service["metadata"]["labels"]["ray.io/node-type"] == "head"
    worker = next(p for p in pods if p["metadata"]["labels"]["ray.io/node-type"] == "worker")
    assert env_of(worker["spec"]["containers"][0])["FQ_RAY_IP"] == "ray-api.default.svc.cluster.local"


def test_multi_host_groups_are_created_as_replica_groups_with_a_headless_service():
    bed = make_bed()
    pods = apply_cluster(bed, cluster(replicas=1, numOfHosts=2, worker=container(cpu="1", memory="1Gi")))
    workers = [p for p in pods if p["metadata"]["labels"]["ray.io/node-type"] == "worker"]
    labels = [p["metadata"]["labels"] for p in workers]
    assert sorted(label["ray.io/replica-host-index"] for label in labels) == ["0", "1"]
    assert {label["ray.io/worker-group-replica-index"] for label in labels} == {"0"}
    assert len({label["ray.io/worker-group-replica-name"] for label in labels}) == 1
    assert labels[0]["ray.io/worker-group-replica-name"].startswith("gpu-")
    (headless,) = listing(bed, "v1", "Service", "ray.io/headless-worker-svc=llm")
    assert headless["metadata"]["name"] == "llm-headless" and headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["selector"] == {"ray.io/cluster": "llm", "ray.io/node-type": "worker"}
    doomed = workers[0]["metadata"]["name"]
    rc = bed.objects.get(bed.type_of("ray.io/v1", "RayCluster"), NS, "llm")
    changed = copy.deepcopy(rc)
    changed["spec"]["workerGroupSpecs"][0]["scaleStrategy"] = {"workersToDelete": [doomed]}
    changed["spec"]["workerGroupSpecs"][0]["replicas"] = 0
    bed.objects.update(bed.type_of("ray.io/v1", "RayCluster"), NS, "llm", changed)
    converge(bed)
    assert listing(bed, "v1", "Pod", "ray.io/node-type=worker") == []  # the whole replica group went


def test_single_host_workers_take_the_lowest_free_replica_indices():
    bed = make_bed()
    pods = apply_cluster(bed, cluster(replicas=3, worker=container(cpu="1", memory="1Gi")))
    indices = sorted(
        p["metadata"]["labels"]["ray.io/worker-group-replica-index"]
        for p in pods
        if "ray.io/worker-group-replica-index" in p["metadata"]["labels"]
    )
    assert indices == ["0", "1", "2"]


def test_an_invalid_spec_gets_a_warning_event_and_no_pods():
    bed = make_bed()
    pods = apply_cluster(bed, cluster(minReplicas=3, maxReplicas=2))
    assert pods == []
    events = [e for e in listing(bed, "v1", "Event") if e["reason"] == "InvalidRayClusterSpec"]
    assert events[0]["type"] == "Warning"
    assert events[0]["message"] == (
        "The RayCluster spec is invalid default/llm: worker group gpu has minReplicas 3 greater than maxReplicas 2"
    )


def test_status_ready_with_conditions_and_gpu_sum():
    bed = make_bed()
    apply_cluster(bed, cluster(replicas=2, worker=container(cpu="1", memory="1Gi", gpus=1)))
    status = bed.objects.get(bed.type_of("ray.io/v1", "RayCluster"), NS, "llm")["status"]
    assert status["state"] == "ready" and status["readyWorkerReplicas"] == 2 and status["desiredGPU"] == "2"
    conditions = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    assert conditions == {
        "HeadPodReady": ("True", "HeadPodRunningAndReady"),
        "RayClusterProvisioned": ("True", "AllPodRunningAndReadyFirstTime"),
        "RayClusterSuspended": ("False", "RayClusterSuspended"),
        "RayClusterSuspending": ("False", "RayClusterSuspending"),
    }
    assert status["stateTransitionTimes"]["ready"] and status["head"]["serviceName"] == "llm-head-svc"


def test_a_worker_on_a_not_ready_node_is_running_but_not_ready_and_the_state_stays_ready():
    """util.go:449 CalculateReadyReplicas counts Running pods whose Ready is True, :465 CalculateAvailableReplicas
    Running ones; raycluster_controller.go:2015 sets state ready and never takes it back, and RayClusterProvisioned
    stays True once set. So a worker the node lifecycle controller marked not Ready lowers readyWorkerReplicas only.
    (The worker is one whose node does not run the operator: an operator on a NotReady node is down, and the
    RayCluster's status stays as it was.)"""
    bed = make_bed()
    pods = apply_cluster(bed, cluster(replicas=2, worker=container(cpu="1", memory="1Gi", gpus=1)))
    rtype = bed.type_of("ray.io/v1", "RayCluster")
    uid = bed.objects.get(rtype, NS, "llm")["metadata"]["uid"]
    (operator,) = bed.objects.list(bed.type_of("v1", "Pod"), "kuberay-system")
    workers = [p for p in pods if p["metadata"]["labels"]["ray.io/node-type"] == "worker"]
    node = next(p["spec"]["nodeName"] for p in workers if p["spec"]["nodeName"] != operator["spec"]["nodeName"])
    head_node = next(p for p in pods if p["metadata"]["labels"]["ray.io/node-type"] == "head")["spec"]["nodeName"]
    bed.not_ready_nodes.add(node)
    converge(bed)
    status = bed.objects.get(rtype, NS, "llm")["status"]
    assert (status["state"], status["readyWorkerReplicas"], status["availableWorkerReplicas"]) == ("ready", 1, 2)
    conditions = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    assert conditions["RayClusterProvisioned"] == ("True", "AllPodRunningAndReadyFirstTime")
    assert head_node != node and conditions["HeadPodReady"] == ("True", "HeadPodRunningAndReady")
    assert {p["metadata"]["uid"] for p in listing(bed, "v1", "Pod", "ray.io/cluster=llm")} == {
        p["metadata"]["uid"] for p in pods
    }  # KubeRay deletes no pod for it (shouldDeletePod looks at the Ray container's state only)
    bed.not_ready_nodes.discard(node)
    converge(bed)
    status = bed.objects.get(rtype, NS, "llm")["status"]
    assert (status["readyWorkerReplicas"], bed.objects.get(rtype, NS, "llm")["metadata"]["uid"]) == (2, uid)


def test_a_head_marked_not_ready_by_the_node_controller_is_head_pod_ready_false_with_reason_unknown():
    """util.go:84 FindHeadPodReadyCondition: MarkPodsNotReady keeps the Ready condition's empty reason, so the
    condition is False with KubeRay's default reason Unknown and no message."""
    marked = {
        "status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "ContainersReady", "status": "True"}]}
    }
    (condition,) = kuberay._head_pod_ready([], marked, "2025-01-01T00:00:00Z")
    assert (condition["type"], condition["status"], condition["reason"], condition["message"]) == (
        "HeadPodReady",
        "False",
        "Unknown",
        "",
    )


def test_suspend_deletes_the_pods_then_reports_suspended():
    bed = make_bed()
    apply_cluster(bed, cluster())
    rtype = bed.type_of("ray.io/v1", "RayCluster")
    changed = copy.deepcopy(bed.objects.get(rtype, NS, "llm"))
    changed["spec"]["suspend"] = True
    bed.objects.update(rtype, NS, "llm", changed)
    converge(bed)
    status = bed.objects.get(rtype, NS, "llm")["status"]
    assert listing(bed, "v1", "Pod", "ray.io/cluster=llm") == [] and status["state"] == "suspended"
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert (conditions["RayClusterSuspended"], conditions["RayClusterSuspending"]) == ("True", "False")


# ---- the operator the seeds install (helm-chart/kuberay-operator at v1.7.0) -----------------------------------


def test_operator_deployment_is_the_charts():
    deployment = seeding.kuberay_operator_deployment("kuberay-system")
    assert deployment["metadata"]["labels"] == {
        "app.kubernetes.io/name": "kuberay-operator",
        "app.kubernetes.io/instance": "kuberay-operator",
        "helm.sh/chart": "kuberay-operator-1.7.0",
        "app.kubernetes.io/managed-by": "Helm",
    }
    template = deployment["spec"]["template"]
    assert template["metadata"]["labels"]["app.kubernetes.io/component"] == "kuberay-operator"
    (operator,) = template["spec"]["containers"]
    assert operator["image"] == "quay.io/kuberay/operator:v1.7.0" and operator["command"] == ["/manager"]
    gates = [a for a in operator["args"] if a.startswith("--feature-gates=")]
    assert gates == [
        "--feature-gates=RayClusterStatusConditions=true,RayJobDeletionPolicy=true,RayMultiHostIndexing=true,"
        "RayServiceIncrementalUpgrade=true,RayCronJob=false,RayClusterMTLS=false,RayClusterNetworkPolicy=false,"
        "RayClusterHistoryServer=false"
    ]
    assert operator["resources"] == {"limits": {"cpu": "100m", "memory": "512Mi"}}
    assert operator["livenessProbe"]["httpGet"] == {"path": "/metrics", "port": "http"}


# ---- token auth (raycluster_controller.go:422-480, pod.go:345-414, validation.go:285-317) ------------------------


def with_auth(spec_cluster, **auth):
    spec_cluster["spec"]["authOptions"] = {"mode": "token", **auth}
    return spec_cluster


def test_token_auth_with_a_secret_name_puts_its_token_in_every_ray_container():
    bed = make_bed()
    pods = apply_cluster(bed, with_auth(cluster(), secretName="llm-ray-auth"))
    assert len(pods) == 2
    for pod in pods:
        containers = pod["spec"]["containers"][:1] + [
            c for c in pod["spec"].get("initContainers") or [] if c["name"] == "wait-gcs-ready"
        ]
        for ray in containers:
            env = env_of(ray)
            assert env["RAY_AUTH_MODE"] == "token"
            assert env["RAY_AUTH_TOKEN"] == {"secretKeyRef": {"name": "llm-ray-auth", "key": "auth_token"}}
    # The operator makes no Secret of its own when one is named.
    assert [s["metadata"]["name"] for s in listing(bed, "v1", "Secret", "ray.io/cluster=llm")] == []


def test_token_auth_without_a_secret_name_gets_a_secret_kuberay_makes_and_owns():
    bed = make_bed()
    pods = apply_cluster(bed, with_auth(cluster()))
    (secret,) = listing(bed, "v1", "Secret", "ray.io/cluster=llm")
    assert secret["metadata"]["name"] == "llm" and len(secret["data"]["auth_token"]) > 40
    assert secret["metadata"]["ownerReferences"][0]["kind"] == "RayCluster"
    assert env_of(pods[0]["spec"]["containers"][0])["RAY_AUTH_TOKEN"]["secretKeyRef"]["name"] == "llm"


def test_token_auth_needs_ray_2_52():
    bed = make_bed()
    assert apply_cluster(bed, with_auth(cluster(ray_version="2.51.0"))) == []
    (event,) = [e for e in listing(bed, "v1", "Event") if e["reason"] == "InvalidRayClusterSpec"]
    assert event["message"].endswith("authOptions.mode is 'token' but minimum Ray version is 2.52.0, got 2.51.0")
