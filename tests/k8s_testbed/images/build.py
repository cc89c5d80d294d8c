# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The builder: image definitions (``definitions.py``) into the image store (``store.py``), without a container
engine or registry.

For each definition whose stored hash differs (or that is missing): layer 0 is the base (a debootstrap run, or a
directory), each step then runs ``/bin/sh -ec <run>`` chrooted into the layers so far, its writes caught by an
overlay upper dir that becomes the next layer (``rootfs.mounted``: /proc, /sys, /dev, /tmp, resolv.conf, hosts, this
host's pip configuration and the inputs at /src are there only while the step runs). Each layer is packed as an
OCI layer tar and moved into the store with its unpacked dir; the image's config and manifest blobs are written;
then index.json names the image: the only moment it appears. Everything runs under the store's lock, in
``<store>/tmp``, which the next build clears, so an interrupted build leaves no image behind, only unreferenced
layers (reused by the next build when their cache key matches, else collected).
"""

from __future__ import annotations

import collections
import datetime
import os
import platform
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from . import rootfs
from .definitions import Definition, Step, load_definition
from .host_pip import host_pip
from .layer_tar import pack_layer, unpack_layer
from .store import DEFINITION_HASH, MEDIA_CONFIG, MEDIA_LAYER, MEDIA_MANIFEST, ImageStore, image_ref, mount_points

REPO = Path(__file__).resolve().parents[3]
DEFINITION_GLOB = "images/*/local*.yaml"
DEBIAN_SOURCES = ("/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
MIRROR_ENV = "LLMOPS_DEBIAN_MIRROR"
HEARTBEAT_SECONDS = 30
TAIL_LINES = 25
ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64"}
# Files debootstrap copies from the host or leaves behind, that would make the base depend on the build machine.
BASE_LEFTOVERS = ("var/cache/apt", "var/cache/apt/archives", "var/lib/apt/lists", "var/log/bootstrap.log")
BASE_FILES = {
    "etc/resolv.conf": "",
    "etc/hostname": "localhost\n",
    "etc/hosts": "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
}


class BuildError(RuntimeError):
    pass


@dataclass(frozen=True)
class Layer:
    diff_id: str
    key: str  # the layer cache key (what made it)
    created_by: str


def definition_paths(repo: Path = REPO) -> list:
    return sorted(repo.glob(DEFINITION_GLOB))


def load_definitions(paths=None) -> list:
    """The definitions (default: the repository's ``images/*/local*.yaml``); a reference defined twice is refused."""
    definitions = [load_definition(path) for path in (definition_paths() if paths is None else paths)]
    seen = {}
    for definition in definitions:
        for reference in definition.references():
            if reference in seen:
                raise BuildError(f"{reference} is defined by both {seen[reference]} and {definition.path}; keep one")
            seen[reference] = definition.path
    return definitions


def is_current(store: ImageStore, definition: Definition, reference: str) -> bool:
    return store.definition_hash(reference) == definition.hash and store.resolve(reference) is not None


def ensure_images(references=None, store: ImageStore | None = None, definitions=None) -> dict:
    """Build what is missing or out of date among ``references`` (default: every defined image), then return
    {reference: LocalImage}. Costs a few milliseconds when everything is built: the definitions are hashed and
    compared with the store's index, nothing else."""
    store = store or ImageStore()
    defined = load_definitions(definitions)
    wanted = wanted_references(defined, references)
    by_reference = {reference: d for d in defined for reference in d.references()}
    if not all(is_current(store, by_reference[reference], reference) for reference in wanted):
        Builder(store).build(defined, wanted)
    return {reference: store.resolve(reference) for reference in wanted}


def wanted_references(definitions: list, references=None) -> list:
    defined = [reference for definition in definitions for reference in definition.references()]
    if references is None:
        return defined
    wanted = [image_ref(reference) for reference in references]
    unknown = [reference for reference in wanted if reference not in defined]
    if unknown:
        raise BuildError(f"no definition builds {unknown}; defined are {defined} ({DEFINITION_GLOB})")
    return wanted


class Builder:
    def __init__(self, store: ImageStore, force: bool = False, verbose: bool = False, say=None):
        self.store = store
        self.force = force  # rebuild every layer, ignoring the layer cache
        self.verbose = verbose  # echo every line the steps print
        self.say = say or (lambda line: print(line, flush=True))
        self._pip = None

    def build(self, definitions: list, references=None) -> list:
        """Build the images among ``references`` (default: all) that are missing or stale; returns those built."""
        wanted = wanted_references(definitions, references)
        started = time.monotonic()
        built = []
        with self.store.locked("building " + " ".join(wanted)):
            self._clear_tmp()
            for definition in definitions:
                built += self._build_definition(definition, [r for r in definition.references() if r in wanted])
            keep = [key for definition in definitions for key in definition.layer_keys()]
            removed = self.store.collect_garbage(keep_cache_keys=keep)
        gone = len(removed["layers"]) + len(removed["blobs"])
        self.say(
            f"images: built {len(built)} of {len(wanted)} in {time.monotonic() - started:.1f} s; gc removed {gone}"
        )
        return built

    # ---- one definition ---------------------------------------------------------------------------------------

    def _build_definition(self, definition: Definition, references: list) -> list:
        stale = [r for r in references if self.force or not is_current(self.store, definition, r)]
        for reference in [r for r in stale if not self.force and self.store.definition_hash(r) == definition.hash]:
            self._restore_layers(reference)
        stale = [r for r in stale if self.force or not is_current(self.store, definition, r)]
        for reference in sorted(set(references) - set(stale)):
            self.say(f"{reference}: up to date")
        if not stale:
            return []
        step_count = max(definition.step_count(reference) for reference in stale)
        self.say(f"{definition.reference}: building {', '.join(stale)} from {definition.path}")
        with tempfile.TemporaryDirectory(dir=self.store.tmp, prefix="build-") as work:
            layers = [self._base_layer(definition, Path(work))]
            for step in definition.steps[:step_count]:
                layers.append(self._step_layer(definition, step, layers, Path(work)))
        for reference in stale:
            manifest = self._write_image(definition, reference, layers[: 1 + definition.step_count(reference)])
            self.store.publish(reference, manifest, definition.hash)
            self.say(f"{reference}: stored as {manifest['digest']}")
        return stale

    def _restore_layers(self, reference: str) -> None:
        """Unpack layers whose dirs were deleted while their blobs remain (the image is otherwise current)."""
        for diff_id in self.store.diff_ids(reference):
            if self.store.layer_dir(diff_id).is_dir() or not self.store.blob_path(diff_id).is_file():
                continue
            self.say(f"{reference}: unpacking layer {diff_id} from its blob")
            with tempfile.TemporaryDirectory(dir=self.store.tmp, prefix="unpack-") as work:
                unpack_layer(self.store.blob_path(diff_id), Path(work) / "layer")
                self.store.add_layer_dir(Path(work) / "layer", diff_id)

    # ---- layers -------------------------------------------------------------------------------------------------

    def _base_layer(self, definition: Definition, work: Path) -> Layer:
        key = definition.base_key()
        described = _describe_base(definition.base)
        label = f"{definition.reference}: base ({described})"
        cached = None if self.force else self.store.cached_layer(key)
        if cached:
            self.say(f"{label}: cached layer {cached}")
            return Layer(cached, key, described)
        target = work / "base"
        started = time.monotonic()
        if "rootfs" in definition.base:
            self._run(
                ["cp", "-a", definition.base["rootfs"] + "/.", str(target) + "/"], label, self._log(definition, "base")
            )
        else:
            self._debootstrap(definition.base["debootstrap"], target, label, self._log(definition, "base"))
            _strip_host_leftovers(target)
        self.say(f"{label}: done in {time.monotonic() - started:.1f} s")
        return self._commit(target, key, described, work)

    def _debootstrap(self, spec: dict, target: Path, label: str, log: Path) -> None:
        _require_debootstrap(self.say)
        argv = ["debootstrap", f"--variant={spec['variant']}"]
        if spec["packages"]:
            argv.append("--include=" + ",".join(spec["packages"]))
        argv += [spec["suite"], str(target), debian_mirror()]
        self._run(argv, label, log, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))

    def _step_layer(self, definition: Definition, step: Step, below: list, work: Path) -> Layer:
        key = definition.step_key(below[-1].key, step)
        label = f"{definition.reference}: step {step.name}"
        cached = None if self.force else self.store.cached_layer(key)
        if cached:
            self.say(f"{label}: cached layer {cached}")
            return Layer(cached, key, f"{step.name}: {step.run}")
        upper = work / f"{step.name}.layer"
        upper.mkdir()
        view = rootfs.RootfsView(
            layers=tuple(str(self.store.layer_dir(layer.diff_id)) for layer in below),
            upper=str(upper),
            host_paths=self._host_paths(definition),
        )
        self.say(f"{label}: running {step.run.strip()}")
        started = time.monotonic()
        with rootfs.mounted(view, work / f"{step.name}.mount") as root:
            argv = ["/bin/sh", "-ec", step.run]
            self._run(
                argv,
                label,
                self._log(definition, step.name),
                env=self._step_env(definition),
                preexec_fn=rootfs.entering(root),
            )
        self.say(f"{label}: done in {time.monotonic() - started:.1f} s")
        return self._commit(upper, key, f"{step.name}: {step.run}", work)

    def _commit(self, layer_dir: Path, key: str, created_by: str, work: Path) -> Layer:
        """Pack the layer, move blob and dir into the store, and remember what made it."""
        started = time.monotonic()
        tar_path = work / "layer.tar"
        diff_id, size = pack_layer(layer_dir, tar_path)
        self.store.add_blob_file(tar_path, diff_id)
        self.store.add_layer_dir(layer_dir, diff_id)
        self.store.cache_layer(key, diff_id)
        self.say(f"  layer {diff_id}: {size / 2**20:.1f} MiB, packed in {time.monotonic() - started:.1f} s")
        return Layer(diff_id, key, created_by)

    def _write_image(self, definition: Definition, reference: str, layers: list) -> dict:
        """Write the config and manifest blobs of an image of ``layers``; returns the manifest's descriptor."""
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        config = {
            "created": now,
            "architecture": ARCHITECTURES.get(platform.machine(), platform.machine()),
            "os": "linux",
            "config": definition.image_config(reference),
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
            "history": [
                {"created_by": layer.created_by, "comment": f"layer cache key {layer.key}"} for layer in layers
            ],
        }
        manifest = {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": self.store.add_json_blob(config, MEDIA_CONFIG),
            "layers": [self._layer_descriptor(layer) for layer in layers],
            "annotations": {DEFINITION_HASH: definition.hash, "org.opencontainers.image.created": now},
        }
        return self.store.add_json_blob(manifest, MEDIA_MANIFEST)

    def _layer_descriptor(self, layer: Layer) -> dict:
        size = self.store.blob_path(layer.diff_id).stat().st_size
        return {"mediaType": MEDIA_LAYER, "digest": layer.diff_id, "size": size}

    # ---- what a step sees -------------------------------------------------------------------------------------

    def _host_pip(self):
        """This host's pip configuration, read once per build (pip takes a second to start)."""
        if self._pip is None:
            self._pip = host_pip()
        return self._pip

    def _host_paths(self, definition: Definition) -> tuple:
        inputs = tuple(rootfs.HostPath(source, f"/src/{name}") for name, source in sorted(definition.inputs.items()))
        return inputs + self._host_pip().host_paths

    def _step_env(self, definition: Definition) -> dict:
        env = {"LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}
        env.update(rootfs.environment(definition.config))
        env.update(self._host_pip().env)
        return env

    def _log(self, definition: Definition, part: str) -> Path:
        slug = definition.reference.replace("/", "_").replace(":", "_")
        return self.store.logs / f"{slug}.{part}.log"

    # ---- running ------------------------------------------------------------------------------------------------

    def _run(self, argv: list, label: str, log: Path, **popen) -> None:
        """Run a build command, its output into ``log``; a heartbeat every 30 s; BuildError with the last lines when it
        fails. Whatever it leaves running is killed with it."""
        started = time.monotonic()
        tail = collections.deque(maxlen=TAIL_LINES)
        echo = self.say if self.verbose else None
        with open(log, "w", buffering=1) as log_file:  # line by line, so the log can be followed
            process = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                **popen,
            )
            pump = threading.Thread(target=_pump, args=(process.stdout, log_file, tail, echo), daemon=True)
            pump.start()
            try:
                self._wait(process, label, started, tail)
            finally:
                _kill_group(process)
                pump.join()
        if process.returncode != 0:
            last = "\n".join("    " + line for line in tail)
            seconds = time.monotonic() - started
            raise BuildError(
                f"{label} failed: exit status {process.returncode} (expected 0) after {seconds:.0f} s."
                f"\nIts last lines:\n{last}\nWhole output: {log}. Nothing was published: the store's images are as "
                "they were. Fix the step (or what it installs), then build again (make images)."
            )

    def _wait(self, process: subprocess.Popen, label: str, started: float, tail) -> None:
        while True:
            try:
                process.wait(timeout=HEARTBEAT_SECONDS)
                return
            except subprocess.TimeoutExpired:
                last = tail[-1][:100] if tail else ""
                self.say(f"  {label}: {time.monotonic() - started:.0f} s ... {last}")

    def _clear_tmp(self) -> None:
        """Remove what an interrupted build left in <store>/tmp: its processes, its mounts, then its files."""
        for pid in rootfs.kill_processes_inside(self.store.tmp):
            self.say(f"images: killed process {pid}, left running by an interrupted build")
        tmp = str(self.store.tmp) + os.sep
        leftovers = sorted((p for p in mount_points() if p.startswith(tmp)), key=len, reverse=True)
        rootfs.unmount_all([Path(p) for p in reversed(leftovers)])
        for path in self.store.tmp.iterdir():
            self.say(f"images: removing {path}, left by an interrupted build")
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()


def _pump(stream, log_file, tail, echo) -> None:
    for raw in stream:
        line = raw.decode(errors="replace").rstrip("\n")
        log_file.write(line + "\n")
        tail.append(line)
        if echo:
            echo("    | " + line)


def _kill_group(process: subprocess.Popen) -> None:
    """Kill the step's session: the process and anything it left behind (they would keep the mounts busy)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def _describe_base(base: dict) -> str:
    if "rootfs" in base:
        return f"rootfs {base['rootfs']}"
    spec = base["debootstrap"]
    return f"debootstrap --variant={spec['variant']} {spec['suite']} +{','.join(spec['packages'])}"


def _strip_host_leftovers(target: Path) -> None:
    """Drop the package caches debootstrap leaves, and the network files it copies from this host."""
    for leftover in BASE_LEFTOVERS:
        path = target / leftover
        if path.is_dir():
            for child in path.iterdir():
                if child.is_file() and child.name != "lock":
                    child.unlink()
        elif path.exists():
            path.unlink()
    for name, content in BASE_FILES.items():
        (target / name).write_text(content)


def _require_debootstrap(say) -> None:
    """debootstrap makes the Debian bases; CI starts from a clean machine, so install it when it is missing."""
    if shutil.which("debootstrap"):
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        say("images: debootstrap is missing; installing it with apt-get")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "debootstrap"], check=False, env=env)
    if not shutil.which("debootstrap"):
        raise BuildError(
            "debootstrap is needed to build the Debian base of the local images and is not on PATH, and installing "
            "it with apt-get failed (or this is not root). Fix: apt-get install debootstrap (make system-packages)."
        )


def debian_mirror() -> str:
    """The Debian mirror: LLMOPS_DEBIAN_MIRROR, else the first non-security URI of this host's apt sources."""
    if os.environ.get(MIRROR_ENV):
        return os.environ[MIRROR_ENV]
    for path in DEBIAN_SOURCES:
        try:
            lines = Path(path).read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            words = line.split()
            for uri in words[1:] if words[:1] in (["URIs:"], ["deb"]) else []:
                if "security" not in uri and uri.startswith(("http://", "https://")):
                    return uri
    return DEFAULT_MIRROR
