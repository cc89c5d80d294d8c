# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""One readiness predicate per Kubernetes kind the roles wait for, and the diagnoses their failures print.

The roles poll with kubernetes.core.k8s_info and test each answer with these predicates (as the test plugins
``llmops.ray_vllm.<kind>_ready``), so a condition is written once, not copied into every ``until:``.
Each predicate takes the object as the API server returns it (a dict), or None when it does not exist.
"""

from __future__ import annotations


def _conditions(obj):
    return ((obj or {}).get("status") or {}).get("conditions") or []


def condition_true(obj, condition_type):
    """Whether ``obj`` has the condition ``condition_type`` with status True."""
    return any(c.get("type") == condition_type and c.get("status") == "True" for c in _conditions(obj))


def deployment_available(obj):
    """A Deployment whose controller saw its latest spec and has an updated, available replica."""
    if not obj:
        return False
    status = obj.get("status") or {}
    generation = (obj.get("metadata") or {}).get("generation") or 0
    return (
        int(status.get("observedGeneration") or 0) >= int(generation)
        and int(status.get("updatedReplicas") or 0) >= 1
        and int(status.get("availableReplicas") or 0) >= 1
        and condition_true(obj, "Available")
    )


def raycluster_ready(obj, expected_workers, max_workers=None):
    """A RayCluster that KubeRay reports ready with ``expected_workers`` worker pods ready.

    ``max_workers``: with KubeRay's autoscaler the worker group may have grown since (Ray Serve added replicas), so
    any count from ``expected_workers`` up to ``max_workers`` is ready.
    """
    if not obj:
        return False
    status = obj.get("status") or {}
    ready = int(status.get("readyWorkerReplicas") or 0)
    most = int(expected_workers) if max_workers is None else max(int(max_workers), int(expected_workers))
    return status.get("state") == "ready" and int(expected_workers) <= ready <= most


def raycluster_provisioned(obj):
    """A RayCluster whose pods KubeRay once saw all Running and Ready at the same time: ``status.state`` is ready.

    KubeRay (v1.7, ``calculateStatus``) sets that state then and never takes it back, so a pod that loses its
    readiness later (its node NotReady, a failing probe) shows only as fewer ``readyWorkerReplicas`` (a worker) or
    HeadPodReady False (the head). Such a RayCluster is worth a look at its pods as soon as it is not ready.
    """
    return bool(obj) and (obj.get("status") or {}).get("state") == "ready"


def crd_established(obj):
    """A CustomResourceDefinition the API server serves (Established)."""
    return bool(obj) and condition_true(obj, "Established")


def job_finished(obj):
    """A Job that completed or failed for good (its Complete or Failed condition is True)."""
    return bool(obj) and (condition_true(obj, "Complete") or condition_true(obj, "Failed"))


def clusterpolicies_ready(objs):
    """The GPU operator's ClusterPolicies: at least one, and every one in state ready."""
    objs = objs or []
    return len(objs) > 0 and all(((o.get("status") or {}).get("state") == "ready") for o in objs)


def pod_finished(obj):
    """A pod whose containers all ended (phase Succeeded or Failed)."""
    return bool(obj) and (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def pod_ready(obj):
    """A pod whose Ready condition is True."""
    return bool(obj) and condition_true(obj, "Ready")


# ---------------------------------------------------------------------------------------------------------------------
# diagnoses

# Waiting reasons that no amount of waiting cures.
IMAGE_PULL_ERRORS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")


def image_pull_errors(pods):
    """``["image: reason: message", ...]`` for the containers that wait on an image they cannot pull."""
    found = []
    for pod in pods or []:
        specs = {c["name"]: c.get("image") for c in ((pod.get("spec") or {}).get("containers") or [])}
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (status.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in IMAGE_PULL_ERRORS:
                image = specs.get(status.get("name")) or status.get("image") or status.get("name")
                found.append("{}: {}: {}".format(image, waiting["reason"], waiting.get("message") or "no message"))
    return found


def not_ready_pods(pods):
    """``["name (phase)", ...]`` of the pods that are not Ready."""
    return [
        "{} ({})".format(pod["metadata"]["name"], (pod.get("status") or {}).get("phase") or "?")
        for pod in pods or []
        if not pod_ready(pod)
    ]


def nodes_without_gpus(nodes):
    """Names of the nodes whose allocatable advertises no ``nvidia.com/gpu``."""
    return [
        node["metadata"]["name"]
        for node in nodes or []
        if int(((node.get("status") or {}).get("allocatable") or {}).get("nvidia.com/gpu", "0") or 0) < 1
    ]


def pod_condition_lines(pods, role_label="ray.io/node-type"):
    """One line per pod: name, its role label, phase, and each condition that is not True with reason and message.

    The scheduler's Unschedulable message is left out here: the FailedScheduling events carry it, once.
    """
    lines = []
    for pod in pods or []:
        metadata = pod.get("metadata") or {}
        status = pod.get("status") or {}
        line = "{} ({}): {}".format(
            metadata.get("name"), (metadata.get("labels") or {}).get(role_label, "?"), status.get("phase") or "?"
        )
        for condition in _conditions(pod):
            if condition.get("status") == "True":
                continue
            line += ", {}={}".format(condition.get("type"), condition.get("status"))
            if condition.get("reason"):
                line += " " + condition["reason"]
            if condition.get("message") and condition.get("reason") != "Unschedulable":
                line += ": " + condition["message"]
        for container in _container_statuses(pod):
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") and waiting["reason"] not in ("ContainerCreating", "PodInitializing"):
                line += ", container {} {}".format(container.get("name"), _waiting_text(container, waiting))
        lines.append(line)
    return lines


def _container_statuses(pod):
    status = (pod or {}).get("status") or {}
    return (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])


def _waiting_text(container, waiting):
    """``CrashLoopBackOff (restarts 3, last exit 127 Error)`` or the reason and the kubelet's message."""
    last = (container.get("lastState") or {}).get("terminated") or {}
    if waiting["reason"] == "CrashLoopBackOff" and last:
        return "CrashLoopBackOff (restarts {}, last exit {} {})".format(
            container.get("restartCount", 0), last.get("exitCode"), last.get("reason") or ""
        ).replace(" )", ")")
    return waiting["reason"] + (": " + waiting["message"] if waiting.get("message") else "")


def crash_looping_containers(pods):
    """``[{"pod", "container", "restarts", "exit_code"}]``: the containers the kubelet keeps restarting (waiting in
    CrashLoopBackOff, init containers included), for the gate to show their last log lines."""
    found = []
    for pod in pods or []:
        for container in _container_statuses(pod):
            if ((container.get("state") or {}).get("waiting") or {}).get("reason") != "CrashLoopBackOff":
                continue
            last = (container.get("lastState") or {}).get("terminated") or {}
            found.append(
                {
                    "pod": (pod.get("metadata") or {}).get("name"),
                    "container": container.get("name"),
                    "restarts": container.get("restartCount", 0),
                    "exit_code": last.get("exitCode"),
                }
            )
    return found


def restarted_container_lines(pods):
    """One line per container that the kubelet has restarted: how often, how its last instance ended, and the
    command that reads that instance's log (``kubectl logs --previous``; a pod deleted since takes its logs along).
    A restart stays counted for the pod's life, so the line says when it happened."""
    lines = []
    for pod in pods or []:
        for container in _container_statuses(pod):
            last = (container.get("lastState") or {}).get("terminated")
            if not container.get("restartCount") or not last:
                continue
            restarts = container["restartCount"]
            lines.append(
                "pod {pod} ({role}) container {name} restarted {restarts} time{s} (last exit {code} {reason} at {at}); "
                "its log: {log}".format(
                    pod=(pod.get("metadata") or {}).get("name"),
                    role=ray_pod_role(pod),
                    name=container.get("name"),
                    restarts=restarts,
                    s="" if restarts == 1 else "s",
                    code=last.get("exitCode", "?"),
                    reason=last.get("reason") or "",
                    at=last.get("finishedAt") or "an unknown time",
                    log=_log_command(pod, container.get("name"), previous=True),
                )
            )
    return lines


def crds_not_established(lookups):
    """``["name (Established: seen)", ...]`` for the CRD lookups (k8s_info loop results) not Established."""
    found = []
    for lookup in lookups or []:
        crd = (lookup.get("resources") or [None])[0]
        if crd_established(crd):
            continue
        seen = [c.get("status") for c in _conditions(crd) if c.get("type") == "Established"]
        found.append("{} (Established: {})".format(lookup.get("item"), seen[0] if seen else "missing"))
    return found


def crd_lookups_brief(lookups):
    """The CRD lookups (k8s_info loop results) without the CRDs' schemas: per item its name, the answer's error
    message when there was no answer, and each CRD found with only its name and conditions. What the gates and
    ``crds_not_established`` read, kept small: a CRD's schema runs to hundreds of KB, and a fact holding four of them
    cost seconds to keep."""
    brief = []
    for lookup in lookups or []:
        kept = {key: lookup[key] for key in ("item", "msg", "failed") if key in lookup}
        if "resources" in lookup:
            kept["resources"] = [
                {"metadata": {"name": ((crd or {}).get("metadata") or {}).get("name")},
                 "status": {"conditions": _conditions(crd)}}
                for crd in lookup.get("resources") or []
            ]  # fmt: skip
        brief.append(kept)
    return brief


# ---------------------------------------------------------------------------------------------------------------------
# pods on nodes that are not Ready
#
# When a kubelet stops posting, Kubernetes' node lifecycle controller sets the node's conditions Unknown
# (NodeStatusUnknown) and, in MarkPodsNotReady, the Ready condition of each pod on it False: the pods stay Running
# with ContainersReady True, and stay so until the node is back (or, after their tolerationSeconds, 300 s by default,
# are evicted). Waiting does not cure it, so the gates name the node instead.

# Where the kubelet keeps a container's log files on its node (kuberuntime's BuildContainerLogsDirectory).
POD_LOG_DIR = "/var/log/pods/{namespace}_{name}_{uid}/{container}/"


def _node_of(pod):
    return ((pod or {}).get("spec") or {}).get("nodeName") or ""


def not_ready_pod_nodes(pods):
    """Sorted names of the nodes that the pods which are not Ready are bound to: the nodes worth reading."""
    return sorted({_node_of(pod) for pod in pods or [] if _node_of(pod) and not pod_ready(pod)})


def node_ready_condition(node):
    """The node's Ready condition as ``{"status", "reason", "message", "since", "heartbeat"}``; status ``missing``
    when it has none (a node whose kubelet never posted)."""
    found = [c for c in _conditions(node) if c.get("type") == "Ready"]
    if not found:
        return {"status": "missing", "reason": "", "message": "", "since": "", "heartbeat": ""}
    condition = found[0]
    return {
        "status": condition.get("status") or "?",
        "reason": condition.get("reason") or "",
        "message": condition.get("message") or "",
        "since": condition.get("lastTransitionTime") or "",
        "heartbeat": condition.get("lastHeartbeatTime") or "",
    }


def pod_log_commands(pod):
    """``kubectl logs -n <ns> <pod> -c <container>`` for each container of the pod, followed by the same with
    ``--previous`` for a container that restarted (the log of the instance before the current one)."""
    restarts = {c.get("name"): int(c.get("restartCount") or 0) for c in _container_statuses(pod)}
    commands = []
    for container in ((pod or {}).get("spec") or {}).get("containers") or []:
        name = container.get("name")
        commands.append(_log_command(pod, name))
        if restarts.get(name):
            commands.append(_log_command(pod, name, previous=True))
    return commands


def _log_command(pod, container, previous=False):
    metadata = (pod or {}).get("metadata") or {}
    namespace = metadata.get("namespace") or "default"
    command = "kubectl logs -n {} {} -c {}".format(namespace, metadata.get("name"), container)
    return command + " --previous" if previous else command


def pod_log_dirs(pod):
    """The directory of each container's log files on the pod's node (``/var/log/pods/<ns>_<pod>_<uid>/<c>/``)."""
    metadata = (pod or {}).get("metadata") or {}
    fields = dict(namespace=metadata.get("namespace") or "default", name=metadata.get("name"), uid=metadata.get("uid"))
    containers = ((pod or {}).get("spec") or {}).get("containers") or []
    return [POD_LOG_DIR.format(container=c.get("name"), **fields) for c in containers]


def ray_pod_role(pod, role_label="ray.io/node-type", group_label="ray.io/group"):
    """``head``, ``worker group <group>``, or the role label's value (``?`` without one)."""
    labels = ((pod or {}).get("metadata") or {}).get("labels") or {}
    role = labels.get(role_label) or "?"
    if role == "worker" and labels.get(group_label):
        return "worker group " + labels[group_label]
    return role


def pods_on_not_ready_nodes(pods, nodes):
    """``[{"node", "ready", "pods"}]`` for each of ``nodes`` whose Ready condition is not True and that has some of
    ``pods`` bound to it, in node name order.

    ``ready`` is :func:`node_ready_condition`; ``pods`` holds ``{"name", "role", "ready", "logs", "log_dirs"}`` for
    each pod on the node (``logs``: :func:`pod_log_commands`, ``log_dirs``: :func:`pod_log_dirs`).
    """
    found = []
    for node in sorted(nodes or [], key=lambda n: ((n or {}).get("metadata") or {}).get("name") or ""):
        name = ((node or {}).get("metadata") or {}).get("name")
        ready = node_ready_condition(node)
        on_node = [pod for pod in pods or [] if name and _node_of(pod) == name]
        if ready["status"] == "True" or not on_node:
            continue
        found.append({"node": name, "ready": ready, "pods": [_pod_entry(pod) for pod in on_node]})
    return found


def _pod_entry(pod):
    return {
        "name": ((pod.get("metadata") or {}).get("name")),
        "role": ray_pod_role(pod),
        "ready": pod_ready(pod),
        "logs": pod_log_commands(pod),
        "log_dirs": pod_log_dirs(pod),
    }


def not_ready_node_lines(pods, nodes):
    """One line per node that is not Ready under some of ``pods`` (:func:`pods_on_not_ready_nodes`): the node, its
    Ready condition (status, since when, reason and message, last heartbeat) and each pod on it with its role and the
    commands and node directory of its logs."""
    return [_node_line(entry) for entry in pods_on_not_ready_nodes(pods, nodes)]


def _node_line(entry):
    return "node {} {} under {}".format(
        entry["node"], _ready_text(entry["ready"]), ", ".join(_pod_text(pod) for pod in entry["pods"])
    )


def _ready_text(ready):
    """``Ready=Unknown since <time> (<reason>: <message>; last heartbeat <time>)``, leaving out what is empty."""
    why = ": ".join(part for part in (ready["reason"], ready["message"]) if part)
    heartbeat = "last heartbeat " + ready["heartbeat"] if ready["heartbeat"] else ""
    detail = "; ".join(part for part in (why, heartbeat) if part)
    since = " since " + ready["since"] if ready["since"] else ""
    return "Ready={}{}{}".format(ready["status"], since, f" ({detail})" if detail else "")


def _pod_text(pod):
    return "{} ({}; logs: {}; on the node in {})".format(
        pod["name"], pod["role"], ", ".join(pod["logs"]) or "none", ", ".join(pod["log_dirs"]) or "none"
    )
