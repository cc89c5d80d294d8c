"""One readiness predicate per kind, and the diagnoses (_waiter), on objects the test bed's API server returned."""

from __future__ import annotations

from ansible_collections.llmops.ray_vllm.plugins.module_utils._waiter import (
    clusterpolicies_ready,
    crash_looping_containers,
    crd_established,
    crds_not_established,
    deployment_available,
    image_pull_errors,
    job_finished,
    nodes_without_gpus,
    not_ready_pods,
    pod_condition_lines,
    pod_finished,
    raycluster_ready,
)


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
