"""One readiness predicate per kind, and the diagnoses (_waiter), on objects the test bed's API server returned."""

from __future__ import annotations

import json
import os

from ansible_collections.llmops.ray_vllm.plugins.module_utils._waiter import (
    clusterpolicies_ready,
    crash_looping_containers,
    crd_established,
    crd_lookups_brief,
    crds_not_established,
    deployment_available,
    image_pull_errors,
    job_finished,
    node_ready_condition,
    nodes_without_gpus,
    not_ready_node_lines,
    not_ready_pod_nodes,
    not_ready_pods,
    pod_condition_lines,
    pod_finished,
    pod_log_commands,
    pods_on_not_ready_nodes,
    raycluster_provisioned,
    raycluster_ready,
    restarted_container_lines,
)

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "fixtures", "kubernetes")


def deployment(generation=2, observed=2, updated=1, available=1, condition="True"):
    return {
        "metadata": {"name": "d", "generation": generation},
        "status": {
            "observedGeneration": observed,
            "updatedReplicas": updated,
            "availableReplicas": available,
            "conditions": [{"type": "Available", "status": condition}],
        },
    }


def test_a_deployment_is_available_only_when_every_part_says_so():
    assert deployment_available(deployment())
    assert not deployment_available(deployment(observed=1))
    assert not deployment_available(deployment(updated=0))
    assert not deployment_available(deployment(available=0))
    assert not deployment_available(deployment(condition="False"))
    assert not deployment_available(None)
    assert not deployment_available({"metadata": {"generation": 1}})


def test_a_raycluster_is_ready_with_exactly_the_expected_workers():
    ready = {"status": {"state": "ready", "readyWorkerReplicas": 2}}
    assert raycluster_ready(ready, 2)
    assert raycluster_ready(ready, "2")
    assert not raycluster_ready(ready, 3)
    assert not raycluster_ready({"status": {"state": "suspended", "readyWorkerReplicas": 2}}, 2)
    assert not raycluster_ready({}, 0)
    assert not raycluster_ready(None, 0)


def test_an_autoscaled_raycluster_is_ready_anywhere_between_its_minimum_and_maximum_workers():
    def cluster(ready):
        return {"status": {"state": "ready", "readyWorkerReplicas": ready}}

    assert not raycluster_ready(cluster(1), 2, 8)
    assert raycluster_ready(cluster(2), 2, 8) and raycluster_ready(cluster(5), "2", "8")
    assert raycluster_ready(cluster(8), 2, 8) and not raycluster_ready(cluster(9), 2, 8)
    # A maximum below the minimum is the minimum: a fixed group.
    assert raycluster_ready(cluster(2), 2, 1) and not raycluster_ready(cluster(3), 2, 1)


def test_crds_jobs_and_clusterpolicies():
    established = {"status": {"conditions": [{"type": "Established", "status": "True"}]}}
    assert crd_established(established) and not crd_established({"status": {}}) and not crd_established(None)
    assert job_finished({"status": {"conditions": [{"type": "Failed", "status": "True"}]}})
    assert not job_finished({"status": {"conditions": [{"type": "Complete", "status": "False"}]}})
    assert clusterpolicies_ready([{"status": {"state": "ready"}}])
    assert not clusterpolicies_ready([{"status": {"state": "ready"}}, {"status": {"state": "notReady"}}])
    assert not clusterpolicies_ready([])
    assert crds_not_established(
        [{"item": "a.ray.io", "resources": [established]}, {"item": "b.ray.io", "resources": []},
         {"item": "c.ray.io", "resources": [{"status": {"conditions": [{"type": "Established", "status": "False"}]}}]}]
    ) == ["b.ray.io (Established: missing)", "c.ray.io (Established: False)"]  # fmt: skip


def test_crd_lookups_brief_keeps_what_the_gate_reads():
    crd = {
        "metadata": {"name": "rayclusters.ray.io", "uid": "u"},
        "spec": {"versions": [{"schema": {"openAPIV3Schema": {"type": "object"}}}]},
        "status": {"conditions": [{"type": "Established", "status": "True"}], "storedVersions": ["v1"]},
    }
    lookups = [
        {"item": "rayclusters.ray.io", "resources": [crd], "changed": False},
        {"item": "rayjobs.ray.io", "resources": []},
        {"item": "rayservices.ray.io", "failed": True, "msg": "Forbidden"},
    ]
    brief = crd_lookups_brief(lookups)
    assert brief == [
        {"item": "rayclusters.ray.io",
         "resources": [{"metadata": {"name": "rayclusters.ray.io"},
                        "status": {"conditions": [{"type": "Established", "status": "True"}]}}]},
        {"item": "rayjobs.ray.io", "resources": []},
        {"item": "rayservices.ray.io", "failed": True, "msg": "Forbidden"},
    ]  # fmt: skip
    # The gate's readings of the brief are those of the lookups.
    assert crds_not_established(brief) == crds_not_established(lookups)
    assert crds_not_established(brief) == ["rayjobs.ray.io (Established: missing)",
                                           "rayservices.ray.io (Established: missing)"]  # fmt: skip
    assert crd_lookups_brief(None) == []


def test_pods_and_nodes_diagnoses():
    pending = {
        "metadata": {"name": "llm-raycluster-gpu-worker-x", "labels": {"ray.io/node-type": "worker"}},
        "status": {
            "phase": "Pending",
            "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/5 nodes"},
                {"type": "Ready", "status": "False", "reason": "ContainersNotReady", "message": "waiting"},
            ],
        },
    }
    running = {
        "metadata": {"name": "head", "labels": {"ray.io/node-type": "head"}},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    }
    assert not_ready_pods([pending, running]) == ["llm-raycluster-gpu-worker-x (Pending)"]
    assert pod_condition_lines([pending, running]) == [
        "llm-raycluster-gpu-worker-x (worker): Pending, PodScheduled=False Unschedulable, "
        "Ready=False ContainersNotReady: waiting",
        "head (head): Running",
    ]
    nodes = [
        {"metadata": {"name": "a"}, "status": {"allocatable": {"nvidia.com/gpu": "1"}}},
        {"metadata": {"name": "b"}, "status": {"allocatable": {"cpu": "8"}}},
        {"metadata": {"name": "c"}, "status": {"allocatable": {"nvidia.com/gpu": "0"}}},
    ]
    assert nodes_without_gpus(nodes) == ["b", "c"]


def test_a_pod_that_cannot_pull_its_image_is_said_to_and_a_finished_one_is_finished():
    stuck = {
        "spec": {"containers": [{"name": "image-0", "image": "localhost/llmops/ray-vllm:x"}]},
        "status": {
            "phase": "Pending",
            "containerStatuses": [
                {"name": "image-0", "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling"}}}
            ],
        },
    }
    assert image_pull_errors([stuck]) == ["localhost/llmops/ray-vllm:x: ImagePullBackOff: Back-off pulling"]
    assert not pod_finished(stuck) and pod_finished({"status": {"phase": "Failed"}}) and not pod_finished(None)
    assert image_pull_errors([{"status": {"containerStatuses": [{"name": "c", "state": {"running": {}}}]}}]) == []


def crashing_worker():
    """A KubeRay worker pod of an image without Ray, as the test bed's runtime reports it after three exits."""
    return {
        "metadata": {"name": "llm-raycluster-gpu-worker-abc", "labels": {"ray.io/node-type": "worker"}},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "False", "reason": "ContainersNotReady"}],
            "initContainerStatuses": [
                {"name": "wait-gcs-ready", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}
            ],
            "containerStatuses": [
                {
                    "name": "ray",
                    "restartCount": 3,
                    "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting"}},
                    "lastState": {"terminated": {"exitCode": 127, "reason": "Error"}},
                }
            ],
        },
    }


def test_a_crash_looping_container_is_named_with_its_restarts_and_exit_code():
    creating = {
        "metadata": {"name": "head", "labels": {"ray.io/node-type": "head"}},
        "status": {
            "phase": "Pending",
            "containerStatuses": [{"name": "ray", "state": {"waiting": {"reason": "ContainerCreating"}}}],
        },
    }
    assert pod_condition_lines([crashing_worker(), creating]) == [
        "llm-raycluster-gpu-worker-abc (worker): Running, Ready=False ContainersNotReady, "
        "container ray CrashLoopBackOff (restarts 3, last exit 127 Error)",
        "head (head): Pending",
    ]
    assert crash_looping_containers([crashing_worker(), creating, None]) == [
        {"pod": "llm-raycluster-gpu-worker-abc", "container": "ray", "restarts": 3, "exit_code": 127}
    ]
    config_error = {
        "metadata": {"name": "p"},
        "status": {
            "containerStatuses": [
                {
                    "name": "c",
                    "state": {"waiting": {"reason": "CreateContainerConfigError", "message": 'secret "s" not found'}},
                }
            ]
        },
    }
    assert pod_condition_lines([config_error]) == [
        'p (?): ?, container c CreateContainerConfigError: secret "s" not found'
    ]


def test_a_raycluster_is_provisioned_once_kuberay_said_ready_and_stays_so_with_fewer_ready_workers():
    assert raycluster_provisioned({"status": {"state": "ready", "readyWorkerReplicas": 2}})
    # KubeRay keeps state ready after a worker lost its readiness: provisioned, and not ready.
    lost = {"status": {"state": "ready", "readyWorkerReplicas": 1, "availableWorkerReplicas": 2}}
    assert raycluster_provisioned(lost) and not raycluster_ready(lost, 2)
    assert not raycluster_provisioned({"status": {"readyWorkerReplicas": 2}})
    assert not raycluster_provisioned({"status": {"state": "suspended"}})
    assert not raycluster_provisioned(None) and not raycluster_provisioned({})


def recorded_nodes():
    """gpu-nodes-2 with gpu-worker-2 marked NotReady, as the test bed's API server returned it (README there)."""
    with open(os.path.join(FIXTURES, "nodes-gpu-nodes-2-notready.json"), encoding="utf-8") as handle:
        return json.load(handle)["items"]


def ray_pod(name, node, role="worker", ready=True, restarts=0):
    """A KubeRay pod as the test bed reports it; on a NotReady node MarkPodsNotReady turned Ready False (no reason)
    and left ContainersReady True."""
    labels = {"ray.io/node-type": role, "ray.io/group": "gpu" if role == "worker" else "headgroup"}
    return {
        "metadata": {"name": name, "namespace": "llm", "uid": "uid-" + name, "labels": labels},
        "spec": {"nodeName": node, "containers": [{"name": "ray"}]},
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": "Ready", "status": "True" if ready else "False"},
                {"type": "ContainersReady", "status": "True"},
            ],
            "containerStatuses": [{"name": "ray", "ready": True, "restartCount": restarts, "state": {"running": {}}}],
        },
    }


def test_the_nodes_worth_reading_are_those_of_the_pods_that_are_not_ready():
    pending = {"metadata": {"name": "p"}, "spec": {}, "status": {"phase": "Pending"}}
    pods = [
        ray_pod("w-2", "gpu-worker-2", ready=False),
        ray_pod("head", "gpu-worker-2", role="head", ready=False),
        ray_pod("w-1", "gpu-worker-1"),
        ray_pod("w-3", "gpu-worker-3", ready=False),
        pending,
        None,
    ]
    assert not_ready_pod_nodes(pods) == ["gpu-worker-2", "gpu-worker-3"]
    assert not_ready_pod_nodes([ray_pod("w-1", "gpu-worker-1")]) == [] and not_ready_pod_nodes(None) == []


def test_a_node_that_stopped_posting_is_named_with_its_ready_condition_its_ray_pods_and_their_logs():
    nodes = recorded_nodes()
    worker = ray_pod("llm-raycluster-gpu-worker-abc", "gpu-worker-2", ready=False, restarts=1)
    head = ray_pod("llm-raycluster-head-xyz", "gpu-worker-2", role="head", ready=False)
    healthy = ray_pod("llm-raycluster-gpu-worker-def", "gpu-worker-1")
    (entry,) = pods_on_not_ready_nodes([worker, healthy, head], nodes)
    assert entry["node"] == "gpu-worker-2"
    assert entry["ready"] == {
        "status": "Unknown",
        "reason": "NodeStatusUnknown",
        "message": "Kubelet stopped posting node status.",
        "since": "2026-11-28T14:15:40+00:00",
        "heartbeat": "2026-11-28T14:15:39+00:00",
    }
    assert [(p["name"], p["role"], p["ready"]) for p in entry["pods"]] == [
        ("llm-raycluster-gpu-worker-abc", "worker group gpu", False),
        ("llm-raycluster-head-xyz", "head", False),
    ]
    assert not_ready_node_lines([worker, healthy, head], nodes) == [
        "node gpu-worker-2 Ready=Unknown since 2026-11-28T14:15:40+00:00 (NodeStatusUnknown: Kubelet stopped posting "
        "node status.; last heartbeat 2026-11-28T14:15:39+00:00) under llm-raycluster-gpu-worker-abc (worker group "
        "gpu; logs: kubectl logs -n llm llm-raycluster-gpu-worker-abc -c ray, kubectl logs -n llm "
        "llm-raycluster-gpu-worker-abc -c ray --previous; on the node in "
        "/var/log/pods/llm_llm-raycluster-gpu-worker-abc_uid-llm-raycluster-gpu-worker-abc/ray/), "
        "llm-raycluster-head-xyz (head; logs: kubectl logs -n llm llm-raycluster-head-xyz -c ray; on the node in "
        "/var/log/pods/llm_llm-raycluster-head-xyz_uid-llm-raycluster-head-xyz/ray/)"
    ]
    # Ready nodes, and NotReady nodes without any of the pods, say nothing.
    assert not_ready_node_lines([healthy], nodes) == [] and not_ready_node_lines([], nodes) == []
    assert not_ready_node_lines([worker], None) == []


def test_a_node_whose_kubelet_says_not_ready_or_never_posted_is_named_too():
    said = {
        "metadata": {"name": "n-1"},
        "status": {"conditions": [{"type": "Ready", "status": "False", "reason": "KubeletNotReady"}]},
    }
    never = {"metadata": {"name": "n-2"}, "status": {}}
    pods = [ray_pod("a", "n-1", ready=False), ray_pod("b", "n-2", ready=False)]
    assert node_ready_condition(never)["status"] == "missing"
    assert [line.split(" under ")[0] for line in not_ready_node_lines(pods, [never, said])] == [
        "node n-1 Ready=False (KubeletNotReady)",
        "node n-2 Ready=missing",
    ]


def test_log_commands_name_every_container_and_the_previous_instance_of_a_restarted_one():
    pod = ray_pod("p", "n", restarts=2)
    pod["spec"]["containers"].append({"name": "sidecar"})
    pod["status"]["containerStatuses"].append({"name": "sidecar", "restartCount": 0})
    assert pod_log_commands(pod) == [
        "kubectl logs -n llm p -c ray",
        "kubectl logs -n llm p -c ray --previous",
        "kubectl logs -n llm p -c sidecar",
    ]
    assert pod_log_commands(None) == []


def test_a_restarted_container_is_named_with_its_last_exit_and_previous_log():
    head = {
        "metadata": {"name": "llm-raycluster-head-x", "namespace": "llm", "labels": {"ray.io/node-type": "head"}},
        "status": {
            "containerStatuses": [
                {
                    "name": "ray",
                    "restartCount": 1,
                    "state": {"running": {"startedAt": "2026-12-06T13:40:03Z"}},
                    "lastState": {
                        "terminated": {"exitCode": 1, "reason": "Error", "finishedAt": "2026-12-06T13:40:02Z"}
                    },
                }
            ]
        },
    }
    never_restarted = {"metadata": {"name": "w"}, "status": {"containerStatuses": [{"name": "ray", "restartCount": 0}]}}
    assert restarted_container_lines([head, never_restarted, crashing_worker(), None]) == [
        "pod llm-raycluster-head-x (head) container ray restarted 1 time (last exit 1 Error at 2026-12-06T13:40:02Z); "
        "its log: kubectl logs -n llm llm-raycluster-head-x -c ray --previous",
        "pod llm-raycluster-gpu-worker-abc (worker) container ray restarted 3 times (last exit 127 Error at an "
        "unknown time); its log: kubectl logs -n default llm-raycluster-gpu-worker-abc -c ray --previous",
    ]
