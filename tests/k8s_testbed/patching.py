# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Patch arithmetic for the emulated API server: JSON patch, merge patch, strategic merge patch, server-side apply.

Everything here is a pure function over JSON-shaped values (dicts, lists, scalars); inputs are never mutated,
except that ``record_update_ownership`` writes ``metadata.managedFields`` into the object it is handed. The only
I/O is reading the OpenAPI definitions bundled with kubernetes-validate once, to learn how each list field merges.

Field ownership uses a set of paths. A path is a tuple of FieldsV1 elements: ``"f:<field>"`` for a map key,
``"k:<json of key fields>"`` for an item of an associative list and ``"v:<json>"`` for an item of a set. A path in
the set means its manager owns that field; the nested FieldsV1 form is produced only when writing managedFields.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re

SCHEMA_DIRECTORY = "v1.33.0-local-strict"

PATCH_DIRECTIVE = "$patch"
RETAIN_KEYS_DIRECTIVE = "$retainKeys"
SET_ELEMENT_ORDER_PREFIX = "$setElementOrder/"
DELETE_FROM_PRIMITIVE_LIST_PREFIX = "$deleteFromPrimitiveList/"

# Metadata the server owns: never taken from an apply configuration, never tracked as a manager's field.
SERVER_MANAGED_METADATA = (
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
    "managedFields",
)
# Identity fields: part of every request, so the real server does not record them as anyone's field.
UNTRACKED_METADATA = ("name", "namespace", *SERVER_MANAGED_METADATA)

# The real server defaults list-map key fields before computing ownership; ports are the case that matters.
DEFAULT_KEY_VALUES = {"protocol": "TCP"}

_MISSING = object()  # marks an absent value, distinct from JSON null
_DELETED = object()  # what a map merge returns when `$patch: delete` removes the map itself
_ARRAY_INDEX = re.compile(r"0|[1-9][0-9]*")


class PatchError(Exception):
    """A patch that cannot be applied. .code is the HTTP status to answer (422 by default, 409 for conflicts,
    400 for malformed)."""

    def __init__(self, message, code=422, causes=None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.causes = list(causes) if causes else []


# --------------------------------------------------------------------------------------------------------------------
# Shared JSON helpers


def _json_equal(left, right) -> bool:
    """Equality as JSON sees it: true is not 1, while 1 and 1.0 are the same number."""
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    if isinstance(left, (int, float)) and isinstance(right, (int, float)):
        return left == right
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(_json_equal(left[key], right[key]) for key in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(_json_equal(a, b) for a, b in zip(left, right))
    return type(left) is type(right) and left == right


def _contains(items: list, value) -> bool:
    return any(_json_equal(item, value) for item in items)


def _compact_json(value) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _without_nulls(value):
    """A copy of `value` whose maps have no null entries (null means "not set" in the patch formats here)."""
    if isinstance(value, dict):
        return {key: _without_nulls(child) for key, child in value.items() if child is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value


# --------------------------------------------------------------------------------------------------------------------
# OpenAPI definitions


@functools.lru_cache(maxsize=1)
def _definitions() -> dict:
    import kubernetes_validate  # imported here: only the package directory is needed, and only on first use

    path = os.path.join(
        os.path.dirname(kubernetes_validate.__file__), "kubernetes-json-schema", SCHEMA_DIRECTORY, "_definitions.json"
    )
    with open(path, encoding="utf-8") as handle:
        document = json.load(handle)
    return document.get("$defs") or document.get("definitions") or {}


@functools.lru_cache(maxsize=1)
def _definitions_by_group_version_kind() -> dict:
    index = {}
    for name, schema in _definitions().items():
        for gvk in schema.get("x-kubernetes-group-version-kind") or ():
            group, version = gvk.get("group", ""), gvk.get("version", "")
            api_version = f"{group}/{version}" if group else version
            index.setdefault((api_version, gvk.get("kind", "")), name)
    return index


def definition_for(api_version: str, kind: str) -> str | None:
    """The OpenAPI definition name for a built-in type, e.g. ("apps/v1", "Deployment"); None when unknown."""
    return _definitions_by_group_version_kind().get((api_version, kind))


def _definition_schema(definition: str | None) -> dict | None:
    return _definitions().get(definition) if definition else None


def _resolve(schema) -> dict | None:
    """Follow `$ref`s to the schema that has the properties."""
    for _dummy in range(32):  # a bound, in case a definition ever refers to itself
        if not isinstance(schema, dict) or "$ref" not in schema:
            break
        schema = _definitions().get(schema["$ref"].rsplit("/", 1)[-1])
    return schema if isinstance(schema, dict) else None


def _field_schema(schema, key: str) -> dict | None:
    """The schema of property `key`, unresolved: list markers such as x-kubernetes-patch-strategy sit on it."""
    resolved = _resolve(schema)
    if resolved is None:
        return None
    properties = resolved.get("properties") or {}
    if key in properties:
        return properties[key]
    extra = resolved.get("additionalProperties")
    return extra if isinstance(extra, dict) else None


def _items_schema(schema) -> dict | None:
    items = schema.get("items") if isinstance(schema, dict) else None
    return items if isinstance(items, dict) else None


def _patch_strategies(schema) -> set:
    if not isinstance(schema, dict):
        return set()
    return {part.strip() for part in schema.get("x-kubernetes-patch-strategy", "").split(",") if part.strip()}


def _list_kind(schema) -> tuple:
    """How server-side apply treats a list: ("map", key fields), ("set", []) or ("atomic", [])."""
    if not isinstance(schema, dict):
        return "atomic", []
    list_type = schema.get("x-kubernetes-list-type")
    map_keys = schema.get("x-kubernetes-list-map-keys")
    if list_type == "map" and map_keys:
        return "map", list(map_keys)
    if list_type in ("set", "atomic"):
        return list_type, []
    if "merge" in _patch_strategies(schema):
        merge_key = schema.get("x-kubernetes-patch-merge-key")
        return ("map", [merge_key]) if merge_key else ("set", [])
    return "atomic", []


def _is_atomic_map(schema) -> bool:
    if not isinstance(schema, dict):
        return False
    resolved = _resolve(schema) or {}
    return "atomic" in (schema.get("x-kubernetes-map-type"), resolved.get("x-kubernetes-map-type"))


# --------------------------------------------------------------------------------------------------------------------
# JSON patch (RFC 6902)


def _pointer_tokens(pointer) -> list:
    if not isinstance(pointer, str) or (pointer and not pointer.startswith("/")):
        raise PatchError(f"invalid JSON pointer {pointer!r}", code=400)
    if pointer == "":
        return []
    # ~1 first, then ~0, so that "~01" decodes to "~1" and not "/"
    return [token.replace("~1", "/").replace("~0", "~") for token in pointer[1:].split("/")]


def _array_index(token: str, length: int, allow_end: bool, pointer: str) -> int:
    if allow_end and token == "-":
        return length
    if not _ARRAY_INDEX.fullmatch(token):
        raise PatchError(f"invalid array index {token!r} in {pointer!r}")
    index = int(token)
    if index > length or (index == length and not allow_end):
        raise PatchError(f"array index {index} out of range in {pointer!r}")
    return index


def _pointer_get(document, tokens: list, pointer: str):
    value = document
    for token in tokens:
        if isinstance(value, dict):
            if token not in value:
                raise PatchError(f"path {pointer!r} does not exist")
            value = value[token]
        elif isinstance(value, list):
            value = value[_array_index(token, len(value), False, pointer)]
        else:
            raise PatchError(f"path {pointer!r} does not exist")
    return value


def _pointer_add(document, tokens: list, value, pointer: str):
    if not tokens:
        return value
    parent = _pointer_get(document, tokens[:-1], pointer)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_array_index(last, len(parent), True, pointer), value)
    else:
        raise PatchError(f"cannot add at {pointer!r}: parent is not an object or array")
    return document


def _pointer_remove(document, tokens: list, pointer: str):
    if not tokens:
        raise PatchError("cannot remove the whole document")
    parent = _pointer_get(document, tokens[:-1], pointer)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"path {pointer!r} does not exist")
        del parent[last]
    elif isinstance(parent, list):
        del parent[_array_index(last, len(parent), False, pointer)]
    else:
        raise PatchError(f"path {pointer!r} does not exist")
    return document


def _operation_field(operation: dict, name: str):
    if name not in operation:
        raise PatchError(f"{operation.get('op')!r} operation is missing {name!r}", code=400)
    return operation[name]


def _apply_operation(document, operation):
    if not isinstance(operation, dict) or not isinstance(operation.get("op"), str):
        raise PatchError(f"malformed JSON patch operation {operation!r}", code=400)
    op = operation["op"]
    pointer = _operation_field(operation, "path")
    tokens = _pointer_tokens(pointer)
    if op == "add":
        return _pointer_add(document, tokens, copy.deepcopy(_operation_field(operation, "value")), pointer)
    if op == "remove":
        return _pointer_remove(document, tokens, pointer)
    if op == "replace":
        value = copy.deepcopy(_operation_field(operation, "value"))
        _pointer_get(document, tokens, pointer)  # replace requires the target to exist
        if not tokens:
            return value
        return _pointer_add(_pointer_remove(document, tokens, pointer), tokens, value, pointer)
    if op in ("move", "copy"):
        source = _operation_field(operation, "from")
        source_tokens = _pointer_tokens(source)
        value = copy.deepcopy(_pointer_get(document, source_tokens, source))
        if op == "move":
            if tokens[: len(source_tokens)] == source_tokens and len(tokens) > len(source_tokens):
                raise PatchError(f"cannot move {source!r} into its own child {pointer!r}")
            if tokens == source_tokens:
                return document
            document = _pointer_remove(document, source_tokens, source)
        return _pointer_add(document, tokens, value, pointer)
    if op == "test":
        expected = _operation_field(operation, "value")
        if not _json_equal(_pointer_get(document, tokens, pointer), expected):
            raise PatchError(f"test failed: value at {pointer!r} is not {json.dumps(expected)}")
        return document
    raise PatchError(f"unknown JSON patch operation {op!r}", code=400)


def apply_json_patch(document: dict, operations: list) -> dict:
    """Apply an RFC 6902 JSON patch to a copy of `document`; operations apply in order, all or nothing."""
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be an array of operations", code=400)
    result = copy.deepcopy(document)
    for operation in operations:
        result = _apply_operation(result, operation)
    return result


# --------------------------------------------------------------------------------------------------------------------
# JSON merge patch (RFC 7386)


def _merge_patch_value(target, patch):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch_value(result.get(key), value)
    return result


def apply_merge_patch(document: dict, patch: dict) -> dict:
    """Apply an RFC 7386 merge patch: maps merge, null deletes, anything else (lists included) replaces."""
    return _merge_patch_value(document, patch)


# --------------------------------------------------------------------------------------------------------------------
# Strategic merge patch


def _is_directive_key(key: str) -> bool:
    return key in (PATCH_DIRECTIVE, RETAIN_KEYS_DIRECTIVE) or key.startswith(
        (SET_ELEMENT_ORDER_PREFIX, DELETE_FROM_PRIMITIVE_LIST_PREFIX)
    )


def _smp_map(original: dict, patch: dict, schema):
    """Merge `patch` into `original` (a private copy, changed in place); _DELETED when the patch deletes the map."""
    directive = patch.get(PATCH_DIRECTIVE)
    if directive == "delete":
        return _DELETED
    if directive == "replace":
        return _smp_map({}, {key: value for key, value in patch.items() if key != PATCH_DIRECTIVE}, schema)
    if directive not in (None, "merge"):
        raise PatchError(f"unknown strategic merge patch directive {PATCH_DIRECTIVE}: {directive!r}", code=400)

    retained = patch.get(RETAIN_KEYS_DIRECTIVE)
    if retained is not None:
        if not isinstance(retained, list):
            raise PatchError(f"{RETAIN_KEYS_DIRECTIVE} must be a list of field names", code=400)
        for key in [key for key in original if key not in retained]:
            del original[key]

    for field, values in _list_directives(patch, DELETE_FROM_PRIMITIVE_LIST_PREFIX):
        if isinstance(original.get(field), list):
            original[field] = [item for item in original[field] if not _contains(values, item)]

    for key, value in patch.items():
        if _is_directive_key(key):
            continue
        if value is None:
            original.pop(key, None)
            continue
        merged = _smp_value(original.get(key, _MISSING), value, _field_schema(schema, key))
        if merged is _DELETED:
            original.pop(key, None)
        else:
            original[key] = merged

    for field, order in _list_directives(patch, SET_ELEMENT_ORDER_PREFIX):
        if isinstance(original.get(field), list):
            field_schema = _field_schema(schema, field) or {}
            original[field] = _apply_element_order(
                original[field], order, field_schema.get("x-kubernetes-patch-merge-key")
            )
    return original


def _list_directives(patch: dict, prefix: str):
    """(field, list) for each ``<prefix>/<field>`` directive of a patch map, refusing a value that is no list."""
    for key, values in patch.items():
        if key.startswith(prefix):
            if not isinstance(values, list):
                raise PatchError(f"{key} must be a list", code=400)
            yield key[len(prefix) :], values


def _smp_value(original, patch, schema):
    if isinstance(patch, dict):
        replace = "replace" in _patch_strategies(schema)
        return _smp_map(original if isinstance(original, dict) and not replace else {}, patch, schema)
    if isinstance(patch, list):
        return _smp_list(original if isinstance(original, list) else [], patch, schema)
    return copy.deepcopy(patch)


def _smp_item(item, item_schema):
    """A patch list item taken as new content: directives inside it still apply, against nothing."""
    return _smp_map({}, item, item_schema) if isinstance(item, dict) else copy.deepcopy(item)


def _smp_list(original: list, patch: list, schema) -> list:
    item_schema = _items_schema(schema)
    replace_marker = {PATCH_DIRECTIVE: "replace"}
    if "merge" not in _patch_strategies(schema):
        # Without a merge strategy (or without a schema at all) the patch list replaces the original.
        items = [_smp_item(item, item_schema) for item in patch if not _json_equal(item, replace_marker)]
        return [item for item in items if item is not _DELETED]

    merge_key = schema.get("x-kubernetes-patch-merge-key")
    if merge_key is None:
        return _smp_primitive_list(original, patch, replace_marker)

    replace = False
    result = list(original)
    additions = []
    for item in patch:
        if not isinstance(item, dict):
            raise PatchError(f"list item {json.dumps(item)} is not an object with merge key {merge_key!r}")
        directive = item.get(PATCH_DIRECTIVE)
        if directive == "replace":
            replace = True
            continue
        if directive == "delete":
            if merge_key not in item:
                raise PatchError(f"{PATCH_DIRECTIVE}: delete item does not contain the merge key {merge_key!r}")
            result = [entry for entry in result if not _same_merge_key(entry, item, merge_key)]
            continue
        if directive not in (None, "merge"):
            raise PatchError(f"unknown strategic merge patch directive {PATCH_DIRECTIVE}: {directive!r}", code=400)
        body = {key: value for key, value in item.items() if key != PATCH_DIRECTIVE}
        if merge_key not in body:
            raise PatchError(f"list item {json.dumps(body)} does not contain the merge key {merge_key!r}")
        additions.append(body)

    if replace:
        return [_smp_map({}, body, item_schema) for body in additions]
    for body in additions:
        position = next((i for i, entry in enumerate(result) if _same_merge_key(entry, body, merge_key)), None)
        if position is None:
            result.append(_smp_map({}, body, item_schema))
        else:
            result[position] = _smp_map(copy.deepcopy(result[position]), body, item_schema)
    return result


def _smp_primitive_list(original: list, patch: list, replace_marker: dict) -> list:
    """Lists of primitives with strategy merge are unions: original order first, then new values."""
    if _contains(patch, replace_marker):
        return [copy.deepcopy(item) for item in patch if not _json_equal(item, replace_marker)]
    result = list(original)
    for item in patch:
        if not _contains(result, item):
            result.append(copy.deepcopy(item))
    return result


def _same_merge_key(entry, item: dict, merge_key: str) -> bool:
    return isinstance(entry, dict) and merge_key in entry and _json_equal(entry[merge_key], item[merge_key])


def _apply_element_order(items: list, order: list, merge_key: str | None) -> list:
    """Reorder the items named in `order` into that order; items it does not name keep their places."""

    def identity(value):
        return value.get(merge_key) if merge_key and isinstance(value, dict) else value

    wanted = [identity(entry) for entry in order]

    def rank(item):
        return next(i for i, value in enumerate(wanted) if _json_equal(value, identity(item)))

    slots = [i for i, item in enumerate(items) if _contains(wanted, identity(item))]
    ordered = sorted((items[i] for i in slots), key=rank)
    result = list(items)
    for slot, item in zip(slots, ordered):
        result[slot] = item
    return result


def apply_strategic_merge_patch(document: dict, patch: dict, definition: str | None) -> dict:
    """Apply a Kubernetes strategic merge patch to a copy of `document`.

    `definition` names the OpenAPI definition of the object's type; its list markers decide which lists merge by
    key. With no definition every list is replaced, as a merge patch would.
    """
    if not isinstance(patch, dict):
        raise PatchError("a strategic merge patch must be a JSON object", code=400)
    original = copy.deepcopy(document) if isinstance(document, dict) else {}
    merged = _smp_map(original, patch, _definition_schema(definition))
    return {} if merged is _DELETED else merged


# --------------------------------------------------------------------------------------------------------------------
# Field sets


def _item_key_values(item: dict, key_fields: list) -> dict:
    values = {}
    for field in key_fields:
        if field in item:
            values[field] = item[field]
        elif field in DEFAULT_KEY_VALUES:
            values[field] = DEFAULT_KEY_VALUES[field]
    return values


def _item_element(item: dict, key_fields: list) -> str:
    return "k:" + _compact_json(_item_key_values(item, key_fields))


def _collect_fields(value, schema, prefix: tuple, out: set) -> None:
    if isinstance(value, dict) and not _is_atomic_map(schema):
        if not value and prefix:
            out.add(prefix)
        for key, child in value.items():
            _collect_fields(child, _field_schema(schema, key), (*prefix, "f:" + key), out)
        return
    if isinstance(value, list) and value:
        kind, key_fields = _list_kind(schema)
        if kind == "set":
            out.update((*prefix, "v:" + _compact_json(item)) for item in value)
            return
        if kind == "map" and all(isinstance(item, dict) for item in value):
            item_schema = _items_schema(schema)
            for item in value:
                item_path = (*prefix, _item_element(item, key_fields))
                out.add(item_path)
                _collect_fields(item, item_schema, item_path, out)
            return
    if prefix:
        out.add(prefix)  # scalars, atomic lists and maps, empty lists: owned as a whole


def _tracked_part(obj: dict) -> dict:
    """The part of an object that managers own: no apiVersion/kind, status, or identity and server metadata."""
    tracked = {key: value for key, value in obj.items() if key not in ("apiVersion", "kind", "status", "metadata")}
    metadata = {key: value for key, value in (obj.get("metadata") or {}).items() if key not in UNTRACKED_METADATA}
    if metadata:
        tracked["metadata"] = metadata
    return tracked


def _object_fields(obj: dict | None, schema) -> set:
    out = set()
    if obj:
        _collect_fields(_tracked_part(obj), schema, (), out)
    return out


def _to_fields_v1(paths: set) -> dict:
    tree = {}
    for path in paths:
        node = tree
        for element in path:
            node = node.setdefault(element, {})
    for path in paths:
        node = tree
        for element in path:
            node = node[element]
        if node and "." not in node:
            node["."] = {}  # an owned node that also has owned children marks itself with "."
    return _sorted_tree(tree)


def _sorted_tree(tree: dict) -> dict:
    return {key: _sorted_tree(tree[key]) for key in sorted(tree)}


def _from_fields_v1(tree, prefix: tuple = ()) -> set:
    out = set()
    for element, child in (tree or {}).items():
        if element == ".":
            out.add(prefix)
        elif isinstance(child, dict) and child:
            out |= _from_fields_v1(child, (*prefix, element))
        else:
            out.add((*prefix, element))
    return out


def _prefixes(paths: set) -> set:
    return {path[:length] for path in paths for length in range(1, len(path) + 1)}


def _matches_element(item, element: str) -> bool:
    target = json.loads(element[2:])
    if element.startswith("v:"):
        return _json_equal(item, target)
    return isinstance(item, dict) and _json_equal(_item_key_values(item, list(target)), target)


def _child(value, element: str):
    if element.startswith("f:"):
        return value.get(element[2:], _MISSING) if isinstance(value, dict) else _MISSING
    if isinstance(value, list) and element[:2] in ("k:", "v:"):
        return next((item for item in value if _matches_element(item, element)), _MISSING)
    return _MISSING


def _value_at(obj, path: tuple):
    value = obj
    for element in path:
        value = _child(value, element)
        if value is _MISSING:
            break
    return value


def _remove_field(obj: dict, path: tuple) -> None:
    parent = _value_at(obj, path[:-1])
    last = path[-1]
    if last.startswith("f:") and isinstance(parent, dict):
        parent.pop(last[2:], None)
    elif isinstance(parent, list):
        parent[:] = [item for item in parent if not _matches_element(item, last)]


def _render_path(path: tuple) -> str:
    """A path the way the real server prints it in conflict messages: .spec.containers[name="vllm"].image"""
    parts = []
    for element in path:
        kind, payload = element[:2], element[2:]
        if kind == "f:":
            parts.append("." + payload)
        elif kind == "k:":
            keys = json.loads(payload)
            parts.append("[" + ",".join(f"{key}={json.dumps(value)}" for key, value in keys.items()) + "]")
        else:
            parts.append("[=" + payload + "]")
    return "".join(parts)


# --------------------------------------------------------------------------------------------------------------------
# Managed fields


def _load_ownership(obj: dict | None) -> list:
    """[entry, paths] pairs for each managedFields entry of `obj` (entries are private copies)."""
    entries = ((obj or {}).get("metadata") or {}).get("managedFields") or []
    return [[copy.deepcopy(entry), _from_fields_v1(entry.get("fieldsV1"))] for entry in entries]


def _dump_ownership(ownership: list) -> list:
    entries = []
    for entry, paths in ownership:
        if paths:
            entry["fieldsType"] = "FieldsV1"
            entry["fieldsV1"] = _to_fields_v1(paths)
            entries.append(entry)
    return entries


def _new_entry(manager: str, operation: str, api_version, now: str) -> dict:
    entry = {"manager": manager, "operation": operation, "apiVersion": api_version}
    if now:
        entry["time"] = now
    return entry


def _set_managed_fields(obj: dict, ownership: list) -> None:
    metadata = obj.setdefault("metadata", {})
    entries = _dump_ownership(ownership)
    if entries:
        metadata["managedFields"] = entries
    else:
        metadata.pop("managedFields", None)


def _describe_manager(entry: dict) -> str:
    described = json.dumps(entry.get("manager", ""))
    if entry.get("operation") == "Update" and entry.get("apiVersion"):
        described += f" using {entry['apiVersion']}"
    return described


def _conflict_error(conflicts: list) -> PatchError:
    """conflicts: (entry, path) pairs. The message follows the real server's wording."""
    causes = [
        {"reason": "FieldManagerConflict", "message": f"conflict with {_describe_manager(e)}", "field": _render_path(p)}
        for e, p in conflicts
    ]
    count = len(causes)
    if count == 1:
        detail = f"{causes[0]['message']}: {causes[0]['field']}"
    else:
        by_manager = {}
        for entry, path in conflicts:
            by_manager.setdefault(_describe_manager(entry), []).append(_render_path(path))
        detail = "\n".join(
            f"conflicts with {who}:" + "".join(f"\n- {field}" for field in fields) for who, fields in by_manager.items()
        )
    return PatchError(f"Apply failed with {count} conflict{'s' if count != 1 else ''}: {detail}", 409, causes)


def _ssa_merge(live, applied, schema):
    """Merge an apply configuration into the live value: maps by key, associative lists by key, sets by value."""
    if isinstance(applied, dict) and isinstance(live, dict) and not _is_atomic_map(schema):
        result = dict(live)
        for key, value in applied.items():
            result[key] = _ssa_merge(live.get(key, _MISSING), value, _field_schema(schema, key))
        return result
    if isinstance(applied, list) and isinstance(live, list):
        kind, key_fields = _list_kind(schema)
        if kind == "set":
            return list(live) + [copy.deepcopy(item) for item in applied if not _contains(live, item)]
        if kind == "map" and all(isinstance(item, dict) for item in applied):
            item_schema = _items_schema(schema)
            result = list(live)
            for item in applied:
                element = _item_element(item, key_fields)
                position = next((i for i, entry in enumerate(result) if _matches_element(entry, element)), None)
                if position is None:
                    result.append(copy.deepcopy(item))
                else:
                    result[position] = _ssa_merge(result[position], item, item_schema)
            return result
    return copy.deepcopy(applied)


def _is_leaf_value(path: tuple) -> bool:
    # List-item paths only say an item exists; there is no value of their own to disagree about.
    return not path[-1].startswith(("k:", "v:"))


def server_side_apply(
    live: dict | None,
    applied: dict,
    manager: str,
    force: bool = False,
    definition: str | None = None,
    now: str = "",
) -> dict:
    """Server-side apply of the configuration `applied` by `manager` onto `live` (None to create).

    Returns the new object with metadata.managedFields updated. Raises PatchError(409) when the configuration sets
    a field another manager owns to a different value, unless `force` moves that field to `manager`.
    """
    if not isinstance(applied, dict):
        raise PatchError("an apply configuration must be a JSON object", code=400)
    if not manager:
        raise PatchError("apply requires a field manager", code=400)
    schema = _definition_schema(definition)
    config = _without_nulls(copy.deepcopy(applied))
    config.pop("status", None)  # the main resource ignores status, as it does for types with a status subresource
    config_metadata = config.get("metadata")
    if isinstance(config_metadata, dict):
        for key in SERVER_MANAGED_METADATA:
            config_metadata.pop(key, None)

    result = copy.deepcopy(live) if live else {}
    ownership = _load_ownership(live)
    applied_fields = _object_fields(config, schema)
    own_entry = next((pair for pair in ownership if pair[0].get("manager") == manager and _is_apply(pair[0])), None)
    previously_applied = own_entry[1] if own_entry else set()
    others = [pair for pair in ownership if pair[0].get("manager") != manager]

    conflicts = []
    for entry, paths in others:
        for path in sorted(applied_fields & paths):
            if not _is_leaf_value(path):
                continue
            current = _value_at(result, path)
            if current is not _MISSING and not _json_equal(current, _value_at(config, path)):
                conflicts.append((entry, path))
    if conflicts and not force:
        raise _conflict_error(conflicts)
    for entry, path in conflicts:
        next(pair for pair in others if pair[0] is entry)[1].discard(path)

    # Fields this manager applied before and leaves out now go away, unless someone else still owns them.
    owned_by_others = _prefixes(set().union(*(pair[1] for pair in ownership if pair is not own_entry)))
    # Parents first: once an item's key fields are gone, the item could no longer be found by its key.
    for path in sorted(previously_applied - applied_fields - owned_by_others, key=len):
        _remove_field(result, path)

    result = _ssa_merge(result, config, schema)
    new_entry = _new_entry(manager, "Apply", config.get("apiVersion", result.get("apiVersion")), now)
    if own_entry:
        own_entry[0], own_entry[1] = new_entry, applied_fields
    else:
        ownership.append([new_entry, applied_fields])
    _set_managed_fields(result, ownership)
    return result


def _is_apply(entry: dict) -> bool:
    return entry.get("operation") == "Apply"


def record_update_ownership(old: dict | None, new: dict, manager: str, now: str = "") -> dict:
    """Record an ordinary write (create, PUT, patch) by `manager` in new.metadata.managedFields.

    The manager's "Update" entry gains the fields this write changed; other managers lose them, as with the real
    server, so that a later apply by someone else conflicts on them. Fields the write removed leave every entry.
    `new` is changed in place and returned. List handling follows the schema of new's apiVersion/kind when it is a
    built-in type.
    """
    schema = _definition_schema(definition_for(new.get("apiVersion", ""), new.get("kind", "")))
    new_metadata = new.get("metadata") or {}
    # A write that carries managedFields sets them (an empty list clears them); one that leaves them out keeps them.
    base = new if new_metadata.get("managedFields") is not None else old
    ownership = _load_ownership(base)

    old_fields = _object_fields(old, schema)
    new_fields = _object_fields(new, schema)
    changed = {
        path
        for path in new_fields
        if _value_at(old, path) is _MISSING
        or (_is_leaf_value(path) and not _json_equal(_value_at(old, path), _value_at(new, path)))
    }
    removed = old_fields - new_fields

    own = None
    for pair in ownership:
        entry, paths = pair
        if entry.get("manager") == manager and entry.get("operation") == "Update":
            own = pair
            paths -= removed
        else:
            paths -= changed | removed
    if changed:
        entry = _new_entry(manager, "Update", new.get("apiVersion"), now)
        if own:
            entry = {**own[0], **entry}
            own[0], own[1] = entry, own[1] | changed
        else:
            ownership.append([entry, changed])
    _set_managed_fields(new, ownership)
    return new
