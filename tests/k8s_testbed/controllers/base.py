# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""What every controller shares: the Controller base (store access, events), conditions, owners, pod predicates.

Every controller is level-triggered and synchronous: ``reconcile()`` reads the store and writes only what is missing
or stale, so a round with nothing to do writes nothing (the server runs all enabled controllers after every change
and once a second). Delays are measured with ``base.clock`` (``time.monotonic``; tests may replace it), which the
controller modules call as ``base.clock()`` so that a replacement takes effect everywhere.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from typing import TYPE_CHECKING

from ..jsondata import json_copy
from ..store import ApiError
from ..timestamps import now_rfc3339

if TYPE_CHECKING:
    from ..state import TestBedState

clock = time.monotonic  # tests may replace it to move time forward

RAND_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # what Kubernetes uses for generated name suffixes


def rand5() -> str:
    return "".join(random.choice(RAND_ALPHABET) for dummy in range(5))


def safe_hash(data, length: int = 10) -> str:
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).digest()
    return "".join(RAND_ALPHABET[b % len(RAND_ALPHABET)] for b in digest[:length])


def set_condition(
    conditions: list,
    kind: str,
    status: str,
    reason: str = "",
    message: str = "",
    *,
    stamp: str | None = None,
    extra: dict | None = None,
    probe_time: bool = False,
    meta: bool = False,
) -> list:
    """Set one condition in a list, keeping lastTransitionTime while the status does not change.

    meta: a metav1.Condition (custom resources), whose reason and message are required even when empty."""
    stamp = stamp or now_rfc3339()
    result = [dict(c) for c in conditions or []]
    for condition in result:
        if condition.get("type") == kind:
            if condition.get("status") != status:
                condition["lastTransitionTime"] = stamp
            condition["status"] = status
            for key, value in (("reason", reason), ("message", message)):
                if value or meta:
                    condition[key] = value
                else:
                    condition.pop(key, None)
            condition.update(extra or {})
            return result
    condition = {"type": kind, "status": status}
    if probe_time:
        condition["lastProbeTime"] = None
    condition["lastTransitionTime"] = stamp
    if reason or meta:
        condition["reason"] = reason
    if message or meta:
        condition["message"] = message
    condition.update(extra or {})
    result.append(condition)
    return result


def set_pod_condition(conditions: list, kind: str, status: str, reason: str = "", message: str = "") -> list:
    """A pod condition: it carries lastProbeTime (null), which the kubelet writes on every pod condition."""
    return set_condition(conditions, kind, status, reason, message, probe_time=True)


def find_condition(obj: dict, kind: str) -> dict | None:
    return condition_in((obj.get("status") or {}).get("conditions"), kind)


def condition_in(conditions: list | None, kind: str) -> dict | None:
    for condition in conditions or []:
        if condition.get("type") == kind:
            return condition
    return None


def owner_reference(owner: dict, controller: bool = True) -> dict:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": controller,
        "blockOwnerDeletion": True,
    }


def labels_of(obj: dict) -> dict:
    return obj["metadata"].get("labels") or {}


def is_owned_by(obj: dict, owner: dict) -> bool:
    uid = owner["metadata"]["uid"]
    return any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or [])


def condition_true(obj: dict, kind: str) -> bool:
    condition = find_condition(obj, kind)
    return bool(condition and condition.get("status") == "True")


def pod_ready(pod: dict) -> bool:
    return condition_true(pod, "Ready")


def phase_of(obj: dict) -> str | None:
    return (obj.get("status") or {}).get("phase")


def pod_running_and_ready(pod: dict) -> bool:
    return phase_of(pod) == "Running" and pod_ready(pod)


def pod_terminal(pod: dict) -> bool:
    return phase_of(pod) in ("Succeeded", "Failed")


def terminated_state(exit_code: int, reason: str, started_at: str, finished_at: str, container_id) -> dict:
    """A container's ``terminated`` state as the kubelet reports it."""
    return {
        "terminated": {
            "exitCode": exit_code,
            "reason": reason,
            "startedAt": started_at,
            "finishedAt": finished_at,
            "containerID": container_id,
        }
    }


def deleting(obj: dict) -> bool:
    return bool(obj["metadata"].get("deletionTimestamp"))


def pod_claims(pod: dict) -> list:
    return [
        v["persistentVolumeClaim"]["claimName"]
        for v in (pod.get("spec") or {}).get("volumes") or []
        if (v.get("persistentVolumeClaim") or {}).get("claimName")
    ]


def deletion_order(pod: dict) -> tuple:
    """Which pods a scale-down removes first: unscheduled, pending, not ready, then the newest."""
    return (
        bool(pod["spec"].get("nodeName")),
        phase_of(pod) == "Running",
        pod_ready(pod),
        "".join(chr(255 - ord(c)) for c in pod["metadata"].get("creationTimestamp", "")),
    )


class Controller:
    """One control loop; subclasses implement reconcile()."""

    name = ""

    def __init__(self, state: TestBedState):
        self.state = state
        self.store = state.objects

    def reconcile(self) -> None:
        return None

    # -- helpers shared by the loops --
    def rtype(self, api_version: str, kind: str):
        return self.state.registry.for_kind(api_version, kind)

    def objects(self, api_version: str, kind: str, namespace: str | None = None) -> list:
        resource_type = self.rtype(api_version, kind)
        if resource_type is None:
            return []
        items = self.store.iter_objects(resource_type)
        if namespace is not None:
            items = [o for o in items if o["metadata"].get("namespace") == namespace]
        return items

    def live(self, api_version: str, kind: str) -> list:
        """The objects of a kind that are not being deleted: those a loop reconciles."""
        return [o for o in self.objects(api_version, kind) if not deleting(o)]

    def owned(self, api_version: str, kind: str, owner: dict) -> list:
        """The objects of a kind in the owner's namespace that it owns and that are not being deleted."""
        namespace = owner["metadata"].get("namespace")
        return [o for o in self.objects(api_version, kind, namespace) if is_owned_by(o, owner) and not deleting(o)]

    def peek(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict | None:
        resource_type = self.rtype(api_version, kind)
        return None if resource_type is None else self.store.peek(resource_type, namespace, name)

    def create(self, obj: dict, keep_status: bool = False) -> dict | None:
        resource_type = self.rtype(obj["apiVersion"], obj["kind"])
        namespace = obj["metadata"].get("namespace") if resource_type.namespaced else None
        created, dummy = self.store.create(resource_type, namespace, obj, manager=self.name, keep_status=keep_status)
        return created

    def ensure(self, obj: dict, keep_status: bool = False) -> dict:
        """The stored object of that name, created from obj when there is none."""
        metadata = obj["metadata"]
        existing = self.peek(obj["apiVersion"], obj["kind"], metadata.get("namespace"), metadata["name"])
        return existing if existing is not None else self.create(obj, keep_status=keep_status)

    def update(self, obj: dict) -> dict:
        resource_type = self.rtype(obj["apiVersion"], obj["kind"])
        metadata = obj["metadata"]
        new = json_copy(obj)
        new["metadata"].pop("resourceVersion", None)
        updated, dummy = self.store.update(
            resource_type, metadata.get("namespace"), metadata["name"], new, manager=self.name
        )
        return updated

    def write_status(self, obj: dict, status: dict) -> dict:
        """Write status when it differs from the stored one."""
        if obj.get("status") == status:
            return obj
        resource_type = self.rtype(obj["apiVersion"], obj["kind"])
        metadata = obj["metadata"]
        if not resource_type.has_status:
            new = json_copy(obj)
            new["status"] = status
            return self.update(new)
        updated, dummy = self.store.update(
            resource_type,
            metadata.get("namespace"),
            metadata["name"],
            {"metadata": {"name": metadata["name"]}, "status": status},
            subresource="status",
            manager=self.name,
        )
        return updated

    def delete(self, obj: dict) -> None:
        resource_type = self.rtype(obj["apiVersion"], obj["kind"])
        metadata = obj["metadata"]
        try:
            self.store.delete(resource_type, metadata.get("namespace"), metadata["name"])
        except ApiError as error:
            if error.code != 404:
                raise

    def event(
        self,
        involved: dict,
        reason: str,
        message: str,
        kind: str = "Normal",
        component: str = "",
        repeat_after: float | None = None,
    ) -> None:
        """Record a core/v1 Event; the same reason and message for the same object bump its count instead
        (only when ``repeat_after`` seconds have passed since the last bump; None: never bump)."""
        uid = involved["metadata"].get("uid")
        for existing in self.objects("v1", "Event"):
            ref = existing.get("involvedObject") or {}
            if ref.get("uid") == uid and existing.get("reason") == reason and existing.get("message") == message:
                self._bump(existing, repeat_after)
                return
        try:
            created = self.create(_event_body(involved, reason, message, kind, component or self.name))
        except ApiError:
            return
        _EVENT_BUMPS[created["metadata"]["uid"]] = clock()

    def _bump(self, event: dict, repeat_after: float | None) -> None:
        uid = event["metadata"]["uid"]
        if repeat_after is None or clock() - _EVENT_BUMPS.get(uid, 0) < repeat_after:
            return
        _EVENT_BUMPS[uid] = clock()
        bumped = json_copy(event)
        bumped["count"] = int(event.get("count") or 1) + 1
        bumped["lastTimestamp"] = now_rfc3339()
        self.update(bumped)


_EVENT_BUMPS: dict = {}  # event uid -> clock() of its creation or last bump


def _event_body(involved: dict, reason: str, message: str, kind: str, component: str) -> dict:
    metadata = involved["metadata"]
    stamp = now_rfc3339()
    body = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{metadata['name']}.{time.time_ns():x}",
            "namespace": metadata.get("namespace") or "default",
        },
        "involvedObject": {
            "apiVersion": involved.get("apiVersion"),
            "kind": involved.get("kind"),
            "name": metadata["name"],
            "namespace": metadata.get("namespace") or "",
            "uid": metadata.get("uid"),
            "resourceVersion": metadata.get("resourceVersion"),
        },
        "reason": reason,
        "message": message,
        "source": {"component": component},
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
        "type": kind,
        "eventTime": None,
        "reportingComponent": component,
        "reportingInstance": "",
    }
    if not metadata.get("namespace"):
        body["involvedObject"].pop("namespace")
    return body
