# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The ray_cluster role on platform kubernetes, run with ansible-playbook against the Kubernetes test bed.

The test bed's API server validates the RayCluster against KubeRay's CRD schema (unknown fields: 422), its KubeRay
controller builds the head and worker pods and the head Service as KubeRay v1.4 does, its scheduler places them by
GPUs, nodeSelector and tolerations, and its service proxy forwards the Ray gate to a real local Ray cluster (a head
and two workers with one GPU resource each) standing in for the pods.

Why a mapping and not the pods that run (the test bed's runtime, molecule/kubernetes): these are the role's GPU
layouts, whose pods ask for nvidia.com/gpu and must show GPUs to the gate, which the CPU image's Ray cannot; and the
image gate's outcomes here are recorded reports (tests/fixtures/images), where test_site_kubernetes_pods.py runs the
gate's Job for real.
"""

from __future__ import annotations

import base64
import json
import re
import sys
import tarfile
import time
from pathlib import Path

import pytest
import ray_local
from playbook_runner import run_playbook
from testbed_images import IMAGE_WITHOUT_RAY, image_check_outcome

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from k8s_testbed.harness import RunningTestBed

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "llm"
NAME = "llm-raycluster"
PLAYBOOK = "tests/integration/playbooks/ray_cluster_k8s.yml"
TEARDOWN = "tests/integration/playbooks/ray_cluster_k8s_teardown.yml"
GPU_PRODUCT = "NVIDIA-A100-SXM4-80GB"
IMAGE = "localhost/llmops/ray-vllm:0.32.0-ray2.60.0"  # the role's default: a local build of images/ray-vllm
# A gate interval long enough that a second poll would show in the run's length; no support bundle (it is tested
# below), so that a failing run does what a passing one does but for the gate.
NODE_FAULT_RUN = {
    "ray_cluster_kuberay_delay": 10,
    "ray_cluster_kuberay_timeout": 600,
    "ray_cluster_support_bundle": False,
}


def seed_layout(replicas=2):
    """ray_layout.kuberay as the deployment plan writes it for the seed (2 nodes x 1 A100, TP=2, head without GPU)."""
    return {
        "head": {"num_gpus": 0, "node": None},
        "worker_group": {
            "replicas": replicas,
            "min_replicas": replicas,
            "max_replicas": replicas,
            "num_of_hosts": 1,
            "num_gpus": 1,
            "gpu_product": GPU_PRODUCT,
            "cpus": 32.0,
            "memory_mib": 262044,
            "pods_per_node": {"gpu-worker-1": 1, "gpu-worker-2": 1},
        },
    }


def run_role(bed, tmp_path, playbook=PLAYBOOK, extra_vars=None, args=()):
    variables = {
        "ray_vllm_kubeconfig": bed.kubeconfig,
        "ray_cluster_platform": "kubernetes",
        "ray_cluster_kuberay_layout": seed_layout(),
        "ray_cluster_kuberay_timeout": 60,
        "ray_cluster_kuberay_delay": 1,
        "ray_cluster_wait_timeout": 60,
        "ray_cluster_status_interval": 1,
    }
    variables.update(extra_vars or {})
    vars_file = tmp_path / ("vars-%d.json" % time.monotonic_ns())
    vars_file.write_text(json.dumps(variables))
    env = dict(bed.env(), ANSIBLE_COLLECTIONS_PATH=str(REPO / ".build" / "collections"))
    rc, out, recap = run_playbook(
        playbook,
        inventory="localhost,",
        extra_args=["-e", "ansible_python_interpreter=%s" % sys.executable, "-e", "@%s" % vars_file, *args],
        env=env,
        timeout=600,
    )
    # The yaml callback wraps long messages: compare on the text with its whitespace collapsed.
    return rc, " ".join(out.split()), recap.get("localhost", {})


def get(bed, path):
    status, body = bed.request("GET", path)
    assert status in (200, 404), (status, body)
    return body if status == 200 else None


def ray_pods(bed):
    body = get(bed, f"/api/v1/namespaces/{NAMESPACE}/pods?labelSelector=ray.io/cluster%3D{NAME}")
    return [p for p in (body or {}).get("items", []) if not p["metadata"].get("deletionTimestamp")]


def raycluster(bed):
    return get(bed, f"/apis/ray.io/v1/namespaces/{NAMESPACE}/rayclusters/{NAME}")


def start_ray(ray_cluster_factory, attempts=3):
    """The head and two 1-GPU workers; started again when a node loses a port race with another Ray on this machine."""
    for attempt in range(attempts):
        try:
            return ray_cluster_factory(
                head={"num_cpus": 1}, workers=[{"num_cpus": 1, "num_gpus": 1}, {"num_cpus": 1, "num_gpus": 1}]
            )
        except ray_local.WorkerExitedEarly:
            if attempt == attempts - 1:
                raise


@pytest.fixture
def bed(tmp_path):
    with RunningTestBed(tmp_path / "testbed") as running:
        # The image gate's Job ends having printed what the project's serving image holds (a real recording).
        running.admin("POST", "outcomes", image_check_outcome())
        yield running


def test_check_run_idempotence_and_teardown(bed, tmp_path, ray_cluster_factory):
    # The real Ray cluster the head Service's dashboard port leads to: the head and two 1-GPU workers.
    cluster = start_ray(ray_cluster_factory)
    bed.admin("PUT", "service-backends", {f"{NAMESPACE}/{NAME}-head-svc:8265": cluster.dashboard_url})

    # --check: a server-side dry run; nothing is created and the gates say why they are skipped.
    rc, out, recap = run_role(bed, tmp_path, args=["--check", "--diff"])
    assert rc == 0, out[-6000:]
    assert "Check mode: the RayCluster llm/llm-raycluster was only sent as a server-side dry run" in out
    assert f"Check mode: the image gate would run the Job llm/llm-image-check with {IMAGE}" in out
    assert "rayVersion: 2.60.0" in out  # --diff shows the manifest
    assert raycluster(bed) is None and ray_pods(bed) == []

    # The real run: schema-valid (the test bed refuses unknown fields), ready, both gates pass.
    rc, out, recap = run_role(bed, tmp_path)
    assert rc == 0, out[-8000:]
    assert recap["failed"] == 0
    assert "RayCluster llm/llm-raycluster ready: 3 Ray nodes alive" in out, out[-4000:]
    # The image gate ran first and its Job keeps the result, so a re-run skips it.
    assert f"image gate passed: {IMAGE} (Python 3.11.7, Ray 2.60.0, vLLM 0.32.0)" in out, out[-4000:]
    check_job = get(bed, f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs/llm-image-check")
    assert check_job["metadata"]["annotations"]["llmops.ray-vllm/image-check"] == "passed"
    rc_obj = raycluster(bed)
    assert rc_obj["status"]["state"] == "ready" and rc_obj["status"]["readyWorkerReplicas"] == 2
    assert rc_obj["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "llmops.ray_vllm",
        "app.kubernetes.io/part-of": "ray-vllm",
        "app.kubernetes.io/instance": "llm",
        "app.kubernetes.io/name": "raycluster",
    }
    spec = rc_obj["spec"]
    assert spec["rayVersion"] == "2.60.0"
    assert spec["headGroupSpec"]["serviceType"] == "ClusterIP"
    assert spec["headGroupSpec"]["rayStartParams"] == {"dashboard-host": "0.0.0.0", "num-cpus": "0", "num-gpus": "0"}
    (group,) = spec["workerGroupSpecs"]
    assert (group["groupName"], group["replicas"], group["minReplicas"], group["maxReplicas"], group["numOfHosts"]) == (
        "gpu",
        2,
        2,
        2,
        1,
    )
    assert group["rayStartParams"] == {"num-gpus": "1"}

    pods = ray_pods(bed)
    assert len(pods) == 3, [p["metadata"]["name"] for p in pods]
    assert all(p["status"]["phase"] == "Running" for p in pods)
    heads = [p for p in pods if p["metadata"]["labels"]["ray.io/node-type"] == "head"]
    workers = [p for p in pods if p["metadata"]["labels"]["ray.io/node-type"] == "worker"]
    assert len(heads) == 1 and len(workers) == 2
    head = heads[0]
    head_ray = head["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in json.dumps(head_ray["resources"])
    assert head["spec"]["nodeName"].startswith("gpu-worker-")  # control-plane nodes are tainted
    # The workers sit one per GPU node, placed by the GPU request, the product nodeSelector and the toleration.
    assert sorted(p["spec"]["nodeName"] for p in workers) == ["gpu-worker-1", "gpu-worker-2"]
    for pod in workers:
        ray = pod["spec"]["containers"][0]
        assert ray["image"] == IMAGE
        assert ray["resources"]["limits"]["nvidia.com/gpu"] in (1, "1")
        assert ray["resources"]["requests"]["cpu"] in ("25", 25)  # 80 % of the layout's 32 CPUs per pod
        assert pod["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": GPU_PRODUCT}
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["spec"]["tolerations"]
        assert "--num-gpus=1" in ray["args"][0] and "--address=llm-raycluster-head-svc" in ray["args"][0]
    for pod in pods:
        ray = pod["spec"]["containers"][0]
        env = {e["name"]: e for e in ray["env"]}
        assert env["VLLM_HOST_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
        assert env["NCCL_SOCKET_IFNAME"]["value"] == "eth0" and env["GLOO_SOCKET_IFNAME"]["value"] == "eth0"
        volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
        # /dev/shm is the pod's memory limit (its pages count against it): the head's 16Gi, a worker's 80 % share.
        limit = "16Gi" if pod in heads else "209635Mi"
        assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": limit}
        assert volumes["models"]["persistentVolumeClaim"] == {"claimName": "llm-models", "readOnly": True}
        mounts = {m["name"]: m for m in ray["volumeMounts"]}
        assert mounts["models"] == {"name": "models", "mountPath": "/models", "readOnly": True}
        assert mounts["dshm"]["mountPath"] == "/dev/shm"
        assert pod["metadata"]["labels"]["app.kubernetes.io/instance"] == "llm"
    # The head Service (KubeRay's, ClusterIP) selects the head pod: our labels did not override KubeRay's.
    service = get(bed, f"/api/v1/namespaces/{NAMESPACE}/services/{NAME}-head-svc")
    selector = service["spec"]["selector"]
    assert all(head["metadata"]["labels"].get(k) == v for k, v in selector.items()), selector
    assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
    policy = get(bed, f"/apis/networking.k8s.io/v1/namespaces/{NAMESPACE}/networkpolicies/{NAME}")
    assert policy["spec"]["podSelector"] == {"matchLabels": {"ray.io/cluster": NAME}}
    # The metrics ports stay closed to other namespaces unless ray_cluster_network_policy_metrics_from is set.
    assert not [
        rule for rule in policy["spec"]["ingress"] if {"port": "metrics", "protocol": "TCP"} in rule.get("ports", [])
    ]
    # The head declares its metrics ports by the names roles/monitoring's PodMonitor scrapes.
    head_ports = {port["name"]: port["containerPort"] for port in head_ray["ports"]}
    assert (head_ports["metrics"], head_ports["as-metrics"], head_ports["dash-metrics"]) == (8080, 44217, 44227)

    # A node under a worker goes NotReady: the re-run fails at once, naming it; the node comes back.
    failing, uids = node_not_ready_fails_the_gate_at_once(bed, tmp_path, workers)

    # Second run, the node back: it passes on the same RayCluster and pods, and nothing changes. Both runs are timed
    # for the log only: two runs' wall clocks differ by more than one interval when the machine is loaded (CI's other
    # lane), so the failing run is held to the gate's own clock above and, here, to never waiting out the timeout.
    started = time.monotonic()
    rc, out, recap = run_role(bed, tmp_path, extra_vars=NODE_FAULT_RUN)
    passing = time.monotonic() - started
    assert rc == 0, out[-6000:]
    assert recap["changed"] == 0, out[-6000:]
    assert "RayCluster llm/llm-raycluster ready: 3 Ray nodes alive" in out, out[-4000:]
    assert (raycluster(bed)["metadata"]["uid"], sorted(p["metadata"]["uid"] for p in ray_pods(bed))) == uids
    interval = NODE_FAULT_RUN["ray_cluster_kuberay_delay"]
    timeout = NODE_FAULT_RUN["ray_cluster_kuberay_timeout"]
    print(f"node NotReady: the failing run took {failing:.1f} s, a passing one {passing:.1f} s (interval {interval} s)")
    assert failing < timeout, (failing, timeout)

    # Teardown deletes the RayCluster; the garbage collector takes its pods and Service.
    rc, out, recap = run_role(bed, tmp_path, playbook=TEARDOWN)
    assert rc == 0, out[-6000:]
    assert recap["changed"] == 2  # the RayCluster and its NetworkPolicy
    assert raycluster(bed) is None
    assert get(bed, f"/apis/networking.k8s.io/v1/namespaces/{NAMESPACE}/networkpolicies/{NAME}") is None
    deadline = time.monotonic() + 30
    while ray_pods(bed) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert ray_pods(bed) == []
    assert get(bed, f"/api/v1/namespaces/{NAMESPACE}/services/{NAME}-head-svc") is None
    # Teardown again: nothing left to delete.
    rc, out, recap = run_role(bed, tmp_path, playbook=TEARDOWN)
    assert rc == 0 and recap["changed"] == 0, out[-4000:]


def node_not_ready_fails_the_gate_at_once(bed, tmp_path, workers):
    """Issue 14's fault "a node NotReady": the node under a worker pod stops posting (the test bed does what the node
    lifecycle controller does then: the node Unknown, the pod's Ready False). The re-run's KubeRay gate fails at its
    first poll, naming the node, its Ready condition, the pod and its logs. Then the node is back.

    Returns how long the failing run took, and the uids of the RayCluster and its pods before the fault."""
    operator_node = next(
        p["spec"]["nodeName"] for p in get(bed, "/api/v1/namespaces/kuberay-system/pods")["items"]
    )  # an operator on a NotReady node is down too, and the RayCluster's status would stay as it was
    worker = next(p for p in workers if p["spec"]["nodeName"] != operator_node)
    name, node = worker["metadata"]["name"], worker["spec"]["nodeName"]
    uids = (raycluster(bed)["metadata"]["uid"], sorted(p["metadata"]["uid"] for p in ray_pods(bed)))
    bed.admin("PUT", f"nodes/{node}/ready", {"ready": False})
    ready_workers_become(bed, 1)
    assert (raycluster(bed)["status"]["state"], raycluster(bed)["status"]["availableWorkerReplicas"]) == ("ready", 2)

    started = time.monotonic()
    rc, out, recap = run_role(bed, tmp_path, extra_vars=NODE_FAULT_RUN)
    failing = time.monotonic() - started
    assert rc != 0 and recap["failed"] == 1, out[-6000:]
    # From the gate's first poll to its failure (profile_tasks' clock, which ansible.cfg turns on): under one interval.
    gate_started = task_started(out, "Wait until KubeRay has seen")
    detection = task_started(out, "Write a support bundle, then fail") - gate_started
    interval = NODE_FAULT_RUN["ray_cluster_kuberay_delay"]
    print(
        f"node {node} NotReady: the KubeRay gate failed {detection:.1f} s after its first poll (interval {interval} s)"
    )
    assert 0 < detection < interval, detection
    assert "the RayCluster llm/llm-raycluster has Ray pods on a node that is not Ready" in out, out[-6000:]
    assert "readyWorkerReplicas=1 of 2 (availableWorkerReplicas=2, state=ready)" in out, out[-6000:]
    ready = f"node {node} Ready=Unknown since "
    assert ready in out and "(NodeStatusUnknown: Kubelet stopped posting node status.; last heartbeat " in out
    logs = f"{name} (worker group gpu; logs: kubectl logs -n {NAMESPACE} {name} -c ray; on the node in /var/log/pods/"
    assert logs in out, out[-6000:]
    assert "RETRYING: [localhost]: Wait until KubeRay" not in out, out[-6000:]  # one poll

    bed.admin("PUT", f"nodes/{node}/ready", {"ready": True})
    ready_workers_become(bed, 2)
    return failing, uids


def task_started(out, name):
    """Seconds into the run at which the task whose name starts with ``name`` started: the elapsed time that
    ansible.posix.profile_tasks prints in its banner (after the previous task's own duration in parentheses)."""
    match = re.search(re.escape(name) + r"[^\]]*\] \*+ .*? \(\d+:\d+:[\d.]+\) (\d+):(\d+):([\d.]+) ", out)
    assert match, f"no profile_tasks banner for {name!r}"
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def ready_workers_become(bed, count, timeout=10):
    deadline = time.monotonic() + timeout
    while raycluster(bed)["status"]["readyWorkerReplicas"] != count and time.monotonic() < deadline:
        time.sleep(0.2)
    assert raycluster(bed)["status"]["readyWorkerReplicas"] == count, raycluster(bed)["status"]


def test_an_image_without_ray_stops_the_run_before_any_raycluster_exists(bed, tmp_path):
    bed.admin("POST", "outcomes", image_check_outcome(IMAGE_WITHOUT_RAY))
    rc, out, recap = run_role(bed, tmp_path)
    assert rc != 0
    assert f"the image gate (Job llm/llm-image-check) refused image {IMAGE}: no ray" in out, out[-4000:]
    assert "no vLLM" in out and "no ray on the PATH" in out
    assert "set ray_cluster_image (and vllm_serve_image) to it" in out and "No RayCluster was created." in out
    assert raycluster(bed) is None and ray_pods(bed) == []


PROMETHEUS_NAMESPACE = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}


def test_more_gpu_replicas_than_the_seed_has_fail_the_kuberay_gate(bed, tmp_path):
    rc, out, recap = run_role(
        bed,
        tmp_path,
        extra_vars={
            "ray_cluster_kuberay_layout": seed_layout(replicas=3),
            "ray_cluster_kuberay_timeout": 6,
            "ray_cluster_kuberay_delay": 1,
            "support_bundle_dir": str(tmp_path / "support"),
            "ray_cluster_network_policy_metrics_from": [PROMETHEUS_NAMESPACE],
        },
    )
    assert rc != 0
    assert "the RayCluster llm/llm-raycluster is not ready after 6 s" in out, out[-6000:]
    # Prometheus's namespace is let into the metrics ports.
    policy = get(bed, f"/apis/networking.k8s.io/v1/namespaces/{NAMESPACE}/networkpolicies/{NAME}")
    names = ["metrics", "as-metrics", "dash-metrics"]
    metrics_rule = {"ports": [{"port": name, "protocol": "TCP"} for name in names], "from": [PROMETHEUS_NAMESPACE]}
    assert metrics_rule in policy["spec"]["ingress"], policy["spec"]["ingress"]
    assert "readyWorkerReplicas=2 of 3" in out, out[-6000:]
    # The scheduler's own words, from the FailedScheduling event, and the fix.
    assert "0/5 nodes are available:" in out and "Insufficient nvidia.com/gpu" in out, out[-6000:]
    assert "Pending" in out and "Unschedulable" in out
    assert "give the nodes that many free GPUs" in out
    # The Ray gate never ran.
    assert "through the API server's service proxy" not in out.rsplit("Fail with what KubeRay", maxsplit=1)[-1]
    # The failed gate wrote a support bundle and named it; the Ray token is nowhere in it.
    bundle = support_bundle_members(out, tmp_path / "support")
    assert {"gate.json", "kubernetes/raycluster.json", "kubernetes/events.json", "nodes/gpu_node_facts.json"} <= set(
        bundle
    ), sorted(bundle)
    pending = [name for name in bundle if name.startswith("kubernetes/pods/") and name.endswith("/describe.json")]
    assert pending and "Insufficient nvidia.com/gpu" in bundle["kubernetes/events.json"], sorted(bundle)
    assert "readyWorkerReplicas=2 of 3" in bundle["gate.json"]
    token = base64.b64decode(get(bed, f"/api/v1/namespaces/{NAMESPACE}/secrets/llm-ray-auth")["data"]["auth_token"])
    assert not [name for name, text in bundle.items() if token.decode() in text]


def support_bundle_members(out, directory):
    """The members of the one bundle in directory, by their name under its top directory; its path is in out."""
    (path,) = directory.glob("llmops-support-llm-*.tar.gz")
    assert "Support bundle: %s" % path in out, out[-3000:]
    assert path.stat().st_mode & 0o777 == 0o600
    with tarfile.open(path) as archive:
        return {
            member.name.split("/", 1)[1]: archive.extractfile(member).read().decode()
            for member in archive.getmembers()
            if member.isfile()
        }


def test_mismatched_head_and_worker_images_fail_in_preflight(bed, tmp_path):
    rc, out, recap = run_role(
        bed,
        tmp_path,
        extra_vars={
            "ray_cluster_head_image": "vllm/vllm-openai:v0.32.0",
            "ray_cluster_worker_image": "registry.local:5000/vllm/vllm-openai:v0.31.0",
        },
    )
    assert rc != 0
    assert "Ray version must match between head and workers" in out, out[-4000:]
    assert "tag v0.32.0" in out and "tag v0.31.0" in out
    assert raycluster(bed) is None


def test_invalid_namespace_and_shm_size_fail_in_preflight(bed, tmp_path):
    rc, out, recap = run_role(bed, tmp_path, extra_vars={"ray_cluster_namespace": "LLM_prod"})
    assert rc != 0 and "must be DNS-1123 labels" in out, out[-4000:]
    rc, out, recap = run_role(bed, tmp_path, extra_vars={"ray_cluster_shm_size": "64 GB"})
    said = " ".join(out.split())
    assert rc != 0 and "ray_cluster_shm_size='64 GB': expected a Kubernetes quantity such as 64Gi" in said, out[-4000:]
    assert raycluster(bed) is None


def test_an_autoscaled_worker_group_is_left_to_the_autoscaler_and_the_head_service_has_the_serve_port(
    bed, tmp_path, ray_cluster_factory
):
    """A layout whose maxReplicas exceeds its minReplicas (an autoscaling plan): KubeRay's in-tree autoscaler on, and
    a re-run renders the replicas the autoscaler set, so it keeps them (client-side apply sends workerGroupSpecs
    whole); Serve's port moved to 8001 is on the head Service KubeRay makes."""
    cluster = start_ray(ray_cluster_factory)
    bed.admin("PUT", "service-backends", {f"{NAMESPACE}/{NAME}-head-svc:8265": cluster.dashboard_url})
    layout = seed_layout(replicas=1)
    layout["worker_group"]["max_replicas"] = 2
    extra = {"ray_cluster_kuberay_layout": layout, "ray_cluster_serve_port": 8001}
    rc, out, recap = run_role(bed, tmp_path, extra_vars=extra)
    assert rc == 0, out[-8000:]
    spec = raycluster(bed)["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["autoscalerOptions"]["securityContext"]["allowPrivilegeEscalation"] is False
    (group,) = spec["workerGroupSpecs"]
    # The first run starts minReplicas; the autoscaler owns replicas from then on.
    assert (group["replicas"], group["minReplicas"], group["maxReplicas"]) == (1, 1, 2)
    assert len([p for p in ray_pods(bed) if p["metadata"]["labels"]["ray.io/node-type"] == "worker"]) == 1
    ports = {
        p["name"]: p["port"]
        for p in get(bed, f"/api/v1/namespaces/{NAMESPACE}/services/{NAME}-head-svc")["spec"]["ports"]
    }
    assert ports["serve"] == 8001 and ports["dashboard"] == 8265 and ports["gcs-server"] == 6379

    # The autoscaler adds a worker pod for a new Serve replica; a re-run keeps it and its gate accepts 2 of 1..2.
    status, body = bed.request(
        "PATCH",
        f"/apis/ray.io/v1/namespaces/{NAMESPACE}/rayclusters/{NAME}",
        [{"op": "replace", "path": "/spec/workerGroupSpecs/0/replicas", "value": 2}],
        content_type="application/json-patch+json",
    )
    assert status == 200, body
    deadline = time.monotonic() + 30
    while raycluster(bed).get("status", {}).get("readyWorkerReplicas") != 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    rc, out, recap = run_role(bed, tmp_path, extra_vars=extra)
    assert rc == 0, out[-8000:]
    assert raycluster(bed)["spec"]["workerGroupSpecs"][0]["replicas"] == 2
    assert len([p for p in ray_pods(bed) if p["metadata"]["labels"]["ray.io/node-type"] == "worker"]) == 2
    # That run recorded the new count in the last-applied annotation; the next one changes nothing.
    rc, out, recap = run_role(bed, tmp_path, extra_vars=extra)
    assert rc == 0 and recap["changed"] == 0, out[-6000:]
    assert raycluster(bed)["spec"]["workerGroupSpecs"][0]["replicas"] == 2
