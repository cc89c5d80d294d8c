# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The image store: local images as an OCI image layout, and each layer unpacked for overlayfs.

<root> (LLMOPS_IMAGE_STORE, default ~/.cache/llmops-ray-vllm/images; outside any clone, so one build serves
every clone and CI run on the machine):

    oci/                 an OCI image layout: oci-layout, index.json (one manifest per reference), blobs/sha256/
    layers/<hex>/        each layer unpacked in overlayfs form, named by its diff_id; what a runtime stacks
    layer-cache.json     which layer a base or a build step produced, by the hash of what made it
    logs/                the output of the last build of each step
    tmp/                 builds in progress (removed by the next build)
    lock                 flock'ed while building or collecting garbage

Readers (``resolve``, ``references``) take no lock: index.json is replaced by rename, so they see a whole image or
none. Writers hold the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

STORE_ENV = "LLMOPS_IMAGE_STORE"
DEFAULT_ROOT = "~/.cache/llmops-ray-vllm/images"

REF_NAME = "org.opencontainers.image.ref.name"
DEFINITION_HASH = "io.llmops.definition-hash"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"


def image_ref(image: str) -> str:
    """The image as containerd reports it: with registry and tag."""
    name = image or "busybox"
    if "@" not in name and ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    first = name.split("/", 1)[0]
    if "/" not in name:
        name = "docker.io/library/" + name
    elif "." not in first and ":" not in first and first != "localhost":
        name = "docker.io/" + name
    return name


def digest_hex(digest: str) -> str:
    algorithm, _colon, hexdigest = digest.partition(":")
    if algorithm != "sha256" or len(hexdigest) != 64:
        raise ValueError(f"expected a digest 'sha256:<64 hex digits>', got {digest!r}")
    return hexdigest


def json_bytes(document: dict) -> bytes:
    """The canonical bytes of a JSON document stored as a blob (sorted keys, so equal documents share a blob)."""
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` by rename: a reader sees the old file or the new one, never a part."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


@dataclass(frozen=True)
class LocalImage:
    reference: str  # normalized full reference
    manifest_digest: str  # "sha256:..." (what the kubelet reports as imageID)
    config: dict  # the OCI config's "config" object: Entrypoint, Cmd, Env, WorkingDir, User
    layer_dirs: tuple  # absolute unpacked layer dirs, bottom layer first


class ImageStore:
    def __init__(self, root: str | None = None):
        self.root = Path(os.path.expanduser(root or os.environ.get(STORE_ENV) or DEFAULT_ROOT)).absolute()
        self.oci = self.root / "oci"
        self.blobs = self.oci / "blobs" / "sha256"
        self.layers = self.root / "layers"
        self.logs = self.root / "logs"
        self.tmp = self.root / "tmp"
        self.lock_path = self.root / "lock"
        self.cache_path = self.root / "layer-cache.json"
        self._index_seen = (None, {})  # (index.json's stat, its entries by reference)
        self._json_blobs = {}  # content-addressed, so never stale

    # ---- reading ------------------------------------------------------------------------------------------------

    def references(self) -> list[str]:
        return sorted(self._entries())

    def index_entry(self, reference: str) -> dict | None:
        """index.json's descriptor of the image ``reference`` names (normalized as the kubelet does)."""
        return self._entries().get(image_ref(reference))

    def resolve(self, reference: str) -> LocalImage | None:
        """The stored image ``reference`` names (normalized as the kubelet does), or None when it is not stored."""
        entry = self.index_entry(reference)
        if entry is None:
            return None
        try:
            manifest = self.read_json_blob(entry["digest"])
            config = self.read_json_blob(manifest["config"]["digest"])
        except FileNotFoundError:  # removed by a gc after we read index.json
            return None
        layer_dirs = tuple(str(self.layer_dir(diff_id)) for diff_id in config["rootfs"]["diff_ids"])
        if not all(os.path.isdir(path) for path in layer_dirs):
            return None
        return LocalImage(image_ref(reference), entry["digest"], config.get("config", {}), layer_dirs)

    def definition_hash(self, reference: str) -> str | None:
        entry = self.index_entry(reference)
        return None if entry is None else entry.get("annotations", {}).get(DEFINITION_HASH)

    def diff_ids(self, reference: str) -> list[str]:
        """The layers of a stored image, bottom first (empty when it is not stored)."""
        entry = self.index_entry(reference)
        if entry is None:
            return []
        manifest = self.read_json_blob(entry["digest"])
        return list(self.read_json_blob(manifest["config"]["digest"])["rootfs"]["diff_ids"])

    def blob_path(self, digest: str) -> Path:
        return self.blobs / digest_hex(digest)

    def layer_dir(self, diff_id: str) -> Path:
        return self.layers / digest_hex(diff_id)

    def read_json_blob(self, digest: str) -> dict:
        if digest not in self._json_blobs:
            self._json_blobs[digest] = json.loads(self.blob_path(digest).read_bytes())
        return self._json_blobs[digest]

    def index(self) -> dict:
        try:
            return json.loads((self.oci / "index.json").read_bytes())
        except FileNotFoundError:
            return {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": []}

    def _entries(self) -> dict:
        """index.json's manifests by reference, read again only when the file changed."""
        try:
            stat = (self.oci / "index.json").stat()
        except FileNotFoundError:
            return {}
        seen = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if self._index_seen[0] != seen:
            manifests = self.index()["manifests"]
            self._index_seen = (seen, {m.get("annotations", {}).get(REF_NAME): m for m in manifests})
        return self._index_seen[1]

    # ---- writing (under the lock) -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self, purpose: str):
        """Hold the store's lock (one builder or collector at a time on this machine); says whom it waits for."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a+") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.seek(0)
                holder = lock.read().strip() or "another process"
                print(f"images: waiting for the store lock {self.lock_path} (held by {holder})", file=sys.stderr)
                fcntl.flock(lock, fcntl.LOCK_EX)
            lock.truncate(0)
            lock.write(f"pid {os.getpid()}, {purpose}\n")
            lock.flush()
            self._init_layout()
            try:
                yield self
            finally:
                lock.truncate(0)
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _init_layout(self) -> None:
        for folder in (self.blobs, self.layers, self.logs, self.tmp):
            folder.mkdir(parents=True, exist_ok=True)
        if not (self.oci / "oci-layout").exists():
            write_atomically(self.oci / "oci-layout", json_bytes({"imageLayoutVersion": "1.0.0"}))
        if not (self.oci / "index.json").exists():
            write_atomically(self.oci / "index.json", json_bytes(self.index()))

    def add_json_blob(self, document: dict, media_type: str) -> dict:
        """Store a JSON document as a blob; returns its OCI descriptor."""
        data = json_bytes(document)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if not self.blob_path(digest).exists():
            write_atomically(self.blob_path(digest), data)
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    def add_blob_file(self, path: Path, digest: str) -> None:
        """Move a finished blob file (already hashed by its writer) into the store under its digest."""
        os.replace(path, self.blob_path(digest))

    def add_layer_dir(self, path: Path, diff_id: str) -> None:
        """Move an unpacked layer into the store under its diff_id (an equal one already there wins)."""
        target = self.layer_dir(diff_id)
        if target.exists():
            shutil.rmtree(path)
        else:
            os.rename(path, target)

    def publish(self, reference: str, manifest: dict, definition_hash: str) -> None:
        """Point ``reference`` at a manifest whose blobs and layers are all stored: the moment the image appears."""
        reference = image_ref(reference)
        annotations = {REF_NAME: reference, DEFINITION_HASH: definition_hash}
        entry = dict(manifest, annotations=annotations)
        self._write_index([m for m in self.index()["manifests"] if _ref_of(m) != reference] + [entry])

    def remove(self, reference: str) -> bool:
        manifests = self.index()["manifests"]
        kept = [m for m in manifests if _ref_of(m) != image_ref(reference)]
        self._write_index(kept)
        return len(kept) != len(manifests)

    def _write_index(self, manifests: list) -> None:
        manifests = sorted(manifests, key=_ref_of)
        write_atomically(self.oci / "index.json", json_bytes(dict(self.index(), manifests=manifests)))

    # ---- the layer cache -----------------------------------------------------------------------------------------

    def cached_layer(self, key: str) -> str | None:
        """The diff_id a base or step with this key produced, if that layer is still stored."""
        diff_id = self._layer_cache().get(key)
        if diff_id and self.layer_dir(diff_id).is_dir() and self.blob_path(diff_id).is_file():
            return diff_id
        return None

    def cache_layer(self, key: str, diff_id: str) -> None:
        write_atomically(self.cache_path, json_bytes(dict(self._layer_cache(), **{key: diff_id})))

    def _layer_cache(self) -> dict:
        try:
            return json.loads(self.cache_path.read_bytes())
        except FileNotFoundError:
            return {}

    # ---- garbage ------------------------------------------------------------------------------------------------

    def referenced(self) -> tuple[set, set]:
        """(blob digests, layer diff_ids) that the stored images use."""
        blobs, layers = set(), set()
        for entry in self.index()["manifests"]:
            manifest = self.read_json_blob(entry["digest"])
            blobs.update({entry["digest"], manifest["config"]["digest"]})
            blobs.update(layer["digest"] for layer in manifest["layers"])
            layers.update(self.read_json_blob(manifest["config"]["digest"])["rootfs"]["diff_ids"])
        return blobs, layers

    def collect_garbage(self, keep_cache_keys=()) -> dict:
        """Remove blobs and layers no stored image uses, except layers cached under ``keep_cache_keys`` (what the
        current definitions would reuse) and layers some overlay mount uses now. Call under the lock."""
        blobs, layers = self.referenced()
        cache = self._layer_cache()
        kept_by_cache = {cache[key] for key in keep_cache_keys if key in cache}
        in_use = mounted_lower_dirs()
        removed = {"blobs": [], "layers": [], "in_use": []}
        for path in sorted(self.layers.iterdir()):
            diff_id = "sha256:" + path.name
            if diff_id in layers or diff_id in kept_by_cache:
                continue
            if str(path) in in_use:
                removed["in_use"].append(diff_id)
                continue
            shutil.rmtree(path)
            removed["layers"].append(diff_id)
        for path in sorted(self.blobs.iterdir()):
            digest = "sha256:" + path.name
            if digest not in blobs and digest not in kept_by_cache and not self.layer_dir(digest).is_dir():
                path.unlink()
                removed["blobs"].append(digest)
        live = {key: diff_id for key, diff_id in cache.items() if self.layer_dir(diff_id).is_dir()}
        if live != cache:
            write_atomically(self.cache_path, json_bytes(live))
        return removed


def _ref_of(entry: dict) -> str:
    return entry.get("annotations", {}).get(REF_NAME, "")


def mount_points() -> list[str]:
    """Every mount point of this mount namespace (/proc/self/mountinfo, octal escapes decoded)."""
    with open("/proc/self/mountinfo") as mountinfo:
        return [_unescape(line.split()[4]) for line in mountinfo]


def mounted_lower_dirs() -> set:
    """Directories some overlay mount of this namespace stacks (its lowerdir= and upperdir= options)."""
    used = set()
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            fields = line.split()
            if fields[fields.index("-") + 1] != "overlay":
                continue
            for option in fields[-1].split(","):
                name, _equals, value = option.partition("=")
                if name.rstrip("+") in ("lowerdir", "upperdir", "datadir"):
                    used.update(_unescape(path) for path in value.split(":"))
    return used


def _unescape(field: str) -> str:
    return field.encode().decode("unicode_escape").encode("latin-1").decode()
