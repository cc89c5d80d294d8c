# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""A layer in its two forms: a directory as overlayfs writes an upper dir, and an OCI layer tar.

overlayfs marks a deleted file with a character device 0/0 of its name, and a directory that hides everything below
it with the xattr trusted.overlay.opaque=y. An OCI layer says the same with empty files: ``.wh.<name>`` and
``<dir>/.wh..wh..opq`` (OCI image spec, layer.md, "Whiteouts"). Other xattrs travel as PAX ``SCHILY.xattr.*``
records. The tar is uncompressed, so its sha256 is both the blob digest and the diff_id.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
from pathlib import Path

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OVERLAY_OPAQUE = "trusted.overlay.opaque"
# overlayfs' own bookkeeping (origin, impure, ...) describes the mount it came from, not the files.
OVERLAY_XATTR_PREFIX = "trusted.overlay."
PAX_XATTR_PREFIX = "SCHILY.xattr."
COPY_BUFFER = 1 << 20


class _HashingWriter:
    """A write-only file that hashes and counts what passes through it."""

    def __init__(self, stream):
        self.stream = stream
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self.stream.write(data)

    def tell(self) -> int:
        return self.size


def pack_layer(layer_dir: Path, tar_path: Path) -> tuple[str, int]:
    """Write the OCI layer tar of an overlay-form directory; returns (digest, size)."""
    with open(tar_path, "wb") as raw:
        sink = _HashingWriter(raw)
        with tarfile.open(fileobj=sink, mode="w", format=tarfile.PAX_FORMAT) as tar:
            tar.copybufsize = COPY_BUFFER
            for path, name in _walk(str(layer_dir)):
                _add_entry(tar, path, name)
        raw.flush()
        os.fsync(raw.fileno())
    return "sha256:" + sink.sha256.hexdigest(), sink.size


def _walk(root: str, prefix: str = ""):
    """(path, name in the tar) of everything under root, sorted, each directory before what it holds."""
    with os.scandir(root) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            name = prefix + entry.name
            yield entry.path, name
            if entry.is_dir(follow_symlinks=False):
                yield from _walk(entry.path, name + "/")


def _add_entry(tar: tarfile.TarFile, path: str, name: str) -> None:
    status = os.lstat(path)
    if stat.S_ISCHR(status.st_mode) and status.st_rdev == 0:
        head, _slash, base = name.rpartition("/")
        parent = os.lstat(os.path.dirname(path))  # a whiteout's own mtime is when overlayfs made it: noise
        tar.addfile(_empty_file(f"{head}/{WHITEOUT_PREFIX}{base}" if head else WHITEOUT_PREFIX + base, parent))
        return
    info = tar.gettarinfo(path, name)
    if info is None:  # a socket: a tar cannot hold one, and a socket left by a build step means nothing
        return
    info.uname = info.gname = ""  # numeric ids: the host's user names mean nothing inside the image
    info.mtime = int(info.mtime)  # whole seconds, as ustar holds them: no PAX mtime record, the same tar again
    xattrs = _xattrs(path)
    opaque = xattrs.pop(OVERLAY_OPAQUE, None) == b"y"
    info.pax_headers = {
        PAX_XATTR_PREFIX + key: value.decode("utf-8", "surrogateescape") for key, value in xattrs.items()
    }
    if info.isreg():
        with open(path, "rb") as content:
            tar.addfile(info, content)
    else:
        tar.addfile(info)
    if opaque:
        tar.addfile(_empty_file(f"{name}/{OPAQUE_MARKER}", status))


def _empty_file(name: str, like: os.stat_result) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = int(like.st_mtime)
    info.mode = 0o644
    return info


def _xattrs(path: str) -> dict:
    """The xattrs worth keeping: all but overlayfs' bookkeeping (the opaque mark is kept, to be converted)."""
    names = os.listxattr(path, follow_symlinks=False)
    return {
        name: os.getxattr(path, name, follow_symlinks=False)
        for name in names
        if name == OVERLAY_OPAQUE or not name.startswith(OVERLAY_XATTR_PREFIX)
    }


def unpack_layer(tar_path: Path, layer_dir: Path) -> None:
    """Unpack an OCI layer tar into overlay form (the reverse of pack_layer). Needs root: devices, owners, xattrs."""
    layer_dir.mkdir(parents=True)
    with tarfile.open(tar_path) as tar:
        members = tar.getmembers()
        files = [m for m in members if not os.path.basename(m.name).startswith(WHITEOUT_PREFIX)]
        # The tar is one this store wrote (pack_layer): trusted, so absolute symlinks and setuid bits stay.
        tar.extractall(layer_dir, members=files, numeric_owner=True, filter="fully_trusted")
    for member in files:
        for key, value in member.pax_headers.items():
            if key.startswith(PAX_XATTR_PREFIX):
                path = os.path.join(layer_dir, member.name)
                os.setxattr(
                    path, key[len(PAX_XATTR_PREFIX) :], value.encode("utf-8", "surrogateescape"), follow_symlinks=False
                )
    _apply_whiteouts(layer_dir, [m for m in members if m not in files], {m.name: m for m in files})


def _apply_whiteouts(layer_dir: Path, whiteouts: list, by_name: dict) -> None:
    """Turn .wh. entries into overlay whiteouts, then give their directories back the mtime the tar recorded."""
    touched = set()
    for member in whiteouts:
        head, base = os.path.split(member.name)
        target = os.path.join(layer_dir, head)
        if base == OPAQUE_MARKER:
            os.setxattr(target, OVERLAY_OPAQUE, b"y")
        else:
            os.mknod(os.path.join(target, base[len(WHITEOUT_PREFIX) :]), stat.S_IFCHR, os.makedev(0, 0))
        touched.add(head)
    for head in touched:
        directory = by_name.get(head)
        if directory is not None:
            os.utime(os.path.join(layer_dir, head), (directory.mtime, directory.mtime), follow_symlinks=False)
