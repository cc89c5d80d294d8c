# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A container's environment as the kubelet builds it, and the downward API values it draws on.

Used by ``exec`` (the command gets the container's environment) and by the runtime (the container's process, and
downwardAPI volume files).
"""

from __future__ import annotations

import base64
import math
import re
from typing import Any, Callable, Dict, List, Optional

from .quantity import parse_quantity

# Used by resourceFieldRef for limits a container does not set (kubelet falls back to node allocatable).
NODE_ALLOCATABLE = {"cpu": "8", "memory": "32Gi", "ephemeral-storage": "100Gi"}


class EnvResolutionError(ValueError):
    """A non-optional env source is missing (the kubelet reports CreateContainerConfigError with this message)."""


_VAR_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_SUBSCRIPT = re.compile(r"^(metadata\.(?:labels|annotations))\['(.*)'\]$")


def expand_vars(value: str, mapping: Dict[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: known names are replaced, unknown ones stay, ``$$`` is a literal ``$``."""
    out: List[str] = []
    i = 0
    n = len(value)
    while i < n:
        ch = value[i]
        if ch == "$" and i + 1 < n:
            nxt = value[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = value.find(")", i + 2)
                if end == -1:
                    out.append(value[i:])
                    break
                name = value[i + 2 : end]
                if name in mapping:
                    out.append(mapping[name])
                else:
                    out.append(value[i : end + 1])
                i = end + 1
                continue
        out.append(ch)
        i += 1
    return "".join(out)


def resource_value(pod: Dict[str, Any], container: Dict[str, Any], ref: Dict[str, Any]) -> str:
    target = container
    wanted = ref.get("containerName")
    if wanted:
        for candidate in (pod.get("spec") or {}).get("containers") or []:
            if candidate.get("name") == wanted:
                target = candidate
                break
    resource = ref.get("resource", "")
    kind, dummy, name = resource.partition(".")
    resources = target.get("resources") or {}
    limits = resources.get("limits") or {}
    requests = resources.get("requests") or {}
    if kind == "limits":
        raw = limits.get(name, NODE_ALLOCATABLE.get(name, "0"))
    elif kind == "requests":
        raw = requests.get(name, limits.get(name, "0"))
    else:
        raise EnvResolutionError("unsupported container resource : %s" % resource)
    divisor = parse_quantity(ref.get("divisor") or "1") or 1
    return str(math.ceil(parse_quantity(raw) / divisor))


def field_value(pod: Dict[str, Any], path: str) -> str:
    metadata = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    match = _SUBSCRIPT.match(path)
    if match:
        bucket = metadata.get("labels" if match.group(1).endswith("labels") else "annotations") or {}
        return str(bucket.get(match.group(2), ""))
    simple = {
        "metadata.name": metadata.get("name"),
        "metadata.namespace": metadata.get("namespace"),
        "metadata.uid": metadata.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.podIP": status.get("podIP"),
        "status.hostIP": status.get("hostIP"),
    }
    if path in simple:
        return str(simple[path] or "")
    if path in ("status.podIPs", "status.hostIPs"):
        entries = status.get(path.split(".", 1)[1]) or []
        return ",".join(str(e.get("ip", "")) for e in entries if isinstance(e, dict))
    if path == "metadata.labels":
        return "\n".join('%s="%s"' % (k, v) for k, v in sorted((metadata.get("labels") or {}).items()))
    if path == "metadata.annotations":
        return "\n".join('%s="%s"' % (k, v) for k, v in sorted((metadata.get("annotations") or {}).items()))
    raise EnvResolutionError("unsupported fieldPath: %s" % path)


def object_data(kind: str, obj: Dict[str, Any]) -> Dict[str, str]:
    if kind == "Secret":
        data = {k: base64.b64decode(v or "").decode("utf-8", "replace") for k, v in (obj.get("data") or {}).items()}
        data.update({k: str(v) for k, v in (obj.get("stringData") or {}).items()})
        return data
    data = {k: str(v) for k, v in (obj.get("data") or {}).items()}
    for key, value in (obj.get("binaryData") or {}).items():
        data.setdefault(key, base64.b64decode(value or "").decode("utf-8", "replace"))
    return data


def _key_ref(
    kind: str, namespace: str, ref: Dict[str, Any], lookup: Callable[[str, str, str], Optional[Dict[str, Any]]]
) -> Optional[str]:
    name = ref.get("name", "")
    optional = bool(ref.get("optional"))
    obj = lookup(kind, namespace, name)
    if obj is None:
        if optional:
            return None
        raise EnvResolutionError('%s "%s" not found' % (kind.lower(), name))
    data = object_data(kind, obj)
    key = ref.get("key", "")
    if key not in data:
        if optional:
            return None
        raise EnvResolutionError("couldn't find key %s in %s %s/%s" % (key, kind, namespace, name))
    return data[key]


def container_environment(
    pod: Dict[str, Any], container: Dict[str, Any], lookup: Callable[[str, str, str], Optional[Dict[str, Any]]]
) -> Dict[str, str]:
    """The environment the kubelet would give ``container`` of ``pod``.

    ``lookup(kind, namespace, name)`` returns the stored ``Secret``/``ConfigMap`` (or None). ``envFrom`` is
    applied first, then ``env`` in order (later entries win); ``$(VAR)`` in ``env[].value`` expands from what is
    already defined. ``HOSTNAME`` is the pod's hostname. Service-link variables are not produced. A missing
    non-optional source raises :class:`EnvResolutionError` carrying the kubelet's message.
    """
    metadata = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    namespace = metadata.get("namespace") or "default"
    result: Dict[str, str] = {"HOSTNAME": str(spec.get("hostname") or metadata.get("name") or "")[:63]}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix") or ""
        if source.get("configMapRef") is not None:
            kind, ref = "ConfigMap", source["configMapRef"]
        elif source.get("secretRef") is not None:
            kind, ref = "Secret", source["secretRef"]
        else:
            continue
        obj = lookup(kind, namespace, ref.get("name", ""))
        if obj is None:
            if ref.get("optional"):
                continue
            raise EnvResolutionError('%s "%s" not found' % (kind.lower(), ref.get("name", "")))
        for key, value in object_data(kind, obj).items():
            name = prefix + key
            if _VAR_NAME.match(name):  # the kubelet skips invalid names (and records an event)
                result[name] = value
    for entry in container.get("env") or []:
        name = entry.get("name")
        if not name:
            continue
        value_from = entry.get("valueFrom")
        if value_from:
            if value_from.get("fieldRef"):
                value: Optional[str] = field_value(pod, value_from["fieldRef"].get("fieldPath", ""))
            elif value_from.get("resourceFieldRef"):
                value = resource_value(pod, container, value_from["resourceFieldRef"])
            elif value_from.get("secretKeyRef"):
                value = _key_ref("Secret", namespace, value_from["secretKeyRef"], lookup)
            elif value_from.get("configMapKeyRef"):
                value = _key_ref("ConfigMap", namespace, value_from["configMapKeyRef"], lookup)
            else:
                value = None
            if value is None:
                continue
        else:
            value = expand_vars(str(entry.get("value", "")), result)
        result[name] = value
    return result
