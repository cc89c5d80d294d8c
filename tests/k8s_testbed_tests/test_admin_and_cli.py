# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The test bed as a test uses it: the command line, seeds, switching controllers, and faults through /testbed/v1."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kubernetes import client, config

pytestmark = pytest.mark.integration
TESTS_DIR = Path(__file__).resolve().parents[1]


def wait_for(predicate, timeout=15.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _pod(name, gpus=0, node_selector=None):
    resources = {"limits": {"nvidia.com/gpu": str(gpus)}} if gpus else {}
    spec = {"containers": [{"name": "main", "image": "busybox:1.36", "resources": resources}]}
    if node_selector:
        spec["nodeSelector"] = node_selector
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def _ready(pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def test_command_line_start_prints_the_kubeconfig_and_stop_ends_it(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(TESTS_DIR))
    state_dir = tmp_path / "cli"
    started = subprocess.run(
        [sys.executable, "-m", "k8s_testbed", "start", "--state-dir", str(state_dir), "--seed", "gpu-nodes-3"],
        capture_output=True,
        text=True,
        env=env,
        timeout=90,
        check=False,
    )
    assert started.returncode == 0, started.stderr
    kubeconfig = started.stdout.strip()
    assert kubeconfig == str(state_dir / "kubeconfig")
    try:
        core = client.CoreV1Api(config.new_client_from_config(config_file=kubeconfig))
        gpu_nodes = [n for n in core.list_node().items if "nvidia.com/gpu" in (n.status.allocatable or {})]
        assert len(gpu_nodes) == 3
        assert {n.metadata.labels["nvidia.com/gpu.product"] for n in gpu_nodes} == {"NVIDIA-A100-SXM4-80GB"}
    finally:
        stopped = subprocess.run(
            [sys.executable, "-m", "k8s_testbed", "stop", "--state-dir", str(state_dir)],
            env=env,
            timeout=30,
            check=False,
        )
    assert stopped.returncode == 0
    wait_for(lambda: not os.path.exists(kubeconfig), what="the server to remove its kubeconfig on stop")


def test_one_gpu_node_seed(fresh_testbed):
    bed = fresh_testbed(seed="gpu-nodes-1")
    nodes = client.CoreV1Api(bed.api_client()).list_node().items
    assert sum(int(n.status.allocatable.get("nvidia.com/gpu", 0)) for n in nodes) == 1


def test_switching_the_kubelet_off_leaves_pods_pending(fresh_testbed):
    bed = fresh_testbed()
    core = client.CoreV1Api(bed.api_client())
    bed.admin("PUT", "controllers/kubelet", {"enabled": False})
    core.create_namespaced_pod("default", _pod("waiting"))
    time.sleep(1.5)
    assert core.read_namespaced_pod("waiting", "default").status.phase == "Pending"
    bed.admin("PUT", "controllers/kubelet", {"enabled": True})
    wait_for(lambda: _ready(core.read_namespaced_pod("waiting", "default")), what="the pod to run")
    status, body = bed.request("PUT", "/testbed/v1/controllers/no-such", {"enabled": True})
    assert status == 404 and "known" in body["message"]


def test_unschedulable_gpu_pod_is_pending_with_an_event(fresh_testbed):
    bed = fresh_testbed()
    core = client.CoreV1Api(bed.api_client())
    core.create_namespaced_pod("default", _pod("greedy", gpus=2))

    def scheduling_failure():
        pod = core.read_namespaced_pod("greedy", "default")
        scheduled = [c for c in pod.status.conditions or [] if c.type == "PodScheduled"]
        return scheduled and scheduled[0].reason == "Unschedulable" and scheduled[0].message

    message = wait_for(scheduling_failure, what="PodScheduled=False")
    assert "Insufficient nvidia.com/gpu" in message and message.startswith("0/5 nodes are available")
    events = core.list_namespaced_event("default", field_selector="involvedObject.name=greedy").items
    assert [e.reason for e in events] == ["FailedScheduling"]


def test_crash_loop_and_not_ready_node_through_the_admin_api(fresh_testbed):
    bed = fresh_testbed()
    core = client.CoreV1Api(bed.api_client())
    core.create_namespaced_pod("default", _pod("gpu-pod", gpus=1))
    pod = wait_for(lambda: (p := core.read_namespaced_pod("gpu-pod", "default")) and _ready(p) and p, what="Ready")
    bed.admin("POST", "pods/default/gpu-pod/crashloop", {"reason": "OOMKilled"})

    def crash_looping():
        status = core.read_namespaced_pod("gpu-pod", "default").status
        waiting = status.container_statuses[0].state.waiting
        return (
            waiting
            and waiting.reason == "CrashLoopBackOff"
            and not _ready(core.read_namespaced_pod("gpu-pod", "default"))
        )

    wait_for(crash_looping, what="CrashLoopBackOff")
    bed.admin("DELETE", "pods/default/gpu-pod/crashloop")
    wait_for(lambda: _ready(core.read_namespaced_pod("gpu-pod", "default")), what="recovery")
    node = pod.spec.node_name
    bed.admin("PUT", f"nodes/{node}/ready", {"ready": False})

    def node_unknown():
        conditions = {c.type: c.status for c in core.read_node(node).status.conditions}
        return conditions["Ready"] == "Unknown" and not _ready(core.read_namespaced_pod("gpu-pod", "default"))

    wait_for(node_unknown, what="the node NotReady")
    taints = {t.key for t in core.read_node(node).spec.taints or []}
    assert "node.kubernetes.io/unreachable" in taints
    bed.admin("PUT", f"nodes/{node}/ready", {"ready": True})
    wait_for(lambda: _ready(core.read_namespaced_pod("gpu-pod", "default")), what="the node back")


def test_requested_job_failure_surfaces_in_the_pod_log(fresh_testbed):
    bed = fresh_testbed()
    api = bed.api_client()
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    bed.admin(
        "POST",
        "outcomes",
        {
            "kind": "Job",
            "namespace": "default",
            "name": "download",
            "outcome": "Failed",
            "log": "modelscope: 404 revision not found",
        },
    )
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "download"},
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "fetch", "image": "python:3.11"}]}},
        },
    }
    batch.create_namespaced_job("default", job)

    def failed():
        conditions = batch.read_namespaced_job("download", "default").status.conditions or []
        return any(c.type == "Failed" and c.status == "True" for c in conditions)

    wait_for(failed, what="the Job to fail")
    pods = core.list_namespaced_pod("default", label_selector="job-name=download").items
    assert pods and pods[0].status.phase == "Failed"
    log = core.read_namespaced_pod_log(pods[0].metadata.name, "default")
    assert "modelscope: 404 revision not found" in log
