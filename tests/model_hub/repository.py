# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""A model directory seen as one commit of a Hugging Face model repository.

Every file below the directory is part of the commit, except hidden ones (a name starting with a dot anywhere in its
path: the collection's completion marker, SDK caches). The commit sha is derived from the files' paths and contents,
so the same files give the same sha wherever and whenever they are served, and a pinned revision keeps working.

Files are described as the Hub describes them: a git blob id, and for large or weight files the Git LFS pointer
(sha256 and size), whose sha256 is then the file's ETag, as on the Hub.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass

# Where the Hub's own .gitattributes sends files to Git LFS: weight formats, and anything it would not take in git.
LFS_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx")
LFS_MIN_BYTES = 10 * 1024 * 1024
DEFAULT_BRANCH = "main"
# ModelScope's default branch: its SDK asks for Revision=master when no revision is given.
MODELSCOPE_BRANCH = "master"
REPO_ID = re.compile(r"^[\w.-]{1,96}/[\w.-]{1,96}$")
CHUNK = 1024 * 1024


class RepositoryError(ValueError):
    """A repository that cannot be served; the message says which and why."""


@dataclass(frozen=True)
class RepoFile:
    """One file of the commit: its path in the repository, where it is on disk, and the Hub's ids for it."""

    path: str
    local_path: str
    size: int
    sha256: str
    blob_id: str
    lfs_pointer_size: int | None

    @property
    def is_lfs(self):
        return self.lfs_pointer_size is not None

    @property
    def etag(self):
        """What the Hub sends as the file's ETag: the LFS sha256 of a large file, else its git blob id."""
        return self.sha256 if self.is_lfs else self.blob_id

    def tree_entry(self):
        """The file as the Hub's tree listing shows it (``GET /api/models/{repo}/tree/{revision}``)."""
        entry = {"type": "file", "oid": self.blob_id, "size": self.size, "path": self.path}
        if self.is_lfs:
            entry["lfs"] = {"oid": self.sha256, "size": self.size, "pointerSize": self.lfs_pointer_size}
        return entry

    def modelscope_entry(self, commit):
        """The file as ModelScope's file listing shows it (``GET /api/v1/models/{repo}/repo/files``)."""
        return {
            "Name": self.path.rsplit("/", 1)[-1],
            "Path": self.path,
            "Type": "blob",
            "Size": self.size,
            "Sha256": self.sha256,
            "IsLFS": self.is_lfs,
            "Id": self.blob_id,
            "Mode": "33188",
            "Revision": commit,
            "CommitId": commit,
        }

    def sibling(self):
        """The file as the Hub's model info lists it (``siblings``, with ``?blobs=true``)."""
        sibling = {"rfilename": self.path, "size": self.size, "blobId": self.blob_id}
        if self.is_lfs:
            sibling["lfs"] = {"sha256": self.sha256, "size": self.size, "pointerSize": self.lfs_pointer_size}
        return sibling


def git_blob_header(size):
    """What git hashes before a blob's content: its object id is sha1 of this header and the content."""
    return f"blob {size}\0".encode()


def lfs_pointer(sha256, size):
    """The Git LFS pointer file that stands in the git tree for a file stored in LFS."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def describe_file(path, local_path):
    """A RepoFile for ``local_path``, read once for both of its hashes."""
    size = os.path.getsize(local_path)
    sha256, blob = hashlib.sha256(), hashlib.sha1(git_blob_header(size))
    with open(local_path, "rb") as stream:
        for chunk in iter(lambda: stream.read(CHUNK), b""):
            sha256.update(chunk)
            blob.update(chunk)
    if not (path.endswith(LFS_SUFFIXES) or size >= LFS_MIN_BYTES):
        return RepoFile(path, local_path, size, sha256.hexdigest(), blob.hexdigest(), None)
    pointer = lfs_pointer(sha256.hexdigest(), size)
    pointer_blob = hashlib.sha1(git_blob_header(len(pointer)) + pointer).hexdigest()
    return RepoFile(path, local_path, size, sha256.hexdigest(), pointer_blob, len(pointer))


def _visible_files(directory):
    """Paths (with / separators) of the files below ``directory``, hidden files and folders left out, sorted."""
    found = []
    for root, dirs, names in os.walk(directory, followlinks=True):
        dirs[:] = sorted(name for name in dirs if not name.startswith("."))
        for name in names:
            local = os.path.join(root, name)
            if not name.startswith(".") and os.path.isfile(local):
                found.append(os.path.relpath(local, directory).replace(os.sep, "/"))
    return sorted(found)


def commit_sha(files):
    """A 40-hex commit id from the files' paths and contents: the same files, the same sha."""
    digest = hashlib.sha1()
    for repo_file in sorted(files, key=lambda item: item.path):
        digest.update(f"{repo_file.path}\0{repo_file.sha256}\n".encode())
    return digest.hexdigest()


class Repository:
    """``repo_id`` (ORG/NAME) serving ``directory`` as one commit on the branch ``main``.

    The files are hashed once, when the repository is made; they must not change while it is served.
    """

    def __init__(self, repo_id, directory):
        if not REPO_ID.match(repo_id or "") or "--" in repo_id or ".." in repo_id:
            raise RepositoryError(f"repository id {repo_id!r} must be ORG/NAME (letters, digits, '-', '_', '.')")
        if not os.path.isdir(directory):
            raise RepositoryError(f"{repo_id}: {directory} is not a directory")
        self.repo_id = repo_id
        self.directory = os.path.abspath(directory)
        self.files = {
            path: describe_file(path, os.path.join(self.directory, path)) for path in _visible_files(directory)
        }
        if not self.files:
            raise RepositoryError(f"{repo_id}: {directory} holds no files to serve (hidden ones are left out)")
        self.sha = commit_sha(self.files.values())

    def resolve(self, revision, branch=DEFAULT_BRANCH):
        """The commit sha ``revision`` names (the branch, main on the Hugging Face API and master on ModelScope's,
        or the sha itself), or None."""
        return self.sha if revision in (None, branch, self.sha) else None

    def total_bytes(self):
        return sum(repo_file.size for repo_file in self.files.values())

    def folders(self):
        """Every folder that holds a file, as paths with / separators (the root left out)."""
        found = set()
        for path in self.files:
            parts = path.split("/")[:-1]
            found.update("/".join(parts[: index + 1]) for index in range(len(parts)))
        return sorted(found)

    def tree(self, folder="", recursive=False):
        """The tree listing below ``folder``: its files and folders (all descendants when ``recursive``), or None
        when the folder does not exist."""
        folder = folder.strip("/")
        prefix = folder + "/" if folder else ""
        if folder and folder not in self.folders():
            return None

        def wanted(path):
            return path.startswith(prefix) and (recursive or "/" not in path[len(prefix) :])

        entries = [
            {"type": "directory", "oid": self._folder_id(path), "path": path} for path in self.folders() if wanted(path)
        ]
        entries += [repo_file.tree_entry() for path, repo_file in self.files.items() if wanted(path)]
        return sorted(entries, key=lambda entry: entry["path"])

    def modelscope_files(self, root="", recursive=True):
        """ModelScope's file listing below ``root`` (``Type`` ``tree`` for folders, ``blob`` for files), or None
        when the folder does not exist."""
        entries = self.tree(root, recursive=recursive)
        if entries is None:
            return None
        listed = []
        for entry in entries:
            if entry["type"] == "directory":
                name = entry["path"].rsplit("/", 1)[-1]
                listed.append({"Name": name, "Path": entry["path"], "Type": "tree", "Id": entry["oid"], "Size": 0})
            else:
                listed.append(self.files[entry["path"]].modelscope_entry(self.sha))
        return listed

    def _folder_id(self, folder):
        """A stable id for a folder, from the files below it (the Hub sends the git tree's id)."""
        return commit_sha([repo_file for path, repo_file in self.files.items() if path.startswith(folder + "/")])

    def info(self, blobs=False):
        """The model info the Hub answers for this commit (``GET /api/models/{repo}/revision/{revision}``)."""
        siblings = [
            repo_file.sibling() if blobs else {"rfilename": repo_file.path} for repo_file in self.files.values()
        ]
        return {
            "_id": self.sha[:24],
            "id": self.repo_id,
            "modelId": self.repo_id,
            "author": self.repo_id.split("/", 1)[0],
            "sha": self.sha,
            "private": False,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
            "usedStorage": self.total_bytes(),
        }
