# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The ``workloads`` controller: Deployments, ReplicaSets, StatefulSets, DaemonSets, Jobs, bare pods, Services.

Deployment -> ReplicaSet (``<name>-<pod-template-hash>``) -> Pods, rolling to a new ReplicaSet on a template change
(the old one is scaled to 0 once the new one is ready; Recreate scales it at once); StatefulSet (ordered or parallel,
volumeClaimTemplates, revision labels, template changes replace pods from the highest ordinal); DaemonSet (one pod
per eligible node, DaemonSet default tolerations); Job (pods run for ``JOB_RUN_SECONDS`` then succeed, or fail as
``state.requested_outcomes[("Job", ns, name)]`` asks, retried up to backoffLimit; restartPolicy OnFailure is treated
like Never); bare pods with restartPolicy Never/OnFailure finish only when ``requested_outcomes[("Pod", ns, name)]``
asks. Services get a clusterIP when they lack one and an Endpoints object with the ready (and not-ready) pods their
selector matches.
"""

from __future__ import annotations

from .. import selectors
from ..jsondata import json_copy
from ..timestamps import now_rfc3339
from . import base
from .base import (
    Controller,
    deleting,
    deletion_order,
    is_owned_by,
    labels_of,
    owner_reference,
    phase_of,
    pod_ready,
    pod_running_and_ready,
    pod_terminal,
    rand5,
    safe_hash,
    set_condition,
    set_pod_condition,
    terminated_state,
)
from .kubelet import node_matches_affinity, required_node_terms, untolerated_taint
from .kubelet_containers import runs_as_containers

JOB_RUN_SECONDS = 0.3  # how long a Job's pod runs before it finishes
REVISION_LABEL = "controller-revision-hash"
# What the DaemonSet controller adds to every daemon pod, so node conditions do not keep daemons off a node.
DAEMON_TOLERATIONS = (
    ("node.kubernetes.io/not-ready", "NoExecute"),
    ("node.kubernetes.io/unreachable", "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
    ("node.kubernetes.io/unschedulable", "NoSchedule"),
)
_RUN_CLOCK: dict = {}  # pod uid -> when a Job's (or bare) pod was first seen running


def pod_template_hash(template: dict, collision_count: int = 0) -> str:
    return safe_hash([template, collision_count], 10)


def _pod_from_template(template: dict, namespace: str, name: str, owner: dict, extra_labels: dict) -> dict:
    template = json_copy(template or {})
    metadata = template.get("metadata") or {}
    labels = dict(metadata.get("labels") or {})
    labels.update(extra_labels)
    pod_metadata = {"name": name, "namespace": namespace, "labels": labels, "ownerReferences": [owner_reference(owner)]}
    if metadata.get("annotations"):
        pod_metadata["annotations"] = dict(metadata["annotations"])
    if metadata.get("finalizers"):
        pod_metadata["finalizers"] = list(metadata["finalizers"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_metadata, "spec": template.get("spec") or {}}


def _namespace_and_name(obj: dict) -> tuple:
    return obj["metadata"]["namespace"], obj["metadata"]["name"]


def _generation(obj: dict) -> int:
    return obj["metadata"].get("generation", 1)


def _at_revision(pods: list, revision: str) -> int:
    return sum(1 for p in pods if labels_of(p).get(REVISION_LABEL) == revision)


def _set_or_drop(status: dict, key: str, value) -> None:
    """Status fields the real controllers omit when they are empty or zero."""
    if value:
        status[key] = value
    else:
        status.pop(key, None)


class WorkloadsController(Controller):
    name = "workload-controllers"

    def reconcile(self) -> None:
        # In this order, so that one round takes a Deployment to its ReplicaSet's pods and back to its status.
        steps = (
            ("apps/v1", "Deployment", self._deployment),
            ("apps/v1", "ReplicaSet", self._replica_set),
            ("apps/v1", "Deployment", self._deployment_status),
            ("apps/v1", "StatefulSet", self._stateful_set),
            ("apps/v1", "DaemonSet", self._daemon_set),
            ("batch/v1", "Job", self._job),
        )
        for api_version, kind, step in steps:
            for obj in self.live(api_version, kind):
                step(obj)
        self._bare_pods()
        for service in self.live("v1", "Service"):
            self._service(service)

    def _active_pods(self, owner: dict) -> list:
        return [p for p in self.owned("v1", "Pod", owner) if not pod_terminal(p)]

    # -- Deployment / ReplicaSet --
    def _deployment(self, deployment: dict) -> None:
        spec = deployment.get("spec") or {}
        if spec.get("paused"):
            return
        replicas = int(spec.get("replicas", 1))
        owned = self.owned("apps/v1", "ReplicaSet", deployment)
        new_rs = _new_replica_set(owned, _deployment_hash(deployment))
        if new_rs is None:
            new_rs = self._create_replica_set(deployment, owned)
        elif int((new_rs.get("spec") or {}).get("replicas", 0)) != replicas:
            scaled = _scaled(new_rs, replicas)
            scaled["metadata"].setdefault("annotations", {})["deployment.kubernetes.io/desired-replicas"] = str(
                replicas
            )
            new_rs = self.update(scaled)
        recreate = (spec.get("strategy") or {}).get("type") == "Recreate"
        new_ready = int((new_rs.get("status") or {}).get("readyReplicas") or 0) >= replicas
        for old in owned:
            if old["metadata"]["uid"] == new_rs["metadata"]["uid"]:
                continue
            if int((old.get("spec") or {}).get("replicas", 0)) != 0 and (recreate or new_ready):
                self.update(_scaled(old, 0))

    def _create_replica_set(self, deployment: dict, owned: list) -> dict:
        spec = deployment.get("spec") or {}
        namespace, name = _namespace_and_name(deployment)
        template_hash = _deployment_hash(deployment)
        replicas = int(spec.get("replicas", 1))
        revisions = [
            int((rs["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision", 0)) for rs in owned
        ]
        template = json_copy(spec.get("template") or {})
        template.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = template_hash
        selector = json_copy(spec.get("selector") or {})
        selector.setdefault("matchLabels", {})["pod-template-hash"] = template_hash
        body = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"{name}-{template_hash}",
                "namespace": namespace,
                "labels": dict(template["metadata"]["labels"]),
                "annotations": {
                    "deployment.kubernetes.io/desired-replicas": str(replicas),
                    "deployment.kubernetes.io/max-replicas": str(replicas + max(1, -(-replicas // 4))),
                    "deployment.kubernetes.io/revision": str(max(revisions, default=0) + 1),
                },
                "ownerReferences": [owner_reference(deployment)],
            },
            "spec": {
                "replicas": replicas,
                "minReadySeconds": int(spec.get("minReadySeconds") or 0),
                "selector": selector,
                "template": template,
            },
        }
        new_rs = self.create(body)
        self.event(
            deployment,
            "ScalingReplicaSet",
            f"Scaled up replica set {new_rs['metadata']['name']} from 0 to {replicas}",
            component="deployment-controller",
        )
        return new_rs

    def _replica_set(self, replica_set: dict) -> None:
        spec = replica_set.get("spec") or {}
        namespace, name = _namespace_and_name(replica_set)
        pods = self._active_pods(replica_set)
        wanted = int(spec.get("replicas", 1))
        for _dummy in range(wanted - len(pods)):
            self.create(_pod_from_template(spec.get("template"), namespace, f"{name}-{rand5()}", replica_set, {}))
        if len(pods) > wanted:
            for pod in sorted(pods, key=deletion_order)[: len(pods) - wanted]:
                self.delete(pod)
        pods = self._active_pods(replica_set)
        ready = sum(1 for p in pods if pod_running_and_ready(p))
        status = {
            "replicas": len(pods),
            "fullyLabeledReplicas": len(pods),
            "observedGeneration": _generation(replica_set),
        }
        if ready:
            status["readyReplicas"] = ready
            status["availableReplicas"] = ready
        self.write_status(replica_set, status)

    def _deployment_status(self, deployment: dict) -> None:
        owned = self.owned("apps/v1", "ReplicaSet", deployment)
        new_rs = _new_replica_set(owned, _deployment_hash(deployment))
        counts = {
            key: sum(int((rs.get("status") or {}).get(key) or 0) for rs in owned)
            for key in ("replicas", "readyReplicas", "availableReplicas")
        }
        total, available = counts["replicas"], counts["availableReplicas"]
        updated = int(((new_rs or {}).get("status") or {}).get("replicas") or 0)
        old = deployment.get("status") or {}
        status = {"observedGeneration": _generation(deployment)}
        for key, value in (
            ("replicas", total),
            ("updatedReplicas", updated),
            ("readyReplicas", counts["readyReplicas"]),
            ("availableReplicas", available),
            ("unavailableReplicas", total - available),
        ):
            if value > 0:
                status[key] = value
        status["conditions"] = _deployment_conditions(deployment, new_rs, total, updated, available)
        if old.get("collisionCount"):
            status["collisionCount"] = old["collisionCount"]
        self.write_status(deployment, status)

    # -- StatefulSet --
    def _stateful_set(self, stateful_set: dict) -> None:
        spec = stateful_set.get("spec") or {}
        namespace, name = _namespace_and_name(stateful_set)
        replicas = int(spec.get("replicas", 1))
        revision = f"{name}-{pod_template_hash(spec.get('template'))}"
        pods = {p["metadata"]["name"]: p for p in self.objects("v1", "Pod", namespace) if is_owned_by(p, stateful_set)}
        self._create_missing_ordinal(stateful_set, pods, replicas, revision)
        for pod_name, pod in pods.items():
            if _ordinal(pod_name) >= replicas and not deleting(pod):
                self.delete(pod)
        self._roll_stateful_set(stateful_set, replicas, revision)
        self._stateful_set_status(stateful_set, replicas, revision)

    def _create_missing_ordinal(self, stateful_set: dict, pods: dict, replicas: int, revision: str) -> None:
        """Replace finished pods and create missing ones; OrderedReady creates one at a time, after the lower ones
        are ready."""
        spec = stateful_set.get("spec") or {}
        name = stateful_set["metadata"]["name"]
        ordered = spec.get("podManagementPolicy", "OrderedReady") == "OrderedReady"
        for ordinal in range(replicas):
            pod = pods.get(f"{name}-{ordinal}")
            if pod is not None and pod_terminal(pod) and not deleting(pod):
                self.delete(pod)
                pod = None
            if pod is not None:
                continue
            if ordered and any(
                not pod_running_and_ready(pods.get(f"{name}-{i}") or {"metadata": {}}) for i in range(ordinal)
            ):
                return
            self._create_stateful_pod(stateful_set, ordinal, revision)
            if ordered:
                return

    def _roll_stateful_set(self, stateful_set: dict, replicas: int, revision: str) -> None:
        """Replace the highest-ordinal pod of an old revision once all are ready."""
        live = self.owned("v1", "Pod", stateful_set)
        if len(live) != replicas or not all(pod_running_and_ready(p) for p in live):
            return
        stale = [p for p in live if labels_of(p).get(REVISION_LABEL) != revision]
        strategy = ((stateful_set.get("spec") or {}).get("updateStrategy") or {}).get("type", "RollingUpdate")
        if stale and strategy == "RollingUpdate":
            self.delete(max(stale, key=lambda p: _ordinal(p["metadata"]["name"])))

    def _stateful_set_status(self, stateful_set: dict, replicas: int, revision: str) -> None:
        live = self.owned("v1", "Pod", stateful_set)
        ready = sum(1 for p in live if pod_running_and_ready(p))
        updated = _at_revision(live, revision)
        current_revision = (stateful_set.get("status") or {}).get("currentRevision") or revision
        if updated == len(live) == replicas:
            current_revision = revision
        status = {
            "observedGeneration": _generation(stateful_set),
            "replicas": len(live),
            "readyReplicas": ready,
            "currentReplicas": _at_revision(live, current_revision),
            "updatedReplicas": updated,
            "availableReplicas": ready,
            "currentRevision": current_revision,
            "updateRevision": revision,
            "collisionCount": 0,
        }
        self.write_status(stateful_set, status)

    def _create_stateful_pod(self, stateful_set: dict, ordinal: int, revision: str) -> None:
        spec = stateful_set["spec"]
        namespace, name = _namespace_and_name(stateful_set)
        pod_name = f"{name}-{ordinal}"
        extra = {
            REVISION_LABEL: revision,
            "statefulset.kubernetes.io/pod-name": pod_name,
            "apps.kubernetes.io/pod-index": str(ordinal),
        }
        pod = _pod_from_template(spec.get("template"), namespace, pod_name, stateful_set, extra)
        pod["spec"]["hostname"] = pod_name
        if spec.get("serviceName"):
            pod["spec"]["subdomain"] = spec["serviceName"]
        volumes = pod["spec"].setdefault("volumes", [])
        for claim_template in spec.get("volumeClaimTemplates") or []:
            template_name = claim_template["metadata"]["name"]
            claim_name = self._ensure_stateful_claim(stateful_set, claim_template, pod_name)
            volumes[:] = [v for v in volumes if v.get("name") != template_name]
            volumes.append({"name": template_name, "persistentVolumeClaim": {"claimName": claim_name}})
        if not volumes:
            pod["spec"].pop("volumes")
        self.create(pod)

    def _ensure_stateful_claim(self, stateful_set: dict, claim_template: dict, pod_name: str) -> str:
        """The claim a volumeClaimTemplate makes for one pod: created once, kept when the pod goes."""
        spec = stateful_set["spec"]
        claim_name = f"{claim_template['metadata']['name']}-{pod_name}"
        claim = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {
                "name": claim_name,
                "namespace": stateful_set["metadata"]["namespace"],
                "labels": dict((spec.get("selector") or {}).get("matchLabels") or {}),
            },
            "spec": json_copy(claim_template.get("spec") or {}),
        }
        self.ensure(claim)
        return claim_name

    # -- DaemonSet --
    def _daemon_set(self, daemon_set: dict) -> None:
        spec = daemon_set.get("spec") or {}
        template = _daemon_template(spec.get("template"))
        revision = pod_template_hash(spec.get("template"))
        by_node: dict = {}
        for pod in self.owned("v1", "Pod", daemon_set):
            by_node.setdefault(_daemon_pod_node(pod), []).append(pod)
        desired = 0
        for node in self.objects("v1", "Node"):
            present = by_node.pop(node["metadata"]["name"], [])
            if self._daemon_on_node(daemon_set, node, present, template, revision):
                desired += 1
        for leftovers in by_node.values():
            for pod in leftovers:
                self.delete(pod)
        self._daemon_set_status(daemon_set, desired, revision)

    def _daemon_on_node(self, daemon_set: dict, node: dict, present: list, template: dict, revision: str) -> bool:
        """Keep one current daemon pod on a node it may run on, none elsewhere; whether the node counts as desired."""
        template_spec = template["spec"]
        eligible = node_matches_affinity(node, template_spec)
        place = eligible and untolerated_taint(node, template_spec["tolerations"]) is None
        keep = eligible and untolerated_taint(node, template_spec["tolerations"], ("NoExecute",)) is None
        if not place and not (keep and present):
            for pod in present:
                self.delete(pod)
            return False
        kept = []
        for pod in present:
            if labels_of(pod).get(REVISION_LABEL) != revision or pod_terminal(pod) or kept:
                self.delete(pod)
            else:
                kept.append(pod)
        if not kept and place:
            self.create(_daemon_pod(daemon_set, template, node["metadata"]["name"], revision))
        return True

    def _daemon_set_status(self, daemon_set: dict, desired: int, revision: str) -> None:
        pods = self.owned("v1", "Pod", daemon_set)
        scheduled = [p for p in pods if p["spec"].get("nodeName") or _daemon_pod_node(p)]
        ready = sum(1 for p in pods if pod_running_and_ready(p))
        status = {
            "currentNumberScheduled": len(scheduled),
            "desiredNumberScheduled": desired,
            "numberMisscheduled": 0,
            "numberReady": ready,
            "observedGeneration": _generation(daemon_set),
            "updatedNumberScheduled": _at_revision(pods, revision),
            "numberAvailable": ready,
        }
        if desired - ready > 0:
            status["numberUnavailable"] = desired - ready
        if not ready:
            status.pop("numberAvailable")
        self.write_status(daemon_set, status)

    # -- Job --
    def _job(self, job: dict) -> None:
        status = json_copy(job.get("status") or {})
        stamp = now_rfc3339()
        finished = _job_finished(status)
        if not finished:
            self._finish_running_pods(job)
        pods = self.owned("v1", "Pod", job)
        active = [p for p in pods if not pod_terminal(p)]
        if not finished:
            active = self._advance_job(job, status, pods, active, stamp)
        _set_or_drop(status, "conditions", status.get("conditions"))
        _set_or_drop(status, "active", len(active))
        status["ready"] = sum(1 for p in active if pod_ready(p))
        status["terminating"] = 0
        status["uncountedTerminatedPods"] = {}
        _set_or_drop(status, "succeeded", _count_phase(pods, "Succeeded"))
        _set_or_drop(status, "failed", _count_phase(pods, "Failed"))
        self.write_status(job, status)

    def _advance_job(self, job: dict, status: dict, pods: list, active: list, stamp: str) -> list:
        """End the Job (complete, or failed past its backoff limit) or start the pods it lacks; its active pods."""
        spec = job.get("spec") or {}
        conditions = status.get("conditions") or []
        succeeded = _count_phase(pods, "Succeeded")
        if succeeded >= _spec_int(spec, "completions", 1):
            message = "Reached expected number of succeeded pods"
            status["conditions"] = _job_end(
                conditions, ("SuccessCriteriaMet", "Complete"), "CompletionsReached", message, stamp
            )
            status["completionTime"] = stamp
            return active
        if _count_phase(pods, "Failed") > _spec_int(spec, "backoffLimit", 6):
            message = "Job has reached the specified backoff limit"
            status["conditions"] = _job_end(
                conditions, ("FailureTarget", "Failed"), "BackoffLimitExceeded", message, stamp
            )
            for pod in active:
                self.delete(pod)
            return []
        if spec.get("suspend"):
            return active
        wanted = min(_spec_int(spec, "parallelism", 1), _spec_int(spec, "completions", 1) - succeeded)
        started = self._start_job_pods(job, wanted - len(active))
        if started:
            status.setdefault("startTime", stamp)
        return active + started

    def _runs_as_containers(self, pod: dict) -> bool:
        """A pod that runs as containers ends when they do, never on an emulated schedule."""
        return runs_as_containers(pod, self.state.runtime, self.state.images)

    def _finish_running_pods(self, job: dict) -> None:
        outcome = self.state.requested_outcomes.get(("Job", *_namespace_and_name(job))) or {}
        for pod in self.owned("v1", "Pod", job):
            if phase_of(pod) == "Running" and not self._runs_as_containers(pod):
                self._finish_pod(pod, outcome)

    def _start_job_pods(self, job: dict, count: int) -> list:
        spec = job.get("spec") or {}
        namespace, name = _namespace_and_name(job)
        uid = job["metadata"]["uid"]
        labels = {
            "batch.kubernetes.io/controller-uid": uid,
            "batch.kubernetes.io/job-name": name,
            "controller-uid": uid,
            "job-name": name,
        }
        started = []
        for _dummy in range(max(0, count)):
            pod = _pod_from_template(spec.get("template"), namespace, f"{name}-{rand5()}", job, labels)
            pod["metadata"].setdefault("annotations", {})["batch.kubernetes.io/job-tracking"] = ""
            started.append(self.create(pod))
        return started

    def _finish_pod(self, pod: dict, outcome: dict) -> bool:
        """A running Job (or bare) pod ends after JOB_RUN_SECONDS, as the requested outcome says."""
        status = json_copy(pod.get("status") or {})
        if not _ran_long_enough(pod, status):
            return False
        failed = (outcome.get("outcome") or "Succeeded") == "Failed"
        stamp = now_rfc3339()
        namespace, name = _namespace_and_name(pod)
        for line in (outcome.get("log") or "").splitlines():
            if status.get("containerStatuses"):
                self.state.append_log(namespace, name, status["containerStatuses"][0]["name"], line)
        for entry in status.get("containerStatuses") or []:
            started_at = entry["state"]["running"]["startedAt"]
            exit_code, reason = (1, "Error") if failed else (0, "Completed")
            entry["state"] = terminated_state(exit_code, reason, started_at, stamp, entry.get("containerID", ""))
            entry["ready"] = False
            entry["started"] = False
        status["phase"] = "Failed" if failed else "Succeeded"
        reason = "PodFailed" if failed else "PodCompleted"
        for kind in ("Ready", "ContainersReady"):
            status["conditions"] = set_pod_condition(status.get("conditions"), kind, "False", reason)
        status["conditions"] = set_pod_condition(status["conditions"], "PodReadyToStartContainers", "False")
        self.write_status(pod, status)
        return True

    def _bare_pods(self) -> None:
        for (kind, namespace, name), outcome in list(self.state.requested_outcomes.items()):
            if kind != "Pod":
                continue
            pod = self.peek("v1", "Pod", namespace, name)
            if pod is None or deleting(pod) or phase_of(pod) != "Running" or self._runs_as_containers(pod):
                continue
            if (pod.get("spec") or {}).get("restartPolicy", "Always") in ("Never", "OnFailure"):
                self._finish_pod(pod, outcome)

    # -- Services / Endpoints --
    def _service(self, service: dict) -> None:
        service = self._ensure_cluster_ip(service)
        selector = (service.get("spec") or {}).get("selector")
        if not selector:
            return
        namespace = service["metadata"]["namespace"]
        requirements = [(k, "=", {v}) for k, v in selector.items()]
        pods = [
            p
            for p in self.objects("v1", "Pod", namespace)
            if selectors.labels_match(requirements, p["metadata"].get("labels"))
            and (p.get("status") or {}).get("podIP")
            and not deleting(p)
            and not pod_terminal(p)
        ]
        self._write_endpoints(service, _endpoint_subsets(service, pods))

    def _ensure_cluster_ip(self, service: dict) -> dict:
        spec = service.get("spec") or {}
        if spec.get("type") == "ExternalName" or spec.get("clusterIP"):
            return service
        new = json_copy(service)
        ip = _allocate_cluster_ip(self.objects("v1", "Service"))
        new["spec"]["clusterIP"] = ip
        new["spec"]["clusterIPs"] = [ip]
        return self.update(new)

    def _write_endpoints(self, service: dict, subsets: list) -> None:
        namespace, name = _namespace_and_name(service)
        labels = dict(service["metadata"].get("labels") or {})
        if service["spec"].get("clusterIP") == "None":
            labels["service.kubernetes.io/headless"] = ""
        existing = self.peek("v1", "Endpoints", namespace, name)
        if existing is None:
            body = {
                "apiVersion": "v1",
                "kind": "Endpoints",
                "metadata": {"name": name, "namespace": namespace, "labels": labels},
            }
            _set_or_drop(body, "subsets", subsets)
            self.create(body)
        elif existing.get("subsets") != (subsets or None) or labels_of(existing) != labels:
            new = json_copy(existing)
            new["metadata"]["labels"] = labels
            _set_or_drop(new, "subsets", subsets)
            self.update(new)


def _deployment_hash(deployment: dict) -> str:
    collision = int((deployment.get("status") or {}).get("collisionCount") or 0)
    return pod_template_hash((deployment.get("spec") or {}).get("template"), collision)


def _new_replica_set(owned: list, template_hash: str) -> dict | None:
    for replica_set in owned:
        if labels_of(replica_set).get("pod-template-hash") == template_hash:
            return replica_set
    return None


def _scaled(replica_set: dict, replicas: int) -> dict:
    scaled = json_copy(replica_set)
    scaled["spec"]["replicas"] = replicas
    return scaled


def _deployment_conditions(deployment: dict, new_rs: dict | None, total: int, updated: int, available: int) -> list:
    """Available (enough replicas for the strategy) and Progressing (the new ReplicaSet's rollout)."""
    spec = deployment.get("spec") or {}
    replicas = int(spec.get("replicas", 1))
    stamp = now_rfc3339()
    conditions = (deployment.get("status") or {}).get("conditions") or []
    max_unavailable = replicas // 4 if (spec.get("strategy") or {}).get("type") != "Recreate" else replicas
    if available >= replicas - max_unavailable:
        available_condition = ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
    else:
        available_condition = ("False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
    conditions = _deployment_condition(conditions, "Available", *available_condition, stamp)
    if new_rs is None:
        return conditions
    rs_name = new_rs["metadata"]["name"]
    if updated == replicas and available >= replicas and total == replicas:
        reason, message = "NewReplicaSetAvailable", f'ReplicaSet "{rs_name}" has successfully progressed.'
    else:
        reason, message = "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.'
    return _deployment_condition(conditions, "Progressing", "True", reason, message, stamp)


def _deployment_condition(conditions: list, kind: str, status: str, reason: str, message: str, stamp: str) -> list:
    """Deployment conditions carry lastUpdateTime, which moves whenever status, reason or message change."""
    result = [dict(c) for c in conditions]
    for condition in result:
        if condition["type"] == kind:
            if (condition.get("status"), condition.get("reason"), condition.get("message")) != (
                status,
                reason,
                message,
            ):
                if condition.get("status") != status:
                    condition["lastTransitionTime"] = stamp
                condition.update(status=status, reason=reason, message=message, lastUpdateTime=stamp)
            return result
    result.append(
        {
            "type": kind,
            "status": status,
            "lastUpdateTime": stamp,
            "lastTransitionTime": stamp,
            "reason": reason,
            "message": message,
        }
    )
    return result


def _ordinal(pod_name: str) -> int:
    suffix = pod_name.rsplit("-", 1)[-1]
    return int(suffix) if suffix.isdigit() else -1


def _daemon_template(template: dict | None) -> dict:
    template = json_copy(template or {})
    template_spec = template.setdefault("spec", {})
    tolerations = list(template_spec.get("tolerations") or [])
    for key, effect in DAEMON_TOLERATIONS:
        if not any(t.get("key") == key and t.get("effect") == effect for t in tolerations):
            tolerations.append({"key": key, "operator": "Exists", "effect": effect})
    template_spec["tolerations"] = tolerations
    return template


def _daemon_pod(daemon_set: dict, template: dict, node_name: str, revision: str) -> dict:
    """A daemon pod pinned to its node by required node affinity on metadata.name, as the DaemonSet controller does."""
    namespace, name = _namespace_and_name(daemon_set)
    pod_template = json_copy(template)
    affinity = pod_template["spec"].setdefault("affinity", {})
    affinity["nodeAffinity"] = {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node_name]}]}]
        }
    }
    extra = {REVISION_LABEL: revision, "pod-template-generation": str(_generation(daemon_set))}
    return _pod_from_template(pod_template, namespace, f"{name}-{rand5()}", daemon_set, extra)


def _daemon_pod_node(pod: dict) -> str:
    """The node a daemon pod is bound to, or pinned to while it is not bound yet."""
    if pod["spec"].get("nodeName"):
        return pod["spec"]["nodeName"]
    for term in required_node_terms(pod["spec"]):
        for field in term.get("matchFields") or []:
            if field.get("key") == "metadata.name" and field.get("values"):
                return field["values"][0]
    return ""


def _spec_int(spec: dict, key: str, default: int) -> int:
    """An integer field of a spec; a null field means the default, as for a Job's completions and limits."""
    value = spec.get(key)
    return int(default if value is None else value)


def _job_finished(status: dict) -> bool:
    return any(
        c.get("type") in ("Complete", "Failed") and c.get("status") == "True" for c in status.get("conditions") or []
    )


def _job_end(conditions: list, kinds: tuple, reason: str, message: str, stamp: str) -> list:
    """The pair of conditions the Job controller sets when a Job ends: the interim one, then the final one."""
    for kind in kinds:
        extra = {"lastProbeTime": stamp}
        conditions = set_condition(conditions, kind, "True", reason, message, stamp=stamp, probe_time=True, extra=extra)
    return conditions


def _count_phase(pods: list, phase: str) -> int:
    return sum(1 for p in pods if phase_of(p) == phase)


def _ran_long_enough(pod: dict, status: dict) -> bool:
    """Whether all containers run and JOB_RUN_SECONDS have passed since the pod was first seen running."""
    started = [
        ((c.get("state") or {}).get("running") or {}).get("startedAt") for c in status.get("containerStatuses") or []
    ]
    key = ("pod-start", pod["metadata"]["uid"])
    first_seen = _RUN_CLOCK.setdefault(key, base.clock())
    if not all(started) or base.clock() - first_seen < JOB_RUN_SECONDS:
        return False
    _RUN_CLOCK.pop(key, None)
    return True


def _endpoint_subsets(service: dict, pods: list) -> list:
    """The one subset of an Endpoints object: ready and not-ready addresses, and the ports they serve."""
    spec = service["spec"]
    ready, not_ready = [], []
    for pod in sorted(pods, key=lambda p: p["status"]["podIP"]):
        (ready if pod_ready(pod) or spec.get("publishNotReadyAddresses") else not_ready).append(_endpoint_address(pod))
    if not ready and not not_ready:
        return []
    subset = {}
    _set_or_drop(subset, "addresses", ready)
    _set_or_drop(subset, "notReadyAddresses", not_ready)
    _set_or_drop(subset, "ports", _endpoint_ports(spec, pods))
    return [subset]


def _endpoint_address(pod: dict) -> dict:
    address = {
        "ip": pod["status"]["podIP"],
        "nodeName": pod["spec"].get("nodeName"),
        "targetRef": {
            "kind": "Pod",
            "namespace": pod["metadata"]["namespace"],
            "name": pod["metadata"]["name"],
            "uid": pod["metadata"]["uid"],
        },
    }
    if pod["spec"].get("hostname"):
        address["hostname"] = pod["spec"]["hostname"]
    return address


def _endpoint_ports(spec: dict, pods: list) -> list:
    ports = []
    for port in spec.get("ports") or []:
        target = port.get("targetPort", port.get("port"))
        if isinstance(target, str) and not target.isdigit():
            target = _named_container_port(pods, target)
        if target is None:
            continue
        entry = {"port": int(target), "protocol": port.get("protocol", "TCP")}
        for key in ("name", "appProtocol"):
            if port.get(key):
                entry[key] = port[key]
        ports.append(entry)
    return ports


def _named_container_port(pods: list, name: str) -> int | None:
    """The number of a named container port (the last pod that names it wins)."""
    number = None
    for pod in pods:
        for container in pod["spec"].get("containers") or []:
            for container_port in container.get("ports") or []:
                if container_port.get("name") == name:
                    number = container_port.get("containerPort")
    return number


def _allocate_cluster_ip(services: list) -> str:
    used = {(s.get("spec") or {}).get("clusterIP") for s in services}
    for index in range(10, 65000):
        candidate = f"10.96.{index // 250}.{index % 250 + 1}"
        if candidate not in used:
            return candidate
    raise RuntimeError("service IP range exhausted")
