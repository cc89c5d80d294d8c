# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Image definitions: ``images/<name>/local*.yaml``, one local image (and its variants) each.

    reference: localhost/llmops/example:1.0       # the image's full reference
    base:                                         # layer 0, one of:
      debootstrap: {suite: bookworm, variant: minbase, packages: [python3, ca-certificates]}
      rootfs: some/dir                            # a directory copied as is (relative to this file; tests)
    inputs:                                       # files hashed with the definition, read-only under /src
      install.sh: install.sh                      #   /src/<name>: <path relative to this file>
    steps:                                        # one layer each, run by /bin/sh -ec as root in a chroot
      - {name: tools, run: bash /src/install.sh}
    config:                                       # the OCI config's "config" object, as is
      Env: [PATH=/usr/local/bin:/usr/bin:/bin]    #   (Entrypoint, Cmd, Env, WorkingDir, User, Labels)
    variants:                                     # more references, each an image of the first layers
      - {reference: localhost/llmops/example:1.0-lite, last_step: tools, labels: {a.label: null}}

The definition hash covers the file, every input and the builder's format version; an image is rebuilt when its
stored hash differs. A layer is reused from the layer cache when what made it is unchanged: the base spec (for a
debootstrap base, its suite, variant and packages), then each step's name, command, the inputs and the config's
Env it ran with, on top of the layers below it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from .store import image_ref

BUILDER_FORMAT = 1  # bump when the builder makes different layers from the same definition
CONFIG_KEYS = ("Entrypoint", "Cmd", "Env", "WorkingDir", "User", "Labels", "ExposedPorts", "StopSignal")
STEP_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class DefinitionError(ValueError):
    pass


@dataclass(frozen=True)
class Step:
    name: str
    run: str


@dataclass(frozen=True)
class Variant:
    reference: str
    last_step: str
    labels: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Definition:
    path: Path
    reference: str
    base: dict  # {"debootstrap": {...}} or {"rootfs": absolute dir}
    inputs: dict  # name under /src -> absolute host path
    steps: tuple
    config: dict
    variants: tuple
    hash: str

    def references(self) -> list:
        return [self.reference, *(variant.reference for variant in self.variants)]

    def step_count(self, reference: str) -> int:
        """How many steps the image ``reference`` has (all of them, or up to its variant's last step)."""
        for variant in self.variants:
            if variant.reference == reference:
                return [step.name for step in self.steps].index(variant.last_step) + 1
        return len(self.steps)

    def image_config(self, reference: str) -> dict:
        """The OCI config of ``reference``: a variant's labels added to the image's (a null one removes it)."""
        config = json.loads(json.dumps(self.config))
        for variant in self.variants:
            if variant.reference == reference and variant.labels:
                labels = dict(config.get("Labels") or {}, **variant.labels)
                config["Labels"] = {name: value for name, value in labels.items() if value is not None}
        return config

    def base_key(self) -> str:
        return _sha256_json({"builder": BUILDER_FORMAT, "base": self.base, "rootfs": _rootfs_fingerprint(self.base)})

    def step_key(self, below: str, step: Step) -> str:
        """The layer cache key of ``step`` run on the layers whose key is ``below``."""
        inputs = {name: _file_sha256(path) for name, path in self.inputs.items()}
        what = {"below": below, "name": step.name, "run": step.run, "inputs": inputs, "env": self.config.get("Env")}
        return _sha256_json(what)

    def layer_keys(self) -> list:
        """The cache keys of every layer of the full image, bottom first."""
        keys = [self.base_key()]
        for step in self.steps:
            keys.append(self.step_key(keys[-1], step))
        return keys


def load_definition(path) -> Definition:
    path = Path(path).absolute()
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise DefinitionError(f"{path}: cannot read the image definition: {error}") from error
    if not isinstance(document, dict):
        raise DefinitionError(f"{path}: expected a mapping (reference, base, steps ...), got {type(document).__name__}")
    unknown = set(document) - {"reference", "base", "inputs", "steps", "config", "variants"}
    if unknown:
        raise DefinitionError(f"{path}: unknown keys {sorted(unknown)}; the format is in {__file__}")
    steps = tuple(_step(path, item) for item in document.get("steps") or [])
    inputs = {name: str((path.parent / source).resolve()) for name, source in (document.get("inputs") or {}).items()}
    _check_inputs(path, inputs)
    definition = Definition(
        path=path,
        reference=image_ref(_required(path, document, "reference")),
        base=_base(path, _required(path, document, "base")),
        inputs=inputs,
        steps=steps,
        config=_config(path, document.get("config") or {}),
        variants=tuple(_variant(path, item, steps) for item in document.get("variants") or []),
        hash="",
    )
    return _with_hash(definition)


def _required(path: Path, document: dict, key: str):
    if not document.get(key):
        raise DefinitionError(f"{path}: '{key}' is required")
    return document[key]


def _step(path: Path, item) -> Step:
    if not isinstance(item, dict) or set(item) != {"name", "run"}:
        raise DefinitionError(f"{path}: a step is {{name, run}}, got {item!r}")
    if not STEP_NAME.match(str(item["name"])):
        raise DefinitionError(f"{path}: step name {item['name']!r} must match {STEP_NAME.pattern}")
    return Step(str(item["name"]), str(item["run"]))


def _base(path: Path, base) -> dict:
    if not isinstance(base, dict) or len(base) != 1 or next(iter(base)) not in ("debootstrap", "rootfs"):
        raise DefinitionError(f"{path}: base is {{debootstrap: {{suite, variant, packages}}}} or {{rootfs: DIR}}")
    if "rootfs" in base:
        rootfs = (path.parent / base["rootfs"]).resolve()
        if not rootfs.is_dir():
            raise DefinitionError(f"{path}: the base rootfs {rootfs} is not a directory")
        return {"rootfs": str(rootfs)}
    spec = base["debootstrap"]
    if not spec.get("suite"):
        raise DefinitionError(f"{path}: base.debootstrap.suite is required (a Debian suite such as bookworm)")
    packages = sorted({str(package) for package in spec.get("packages") or []})
    return {"debootstrap": {"suite": spec["suite"], "variant": spec.get("variant", "minbase"), "packages": packages}}


def _check_inputs(path: Path, inputs: dict) -> None:
    for name, source in inputs.items():
        if "/" in name or name in ("", ".", ".."):
            raise DefinitionError(f"{path}: input name {name!r} must be a plain file name (it shows as /src/<name>)")
        if not os.path.isfile(source):
            raise DefinitionError(f"{path}: input {name} -> {source} is not a file")


def _config(path: Path, config: dict) -> dict:
    unknown = set(config) - set(CONFIG_KEYS)
    if unknown:
        raise DefinitionError(f"{path}: config keys {sorted(unknown)} are not OCI config keys {list(CONFIG_KEYS)}")
    config = dict(config)
    config.setdefault("Env", [DEFAULT_PATH])
    return config


def _variant(path: Path, item, steps: tuple) -> Variant:
    if not isinstance(item, dict) or not {"reference", "last_step"} <= set(item) <= {
        "reference",
        "last_step",
        "labels",
    }:
        raise DefinitionError(f"{path}: a variant is {{reference, last_step[, labels]}}, got {item!r}")
    names = [step.name for step in steps]
    if item["last_step"] not in names:
        raise DefinitionError(f"{path}: variant {item['reference']}: last_step {item['last_step']!r} is not in {names}")
    return Variant(image_ref(item["reference"]), item["last_step"], dict(item.get("labels") or {}))


def _with_hash(definition: Definition) -> Definition:
    what = {
        "builder": BUILDER_FORMAT,
        "definition": _file_sha256(definition.path),
        "inputs": {name: _file_sha256(path) for name, path in sorted(definition.inputs.items())},
        "rootfs": _rootfs_fingerprint(definition.base),
    }
    return replace(definition, hash="sha256:" + _sha256_json(what))


def _rootfs_fingerprint(base: dict) -> list:
    """For a rootfs base: every entry's name, size and mtime, so a changed directory makes a new image."""
    if "rootfs" not in base:
        return []
    root = base["rootfs"]
    entries = []
    for folder, dirs, files in os.walk(root):
        for name in sorted(dirs + files):
            status = os.lstat(os.path.join(folder, name))
            entries.append([os.path.relpath(os.path.join(folder, name), root), status.st_size, status.st_mtime_ns])
    return sorted(entries)


def _file_sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _sha256_json(document) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()
