# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The canonical field list of a CustomResourceDefinition: what the CRD equality test hashes.

One line per fact, sorted, descriptions left out:

- ``<crd name> - crd {every key of the spec but its versions}`` (group, names, scope, ...)
- ``<crd name> <version> version {every key of the version but its schema}`` (served, storage, deprecated,
  deprecationWarning, subresources, additionalPrinterColumns)
- ``<crd name> <version> <path> {every keyword of the schema node}`` for every node of its openAPIV3Schema:
  type, format, required, enum, default, nullable, bounds, patterns, anyOf, x-kubernetes-* ... The path is
  ``.spec.workerGroupSpecs[].template.spec.containers[].ports[].containerPort``: ``.name`` for a property, ``[]``
  for ``items``, ``{}`` for ``additionalProperties``; the root is ``.``.

Values are JSON with sorted keys; ``description`` is dropped at every level. Run it on a CRD to print its list::

    python tests/k8s_testbed/crds/crd_fields.py ray.io_rayclusters.yaml      # or - for stdin
    python tests/k8s_testbed/crds/crd_fields.py --sha256 ray.io_rayclusters.yaml
"""

from __future__ import annotations

import hashlib
import json
import sys

import yaml

# Keywords that hold sub-schemas the walk descends into, and what each adds to the path.
_CHILDREN = {"properties": None, "items": "[]", "additionalProperties": "{}"}


def _strip_descriptions(value):
    if isinstance(value, dict):
        return {k: _strip_descriptions(v) for k, v in value.items() if k != "description"}
    if isinstance(value, list):
        return [_strip_descriptions(v) for v in value]
    return value


def _dump(value) -> str:
    return json.dumps(_strip_descriptions(value), sort_keys=True, separators=(",", ":"))


def _join(path: str, step: str) -> str:
    """The root is ``.``; a property right below it is ``.name``, not ``..name``."""
    return step if path == "." and step.startswith(".") else path + step


def schema_lines(schema: dict, path: str = ".") -> list:
    """``<path> <keywords>`` for a schema node and, depth first, every node below it."""
    own = {k: v for k, v in schema.items() if k not in _CHILDREN and k != "description"}
    for key in ("items", "additionalProperties"):  # a boolean additionalProperties is a keyword, not a child
        if key in schema and not isinstance(schema[key], dict):
            own[key] = schema[key]
    lines = [f"{path} {_dump(own)}"]
    for name, child in sorted((schema.get("properties") or {}).items()):
        lines += schema_lines(child, _join(path, "." + name))
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            lines += schema_lines(schema[key], _join(path, _CHILDREN[key]))
    return lines


def crd_lines(crd: dict) -> list:
    """The sorted canonical field list of one CRD."""
    name = crd["metadata"]["name"]
    spec = crd["spec"]
    lines = [f"{name} - crd " + _dump({k: v for k, v in spec.items() if k != "versions"})]
    for version in spec.get("versions") or []:
        prefix = f"{name} {version['name']}"
        rest = {k: v for k, v in version.items() if k not in ("name", "schema")}
        lines.append(f"{prefix} version {_dump(rest)}")
        schema = (version.get("schema") or {}).get("openAPIV3Schema") or {}
        lines += [f"{prefix} {line}" for line in schema_lines(schema)]
    return sorted(lines)


def canonical_text(crd: dict) -> str:
    return "\n".join(crd_lines(crd)) + "\n"


def canonical_sha256(crd: dict) -> str:
    return hashlib.sha256(canonical_text(crd).encode("utf-8")).hexdigest()


def load_crd(text: str) -> dict:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    documents = [d for d in yaml.load_all(text, Loader=loader) if isinstance(d, dict)]
    return next(d for d in documents if d.get("kind") == "CustomResourceDefinition")


def main(argv: list) -> int:
    want_hash = "--sha256" in argv
    paths = [a for a in argv if a != "--sha256"] or ["-"]
    for path in paths:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        crd = load_crd(text)
        sys.stdout.write(canonical_sha256(crd) + "\n" if want_hash else canonical_text(crd))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
