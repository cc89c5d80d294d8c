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

import copy

from .. import selectors
from ..timestamps import now_rfc3339
from . import base
from .base import (
    Controller,
    deleting,
    deletion_order,
    is_owned_by,
    labels_of,
    owner_reference,
    pod_ready,
    pod_running_and_ready,
    pod_terminal,
    rand5,
    safe_hash,
    set_condition,
)
from .kubelet import node_matches_affinity, untolerated_taint

JOB_RUN_SECONDS = 0.3  # how long a Job's pod runs before it finishes


def pod_template_hash(template: dict, collision_count: int = 0) -> str:
    return safe_hash([template, collision_count], 10)


def _pod_from_template(template: dict, namespace: str, name: str, owner: dict, extra_labels: dict) -> dict:
    template = copy.deepcopy(template or {})
    metadata = template.get("metadata") or {}
    labels = dict(metadata.get("labels") or {})
    labels.update(extra_labels)
    pod_metadata = {"name": name, "namespace": namespace, "labels": labels, "ownerReferences": [owner_reference(owner)]}
    if metadata.get("annotations"):
        pod_metadata["annotations"] = dict(metadata["annotations"])
    if metadata.get("finalizers"):
        pod_metadata["finalizers"] = list(metadata["finalizers"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_metadata, "spec": template.get("spec") or {}}


class WorkloadsController(Controller):
    name = "workload-controllers"

    def reconcile(self) -> None:
        for deployment in self.live("apps/v1", "Deployment"):
            self._deployment(deployment)
        for replica_set in self.live("apps/v1", "ReplicaSet"):
            self._replica_set(replica_set)
        for deployment in self.live("apps/v1", "Deployment"):
            self._deployment_status(deployment)
        for stateful_set in self.live("apps/v1", "StatefulSet"):
            self._stateful_set(stateful_set)
        for daemon_set in self.live("apps/v1", "DaemonSet"):
            self._daemon_set(daemon_set)
        for job in self.live("batch/v1", "Job"):
            self._job(job)
        self._bare_pods()
        for service in self.live("v1", "Service"):
            self._service(service)

    # -- Deployment / ReplicaSet --
    def _deployment(self, deployment: dict) -> None:
        spec = deployment.get("spec") or {}
        namespace, name = deployment["metadata"]["namespace"], deployment["metadata"]["name"]
        collision = int((deployment.get("status") or {}).get("collisionCount") or 0)
        template_hash = pod_template_hash(spec.get("template"), collision)
        replicas = int(spec.get("replicas", 1))
        owned = self.owned("apps/v1", "ReplicaSet", deployment)
        new_rs = _new_replica_set(owned, template_hash)
        revisions = [
            int((rs["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision", 0)) for rs in owned
        ]
        if spec.get("paused"):
            return
        if new_rs is None:
            template = copy.deepcopy(spec.get("template") or {})
            template.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = template_hash
            selector = copy.deepcopy(spec.get("selector") or {})
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
        elif int((new_rs.get("spec") or {}).get("replicas", 0)) != replicas:
            scaled = copy.deepcopy(new_rs)
            scaled["spec"]["replicas"] = replicas
            annotations = scaled["metadata"].setdefault("annotations", {})
            annotations["deployment.kubernetes.io/desired-replicas"] = str(replicas)
            new_rs = self.update(scaled)
        recreate = (spec.get("strategy") or {}).get("type") == "Recreate"
        new_ready = int((new_rs.get("status") or {}).get("readyReplicas") or 0) >= replicas
        for old in owned:
            if old["metadata"]["uid"] == new_rs["metadata"]["uid"]:
                continue
            if int((old.get("spec") or {}).get("replicas", 0)) != 0 and (recreate or new_ready):
                scaled = copy.deepcopy(old)
                scaled["spec"]["replicas"] = 0
                self.update(scaled)

    def _replica_set(self, replica_set: dict) -> None:
        spec = replica_set.get("spec") or {}
        namespace, name = replica_set["metadata"]["namespace"], replica_set["metadata"]["name"]
        pods = [p for p in self.owned("v1", "Pod", replica_set) if not pod_terminal(p)]
        wanted = int(spec.get("replicas", 1))
        for _dummy in range(wanted - len(pods)):
            self.create(_pod_from_template(spec.get("template"), namespace, f"{name}-{rand5()}", replica_set, {}))
        if len(pods) > wanted:
            for pod in sorted(pods, key=deletion_order)[: len(pods) - wanted]:
                self.delete(pod)
        pods = [p for p in self.owned("v1", "Pod", replica_set) if not pod_terminal(p)]
        ready = sum(1 for p in pods if pod_running_and_ready(p))
        status = {
            "replicas": len(pods),
            "fullyLabeledReplicas": len(pods),
            "observedGeneration": replica_set["metadata"].get("generation", 1),
        }
        if ready:
            status["readyReplicas"] = ready
            status["availableReplicas"] = ready
        self.write_status(replica_set, status)

    def _deployment_status(self, deployment: dict) -> None:
        spec = deployment.get("spec") or {}
        replicas = int(spec.get("replicas", 1))
        collision = int((deployment.get("status") or {}).get("collisionCount") or 0)
        template_hash = pod_template_hash(spec.get("template"), collision)
        owned = self.owned("apps/v1", "ReplicaSet", deployment)
        new_rs = _new_replica_set(owned, template_hash)
        total = sum(int((rs.get("status") or {}).get("replicas") or 0) for rs in owned)
        ready = sum(int((rs.get("status") or {}).get("readyReplicas") or 0) for rs in owned)
        available = sum(int((rs.get("status") or {}).get("availableReplicas") or 0) for rs in owned)
        updated = int(((new_rs or {}).get("status") or {}).get("replicas") or 0)
        old = deployment.get("status") or {}
        status = {"observedGeneration": deployment["metadata"].get("generation", 1)}
        if total:
            status["replicas"] = total
        if updated:
            status["updatedReplicas"] = updated
        if ready:
            status["readyReplicas"] = ready
        if available:
            status["availableReplicas"] = available
        if total - available > 0:
            status["unavailableReplicas"] = total - available
        stamp = now_rfc3339()
        conditions = old.get("conditions") or []
        max_unavailable = replicas // 4 if (spec.get("strategy") or {}).get("type") != "Recreate" else replicas
        minimum = available >= replicas - max_unavailable
        conditions = _deployment_condition(
            conditions,
            "Available",
            "True" if minimum else "False",
            "MinimumReplicasAvailable" if minimum else "MinimumReplicasUnavailable",
            "Deployment has minimum availability." if minimum else "Deployment does not have minimum availability.",
            stamp,
        )
        rs_name = (new_rs or {}).get("metadata", {}).get("name", "")
        complete = new_rs is not None and updated == replicas and available >= replicas and total == replicas
        if complete:
            conditions = _deployment_condition(
                conditions,
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                f'ReplicaSet "{rs_name}" has successfully progressed.',
                stamp,
            )
        elif new_rs is not None:
            conditions = _deployment_condition(
                conditions, "Progressing", "True", "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.', stamp
            )
        status["conditions"] = conditions
        if old.get("collisionCount"):
            status["collisionCount"] = old["collisionCount"]
        self.write_status(deployment, status)

    # -- StatefulSet --
    def _stateful_set(self, stateful_set: dict) -> None:
        spec = stateful_set.get("spec") or {}
        namespace, name = stateful_set["metadata"]["namespace"], stateful_set["metadata"]["name"]
        replicas = int(spec.get("replicas", 1))
        revision = f"{name}-{pod_template_hash(spec.get('template'))}"
        pods = {p["metadata"]["name"]: p for p in self.objects("v1", "Pod", namespace) if is_owned_by(p, stateful_set)}
        ordered = spec.get("podManagementPolicy", "OrderedReady") == "OrderedReady"
        for ordinal in range(replicas):
            pod_name = f"{name}-{ordinal}"
            pod = pods.get(pod_name)
            if pod is not None and pod_terminal(pod) and not deleting(pod):
                self.delete(pod)
                pod = None
            if pod is None:
                if ordered and any(
                    not pod_running_and_ready(pods.get(f"{name}-{i}") or {"metadata": {}}) for i in range(ordinal)
                ):
                    break
                self._create_stateful_pod(stateful_set, ordinal, revision)
                if ordered:
                    break
        for pod_name, pod in pods.items():
            ordinal = int(pod_name.rsplit("-", 1)[-1]) if pod_name.rsplit("-", 1)[-1].isdigit() else -1
            if ordinal >= replicas and not deleting(pod):
                self.delete(pod)
        # roll: replace the highest-ordinal pod of an old revision once all are ready
        live = self.owned("v1", "Pod", stateful_set)
        if len(live) == replicas and all(pod_running_and_ready(p) for p in live):
            stale = [p for p in live if labels_of(p).get("controller-revision-hash") != revision]
            if stale and (spec.get("updateStrategy") or {}).get("type", "RollingUpdate") == "RollingUpdate":
                self.delete(max(stale, key=lambda p: int(p["metadata"]["name"].rsplit("-", 1)[-1])))
        live = self.owned("v1", "Pod", stateful_set)
        ready = sum(1 for p in live if pod_running_and_ready(p))
        updated = sum(1 for p in live if labels_of(p).get("controller-revision-hash") == revision)
        old = stateful_set.get("status") or {}
        current_revision = old.get("currentRevision") or revision
        if updated == len(live) == replicas:
            current_revision = revision
        current = sum(1 for p in live if labels_of(p).get("controller-revision-hash") == current_revision)
        status = {
            "observedGeneration": stateful_set["metadata"].get("generation", 1),
            "replicas": len(live),
            "readyReplicas": ready,
            "currentReplicas": current,
            "updatedReplicas": updated,
            "availableReplicas": ready,
            "currentRevision": current_revision,
            "updateRevision": revision,
            "collisionCount": 0,
        }
        self.write_status(stateful_set, status)

    def _create_stateful_pod(self, stateful_set: dict, ordinal: int, revision: str) -> None:
        spec = stateful_set["spec"]
        namespace, name = stateful_set["metadata"]["namespace"], stateful_set["metadata"]["name"]
        pod_name = f"{name}-{ordinal}"
        extra = {
            "controller-revision-hash": revision,
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
            claim_name = f"{template_name}-{pod_name}"
            if self.peek("v1", "PersistentVolumeClaim", namespace, claim_name) is None:
                claim = {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": {
                        "name": claim_name,
                        "namespace": namespace,
                        "labels": dict((spec.get("selector") or {}).get("matchLabels") or {}),
                    },
                    "spec": copy.deepcopy(claim_template.get("spec") or {}),
                }
                self.create(claim)
            volumes[:] = [v for v in volumes if v.get("name") != template_name]
            volumes.append({"name": template_name, "persistentVolumeClaim": {"claimName": claim_name}})
        if not volumes:
            pod["spec"].pop("volumes")
        self.create(pod)

    # -- DaemonSet --
    def _daemon_set(self, daemon_set: dict) -> None:
        spec = daemon_set.get("spec") or {}
        namespace, name = daemon_set["metadata"]["namespace"], daemon_set["metadata"]["name"]
        template = copy.deepcopy(spec.get("template") or {})
        template_spec = template.setdefault("spec", {})
        tolerations = list(template_spec.get("tolerations") or [])
        for key, effect in (
            ("node.kubernetes.io/not-ready", "NoExecute"),
            ("node.kubernetes.io/unreachable", "NoExecute"),
            ("node.kubernetes.io/disk-pressure", "NoSchedule"),
            ("node.kubernetes.io/memory-pressure", "NoSchedule"),
            ("node.kubernetes.io/pid-pressure", "NoSchedule"),
            ("node.kubernetes.io/unschedulable", "NoSchedule"),
        ):
            if not any(t.get("key") == key and t.get("effect") == effect for t in tolerations):
                tolerations.append({"key": key, "operator": "Exists", "effect": effect})
        template_spec["tolerations"] = tolerations
        revision = pod_template_hash(spec.get("template"))
        generation = str(daemon_set["metadata"].get("generation", 1))
        pods = self.owned("v1", "Pod", daemon_set)
        by_node: dict = {}
        for pod in pods:
            by_node.setdefault(_ds_pod_node(pod), []).append(pod)
        desired = 0
        for node in self.objects("v1", "Node"):
            node_name = node["metadata"]["name"]
            present = by_node.pop(node_name, [])
            eligible = node_matches_affinity(node, template_spec)
            place = eligible and untolerated_taint(node, tolerations) is None
            keep = eligible and untolerated_taint(node, tolerations, ("NoExecute",)) is None
            if place or (keep and present):
                desired += 1
            else:
                for pod in present:
                    self.delete(pod)
                continue
            keep_pods = []
            for pod in present:
                labels = pod["metadata"].get("labels") or {}
                if labels.get("controller-revision-hash") != revision or pod_terminal(pod) or keep_pods:
                    self.delete(pod)
                else:
                    keep_pods.append(pod)
            if not keep_pods and place:
                pod_spec = copy.deepcopy(template)
                affinity = pod_spec["spec"].setdefault("affinity", {})
                affinity["nodeAffinity"] = {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node_name]}]}
                        ]
                    }
                }
                extra = {"controller-revision-hash": revision, "pod-template-generation": generation}
                self.create(_pod_from_template(pod_spec, namespace, f"{name}-{rand5()}", daemon_set, extra))
        for leftovers in by_node.values():
            for pod in leftovers:
                self.delete(pod)
        pods = self.owned("v1", "Pod", daemon_set)
        scheduled = [p for p in pods if p["spec"].get("nodeName") or _ds_pod_node(p)]
        ready = sum(1 for p in pods if pod_running_and_ready(p))
        updated = sum(1 for p in pods if labels_of(p).get("controller-revision-hash") == revision)
        status = {
            "currentNumberScheduled": len(scheduled),
            "desiredNumberScheduled": desired,
            "numberMisscheduled": 0,
            "numberReady": ready,
            "observedGeneration": daemon_set["metadata"].get("generation", 1),
            "updatedNumberScheduled": updated,
            "numberAvailable": ready,
        }
        if desired - ready > 0:
            status["numberUnavailable"] = desired - ready
        if not ready:
            status.pop("numberAvailable")
        self.write_status(daemon_set, status)

    # -- Job --
    def _job(self, job: dict) -> None:
        spec = job.get("spec") or {}
        namespace, name = job["metadata"]["namespace"], job["metadata"]["name"]
        status = copy.deepcopy(job.get("status") or {})
        finished = any(
            c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
        pods = self.owned("v1", "Pod", job)
        completions = int(spec.get("completions", 1) if spec.get("completions") is not None else 1)
        parallelism = int(spec.get("parallelism", 1) if spec.get("parallelism") is not None else 1)
        backoff_limit = int(spec.get("backoffLimit", 6) if spec.get("backoffLimit") is not None else 6)
        outcome = self.state.requested_outcomes.get(("Job", namespace, name)) or {}
        stamp = now_rfc3339()
        for pod in pods:
            if (pod.get("status") or {}).get("phase") == "Running" and not finished:
                self._finish_pod(pod, outcome)
        pods = self.owned("v1", "Pod", job)
        succeeded = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Succeeded")
        failed = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Failed")
        active = [p for p in pods if not pod_terminal(p)]
        conditions = status.get("conditions") or []
        if not finished and succeeded >= completions:
            message = "Reached expected number of succeeded pods"
            conditions = set_condition(
                conditions,
                "SuccessCriteriaMet",
                "True",
                "CompletionsReached",
                message,
                stamp=stamp,
                probe_time=True,
                extra={"lastProbeTime": stamp},
            )
            conditions = set_condition(
                conditions,
                "Complete",
                "True",
                "CompletionsReached",
                message,
                stamp=stamp,
                probe_time=True,
                extra={"lastProbeTime": stamp},
            )
            status["completionTime"] = stamp
            finished = True
        elif not finished and failed > backoff_limit:
            message = "Job has reached the specified backoff limit"
            conditions = set_condition(
                conditions,
                "FailureTarget",
                "True",
                "BackoffLimitExceeded",
                message,
                stamp=stamp,
                probe_time=True,
                extra={"lastProbeTime": stamp},
            )
            conditions = set_condition(
                conditions,
                "Failed",
                "True",
                "BackoffLimitExceeded",
                message,
                stamp=stamp,
                probe_time=True,
                extra={"lastProbeTime": stamp},
            )
            finished = True
            for pod in active:
                self.delete(pod)
            active = []
        elif not finished and not spec.get("suspend"):
            wanted = min(parallelism, completions - succeeded) - len(active)
            for _dummy in range(max(0, wanted)):
                extra = {
                    "batch.kubernetes.io/controller-uid": job["metadata"]["uid"],
                    "batch.kubernetes.io/job-name": name,
                    "controller-uid": job["metadata"]["uid"],
                    "job-name": name,
                }
                pod = _pod_from_template(spec.get("template"), namespace, f"{name}-{rand5()}", job, extra)
                pod["metadata"].setdefault("annotations", {})["batch.kubernetes.io/job-tracking"] = ""
                created = self.create(pod)
                active.append(created)
                status.setdefault("startTime", stamp)
        status["conditions"] = conditions
        if not conditions:
            status.pop("conditions")
        status["active"] = len(active)
        if not active:
            status.pop("active")
        ready = sum(1 for p in active if pod_ready(p))
        status["ready"] = ready
        status["terminating"] = 0
        status["uncountedTerminatedPods"] = {}
        for key, value in (("succeeded", succeeded), ("failed", failed)):
            if value:
                status[key] = value
            else:
                status.pop(key, None)
        self.write_status(job, status)

    def _finish_pod(self, pod: dict, outcome: dict) -> bool:
        """A running Job (or bare) pod ends after JOB_RUN_SECONDS, as the requested outcome says."""
        status = copy.deepcopy(pod.get("status") or {})
        started = [
            ((c.get("state") or {}).get("running") or {}).get("startedAt")
            for c in status.get("containerStatuses") or []
        ]
        key = ("pod-start", pod["metadata"]["uid"])
        first_seen = _RUN_CLOCK.setdefault(key, base.clock())
        if not all(started) or base.clock() - first_seen < JOB_RUN_SECONDS:
            return False
        _RUN_CLOCK.pop(key, None)
        failed = (outcome.get("outcome") or "Succeeded") == "Failed"
        stamp = now_rfc3339()
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        for line in (outcome.get("log") or "").splitlines():
            if status.get("containerStatuses"):
                self.state.append_log(namespace, name, status["containerStatuses"][0]["name"], line)
        for entry in status.get("containerStatuses") or []:
            started_at = entry["state"]["running"]["startedAt"]
            reason = "Error" if failed else "Completed"
            entry["state"] = {
                "terminated": {
                    "exitCode": 1 if failed else 0,
                    "reason": reason,
                    "startedAt": started_at,
                    "finishedAt": stamp,
                    "containerID": entry.get("containerID", ""),
                }
            }
            entry["ready"] = False
            entry["started"] = False
        status["phase"] = "Failed" if failed else "Succeeded"
        reason = "PodFailed" if failed else "PodCompleted"
        for kind in ("Ready", "ContainersReady"):
            status["conditions"] = set_condition(status.get("conditions"), kind, "False", reason, probe_time=True)
        status["conditions"] = set_condition(
            status["conditions"], "PodReadyToStartContainers", "False", probe_time=True
        )
        self.write_status(pod, status)
        return True

    def _bare_pods(self) -> None:
        for (kind, namespace, name), outcome in list(self.state.requested_outcomes.items()):
            if kind != "Pod":
                continue
            pod = self.peek("v1", "Pod", namespace, name)
            if pod is None or deleting(pod) or (pod.get("status") or {}).get("phase") != "Running":
                continue
            if (pod.get("spec") or {}).get("restartPolicy", "Always") in ("Never", "OnFailure"):
                self._finish_pod(pod, outcome)

    # -- Services / Endpoints --
    def _service(self, service: dict) -> None:
        spec = service.get("spec") or {}
        namespace, name = service["metadata"]["namespace"], service["metadata"]["name"]
        if spec.get("type") != "ExternalName" and not spec.get("clusterIP"):
            new = copy.deepcopy(service)
            ip = _allocate_cluster_ip(self.objects("v1", "Service"))
            new["spec"]["clusterIP"] = ip
            new["spec"]["clusterIPs"] = [ip]
            service = self.update(new)
            spec = service["spec"]
        selector = spec.get("selector")
        if not selector:
            return
        pods = [
            p
            for p in self.objects("v1", "Pod", namespace)
            if selectors.labels_match([(k, "=", {v}) for k, v in selector.items()], p["metadata"].get("labels"))
            and (p.get("status") or {}).get("podIP")
            and not deleting(p)
            and not pod_terminal(p)
        ]
        ready, not_ready = [], []
        for pod in sorted(pods, key=lambda p: p["status"]["podIP"]):
            address = {
                "ip": pod["status"]["podIP"],
                "nodeName": pod["spec"].get("nodeName"),
                "targetRef": {
                    "kind": "Pod",
                    "namespace": namespace,
                    "name": pod["metadata"]["name"],
                    "uid": pod["metadata"]["uid"],
                },
            }
            if pod["spec"].get("hostname"):
                address["hostname"] = pod["spec"]["hostname"]
            (ready if pod_ready(pod) or spec.get("publishNotReadyAddresses") else not_ready).append(address)
        ports = []
        for port in spec.get("ports") or []:
            target = port.get("targetPort", port.get("port"))
            if isinstance(target, str) and not target.isdigit():
                number = None
                for pod in pods:
                    for container in pod["spec"].get("containers") or []:
                        for container_port in container.get("ports") or []:
                            if container_port.get("name") == target:
                                number = container_port.get("containerPort")
                target = number
            if target is None:
                continue
            entry = {"port": int(target), "protocol": port.get("protocol", "TCP")}
            if port.get("name"):
                entry["name"] = port["name"]
            if port.get("appProtocol"):
                entry["appProtocol"] = port["appProtocol"]
            ports.append(entry)
        subsets = []
        if ready or not_ready:
            subset = {}
            if ready:
                subset["addresses"] = ready
            if not_ready:
                subset["notReadyAddresses"] = not_ready
            if ports:
                subset["ports"] = ports
            subsets.append(subset)
        labels = dict(service["metadata"].get("labels") or {})
        if spec.get("clusterIP") == "None":
            labels["service.kubernetes.io/headless"] = ""
        existing = self.peek("v1", "Endpoints", namespace, name)
        body = {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
        }
        if subsets:
            body["subsets"] = subsets
        if existing is None:
            self.create(body)
            return
        if existing.get("subsets") != body.get("subsets") or (existing["metadata"].get("labels") or {}) != labels:
            new = copy.deepcopy(existing)
            new["metadata"]["labels"] = labels
            new.pop("subsets", None)
            if subsets:
                new["subsets"] = subsets
            self.update(new)


_RUN_CLOCK: dict = {}


def _ds_pod_node(pod: dict) -> str:
    if pod["spec"].get("nodeName"):
        return pod["spec"]["nodeName"]
    terms = (
        ((pod["spec"].get("affinity") or {}).get("nodeAffinity") or {}).get(
            "requiredDuringSchedulingIgnoredDuringExecution"
        )
        or {}
    ).get("nodeSelectorTerms") or []
    for term in terms:
        for field in term.get("matchFields") or []:
            if field.get("key") == "metadata.name" and field.get("values"):
                return field["values"][0]
    return ""


def _new_replica_set(owned: list, template_hash: str) -> dict | None:
    for replica_set in owned:
        if labels_of(replica_set).get("pod-template-hash") == template_hash:
            return replica_set
    return None


def _allocate_cluster_ip(services: list) -> str:
    used = {(s.get("spec") or {}).get("clusterIP") for s in services}
    for index in range(10, 65000):
        candidate = f"10.96.{index // 250}.{index % 250 + 1}"
        if candidate not in used:
            return candidate
    raise RuntimeError("service IP range exhausted")


def _deployment_condition(conditions: list, kind: str, status: str, reason: str, message: str, stamp: str) -> list:
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
