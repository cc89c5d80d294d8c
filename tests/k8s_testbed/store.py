# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The API server's object store: what etcd plus the generic registry do, in memory.

Every write gets the next global resourceVersion and is recorded as a watch event. Methods are synchronous and
run on the server's event loop, so each one is atomic with respect to every other request and controller.
"""

from __future__ import annotations

import collections
import itertools
import json
import uuid
from dataclasses import dataclass

from . import resources, selectors
from .jsondata import json_copy
from .timestamps import now_rfc3339, rfc3339_after

HISTORY_LENGTH = 20000
NAMESPACE_TYPE_KEY = ("", "namespaces")
CRD_TYPE_KEY = ("apiextensions.k8s.io", "customresourcedefinitions")
# Fields the server owns: copied from the stored object on every write, whatever the client sent.
_SERVER_OWNED_META = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation")


def api_status(code: int, reason: str, message: str, details: dict | None = None) -> dict:
    """A ``kind: Status`` failure body, its fields in the order the apiserver writes them."""
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message}
    body["reason"] = reason
    if details is not None:
        body["details"] = details
    body["code"] = code
    return body


class ApiError(Exception):
    """An error the API answers with a Status object."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict:
        return api_status(self.code, self.reason, self.message, self.details)


def qualified_plural(resource_type) -> str:
    return f"{resource_type.plural}.{resource_type.group}" if resource_type.group else resource_type.plural


def not_found(resource_type, name: str) -> ApiError:
    details = {"name": name, "kind": resource_type.plural}
    if resource_type.group:
        details["group"] = resource_type.group
    return ApiError(404, "NotFound", f'{qualified_plural(resource_type)} "{name}" not found', details)


def conflict(resource_type, name: str, why: str) -> ApiError:
    details = {"name": name, "kind": resource_type.plural}
    if resource_type.group:
        details["group"] = resource_type.group
    return ApiError(
        409, "Conflict", f'Operation cannot be fulfilled on {qualified_plural(resource_type)} "{name}": {why}', details
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


@dataclass
class WatchEvent:
    resource_version: int
    type: str  # ADDED, MODIFIED, DELETED
    type_key: tuple  # (group, plural)
    object: dict
    old_object: dict | None


def served(obj: dict, resource_type) -> dict:
    """A copy of a stored object as the requested version serves it: a CRD's versions share one schema-less
    conversion (strategy None), so only apiVersion changes."""
    out = json_copy(obj)
    if "apiVersion" in out:
        out["apiVersion"] = resource_type.api_version
    return out


def _spec_part(obj: dict, resource_type) -> dict:
    """What bumps metadata.generation: everything but metadata and status (custom kinds), or the spec."""
    if resource_type.crd:
        return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}
    return {"spec": obj.get("spec")}


class Store:
    def __init__(self, registry: resources.ResourceRegistry):
        self.registry = registry
        self._objects = {}  # (group, plural) -> {(namespace, name): object}
        self._resource_version = itertools.count(1)
        self.current_resource_version = 0
        self.history = collections.deque(maxlen=HISTORY_LENGTH)
        self.compacted_below = 0  # watches from an older resourceVersion get 410 Gone
        self._listeners = []
        # Set by the server: validate(resource_type, obj, field_validation, old) -> (obj, warnings) or raise ApiError;
        # track_update(old, new, manager) -> new with managedFields.
        self.validate = None
        self.track_update = None

    # ---- events -------------------------------------------------------------------------------------------
    def add_listener(self, callback) -> None:
        """callback(WatchEvent) is called synchronously after every change."""
        self._listeners.append(callback)

    def remove_listener(self, callback) -> None:
        if callback in self._listeners:
            self._listeners.remove(callback)

    def _next_version(self) -> int:
        self.current_resource_version = next(self._resource_version)
        return self.current_resource_version

    def _emit(self, event_type: str, resource_type, obj: dict, old: dict | None) -> None:
        event = WatchEvent(int(obj["metadata"]["resourceVersion"]), event_type, resource_type.key, obj, old)
        if len(self.history) == self.history.maxlen:
            self.compacted_below = self.history[0].resource_version + 1
        self.history.append(event)
        for listener in list(self._listeners):
            listener(event)

    def compact(self) -> None:
        """Forget every event so far, as etcd compaction does: older resourceVersions now answer 410 Gone."""
        self.compacted_below = self.current_resource_version + 1
        self.history.clear()

    # ---- reads --------------------------------------------------------------------------------------------
    def _bucket(self, resource_type) -> dict:
        return self._objects.setdefault(resource_type.key, {})

    def peek(self, resource_type, namespace: str | None, name: str) -> dict | None:
        """The stored object itself (no copy) or None; for controllers and internal checks only."""
        return self._bucket(resource_type).get((namespace or "", name))

    def get(self, resource_type, namespace: str | None, name: str) -> dict:
        obj = self.peek(resource_type, namespace, name)
        if obj is None:
            raise not_found(resource_type, name)
        return served(obj, resource_type)

    def list(self, resource_type, namespace=None, label_selector=None, field_selector=None) -> list:
        labels = selectors.parse_label_selector(label_selector) if isinstance(label_selector, str) else label_selector
        fields = selectors.parse_field_selector(field_selector) if isinstance(field_selector, str) else field_selector
        items = []
        for (item_namespace, _dummy), obj in sorted(self._bucket(resource_type).items()):
            if namespace and item_namespace != namespace:
                continue
            if labels and not selectors.labels_match(labels, obj["metadata"].get("labels")):
                continue
            if fields and not selectors.fields_match(fields, obj):
                continue
            items.append(served(obj, resource_type))
        return items

    def iter_objects(self, resource_type):
        """Stored objects without copies (controllers only; do not mutate)."""
        return list(self._bucket(resource_type).values())

    # ---- writes -------------------------------------------------------------------------------------------
    def _check_namespace(self, resource_type, namespace: str) -> None:
        if not resource_type.namespaced:
            return
        namespace_type = self.registry.lookup("", "v1", "namespaces")
        stored = self.peek(namespace_type, None, namespace)
        if stored is None:
            raise not_found(namespace_type, namespace)
        if stored["metadata"].get("deletionTimestamp"):
            raise ApiError(
                403,
                "Forbidden",
                f'{qualified_plural(resource_type)} "{{name}}" is forbidden: unable to create new content in namespace '
                f"{namespace} because it is being terminated",
                {"kind": resource_type.plural},
            )

    def create(
        self, resource_type, namespace, obj, *, dry_run=False, manager="", field_validation="Strict", keep_status=False
    ) -> tuple:
        """Returns (stored copy, warnings)."""
        obj = json_copy(obj)
        metadata = obj.setdefault("metadata", {}) or {}
        obj["metadata"] = metadata
        obj["apiVersion"] = resource_type.storage_api_version
        obj["kind"] = resource_type.kind
        if resource_type.namespaced:
            if metadata.get("namespace") and metadata["namespace"] != namespace:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            metadata["namespace"] = namespace
        else:
            metadata.pop("namespace", None)
        if not metadata.get("name") and metadata.get("generateName"):
            metadata["name"] = metadata["generateName"] + uuid.uuid4().hex[:5]
        name = metadata.get("name") or ""
        try:
            self._check_namespace(resource_type, namespace)
        except ApiError as error:
            error.message = error.message.replace("{name}", name)
            raise
        if resource_type.has_status and not keep_status:
            obj.pop("status", None)
        for key in ("resourceVersion", "uid", "creationTimestamp", "deletionTimestamp"):
            metadata.pop(key, None)
        if manager:  # ownership is recorded afresh; a server-side apply brings its own (manager == "")
            metadata.pop("managedFields", None)
        warnings = []
        if self.validate:
            obj, warnings = self.validate(resource_type, obj, field_validation, None)
            metadata = obj["metadata"]
        if self.peek(resource_type, namespace, name) is not None:
            details = {"name": name, "kind": resource_type.plural}
            if resource_type.group:
                details["group"] = resource_type.group
            raise ApiError(409, "AlreadyExists", f'{qualified_plural(resource_type)} "{name}" already exists', details)
        metadata["uid"] = str(uuid.uuid4())
        metadata["creationTimestamp"] = now_rfc3339()
        if "spec" in obj or resource_type.crd:
            metadata["generation"] = 1
        if resource_type.kind == "CustomResourceDefinition":
            obj = self._crd_with_status(obj)
        elif resource_type.kind == "Namespace":
            obj.setdefault("spec", {"finalizers": ["kubernetes"]})
            obj["status"] = {"phase": "Active"}
            metadata.setdefault("labels", {})["kubernetes.io/metadata.name"] = name
        if self.track_update and manager:
            obj = self.track_update(None, obj, manager)
        if dry_run:
            metadata["resourceVersion"] = str(self.current_resource_version)
            return served(obj, resource_type), warnings
        metadata["resourceVersion"] = str(self._next_version())
        self._bucket(resource_type)[(namespace or "", name)] = obj
        if resource_type.kind == "CustomResourceDefinition":
            self._register_crd(obj)
        self._emit("ADDED", resource_type, json_copy(obj), None)
        return served(obj, resource_type), warnings

    def update(
        self,
        resource_type,
        namespace,
        name,
        obj,
        *,
        subresource="",
        dry_run=False,
        manager="",
        field_validation="Strict",
    ) -> tuple:
        """PUT semantics (patches come here after they are applied). Returns (stored copy, warnings)."""
        stored = self.peek(resource_type, namespace, name)
        if stored is None:
            raise not_found(resource_type, name)
        obj = json_copy(obj)
        metadata = obj.get("metadata") or {}
        obj["metadata"] = metadata
        if metadata.get("name") and metadata["name"] != name:
            raise bad_request(
                f"the name of the object ({metadata['name']}) does not match the name on the URL ({name})"
            )
        requested_version = metadata.get("resourceVersion")
        if requested_version and requested_version != stored["metadata"]["resourceVersion"]:
            raise conflict(
                resource_type,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            )
        if subresource == "status":
            new = json_copy(stored)
            new["status"] = obj.get("status")
            if new["status"] is None:
                new.pop("status")
        else:
            new = obj
            new["apiVersion"] = resource_type.storage_api_version
            new["kind"] = resource_type.kind
            metadata["name"] = name
            if resource_type.namespaced:
                metadata["namespace"] = namespace
            for key in _SERVER_OWNED_META:
                if key in stored["metadata"]:
                    metadata[key] = stored["metadata"][key]
                else:
                    metadata.pop(key, None)
            if resource_type.has_status or resource_type.kind == "Namespace":
                if "status" in stored:
                    new["status"] = json_copy(stored["status"])
                else:
                    new.pop("status", None)
            if "managedFields" not in metadata and "managedFields" in stored["metadata"]:
                metadata["managedFields"] = json_copy(stored["metadata"]["managedFields"])
        warnings = []
        if self.validate:
            new, warnings = self.validate(resource_type, new, field_validation, stored)
        if resource_type.kind == "CustomResourceDefinition":
            new = self._crd_with_status(new)
        if self.track_update and manager:
            new = self.track_update(stored, new, manager)
        new["metadata"]["resourceVersion"] = stored["metadata"]["resourceVersion"]
        if _comparable(new) == _comparable(stored):
            return served(stored, resource_type), warnings  # a no-op write keeps the resourceVersion, as it does
        if _spec_part(new, resource_type) != _spec_part(stored, resource_type) and "generation" in stored["metadata"]:
            new["metadata"]["generation"] = stored["metadata"]["generation"] + 1
        if dry_run:
            return served(new, resource_type), warnings
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            self._remove(resource_type, namespace, name, new)
            return served(new, resource_type), warnings
        new["metadata"]["resourceVersion"] = str(self._next_version())
        self._bucket(resource_type)[(namespace or "", name)] = new
        if resource_type.kind == "CustomResourceDefinition":
            self._register_crd(new)
        self._emit("MODIFIED", resource_type, json_copy(new), json_copy(stored))
        return served(new, resource_type), warnings

    def delete(
        self,
        resource_type,
        namespace,
        name,
        *,
        dry_run=False,
        propagation="Background",
        preconditions=None,
        grace_period=None,
    ) -> tuple:
        """Returns (object as deleted or as now terminating, finished: bool).

        A pod on a node that has not ended is deleted gracefully, as the real server does: it gets deletionTimestamp
        and deletionGracePeriodSeconds (``grace_period``, else its terminationGracePeriodSeconds) and stays until its
        kubelet has stopped it and deletes it again with a grace period of 0."""
        stored = self.peek(resource_type, namespace, name)
        if stored is None:
            raise not_found(resource_type, name)
        preconditions = preconditions or {}
        if preconditions.get("uid") and preconditions["uid"] != stored["metadata"]["uid"]:
            raise conflict(
                resource_type,
                name,
                f"Precondition failed: UID in precondition: {preconditions['uid']}, "
                f"UID in object meta: {stored['metadata']['uid']}",
            )
        if (
            preconditions.get("resourceVersion")
            and preconditions["resourceVersion"] != stored["metadata"]["resourceVersion"]
        ):
            raise conflict(
                resource_type,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            )
        if dry_run:
            return served(stored, resource_type), True
        grace = _pod_grace(resource_type, stored, grace_period)
        if grace:
            return served(self._terminate_pod(resource_type, namespace, name, stored, grace), resource_type), False
        pending_finalizers = list(stored["metadata"].get("finalizers") or [])
        if propagation == "Foreground" and self._dependents(stored["metadata"]["uid"]):
            pending_finalizers.append("foregroundDeletion")
        if resource_type.kind == "Namespace" or pending_finalizers:
            if stored["metadata"].get("deletionTimestamp"):
                return served(stored, resource_type), False
            new = json_copy(stored)
            new["metadata"]["deletionTimestamp"] = now_rfc3339()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            if "foregroundDeletion" in pending_finalizers:
                new["metadata"]["finalizers"] = pending_finalizers
            if resource_type.kind == "Namespace":
                new["status"] = {"phase": "Terminating"}
            new["metadata"]["resourceVersion"] = str(self._next_version())
            self._bucket(resource_type)[(namespace or "", name)] = new
            self._emit("MODIFIED", resource_type, json_copy(new), json_copy(stored))
            return served(new, resource_type), False
        removed = self._remove(resource_type, namespace, name, stored, orphan=propagation == "Orphan")
        return served(removed, resource_type), True

    def _terminate_pod(self, resource_type, namespace, name, stored: dict, grace: int) -> dict:
        current = stored["metadata"].get("deletionGracePeriodSeconds")
        if current is not None and current <= grace:
            return stored
        new = json_copy(stored)
        new["metadata"]["deletionTimestamp"] = rfc3339_after(grace)
        new["metadata"]["deletionGracePeriodSeconds"] = grace
        new["metadata"]["resourceVersion"] = str(self._next_version())
        self._bucket(resource_type)[(namespace or "", name)] = new
        self._emit("MODIFIED", resource_type, json_copy(new), json_copy(stored))
        return new

    def _remove(self, resource_type, namespace, name, last: dict, orphan=False) -> dict:
        del self._bucket(resource_type)[(namespace or "", name)]
        final = json_copy(last)
        final["metadata"]["resourceVersion"] = str(self._next_version())
        self._emit("DELETED", resource_type, json_copy(final), json_copy(last))
        if resource_type.kind == "CustomResourceDefinition":
            self._unregister_crd(last)
        if not orphan:
            self._collect_dependents(last["metadata"]["uid"])
        return final

    # ---- garbage collection, namespaces, CRDs -------------------------------------------------------------
    def _dependents(self, owner_uid: str) -> list:
        found = []
        for key, bucket in self._objects.items():
            for (namespace, name), obj in list(bucket.items()):
                if any(ref.get("uid") == owner_uid for ref in obj["metadata"].get("ownerReferences") or []):
                    found.append((key, namespace, name))
        return found

    def _type_for_key(self, key: tuple):
        matches = self.registry.for_group_plural(*key)
        return matches[0] if matches else None

    def _collect_dependents(self, owner_uid: str) -> None:
        for key, namespace, name in self._dependents(owner_uid):
            resource_type = self._type_for_key(key)
            if resource_type is not None and self.peek(resource_type, namespace, name) is not None:
                self.delete(resource_type, namespace, name)

    def finish_terminations(self) -> None:
        """One pass of the namespace and garbage-collector controllers: empty terminating namespaces, finish
        foreground deletions whose dependents are gone."""
        namespace_type = self.registry.lookup("", "v1", "namespaces")
        for namespace in list(self.iter_objects(namespace_type)):
            if not namespace["metadata"].get("deletionTimestamp"):
                continue
            name = namespace["metadata"]["name"]
            remaining = 0
            for key, bucket in list(self._objects.items()):
                resource_type = self._type_for_key(key)
                if resource_type is None or not resource_type.namespaced:
                    continue
                for (item_namespace, item_name), obj in list(bucket.items()):
                    if item_namespace != name:
                        continue
                    remaining += 1
                    if not obj["metadata"].get("deletionTimestamp"):
                        self.delete(resource_type, item_namespace, item_name)
            if remaining == 0 and self.peek(namespace_type, None, name) is not None:
                self._remove(namespace_type, None, name, self.peek(namespace_type, None, name))
        for key, bucket in list(self._objects.items()):
            resource_type = self._type_for_key(key)
            for (namespace, name), obj in list(bucket.items()):
                finalizers = obj["metadata"].get("finalizers") or []
                if "foregroundDeletion" in finalizers and obj["metadata"].get("deletionTimestamp"):
                    # Foreground deletion: the dependents go first, then the owner's finalizer is removed.
                    self._collect_dependents(obj["metadata"]["uid"])
                if "foregroundDeletion" in finalizers and not self._dependents(obj["metadata"]["uid"]):
                    new = json_copy(obj)
                    new["metadata"]["finalizers"] = [f for f in finalizers if f != "foregroundDeletion"]
                    self.update(resource_type, namespace, name, new)

    @staticmethod
    def _crd_with_status(crd: dict) -> dict:
        names = (crd.get("spec") or {}).get("names") or {}
        accepted = dict(names)
        accepted.setdefault("singular", names.get("kind", "").lower())
        accepted.setdefault("listKind", names.get("kind", "") + "List")
        stamp = now_rfc3339()
        previous = {c.get("type"): c for c in (crd.get("status") or {}).get("conditions") or []}

        def condition(kind, reason, message):
            old = previous.get(kind)
            since = old["lastTransitionTime"] if old and old.get("status") == "True" else stamp
            return {"type": kind, "status": "True", "lastTransitionTime": since, "reason": reason, "message": message}

        crd["status"] = {
            "conditions": [
                condition("NamesAccepted", "NoConflicts", "no conflicts found"),
                condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
            ],
            "acceptedNames": accepted,
            "storedVersions": [v["name"] for v in (crd.get("spec") or {}).get("versions") or [] if v.get("storage")],
        }
        return crd

    def _register_crd(self, crd: dict) -> None:
        self.registry.remove_crd(crd["metadata"]["name"])
        for resource_type in resources.types_from_crd(crd):
            self.registry.add(resource_type)

    def _unregister_crd(self, crd: dict) -> None:
        for resource_type in self.registry.remove_crd(crd["metadata"]["name"]):
            for (namespace, name), obj in list(self._bucket(resource_type).items()):
                self._remove(resource_type, namespace, name, obj)
            self._objects.pop(resource_type.key, None)


def _comparable(obj: dict) -> str:
    """An object's content without the fields every write changes, to spot no-op writes."""
    trimmed = json_copy(obj)
    trimmed["metadata"].pop("managedFields", None)
    return json.dumps(trimmed, sort_keys=True)


def _pod_grace(resource_type, stored: dict, grace_period) -> int:
    """The grace period a pod's deletion gets: 0 (removed at once) unless it is on a node and has not ended."""
    if resource_type.kind != "Pod" or resource_type.group:
        return 0
    spec, status = stored.get("spec") or {}, stored.get("status") or {}
    if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
        return 0
    grace = grace_period if grace_period is not None else spec.get("terminationGracePeriodSeconds", 30)
    return max(int(grace or 0), 0)
