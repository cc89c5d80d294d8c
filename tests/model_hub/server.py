# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The HTTP side of the local hub: the parts of the Hugging Face Hub API that huggingface_hub's snapshot_download and
hf_hub_download use (read from huggingface_hub 2.4.0: hf_api.model_info and list_repo_tree, file_download's HEAD
metadata call and http_get, utils/_http.hf_raise_for_status).

- ``GET /api/models/{repo}`` and ``/api/models/{repo}/revision/{revision}``: the model info, with ``sha`` (the commit
  the revision resolves to) and ``siblings``;
- ``GET /api/models/{repo}/tree/{revision}[/{folder}]`` (``recursive``): files with ``oid``, ``size`` and ``lfs``,
  and folders, in one page (no ``Link`` header);
- ``HEAD`` and ``GET /{repo}/resolve/{revision}/{path}``: the file, with ``X-Repo-Commit``, ``ETag`` (the LFS sha256
  of a large file, else its git blob id) and ``Content-Length``; ``Range: bytes=a-b`` answers 206 with
  ``Content-Range``, which is how the SDK resumes a file whose connection broke;
- a missing repository, revision or file answers 404 with the Hub's ``X-Error-Code`` (``RepoNotFound``,
  ``RevisionNotFound``, ``EntryNotFound``), ``X-Error-Message`` and a JSON ``{"error": ...}`` body, which the SDK
  turns into RepositoryNotFoundError, RevisionNotFoundError and RemoteEntryNotFoundError;
- ``GET /``: the repositories served, their commits and sizes (for people and probes).

Beside them, on the same port, the parts of ModelScope's API that modelscope 1.40.2's snapshot_download uses (it
delegates to modelscope_hub 0.5.1; read there: _legacy_api.list_repo_files, get_download_url and download_stream,
_download.download_repo, download_file and _download_with_resume, errors.raise_for_status):

- ``GET /api/v1/models/{repo}/repo/files?Revision=&Recursive=&Root=``: ``{"Code": 200, "Data": {"Files": [...]},
  "Success": true}``, each file with ``Path``, ``Type`` (``blob``; ``tree`` for a folder), ``Size`` and ``Sha256``
  (the SDK checks each download against it), and ``Revision`` (the commit; ``master`` or the sha resolve);
- ``GET`` (and ``HEAD``) ``/api/v1/models/{repo}/repo?Revision=&FilePath=``: the file, with ``Range`` as above (the
  SDK resumes a ``.incomplete`` file with ``Range: bytes=n-``);
- ``GET /api/v1/models/{repo}``: the repository's info;
- a missing repository, revision or file answers 404 with ModelScope's ``{"Code": 404, "Message": ...,
  "Success": false}``, which the SDK raises as NotExistError (snapshot_download as requests' HTTPError);
- ``GET /api/v1/repos/internalAccelerationInfo`` (the SDK's region probe) answers 404, as outside Alibaba Cloud.

Files are sent straight from disk (no redirect to a CDN). For tests: ``interruptions`` cuts the first whole-file GET
of a file after some bytes, as a broken connection would; ``corruptions`` serves a file with one byte changed (its
listed hashes stay those of the real file); ``throttle`` (bytes per second, changeable while serving) slows every file
body down, as a slow hub or link would.
"""

from __future__ import annotations

import json
import re
import socket
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

MODELSCOPE_PREFIX = ("api", "v1")
SEND_CHUNK = 64 * 1024
RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
TRUE_VALUES = ("1", "true", "True")


class HubError(Exception):
    """An answer other than 200: its status, the Hub's error code (or None) and message."""

    def __init__(self, status, code, message, commit=None, api="huggingface"):
        super().__init__(message)
        self.status, self.code, self.message, self.commit, self.api = status, code, message, commit, api


class HubServer(ThreadingHTTPServer):
    """Serves ``repositories`` ({repo_id: Repository}); ``interruptions`` ({"ORG/NAME/path": bytes}) cuts the first
    whole-file GET of each named file after that many bytes; ``corruptions`` ({"ORG/NAME/path"}) serves those files
    with their first byte changed; ``throttle`` (bytes per second, None: full speed) paces every file body; ``log`` (a
    file) gets one line per request."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, repositories, interruptions=None, log=None, corruptions=(), throttle=None):
        super().__init__(address, HubRequestHandler)
        self.repositories = dict(repositories)
        self.interruptions = dict(interruptions or {})
        self.corruptions = set(corruptions)
        self.throttle = throttle
        self.log = log
        self._requests = []
        self._in_flight = 0
        self.lock = threading.Lock()
        self._settled = threading.Condition(self.lock)

    @property
    def url(self):
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def requests(self):
        """The requests answered so far. A handler records its request after the last byte went out, so a client can
        read a whole answer before its record is there: this waits (5 s at most) for the handlers still running."""
        with self._settled:
            self._settled.wait_for(lambda: self._in_flight == 0, timeout=5)
            return list(self._requests)

    def started(self):
        with self.lock:
            self._in_flight += 1

    def record(self, entry):
        with self._settled:
            self._requests.append(entry)
            self._in_flight -= 1
            self._settled.notify_all()
        if self.log is not None:
            print("{method} {path} file={file} range={range} -> {status}".format(**entry), file=self.log, flush=True)

    def take_interruption(self, key):
        """Bytes after which to cut this GET of ``key``, once; None when it runs to the end."""
        with self.lock:
            return self.interruptions.pop(key, None)


class HubRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "llmops-model-hub"

    def log_message(self, format, *args):
        """Requests are recorded by HubServer.record instead."""

    def do_GET(self):
        self._answer(send_body=True)

    def do_HEAD(self):
        self._answer(send_body=False)

    def _answer(self, send_body):
        url = urlsplit(self.path)
        status = 500
        self.served_file = None
        self.server.started()
        try:
            status = self._route(url, send_body)
        except HubError as error:
            status = error.status
            self._send_error(error, send_body)
        except (BrokenPipeError, ConnectionResetError):
            status = 499  # the client went away
            self.close_connection = True
        finally:
            self.server.record(
                {
                    "method": self.command,
                    "path": url.path,
                    "range": self.headers.get("Range"),
                    "status": status,
                    "file": self.served_file,
                    "api": "modelscope" if url.path.startswith("/api/v1/") else "huggingface",
                }
            )

    # --- routing

    def _route(self, url, send_body):
        parts = [unquote(part) for part in url.path.strip("/").split("/")] if url.path.strip("/") else []
        query = parse_qs(url.query)
        if not parts:
            return self._send_json(self._index(), send_body)
        if tuple(parts[:2]) == MODELSCOPE_PREFIX:
            return self._modelscope(parts[2:], query, send_body)
        if parts[0] == "api" and len(parts) >= 4 and parts[1] == "models":
            return self._api(parts[2:], query, send_body)
        if len(parts) >= 5 and parts[2] == "resolve":
            repository = self._repository(f"{parts[0]}/{parts[1]}")
            return self._send_file(repository, parts[3], "/".join(parts[4:]), send_body)
        raise HubError(404, None, f"{url.path} is not a route of this hub")

    def _api(self, parts, query, send_body):
        repository = self._repository(f"{parts[0]}/{parts[1]}")
        rest = parts[2:]
        if not rest:
            return self._send_json(repository.info(_flag(query, "blobs")), send_body)
        if rest[0] == "revision" and len(rest) == 2:
            self._commit(repository, rest[1])
            return self._send_json(repository.info(_flag(query, "blobs")), send_body)
        if rest[0] == "tree" and len(rest) >= 2:
            self._commit(repository, rest[1])
            folder = "/".join(rest[2:])
            entries = repository.tree(folder, recursive=_flag(query, "recursive"))
            if entries is None:
                raise HubError(404, "EntryNotFound", f"{folder} does not exist on {rest[1]}", repository.sha)
            return self._send_json(entries, send_body)
        raise HubError(404, None, f"/api/models/{repository.repo_id}/{'/'.join(rest)} is not a route of this hub")

    def _modelscope(self, parts, query, send_body):
        """ModelScope's /api/v1 routes: the repository info, its file listing and a file."""
        if parts[:1] != ["models"] or len(parts) < 3:
            raise HubError(404, None, f"/api/v1/{'/'.join(parts)} is not a route of this hub", api="modelscope")
        repository = self._repository(f"{parts[1]}/{parts[2]}", api="modelscope")
        rest, revision = parts[3:], _first(query, "Revision")
        if not rest:
            info = {"Id": repository.repo_id, "Name": repository.repo_id.split("/")[1], "Revision": repository.sha}
            return self._send_json(_modelscope_body(dict(info, Path=repository.repo_id.split("/")[0])), send_body)
        if rest == ["repo", "files"]:
            self._commit(repository, revision, api="modelscope")
            root = _first(query, "Root") or ""
            files = repository.modelscope_files(root, recursive=_flag(query, "Recursive"))
            if files is None:
                raise HubError(404, None, f"{root} does not exist on {revision}", api="modelscope")
            return self._send_json(_modelscope_body({"Files": files}), send_body)
        if rest == ["repo"]:
            commit = self._commit(repository, revision, api="modelscope")
            return self._send_file(repository, commit, _first(query, "FilePath") or "", send_body, api="modelscope")
        route = f"/api/v1/models/{repository.repo_id}/{'/'.join(rest)}"
        raise HubError(404, None, f"{route} is not a route of this hub", api="modelscope")

    def _repository(self, repo_id, api="huggingface"):
        repository = self.server.repositories.get(repo_id)
        if repository is None:
            raise HubError(404, "RepoNotFound", f"Repository not found: {repo_id} is not served here", api=api)
        return repository

    def _commit(self, repository, revision, api="huggingface"):
        branch = "master" if api == "modelscope" else "main"
        commit = repository.resolve(revision or branch, branch)
        if commit is None:
            raise HubError(
                404,
                "RevisionNotFound",
                f"Invalid rev id: {revision} (this hub serves {branch} and {repository.sha})",
                api=api,
            )
        return commit

    def _index(self):
        return [
            {"id": repo.repo_id, "sha": repo.sha, "files": len(repo.files), "bytes": repo.total_bytes()}
            for repo in self.server.repositories.values()
        ]

    # --- answers

    def _send_json(self, value, send_body):
        body = json.dumps(value).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body:
            self.wfile.write(body)
        return 200

    def _send_error(self, error, send_body):
        if error.api == "modelscope":
            answer = {"Code": error.status, "Message": error.message, "RequestId": uuid.uuid4().hex, "Success": False}
        else:
            answer = {"error": error.message}
        body = json.dumps(answer).encode()
        self.send_response(error.status)
        if error.code:
            self.send_header("X-Error-Code", error.code)
        self.send_header("X-Error-Message", error.message)
        if error.commit:
            self.send_header("X-Repo-Commit", error.commit)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def _send_file(self, repository, revision, path, send_body, api="huggingface"):
        commit = self._commit(repository, revision, api=api)
        repo_file = repository.files.get(path)
        if repo_file is None:
            raise HubError(
                404, "EntryNotFound", f"Entry not found: {path} is not in {repository.repo_id}", commit, api=api
            )
        self.served_file = f"{repository.repo_id}/{path}"
        start, end = self._byte_range(repo_file.size, commit, api)
        status = 206 if self.headers.get("Range") else 200
        self.send_response(status)
        self.send_header("X-Repo-Commit", commit)
        self.send_header("ETag", f'"{repo_file.etag}"')
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start + 1))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{repo_file.size}")
        self.end_headers()
        if send_body:
            self._send_bytes(repo_file, start, end - start + 1, f"{repository.repo_id}/{path}", status)
        return status

    def _byte_range(self, size, commit, api="huggingface"):
        """``(first, last)`` byte of the answer: the whole file, or the one range ``Range: bytes=a-b`` asks for."""
        wanted = self.headers.get("Range")
        if not wanted:
            return 0, size - 1
        match = RANGE.match(wanted.strip())
        if not match or not (match.group(1) or match.group(2)):
            raise HubError(416, None, f"Range {wanted!r} is not one range of bytes=first-last", commit, api=api)
        first, last = match.group(1), match.group(2)
        if not first:  # bytes=-N: the last N bytes
            return max(size - int(last), 0), size - 1
        start, end = int(first), min(int(last), size - 1) if last else size - 1
        if start >= size or start > end:
            raise HubError(416, None, f"Range {wanted!r} is outside the file's {size} bytes", commit, api=api)
        return start, end

    def _send_bytes(self, repo_file, offset, count, key, status):
        cut = self.server.take_interruption(key) if status == 200 else None
        with open(repo_file.local_path, "rb") as stream:
            if key in self.server.corruptions or self.server.throttle:
                self._write_paced(stream, offset, count if cut is None else min(cut, count), key)
            else:
                self.connection.sendfile(stream, offset, count if cut is None else min(cut, count))
        if cut is None:
            return
        # A broken connection, as the client sees one: the body stops short of its Content-Length.
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def _write_paced(self, stream, offset, count, key):
        """Write ``count`` bytes from ``offset``, the file's first byte changed when it is to be corrupted, at most
        ``throttle`` bytes per second when set (read again for every chunk, so a test can change it)."""
        stream.seek(offset)
        started, sent = time.monotonic(), 0
        while sent < count:
            throttle = self.server.throttle
            chunk = stream.read(min(SEND_CHUNK, count - sent, max(int(throttle or SEND_CHUNK) // 10, 1)))
            if not chunk:
                break
            if offset + sent == 0 and key in self.server.corruptions:
                chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
            self.wfile.write(chunk)
            sent += len(chunk)
            if throttle:
                time.sleep(max(0.0, started + sent / throttle - time.monotonic()))


def _modelscope_body(data):
    """ModelScope's answer envelope; the SDK reads ``Data``."""
    return {"Code": 200, "Data": data, "Message": "success", "RequestId": uuid.uuid4().hex, "Success": True}


def _first(query, name):
    values = query.get(name)
    return values[0] if values else None


def _flag(query, name):
    return any(value in TRUE_VALUES for value in query.get(name, []))


def serve(repositories, host="127.0.0.1", port=0, interruptions=None, log=sys.stderr, corruptions=(), throttle=None):
    """A started HubServer (not yet serving: call serve_forever, in this thread or another)."""
    return HubServer((host, port), repositories, interruptions, log, corruptions, throttle)
