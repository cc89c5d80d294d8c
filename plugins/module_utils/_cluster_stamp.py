# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""The record a full site.yml run leaves in the cluster (platform kubernetes), and the re-run's one look.

The hosts platform keeps a record per node (_deployment_stamp); here one record, a ConfigMap in the deployment's
namespace, holds: the settings' digest, the cluster's nodes (uid and GPUs: the plan is made from them), every object
the roles made (listed by the label they all carry) by uid and generation (resourceVersion for kinds without one) and
whether it was ready, the objects outside the namespace the gates checked (the KubeRay operator's Deployment), and
where the Ray dashboard and vLLM answer through the API server's service proxy. A re-run looks once, cheapest first,
and stops at the first difference; the Ray nodes alive and a chat completion are compared as on hosts.

Pure functions; the module hands in what the API server answered.
"""

from __future__ import annotations

import json

from ansible_collections.llmops.ray_vllm.plugins.module_utils._deployment_stamp import (
    answer_lines,
    look_differences,
    settings_differences,
)
from ansible_collections.llmops.ray_vllm.plugins.module_utils._deployment_stamp import parse_stamp as parse_record_text
from ansible_collections.llmops.ray_vllm.plugins.module_utils._gpu_node_facts import allocatable_gpus
from ansible_collections.llmops.ray_vllm.plugins.module_utils._model_volume import (
    claim_reader,
    look_program,
    seen_damage,
)
from ansible_collections.llmops.ray_vllm.plugins.module_utils._waiter import (
    clusterpolicies_ready,
    deployment_available,
    raycluster_provisioned,
)

STAMP_VERSION = 1
# Every object the roles make in their namespaces carries it (the roles' vars/main.yml).
PART_OF_SELECTOR = "app.kubernetes.io/part-of=ray-vllm"
RECORD_LABELS = {"app.kubernetes.io/managed-by": "llmops.ray_vllm", "app.kubernetes.io/component": "deployment-record"}
RECORD_KEY = "record.json"

# (API prefix, plural, kind) of what the roles make in a namespace. Jobs (the model download, the image check) and
# pods are left out: a finished Job or a replaced pod does not change whether the deployment stands; the Ray nodes,
# the Deployments' availability and a completion tell that.
NAMESPACED_KINDS = (
    ("/api/v1", "configmaps", "ConfigMap"),
    ("/api/v1", "secrets", "Secret"),
    ("/api/v1", "services", "Service"),
    ("/api/v1", "persistentvolumeclaims", "PersistentVolumeClaim"),
    ("/apis/apps/v1", "deployments", "Deployment"),
    ("/apis/networking.k8s.io/v1", "networkpolicies", "NetworkPolicy"),
    ("/apis/networking.k8s.io/v1", "ingresses", "Ingress"),
    ("/apis/ray.io/v1", "rayclusters", "RayCluster"),
    ("/apis/ray.io/v1", "rayservices", "RayService"),
    ("/apis/monitoring.coreos.com/v1", "podmonitors", "PodMonitor"),
    ("/apis/monitoring.coreos.com/v1", "servicemonitors", "ServiceMonitor"),
)
# Cluster-wide: the GPU operator's ClusterPolicy (none where the CRD is not installed).
CLUSTER_KINDS = (("/apis/nvidia.com/v1", "clusterpolicies", "ClusterPolicy"),)
# The objects outside the namespaces a look may GET by name (the operators' Deployments).
NAMED_KINDS = {("apps/v1", "Deployment"): ("/apis/apps/v1", "deployments")}
READY = {
    "Deployment": deployment_available,
    "RayCluster": raycluster_provisioned,
    "ClusterPolicy": lambda obj: clusterpolicies_ready([obj]),
}


class ClusterStampError(Exception):
    pass


# --- API paths ---------------------------------------------------------------------------------------------------


def list_path(prefix, plural, namespace=None):
    return "%s/%s%s" % (prefix, "namespaces/%s/" % namespace if namespace else "", plural)


def named_path(ref):
    """The GET path of ``ref`` (``api_version``, ``kind``, ``namespace``, ``name``), for the kinds a look reads by
    name (NAMED_KINDS)."""
    where = NAMED_KINDS.get((ref["api_version"], ref["kind"]))
    if where is None:
        known = ", ".join("%s %s" % key for key in sorted(NAMED_KINDS))
        raise ClusterStampError(
            "objects: %s %s cannot be looked at by name (only %s)" % (ref["api_version"], ref["kind"], known)
        )
    return list_path(*where, namespace=ref["namespace"]) + "/" + ref["name"]


# --- what is compared --------------------------------------------------------------------------------------------


def object_key(kind, obj):
    meta = obj.get("metadata") or {}
    where = "%s/" % meta["namespace"] if meta.get("namespace") else ""
    return "%s %s%s" % (kind, where, meta.get("name"))


def object_print(kind, obj):
    """uid and generation (resourceVersion for kinds without one: ConfigMaps, Secrets, Services, claims), and
    whether it is ready for the kinds the gates wait on."""
    meta = obj.get("metadata") or {}
    entry = {"uid": meta.get("uid")}
    if meta.get("generation") is not None:
        entry["generation"] = meta["generation"]
    else:
        entry["resourceVersion"] = meta.get("resourceVersion")
    if kind in READY:
        entry["ready"] = bool(READY[kind](obj))
    return entry


def objects_print(listings):
    """``{"<Kind> <namespace>/<name>": print}`` of ``listings``: ``(kind, objects)`` pairs."""
    return {object_key(kind, obj): object_print(kind, obj) for kind, objects in listings for obj in objects}


def _change_line(key, before, now):
    if before.get("uid") != now.get("uid"):
        return "%s was made again since the last full run (uid %s, was %s)" % (key, now.get("uid"), before.get("uid"))
    if before.get("ready") != now.get("ready"):
        return "%s is %s" % (key, "ready now (it was not after the last full run)" if now.get("ready") else "not ready")
    if "generation" in before and before.get("generation") != now.get("generation"):
        return "%s was changed since the last full run (generation %s, was %s)" % (
            key,
            now.get("generation"),
            before["generation"],
        )
    return "%s was changed since the last full run (resourceVersion %s, was %s)" % (
        key,
        now.get("resourceVersion"),
        before.get("resourceVersion"),
    )


def entry_differences(recorded, seen, describe):
    """One line per key whose entry differs between the record and now: ``describe``(key, before, now), where
    ``before`` or ``now`` is None for an entry only one side has."""
    keys = sorted(set(recorded) | set(seen))
    return [describe(key, recorded.get(key), seen.get(key)) for key in keys if recorded.get(key) != seen.get(key)]


def _object_line(key, before, now):
    if now is None:
        return "%s is gone (it was there after the last full run)" % key
    if before is None:
        return "%s is there now; it was not after the last full run" % key
    return _change_line(key, before, now)


def object_differences(recorded, seen):
    """One line per object gone, new, made again, changed or no longer ready since the record."""
    return entry_differences(recorded, seen, _object_line)


def nodes_print(nodes):
    """``{name: {uid, gpus}}``: the plan is made from the nodes' GPUs, so a node added, removed, replaced or with
    other GPUs differs."""
    return {
        (node.get("metadata") or {}).get("name"): {
            "uid": (node.get("metadata") or {}).get("uid"),
            "gpus": allocatable_gpus(node) or 0,
        }
        for node in nodes
    }


def _node_line(name, before, now):
    if now is None:
        return "the node %s is gone" % name
    if before is None:
        return "the node %s joined the cluster (%s GPUs)" % (name, now["gpus"])
    if before["uid"] != now["uid"]:
        return "the node %s was replaced (uid %s, was %s)" % (name, now["uid"], before["uid"])
    return "the node %s offers %s GPUs, not %s" % (name, now["gpus"], before["gpus"])


def node_differences(recorded, seen):
    return entry_differences(recorded, seen, _node_line)


# --- the record ----------------------------------------------------------------------------------------------------


def new_stamp(digest, cluster, head):
    """The record: ``cluster`` holds namespaces, nodes, objects and named (named_refs) as a ClusterObserver saw
    them; ``head`` where Ray and vLLM answer, with the Ray node IDs alive (recorded_head)."""
    return dict(cluster, version=STAMP_VERSION, digest=digest, head=head)


def parse_stamp(data):
    """The record in a ConfigMap's ``data``, or None where there is none this version writes."""
    return parse_record_text((data or {}).get(RECORD_KEY) or "", STAMP_VERSION)


def record_configmap(name, namespace, stamp):
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(RECORD_LABELS)},
        "data": {RECORD_KEY: json.dumps(stamp, indent=1, sort_keys=True) + "\n"},
    }


def cluster_differences(stamp, observe):
    """What differs among the nodes, then the namespaces' objects, then the named objects (``observe``: a
    ClusterObserver); the first that differs ends the look."""
    lines = node_differences(stamp["nodes"], observe.nodes())
    if lines:
        return lines
    lines = object_differences(stamp["objects"], observe.objects(stamp["namespaces"]))
    if lines:
        return lines
    return object_differences(stamp["named"], observe.named(stamp["named_refs"]))


def model_differences(model, reader, answer):
    """What a running pod that mounts the model's claim finds wrong with the model's files (as the serving
    containers read them): ``reader`` is claim_reader's pick, ``answer`` what the look printed there."""
    if reader is None:
        return ["no running pod mounts the claim %s to look at the model's files" % model["claim"]]
    damage = seen_damage(answer, reader["path"])
    if not damage:
        return []
    return ["the model on %s is damaged, as pod %s reads it: %s" % (model["claim"], reader["pod"], "; ".join(damage))]


def look(stamp, digest, observe_cluster, observe_head, head_differences):
    """``(differences, answer)``: nothing differs when the deployment stands as the last full run left it.

    ``observe_cluster`` makes a ClusterObserver, ``observe_head`` a HeadObserver for the recorded head (its Ray nodes
    and vLLM's answer, compared by ``head_differences`` as on hosts)."""
    lines = settings_differences(stamp, digest, where="in the cluster")
    if lines:
        return lines, None
    cluster = observe_cluster()
    lines = cluster_differences(stamp, cluster)
    if not lines and stamp.get("model"):
        lines = model_differences(stamp["model"], *cluster.model(stamp["model"]))
    if lines or not stamp.get("head"):
        return lines, None
    observer = observe_head(stamp["head"])
    lines = head_differences(stamp["head"], observer)
    return lines, (None if lines else observer.answer().get("completion"))


def refusal_text(status, path, body, grant):
    """Why a GET failed, and the fix: the connection, or the rule to grant (``grant``: "list on pods")."""
    message = (body or {}).get("message", body)
    if status == 0:
        return "the API server does not answer GET %s: %s. Fix: check the kubeconfig's server" % (path, message)
    return (
        "the API server answered %s to GET %s: %s. Fix: grant %s (docs/least-privilege.md), or set "
        "ray_vllm_fast_rerun=false" % (status, path, message, grant)
    )


class ClusterObserver:
    """Asks the API server (``get``(path, query) returns ``(status, body)``) for the nodes, the labelled objects of
    the namespaces and the named objects. Raises ClusterStampError where it refuses (its answer, and the fix)."""

    def __init__(self, get, run_in_pod=None):
        self.get = get
        self.run_in_pod = run_in_pod

    def model(self, model):
        """``(reader, answer)``: the running pod that mounts the model's claim (claim_reader) and what the model's
        look printed in it (``run_in_pod``(namespace, pod, container, argv) gives its output); ``(None, "")``
        without such a pod."""
        pods = self._items("/api/v1", "pods", model["namespace"])
        reader = claim_reader(pods, model["claim"], model["path"], model["claim_root"])
        if reader is None:
            return None, ""
        argv = ["python3", "-c", look_program(), reader["path"]]
        return reader, self.run_in_pod(model["namespace"], reader["pod"], reader["container"], argv)

    def _items(self, prefix, plural, namespace=None, selector=None):
        path = list_path(prefix, plural, namespace)
        status, body = self.get(path, {"labelSelector": selector} if selector else None)
        if status == 404:  # the kind's CRD is not installed: there is none of it
            return []
        if status != 200:
            raise ClusterStampError(refusal_text(status, path, body, "list on %s" % plural))
        return body.get("items") or []

    def nodes(self):
        return nodes_print(self._items("/api/v1", "nodes"))

    def objects(self, namespaces):
        listings = [(kind, self._items(prefix, plural)) for prefix, plural, kind in CLUSTER_KINDS]
        for namespace in sorted(set(namespaces)):
            listings += [
                (kind, self._items(prefix, plural, namespace, PART_OF_SELECTOR))
                for prefix, plural, kind in NAMESPACED_KINDS
            ]
        return objects_print(listings)

    def named(self, refs):
        listings = []
        for ref in refs:
            status, body = self.get(named_path(ref), None)
            if status == 200:
                listings.append((ref["kind"], [body]))
            elif status != 404:
                raise ClusterStampError(refusal_text(status, named_path(ref), body, "get on %s" % ref["kind"]))
        return objects_print(listings)

    def cluster(self, namespaces, named_refs):
        """The cluster's part of a record, as seen now."""
        return {
            "namespaces": sorted(set(namespaces)),
            "nodes": self.nodes(),
            "objects": self.objects(namespaces),
            "named_refs": list(named_refs),
            "named": self.named(named_refs),
        }


def summarize_look(look_result):
    """``{"standing": bool, "lines": [...]}`` of the cluster's look: standing when it found nothing different; the
    lines say why, and show the endpoint and vLLM's answer."""
    differences = look_differences(look_result)
    if differences:
        return {
            "standing": False,
            "lines": ["A full run follows; the cluster differs from the last full run's record:"] + differences,
        }
    return {
        "standing": True,
        "lines": [
            "The deployment stands as the last full run left it: the same settings and collection, the same nodes, "
            "the objects the roles made unchanged and ready%s. The roles are skipped (ray_vllm_fast_rerun=false runs "
            "them all)." % (", the same Ray nodes alive and vLLM answering" if look_result.get("answer") else "")
        ]
        + answer_lines(look_result),
    }
