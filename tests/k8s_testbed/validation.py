# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Admission-time validation for the API-server emulator.

Custom resources are checked against their CRD's structural OpenAPI v3 schema the way the API server does it
(unknown-field pruning per ``fieldValidation``, defaulting, type/enum/format/bounds checks); built-in kinds are checked
against the Kubernetes JSON schemas bundled with kubernetes-validate, in strict mode. Both also apply the object
metadata rules every object has to pass. Errors come back as field errors shaped like the API server's StatusCause
entries, and ``status_for_errors`` builds the 422 Status the server answers with.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import re
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml
from referencing import Registry, Resource

from .store import api_status

K8S_SCHEMA_VERSION = "1.33.0"  # the emulator reports v1.33

CRD_DIR = Path(__file__).resolve().parent / "crds"
SCHEMA_DIR = Path(kubernetes_validate.__file__).resolve().parent / "kubernetes-json-schema"

FIELD_VALIDATION_MODES = ("Strict", "Warn", "Ignore")

REQUIRED = "FieldValueRequired"
INVALID = "FieldValueInvalid"
NOT_SUPPORTED = "FieldValueNotSupported"
TYPE_INVALID = "FieldValueTypeInvalid"
DUPLICATE = "FieldValueDuplicate"
TOO_LONG = "FieldValueTooLong"
TOO_MANY = "FieldValueTooMany"


class FieldError(dict):
    """One field error, shaped like a StatusCause: ``{"reason", "message", "field"}``."""

    def __init__(self, reason: str, field: str, message: str):
        super().__init__(reason=reason, message=message, field=field)

    def __str__(self) -> str:
        return f"{self['field']}: {self['message']}" if self["field"] else self["message"]


def _fmt(value) -> str:
    """Render a value the way Go's field errors do (strings quoted, scalars bare, the rest as JSON)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def required(field: str, detail: str = "") -> FieldError:
    return FieldError(REQUIRED, field, "Required value" + (f": {detail}" if detail else ""))


def invalid(field: str, value, detail: str) -> FieldError:
    return FieldError(INVALID, field, f"Invalid value: {_fmt(value)}: {detail}")


def type_invalid(field: str, value, detail: str) -> FieldError:
    return FieldError(TYPE_INVALID, field, f"Invalid value: {_fmt(value)}: {detail}")


def not_supported(field: str, value, supported) -> FieldError:
    allowed = ", ".join(_fmt(v) for v in supported)
    return FieldError(NOT_SUPPORTED, field, f"Unsupported value: {_fmt(value)}: supported values: {allowed}")


def too_long(field: str, limit: int) -> FieldError:
    return FieldError(TOO_LONG, field, f"Too long: may not be more than {limit} bytes")


def too_many(field: str, actual: int, limit: int) -> FieldError:
    return FieldError(TOO_MANY, field, f"Too many: {actual}: must have at most {limit} items")


def duplicate(field: str, value) -> FieldError:
    return FieldError(DUPLICATE, field, f"Duplicate value: {_fmt(value)}")


def unknown_field(field: str) -> FieldError:
    return FieldError(INVALID, field, f'unknown field "{field}"')


def is_unknown_field(error: dict) -> bool:
    """True for the errors that Strict field validation raises for fields the schema does not know."""
    return error.get("message", "").startswith('unknown field "')


def _child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _index(path: str, index: int) -> str:
    return f"{path}[{index}]"


def _mode(field_validation: str | None) -> str:
    if not field_validation:
        return "Warn"  # the server's default when the request does not say
    for mode in FIELD_VALIDATION_MODES:
        if field_validation.lower() == mode.lower():
            return mode
    raise ValueError(
        f"invalid fieldValidation {field_validation!r}: must be one of {', '.join(FIELD_VALIDATION_MODES)}"
    )


# --- object metadata --------------------------------------------------------------------------------------------

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

MSG_LABEL = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end "
    "with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
MSG_SUBDOMAIN = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start "
    "and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
MSG_DNS1035 = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, "
    "and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is "
    "'[a-z]([-a-z0-9]*[a-z0-9])?')"
)
MSG_QUALIFIED = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
    "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
MSG_LABEL_VALUE = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start "
    "and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for "
    "validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)
TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024

# Kinds whose names are DNS-1123 labels, DNS-1035 labels, or mere path segments (RBAC allows "system:foo").
LABEL_NAMED_KINDS = {"Namespace"}
DNS1035_NAMED_KINDS = {"Service"}
PATH_SEGMENT_NAMED_KINDS = {"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"}
OBJECT_META_FIELDS = {
    "annotations",
    "creationTimestamp",
    "deletionGracePeriodSeconds",
    "deletionTimestamp",
    "finalizers",
    "generateName",
    "generation",
    "labels",
    "managedFields",
    "name",
    "namespace",
    "ownerReferences",
    "resourceVersion",
    "selfLink",
    "uid",
}


def _checked_name_msgs(value: str, limit: int, pattern: re.Pattern, message: str) -> list:
    """What apimachinery's name validators say: too long, and not matching the name pattern."""
    msgs = []
    if len(value) > limit:
        msgs.append(f"must be no more than {limit} characters")
    if not pattern.match(value):
        msgs.append(message)
    return msgs


def _dns_label_msgs(value: str) -> list:
    return _checked_name_msgs(value, 63, DNS1123_LABEL, MSG_LABEL)


def _dns1035_msgs(value: str) -> list:
    return _checked_name_msgs(value, 63, DNS1035_LABEL, MSG_DNS1035)


def _subdomain_msgs(value: str) -> list:
    return _checked_name_msgs(value, 253, DNS1123_SUBDOMAIN, MSG_SUBDOMAIN)


def _path_segment_msgs(value: str) -> list:
    if value in (".", ".."):
        return [f"may not be '{value}'"]
    return [f"may not contain '{ch}'" for ch in ("/", "%") if ch in value]


def _qualified_name_msgs(value: str) -> list:
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
        msgs = []
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            msgs = ["prefix part must be non-empty"]
        else:
            msgs = ["prefix part " + m for m in _subdomain_msgs(prefix)]
    else:
        return [
            "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with "
            "an alphanumeric character, with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        msgs.append("name part must be non-empty")
    elif len(name) > 63:
        msgs.append("name part must be no more than 63 characters")
    if name and not QUALIFIED_NAME.match(name):
        msgs.append(MSG_QUALIFIED)
    return msgs


def _name_msgs(kind: str, name: str, prefix: bool = False) -> list:
    if prefix and name.endswith("-"):  # a generateName prefix may end in a dash
        name = name[:-1]
    if kind in PATH_SEGMENT_NAMED_KINDS:
        return _path_segment_msgs(name)
    if kind in LABEL_NAMED_KINDS:
        return _dns_label_msgs(name)
    if kind in DNS1035_NAMED_KINDS:
        return _dns1035_msgs(name)
    return _subdomain_msgs(name)


def validate_object_meta(obj: dict, kind: str | None = None) -> list:
    """The metadata rules the API server applies to every object (name, namespace, labels, annotations)."""
    kind = kind or (obj.get("kind") if isinstance(obj, dict) else "") or ""
    errors: list = []
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        actual = _json_type(meta)
        return [type_invalid("metadata", actual, f'metadata in body must be of type object: "{actual}"')]
    name = meta.get("name")
    generate_name = meta.get("generateName")
    if not name and not generate_name:
        errors.append(required("metadata.name", "name or generateName is required"))
    if name:
        if not isinstance(name, str):
            errors.append(invalid("metadata.name", name, "must be a string"))
        else:
            errors.extend(invalid("metadata.name", name, msg) for msg in _name_msgs(kind, name))
    if generate_name and not name:
        if not isinstance(generate_name, str):
            errors.append(invalid("metadata.generateName", generate_name, "must be a string"))
        else:
            errors.extend(
                invalid("metadata.generateName", generate_name, msg)
                for msg in _name_msgs(kind, generate_name, prefix=True)
            )
    namespace = meta.get("namespace")
    if namespace:
        if not isinstance(namespace, str):
            errors.append(invalid("metadata.namespace", namespace, "must be a string"))
        else:
            errors.extend(invalid("metadata.namespace", namespace, msg) for msg in _dns_label_msgs(namespace))
    labels = meta.get("labels")
    if isinstance(labels, dict):
        for key, value in labels.items():
            errors.extend(invalid("metadata.labels", key, msg) for msg in _qualified_name_msgs(str(key)))
            if not isinstance(value, str):
                continue  # the schema check reports the type
            if len(value) > 63:
                errors.append(invalid("metadata.labels", value, "must be no more than 63 characters"))
            if not LABEL_VALUE.match(value):
                errors.append(invalid("metadata.labels", value, MSG_LABEL_VALUE))
    annotations = meta.get("annotations")
    if isinstance(annotations, dict):
        total = 0
        for key, value in annotations.items():
            errors.extend(invalid("metadata.annotations", key, msg) for msg in _qualified_name_msgs(str(key).lower()))
            total += len(str(key)) + (len(value) if isinstance(value, str) else 0)
        if total > TOTAL_ANNOTATION_SIZE_LIMIT:
            errors.append(too_long("metadata.annotations", TOTAL_ANNOTATION_SIZE_LIMIT))
    return errors


# --- custom resources: structural schema validation -----------------------------------------------------------

_TYPE_NAMES = (
    (bool, "boolean"),
    (int, "integer"),
    (float, "number"),
    (str, "string"),
    (list, "array"),
    (dict, "object"),
)
_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_REGEX_CACHE: dict = {}


def _json_type(value) -> str:
    if value is None:
        return "null"
    for py_type, name in _TYPE_NAMES:
        if isinstance(value, py_type):
            return name
    return type(value).__name__


def _has_type(value, expected: str) -> bool:
    if expected == "object":
        return isinstance(value, dict)
    if expected == "array":
        return isinstance(value, list)
    if expected == "string":
        return isinstance(value, str)
    if expected == "boolean":
        return isinstance(value, bool)
    if expected == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if expected == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return True


def _regex(pattern: str):
    compiled = _REGEX_CACHE.get(pattern)
    if compiled is None:
        compiled = _REGEX_CACHE[pattern] = re.compile(pattern)
    return compiled


class _Walk:
    def __init__(self, mode: str):
        self.mode = mode
        self.errors: list = []
        self.unknown: list = []

    def visit(self, value, schema: dict, path: str, root: bool = False):
        if value is None:
            if schema.get("nullable") or schema.get("x-kubernetes-preserve-unknown-fields") and "type" not in schema:
                return None
            expected = schema.get("type") or ("integer,string" if schema.get("x-kubernetes-int-or-string") else "")
            if expected:
                self.errors.append(type_invalid(path, "null", f'{path} in body must be of type {expected}: "null"'))
            return None
        if schema.get("x-kubernetes-int-or-string"):
            if not _has_type(value, "integer") and not isinstance(value, str):
                actual = _json_type(value)
                self.errors.append(
                    type_invalid(path, actual, f'{path} in body must be of type integer,string: "{actual}"')
                )
                return value
            if isinstance(value, str):
                self._string(value, schema, path)
            else:
                self._number(value, schema, path)
            return value
        expected = schema.get("type")
        if expected and not _has_type(value, expected):
            actual = _json_type(value)
            self.errors.append(type_invalid(path, actual, f'{path} in body must be of type {expected}: "{actual}"'))
            return value
        if "enum" in schema and value not in schema["enum"]:
            self.errors.append(not_supported(path, value, schema["enum"]))
        if isinstance(value, dict):
            return self._object(value, schema, path, root)
        if isinstance(value, list):
            return self._array(value, schema, path)
        if isinstance(value, str):
            self._string(value, schema, path)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            self._number(value, schema, path)
        return value

    def _string(self, value: str, schema: dict, path: str) -> None:
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            self.errors.append(too_long(path, schema["maxLength"]))
        if "minLength" in schema and len(value) < schema["minLength"]:
            self.errors.append(
                invalid(path, value, f"{path} in body should be at least {schema['minLength']} chars long")
            )
        if "pattern" in schema and not _regex(schema["pattern"]).search(value):
            self.errors.append(invalid(path, value, f"{path} in body should match '{schema['pattern']}'"))
        if schema.get("format") == "date-time" and not _DATE_TIME.match(value):
            self.errors.append(invalid(path, value, f"{path} in body must be of type date-time: {_fmt(value)}"))

    def _number(self, value, schema: dict, path: str) -> None:
        fmt = schema.get("format")
        bounds = _INT32 if fmt == "int32" else _INT64 if fmt == "int64" else None
        if bounds and isinstance(value, int) and not bounds[0] <= value <= bounds[1]:
            self.errors.append(invalid(path, value, f'{path} in body must be of type {fmt}: "{value}"'))
        if "minimum" in schema:
            low = schema["minimum"]
            if schema.get("exclusiveMinimum") and value <= low:
                self.errors.append(invalid(path, value, f"{path} in body should be greater than {low}"))
            elif value < low:
                self.errors.append(invalid(path, value, f"{path} in body should be greater than or equal to {low}"))
        if "maximum" in schema:
            high = schema["maximum"]
            if schema.get("exclusiveMaximum") and value >= high:
                self.errors.append(invalid(path, value, f"{path} in body should be less than {high}"))
            elif value > high:
                self.errors.append(invalid(path, value, f"{path} in body should be less than or equal to {high}"))
        if schema.get("multipleOf") and value % schema["multipleOf"]:
            self.errors.append(invalid(path, value, f"{path} in body should be a multiple of {schema['multipleOf']}"))

    def _array(self, value: list, schema: dict, path: str) -> list:
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            self.errors.append(too_many(path, len(value), schema["maxItems"]))
        if "minItems" in schema and len(value) < schema["minItems"]:
            self.errors.append(
                invalid(path, len(value), f"{path} in body should have at least {schema['minItems']} items")
            )
        items = schema.get("items")
        out = [self.visit(item, items, _index(path, i)) for i, item in enumerate(value)] if items else list(value)
        list_type = schema.get("x-kubernetes-list-type")
        if list_type == "set":
            seen: list = []
            for i, item in enumerate(out):
                if item in seen:
                    self.errors.append(duplicate(_index(path, i), item))
                seen.append(item)
        elif list_type == "map" and schema.get("x-kubernetes-list-map-keys"):
            keys = schema["x-kubernetes-list-map-keys"]
            seen_keys: set = set()
            for i, item in enumerate(out):
                if not isinstance(item, dict):
                    continue
                key = tuple(json.dumps(item.get(k), sort_keys=True) for k in keys)
                if key in seen_keys:
                    self.errors.append(duplicate(_index(path, i), {k: item.get(k) for k in keys if k in item}))
                seen_keys.add(key)
        return out

    def _object(self, value: dict, schema: dict, path: str, root: bool) -> dict:
        props = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        preserve = schema.get("x-kubernetes-preserve-unknown-fields", False)
        embedded = schema.get("x-kubernetes-embedded-resource", False)
        out: dict = {}
        for key, item in value.items():
            field = _child(path, key)
            if key in props:
                sub = props[key]
                if item is None and not sub.get("nullable"):
                    continue  # pruned like the server does; a default may fill it in below
                if root and key == "metadata":
                    out[key] = self._root_metadata(item)
                    continue
                out[key] = self.visit(item, sub, field)
            elif isinstance(additional, dict):
                out[key] = self.visit(item, additional, field)
            elif additional is True or preserve:
                out[key] = item
            elif (root or embedded) and key in ("apiVersion", "kind", "metadata"):
                out[key] = self._root_metadata(item) if key == "metadata" and root else item
            else:
                self.unknown.append(field)
        for key, sub in props.items():
            if key not in out and "default" in sub:
                out[key] = self.visit(copy.deepcopy(sub["default"]), sub, _child(path, key))
        for key in schema.get("required") or ():
            if key not in out:
                self.errors.append(required(_child(path, key)))
        if embedded:
            for key in ("apiVersion", "kind"):
                if not out.get(key):
                    self.errors.append(required(_child(path, key), "must not be empty"))
        if "maxProperties" in schema and len(out) > schema["maxProperties"]:
            self.errors.append(
                invalid(path, len(out), f"{path} in body should have at most {schema['maxProperties']} properties")
            )
        if "minProperties" in schema and len(out) < schema["minProperties"]:
            self.errors.append(
                invalid(path, len(out), f"{path} in body should have at least {schema['minProperties']} properties")
            )
        return out

    def _root_metadata(self, meta):
        if not isinstance(meta, dict):
            actual = _json_type(meta)
            self.errors.append(type_invalid("metadata", actual, f'metadata in body must be of type object: "{actual}"'))
            return meta
        out = {}
        for key, item in meta.items():
            if key in OBJECT_META_FIELDS:
                out[key] = item
            else:
                self.unknown.append(_child("metadata", key))
        return out


def validate_custom_resource(obj: dict, schema: dict, field_validation: str = "Strict") -> tuple:
    """Validate a custom resource against its CRD version's ``openAPIV3Schema``.

    Returns ``(object, errors, warnings)``: the object after pruning and defaulting, the field errors, and the warning
    strings (unknown fields under ``Warn``). Under ``Strict`` an unknown field is an error (see
    :func:`is_unknown_field`); under ``Warn`` and ``Ignore`` it is dropped.
    """
    mode = _mode(field_validation)
    walk = _Walk(mode)
    if not isinstance(obj, dict):
        actual = _json_type(obj)
        return obj, [type_invalid("", actual, f'body must be of type object: "{actual}"')], []
    result = walk.visit(copy.deepcopy(obj), schema or {"type": "object"}, "", root=True)
    errors = validate_object_meta(obj, obj.get("kind")) + walk.errors
    warnings: list = []
    if mode == "Strict":
        errors = [unknown_field(path) for path in walk.unknown] + errors
    elif mode == "Warn":
        warnings = [f'unknown field "{path}"' for path in walk.unknown]
    return result, errors, warnings


# --- built-in kinds: kubernetes-validate's JSON schemas ---------------------------------------------------------

_SCHEMA_SUBDIR = f"v{K8S_SCHEMA_VERSION}-local-strict"
_REGISTRY: list = []
_VALIDATORS: dict = {}


def _registry() -> Registry:
    if not _REGISTRY:
        with open(SCHEMA_DIR / _SCHEMA_SUBDIR / "_definitions.json", encoding="utf-8") as handle:
            definitions = json.load(handle)
        _REGISTRY.append(Resource.from_contents(definitions) @ Registry())
    return _REGISTRY[0]


def _schema_file(api_version: str, kind: str) -> Path:
    # kubernetes-validate names its files <kind>-<group's first label>-<version>.json, or <kind>-<version>.json for core
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    return SCHEMA_DIR / _SCHEMA_SUBDIR / f"{kind.lower()}-{group_version}.json"


def builtin_validator(api_version: str, kind: str):
    """The compiled JSON schema validator for a built-in kind, or None when kubernetes-validate has no schema."""
    key = (api_version, kind)
    if key not in _VALIDATORS:
        path = _schema_file(api_version, kind)
        validator = None
        if path.is_file():
            with open(path, encoding="utf-8") as handle:
                schema = json.load(handle)
            validator = jsonschema.Draft202012Validator(schema, registry=_registry())
        _VALIDATORS[key] = validator
    return _VALIDATORS[key]


def _field_path(parts) -> str:
    path = ""
    for part in parts:
        path = _index(path, part) if isinstance(part, int) else _child(path, str(part))
    return path


def _schema_type(schema: dict) -> str:
    kind = schema.get("type") if isinstance(schema, dict) else None
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "")
    return kind or ""


def _convert_error(error: jsonschema.ValidationError, unknown: list) -> list:
    path = _field_path(error.absolute_path)
    validator = error.validator
    if validator == "required":
        match = re.match(r"^'(.+)' is a required property$", error.message)
        name = match.group(1) if match else str(error.message)
        return [required(_child(path, name))]
    if validator == "additionalProperties" and error.validator_value is False and isinstance(error.instance, dict):
        known = set((error.schema or {}).get("properties") or {})
        unknown.extend(_child(path, key) for key in error.instance if key not in known)
        return []
    if validator == "type":
        expected = _schema_type(error.schema) or str(error.validator_value)
        actual = _json_type(error.instance)
        return [type_invalid(path, actual, f'{path} in body must be of type {expected}: "{actual}"')]
    if validator == "oneOf":  # IntOrString and Quantity
        kinds = [_schema_type(sub) for sub in error.validator_value if isinstance(sub, dict)]
        actual = _json_type(error.instance)
        expected = ",".join(k for k in kinds if k)
        return [type_invalid(path, actual, f'{path} in body must be of type {expected}: "{actual}"')]
    if validator == "enum":
        return [not_supported(path, error.instance, error.validator_value)]
    return [invalid(path, error.instance, error.message)]


def _prune(obj, path_parts: list) -> None:
    *parents, last = path_parts
    node = obj
    for part in parents:
        node = node[part]
    node.pop(last, None)


def validate_builtin(obj: dict, field_validation: str = "Strict", *, prune: bool = False) -> tuple:
    """Validate a built-in kind against the Kubernetes JSON schema for ``K8S_SCHEMA_VERSION``, strictly.

    Returns ``(errors, warnings)``. Unknown fields are errors under ``Strict``, warnings under ``Warn`` and silent
    under ``Ignore``; with ``prune=True`` they are also removed from ``obj`` in place (as the server drops them)
    unless the mode is Strict. Kinds without a bundled schema only get the metadata checks.
    """
    mode = _mode(field_validation)
    if not isinstance(obj, dict):
        actual = _json_type(obj)
        return [type_invalid("", actual, f'body must be of type object: "{actual}"')], []
    errors = validate_object_meta(obj, obj.get("kind"))
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str) or not api_version or not kind:
        return errors, []
    validator = builtin_validator(api_version, kind)
    if validator is None:
        return errors, []
    unknown_parts: list = []
    unknown: list = []
    for error in validator.iter_errors(obj):
        before = len(unknown)
        errors.extend(_convert_error(error, unknown))
        if prune and len(unknown) > before:
            parent = list(error.absolute_path)
            known = set((error.schema or {}).get("properties") or {})
            unknown_parts.extend([*parent, key] for key in error.instance if key not in known)
    unknown.sort()
    if kind == "NetworkPolicy" and api_version == "networking.k8s.io/v1" and not errors:
        errors.extend(validate_network_policy(obj))
    warnings: list = []
    if mode == "Strict":
        errors = [unknown_field(path) for path in unknown] + errors
    else:
        if mode == "Warn":
            warnings = [f'unknown field "{path}"' for path in unknown]
        for parts in unknown_parts:
            _prune(obj, parts)
    return _dedupe(errors), warnings


# --- NetworkPolicy: the semantic rules the schema cannot say (Kubernetes v1.33, ValidateNetworkPolicy) -----------

_PROTOCOLS = ("TCP", "UDP", "SCTP")
_POLICY_TYPES = ("Ingress", "Egress")
_SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
_IANA_SVC_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


def _label_selector_errors(selector, path: str) -> list:
    if not isinstance(selector, dict):
        return []
    errors = []
    for key, value in (selector.get("matchLabels") or {}).items():
        errors.extend(invalid(_child(path, "matchLabels"), key, msg) for msg in _qualified_name_msgs(str(key)))
        if isinstance(value, str) and (len(value) > 63 or not LABEL_VALUE.match(value)):
            errors.append(invalid(_child(path, "matchLabels"), value, MSG_LABEL_VALUE))
    for index, expression in enumerate(selector.get("matchExpressions") or []):
        where = _index(_child(path, "matchExpressions"), index)
        operator, values = expression.get("operator"), expression.get("values") or []
        if operator not in _SELECTOR_OPERATORS:
            errors.append(not_supported(_child(where, "operator"), operator, _SELECTOR_OPERATORS))
        elif operator in ("In", "NotIn") and not values:
            errors.append(required(_child(where, "values"), "must be specified when `operator` is 'In' or 'NotIn'"))
        elif operator in ("Exists", "DoesNotExist") and values:
            errors.append(
                FieldError(
                    "FieldValueForbidden",
                    _child(where, "values"),
                    "Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                )
            )
        key = str(expression.get("key") or "")
        errors.extend(invalid(_child(where, "key"), key, msg) for msg in _qualified_name_msgs(key))
    return errors


def _port_errors(port, path: str) -> list:
    errors = []
    protocol = port.get("protocol", "TCP")
    if protocol not in _PROTOCOLS:
        errors.append(not_supported(_child(path, "protocol"), protocol, _PROTOCOLS))
    number, end = port.get("port"), port.get("endPort")
    if isinstance(number, int) and not isinstance(number, bool):
        if not 1 <= number <= 65535:
            errors.append(invalid(_child(path, "port"), number, "must be between 1 and 65535, inclusive"))
    elif isinstance(number, str):
        if len(number) > 15:
            errors.append(invalid(_child(path, "port"), number, "must be no more than 15 characters"))
        if not _IANA_SVC_NAME.match(number) or "--" in number or not re.search("[a-z]", number):
            errors.append(
                invalid(
                    _child(path, "port"),
                    number,
                    "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-), at least one letter, "
                    "no two adjacent hyphens, and not start or end with a hyphen",
                )
            )
    if end is not None:
        field = _child(path, "endPort")
        if number is None:
            errors.append(invalid(field, end, "may not be specified when `port` is not specified"))
        elif isinstance(number, str):
            errors.append(invalid(field, end, "may not be specified when `port` is non-numeric"))
        elif isinstance(end, int) and isinstance(number, int) and end < number:
            errors.append(invalid(field, end, "must be greater than or equal to `port`"))
        if isinstance(end, int) and not 1 <= end <= 65535:
            errors.append(invalid(field, end, "must be between 1 and 65535, inclusive"))
    return errors


def _network(cidr):
    try:
        return ipaddress.ip_network(str(cidr), strict=False) if "/" in str(cidr) else None
    except ValueError:
        return None


def _peer_errors(peer, path: str) -> list:
    if not isinstance(peer, dict):
        return []
    given = [key for key in ("podSelector", "namespaceSelector", "ipBlock") if peer.get(key) is not None]
    if not given:
        return [required(path, "must specify a peer")]
    if "ipBlock" in given and len(given) > 1:
        return [FieldError("FieldValueForbidden", path, "Forbidden: may not specify both ipBlock and another peer")]
    errors = []
    for key in ("podSelector", "namespaceSelector"):
        errors.extend(_label_selector_errors(peer.get(key), _child(path, key)))
    block = peer.get("ipBlock")
    if isinstance(block, dict):
        where = _child(path, "ipBlock")
        cidr = block.get("cidr")
        network = _network(cidr)
        if not cidr:
            errors.append(required(_child(where, "cidr")))
        elif network is None:
            errors.append(
                invalid(_child(where, "cidr"), cidr, "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)")
            )
        for index, excepted in enumerate(block.get("except") or []):
            field = _index(_child(where, "except"), index)
            inner = _network(excepted)
            if inner is None:
                errors.append(
                    invalid(field, excepted, "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)")
                )
            elif network is not None and (
                inner.version != network.version or not inner.subnet_of(network) or inner == network
            ):
                errors.append(invalid(field, excepted, "must be a strict subset of `cidr`"))
    return errors


def validate_network_policy(obj: dict) -> list:
    """The field errors the API server gives a networking.k8s.io/v1 NetworkPolicy beyond its schema."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return []
    errors = _label_selector_errors(spec.get("podSelector"), "spec.podSelector")
    for direction, peers in (("ingress", "from"), ("egress", "to")):
        for index, rule in enumerate(spec.get(direction) or []):
            if not isinstance(rule, dict):
                continue
            where = _index(_child("spec", direction), index)
            for number, port in enumerate(rule.get("ports") or []):
                if isinstance(port, dict):
                    errors.extend(_port_errors(port, _index(_child(where, "ports"), number)))
            for number, peer in enumerate(rule.get(peers) or []):
                errors.extend(_peer_errors(peer, _index(_child(where, peers), number)))
    types = spec.get("policyTypes") or []
    for index, kind in enumerate(types):
        if kind not in _POLICY_TYPES:
            errors.append(not_supported(_index("spec.policyTypes", index), kind, _POLICY_TYPES))
    if len(types) > 2:
        errors.append(invalid("spec.policyTypes", types, "may not specify more than two policyTypes"))
    return errors


def _dedupe(errors: list) -> list:
    seen = set()
    out = []
    for error in errors:
        key = (error["reason"], error["field"], error["message"])
        if key not in seen:
            seen.add(key)
            out.append(error)
    return out


# --- Status objects -----------------------------------------------------------------------------------------------


def status_for_errors(kind: str, name: str, group: str, errors: list) -> dict:
    """The 422 Invalid Status the API server answers with for ``errors``."""
    qualified = f"{kind}.{group}" if group else kind
    texts = []
    for error in errors:
        text = f"{error['field']}: {error['message']}" if error.get("field") else error["message"]
        if text not in texts:
            texts.append(text)
    aggregate = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    details: dict = {"name": name, "kind": kind}
    if group:
        details["group"] = group
    details["causes"] = [{"reason": e["reason"], "message": e["message"], "field": e.get("field", "")} for e in errors]
    return api_status(422, "Invalid", f'{qualified} "{name}" is invalid: {aggregate}', details)


def status_for_unknown_fields(kind: str, version: str, errors: list) -> dict:
    """The 400 BadRequest Status a real server answers with when Strict field validation finds unknown fields."""
    fields = ", ".join(e["message"] for e in errors if is_unknown_field(e))
    message = f'{kind} in version "{version}" cannot be handled as a {kind}: strict decoding error: {fields}'
    return api_status(400, "BadRequest", message)


# --- bundled CRDs -----------------------------------------------------------------------------------------------


def load_crd(path: str) -> dict:
    """Read one CustomResourceDefinition YAML file."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(path, encoding="utf-8") as handle:
        return yaml.load(handle, Loader=loader)  # a safe loader; the C one when libyaml is there


def crd_files() -> list:
    """The bundled CRD files: KubeRay's RayCluster/RayJob/RayService and the GPU operator's ClusterPolicy."""
    return sorted(str(path) for path in CRD_DIR.glob("*.yaml"))


def crd_schema(crd: dict, version: str = "v1") -> dict:
    """The ``openAPIV3Schema`` of one version of a CRD."""
    for entry in crd["spec"]["versions"]:
        if entry["name"] == version:
            return entry["schema"]["openAPIV3Schema"]
    raise KeyError(f"{crd['metadata']['name']} has no version {version}")
