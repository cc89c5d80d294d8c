# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""A model directory: the completion marker written last into it (so a partial download or conversion is never taken
as done), the check that it holds every file it needs, and the hub SDK download that fills it.

Standard library only, and no imports from this collection: the model_storage role ships this very file to the
Kubernetes download Job (a plain python:3.11-slim) in a ConfigMap beside roles/model_storage/files/download_model.py,
which imports it from its own directory. The hosts (model_download, gguf_convert) and the Job therefore write and
accept the same marker.
"""

from __future__ import annotations

import datetime
import errno
import hashlib
import json
import os
import shutil
import stat
import tempfile
import threading
import time

MARKER_NAME = ".ray_vllm_complete.json"

# Keys that decide whether the directory holds what was asked for; completed_at is informative only.
IDENTITY_KEYS = ("source", "model_id", "revision", "dtype")

CONFIG_NAME = "config.json"
INDEX_NAME = "model.safetensors.index.json"

# Weight files that count when there is no index: the hosts serve safetensors only; the Job takes what the hub has.
SAFETENSORS_WEIGHTS = (".safetensors",)
ANY_WEIGHTS = (".safetensors", ".bin", ".gguf", ".pt")


def marker_path(directory):
    return os.path.join(directory, MARKER_NAME)


def build_marker(source, model_id, revision, dtype, completed_at=None, files=None):
    """The marker content for a model directory (``completed_at`` defaults to now, UTC, ISO 8601).

    ``files`` ({relative path: bytes}, see :func:`model_files`) adds the inventory and its total.
    """
    if completed_at is None:
        completed_at = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()
    marker = {
        "source": source,
        "model_id": model_id,
        "revision": revision,
        "dtype": dtype,
        "completed_at": completed_at,
    }
    if files is not None:
        marker.update(files=files, total_bytes=sum(files.values()))
    return marker


def _load_json_object(path):
    """``(content, None)`` for a file holding a JSON object, else ``(None, why not)``."""
    try:
        with open(path, encoding="utf-8") as stream:
            content = json.load(stream)
    except OSError as error:
        return None, f"{path} cannot be read ({error.strerror or error})"
    except ValueError as error:
        return None, f"{path} is not valid JSON: {error}"
    if not isinstance(content, dict):
        return None, f"{path} is not a JSON object"
    return content, None


def read_marker(directory):
    """The marker of ``directory`` as a dict, or None when it is missing or not a JSON object."""
    return _load_json_object(marker_path(directory))[0]


def write_marker(directory, marker):
    """Write ``marker`` into ``directory`` through a temporary file and a rename, so it is never half-written."""
    fd, temporary = tempfile.mkstemp(prefix=MARKER_NAME + ".", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as marker_file:
            json.dump(marker, marker_file, indent=2, sort_keys=True)
            marker_file.write("\n")
        # mkstemp's 0600 would keep a reader other than its owner out, as the model's files do not.
        os.chmod(temporary, 0o644)
        os.replace(temporary, marker_path(directory))
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return marker_path(directory)


def marker_differences(existing, wanted):
    """Human-readable differences between an existing marker (or None) and the wanted identity.

    An empty list means the directory already holds what is wanted.
    """
    if existing is None:
        return [f"no completion marker {MARKER_NAME}"]
    differences = []
    for key in IDENTITY_KEYS:
        if existing.get(key) != wanted.get(key):
            differences.append(f"{key} is {existing.get(key)!r}, wanted {wanted.get(key)!r}")
    return differences


def file_state(path):
    """The size of a file that can be read, else ``[errno name, why]``: what a look at a model's file sees."""
    try:
        with open(path, "rb") as stream:
            stream.read(1)
        return os.path.getsize(path)
    except OSError as error:
        return [errno.errorcode.get(error.errno, "?"), error.strerror or str(error)]


def look_at_marked_dir(directory):
    """What a look at a directory marked complete sees: ``{"marker_error": [errno name, why]}`` when its marker cannot
    be read, else ``{"marker": ..., "states": {name: file_state}}`` for the files the marker lists. model_storage runs
    it in a pod that mounts the model volume (with file_state: _model_volume.look_command), as the serving containers
    read, without CAP_DAC_OVERRIDE."""
    try:
        with open(os.path.join(directory, MARKER_NAME), encoding="utf-8") as stream:
            marker = json.load(stream)
    except OSError as error:
        return {"marker_error": [errno.errorcode.get(error.errno, "?"), error.strerror or str(error)]}
    except ValueError as error:
        return {"marker_error": ["EINVAL", "not JSON: %s" % error]}
    files = (marker.get("files") if isinstance(marker, dict) else None) or {}
    return {"marker": marker, "states": {name: file_state(os.path.join(directory, name)) for name in files}}


def look_problems(look, directory):
    """Sentences naming what a look (look_at_marked_dir) found wrong: a marker missing or unreadable, a file it lists
    gone, unreadable or of another size. Empty when the directory is what its marker says."""
    error = look.get("marker_error")
    if error:
        if error[0] == "ENOENT":
            return [f"{directory} has no completion marker {MARKER_NAME}."]
        return [f"{os.path.join(directory, MARKER_NAME)} cannot be read ({error[1]})."]
    marker = look.get("marker") if isinstance(look.get("marker"), dict) else {}
    states, problems = look.get("states") or {}, []
    for name, size in sorted((marker.get("files") or {}).items()):
        seen = states.get(name)
        if isinstance(seen, list) and seen[0] == "ENOENT":
            problems.append(f"{name} is missing (the completion marker lists it, {size} bytes)")
        elif isinstance(seen, list):
            problems.append(f"{name} cannot be read ({seen[1]})")
        elif seen != size:
            problems.append(f"{name} has {seen} bytes where the completion marker says {size}")
    return problems


def inventory_problems(directory, marker):
    """look_problems for the files ``marker`` lists, looked at here: a model damaged after it was marked complete
    (files removed, truncated, a mode changed). Empty without an inventory."""
    files = (marker or {}).get("files") or {}
    states = {name: file_state(os.path.join(directory, name)) for name in files}
    return look_problems({"marker": marker or {}, "states": states}, directory)


def marked_dir_problems(directory):
    """What is wrong with a directory marked complete, looked at here."""
    return look_problems(look_at_marked_dir(directory), directory)


def restore_access(directory):
    """Give the owner back read and write (and, for folders, search) on ``directory`` and what it holds, and others
    read: a mode changed by hand (chmod 000) locks out a reader without CAP_DAC_OVERRIDE. Returns the paths changed.
    Top-down, so a folder is opened up before it is listed; links are left alone."""
    restored = [path for path in [directory] if _add_mode(path, 0o755)]
    for root, dirs, files in os.walk(directory):
        restored += [os.path.join(root, d) for d in dirs if _add_mode(os.path.join(root, d), 0o755)]
        restored += [os.path.join(root, f) for f in files if _add_mode(os.path.join(root, f), 0o644)]
    return restored


def _add_mode(path, bits):
    mode = os.lstat(path).st_mode
    if stat.S_ISLNK(mode) or stat.S_IMODE(mode) & bits == bits:
        return False
    os.chmod(path, stat.S_IMODE(mode) | bits)
    return True


def with_inventory(marker, directory):
    """``marker`` plus the inventory of ``directory`` as it is now (see build_marker's ``files``)."""
    files = model_files(directory)
    return dict(marker, files=files, total_bytes=sum(files.values()))


def model_files(directory):
    """{relative path: size} of the model's files, leaving out hidden files and folders (SDK caches, the marker)."""
    files = {}
    for root, dirs, names in os.walk(directory):
        dirs[:] = sorted(name for name in dirs if not name.startswith("."))
        for name in sorted(names):
            if name.startswith("."):
                continue
            path = os.path.join(root, name)
            files[os.path.relpath(path, directory)] = os.path.getsize(path)
    return files


def _weight_files(directory, files, weight_suffixes):
    """``(weight file names, problems)``: the shards the index lists, or else the weight files beside config.json."""
    index_path = os.path.join(directory, INDEX_NAME)
    if INDEX_NAME not in files:
        found = [name for name in files if os.sep not in name and name.endswith(weight_suffixes)]
        patterns = ", ".join("*" + suffix for suffix in weight_suffixes)
        return found, [] if found else [f"{directory} holds no {patterns} weights."]
    index, error = _load_json_object(index_path)
    if error:
        return [], [f"{error}."]
    shards = sorted(set((index.get("weight_map") or {}).values()))
    missing = [name for name in shards if not files.get(name)]
    if not missing:
        return shards, []
    return [name for name in shards if name not in missing], [
        "%d of the %d weight shards listed in %s are missing or empty (first: %s)."
        % (len(missing), len(shards), INDEX_NAME, missing[0])
    ]


def model_dir_problems(directory, weight_suffixes=SAFETENSORS_WEIGHTS, file_problem=None):
    """Sentences naming what is missing or damaged in a model directory; empty when it is complete.

    It needs a config.json holding a JSON object, and every shard its safetensors index lists (or, without an index,
    at least one file ending in one of ``weight_suffixes``) present and not empty. ``file_problem(path)``, when given,
    looks into each weight file and returns a sentence or None.
    """
    if not os.path.isdir(directory):
        return [f"{directory} does not exist or is not a directory."]
    files = model_files(directory)
    config_error = _load_json_object(os.path.join(directory, CONFIG_NAME))[1]
    problems = [f"{config_error}."] if config_error else []
    weights, weight_problems = _weight_files(directory, files, weight_suffixes)
    problems += weight_problems
    if file_problem is not None:
        looked = (file_problem(os.path.join(directory, name)) for name in weights)
        problems += [problem for problem in looked if problem]
    return problems


class DownloadFailure(Exception):
    """A hub download that failed, with a message saying what, where, and what to do (see describe_download_error)."""

    def __init__(self, message, kind="failed", files=()):
        super().__init__(message)
        self.kind, self.files = kind, list(files)


def _error_chain(error):
    """``error``, its causes and contexts, and for a download of many files the errors of each failed file."""
    seen, pending = [], [error]
    while pending:
        current = pending.pop(0)
        if current is None or any(current is known for known in seen):
            continue
        seen.append(current)
        pending += [current.__cause__, current.__context__]
        pending += list((getattr(current, "failed_files", None) or {}).values())
    return seen


def _status(error):
    response = getattr(error, "response", None)
    return getattr(error, "status_code", None) or getattr(response, "status_code", None)


def _is_no_space(error):
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)


def _is_hash_mismatch(error):
    return type(error).__name__ == "FileIntegrityError" or isinstance(error, DownloadFailure) and error.kind == "hash"


def _first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def describe_download_error(error, source, model_id, revision, target, endpoint=None, free_bytes=None):
    """A DownloadFailure saying what went wrong with a hub download, naming the model, the revision or the files.

    Recognised in the SDK's exception, its causes and (modelscope) each failed file's error: a repository or revision
    the hub does not have (404: huggingface_hub's RepositoryNotFoundError / RevisionNotFoundError, modelscope's
    NotExistError or HTTPError 404), a full disk (ENOSPC, EDQUOT), a file whose content failed its hash check
    (modelscope's FileIntegrityError, or this module's own check). ``free_bytes`` is what is left on the target's
    filesystem, for the disk-full message.
    """
    chain = _error_chain(error)
    hub = endpoint_url(endpoint) if endpoint else "the %s default hub" % source
    failed_files = next((item.failed_files for item in chain if getattr(item, "failed_files", None)), {})
    if any(_is_no_space(item) for item in chain):
        free = "" if free_bytes is None else " (%d bytes free there now)" % free_bytes
        return DownloadFailure(
            "the disk holding %s is full: No space left on device%s. Nothing was marked complete. Free space or "
            "point the model's directory at a larger filesystem, then run again: finished files are kept."
            % (target, free),
            kind="disk_full",
        )
    bad = [item for item in chain if _is_hash_mismatch(item)]
    if bad:
        named = sorted(path for path, item in failed_files.items() if _is_hash_mismatch(item))
        named += [name for item in bad for name in getattr(item, "files", [])]
        return DownloadFailure(
            "%s failed its hash check (the bytes received differ from the hub's sha256): %s. The file was "
            "discarded; run again to fetch it anew, and if it fails again the hub or a proxy serves it damaged."
            % (", ".join(named) or "a file", _first_line(bad[0])),
            kind="hash",
            files=named,
        )
    names = [type(item).__name__ for item in chain]
    if "RevisionNotFoundError" in names:
        return DownloadFailure(
            "revision %r of %s is not on %s (404). Set the revision to a branch, tag or commit of that repository."
            % (revision, model_id, hub),
            kind="not_found",
        )
    if "RepositoryNotFoundError" in names or any(
        _status(item) == 404 or type(item).__name__ == "NotExistError" for item in chain
    ):
        return DownloadFailure(
            "%s at revision %r is not on %s (404: %s). Check the model id and the revision (a private repository "
            "also needs a token)." % (model_id, revision, hub, _first_line(error)),
            kind="not_found",
        )
    if failed_files:
        listed = "; ".join("%s: %s" % (path, _first_line(item)) for path, item in sorted(failed_files.items()))
        return DownloadFailure("%d file(s) failed: %s" % (len(failed_files), listed), files=sorted(failed_files))
    return DownloadFailure("%s: %s" % (type(error).__name__, _first_line(error)))


def git_blob_id(path):
    """The git object id of a file (sha1 of ``blob <size>\\0`` and the content): the Hub's id for a non-LFS file."""
    digest = hashlib.sha1(b"blob %d\0" % os.path.getsize(path))
    return _hash_file(path, digest)


def _hash_file(path, digest):
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


def hash_problems(directory, expected, remove=False):
    """``(problems, bad files)`` for the files of ``directory`` whose content does not match ``expected``
    ({relative path: ("sha256" | "git-blob", hex digest)}); each problem names the file. ``remove`` deletes a
    mismatching file, so the next download fetches it anew."""
    problems, bad = [], []
    for name, (kind, wanted) in sorted(expected.items()):
        path = os.path.join(directory, name)
        if not os.path.isfile(path):
            problems.append("%s is missing." % name)
            bad.append(name)
            continue
        seen = _hash_file(path, hashlib.sha256()) if kind == "sha256" else git_blob_id(path)
        if seen != wanted:
            problems.append("%s has %s %s, the hub lists %s." % (name, kind, seen, wanted))
            bad.append(name)
            if remove:
                os.unlink(path)
    return problems, bad


def remove_stale_partial_files(target):
    """Remove the partial files a killed huggingface_hub download left below ``target``; returns their paths.

    huggingface_hub 2.4.0 writes each file to ``<name>.<random>.incomplete`` under ``.cache/huggingface/download``, a
    name of that process only, and never resumes another process's file (huggingface_hub PR 4228): a killed run's
    partial file would only take disk space. Finished files are kept (the SDK skips them on the next run).
    """
    cache = os.path.join(target, ".cache", "huggingface", "download")
    removed = []
    for root, _dirs, names in os.walk(cache):
        for name in names:
            if name.endswith(".incomplete"):
                removed.append(os.path.join(root, name))
                os.unlink(removed[-1])
    return removed


def tree_size(directory):
    """Bytes of every file below ``directory``, hidden ones included (the SDKs' partial files live there)."""
    total = 0
    for root, _dirs, names in os.walk(directory):
        for name in names:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return total


def progress_line(done_bytes, total_bytes, elapsed, previous_bytes=None, interval=None):
    """One progress sentence: ``12.0 MiB of 24.0 MiB (50%) on disk after 10 s, 1.2 MiB/s``."""
    mib = 1024.0 * 1024.0
    line = "%.1f MiB" % (done_bytes / mib)
    if total_bytes:
        line += " of %.1f MiB (%d%%)" % (total_bytes / mib, min(100, 100 * done_bytes // max(total_bytes, 1)))
    line += " on disk after %d s" % elapsed
    if previous_bytes is not None and interval:
        line += ", %.1f MiB/s" % (max(done_bytes - previous_bytes, 0) / mib / interval)
    return line


class ProgressReporter:
    """Calls ``report(line)`` every ``interval`` seconds with the bytes below ``directory``, until stopped."""

    def __init__(self, directory, report, interval, total_bytes=None, clock=time.monotonic):
        self.directory, self.report, self.interval, self.total_bytes = directory, report, interval, total_bytes
        self.clock, self._stop = clock, threading.Event()
        self._thread = threading.Thread(target=self._run, name="model-download-progress", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self):
        started, previous = self.clock(), None
        while not self._stop.wait(self.interval):
            done = tree_size(self.directory)
            self.report(progress_line(done, self.total_bytes, self.clock() - started, previous, self.interval))
            previous = done


def endpoint_url(endpoint):
    """A hub endpoint as the SDKs take it: a URL (a bare host gets https://), without a trailing slash."""
    return (endpoint if "://" in endpoint else "https://" + endpoint).rstrip("/")


def download_with_sdk(source, model_id, revision, target, token=None, endpoint=None, progress=None, interval=30):
    """Download ``model_id@revision`` into ``target`` with the source's own SDK, and check every file's hash.

    modelscope checks each file against the sha256 of its listing itself; for huggingface the hub's listing is read
    first (the sha256 of LFS files, the git blob id of others) and every file is checked after the download, a
    mismatching one removed so the next run fetches it again. ``progress(line)``, when given, gets a progress
    sentence every ``interval`` seconds while the SDK works. Any failure is raised as a DownloadFailure whose message
    names the model, revision or files (describe_download_error).
    """
    os.makedirs(target, exist_ok=True)
    try:
        _download_with_sdk(source, model_id, revision, target, token, endpoint, progress, interval)
    except DownloadFailure:
        raise
    except Exception as error:  # the SDKs raise many types; describe_download_error sorts them out
        raise describe_download_error(
            error, source, model_id, revision, target, endpoint, shutil.disk_usage(target).free
        ) from error


def _download_with_sdk(source, model_id, revision, target, token, endpoint, progress, interval):
    if source == "modelscope":
        if endpoint:
            # modelscope 1.40 reads MODELSCOPE_ENDPOINT (a URL); MODELSCOPE_DOMAIN is deprecated there.
            os.environ["MODELSCOPE_ENDPOINT"] = endpoint_url(endpoint)
        from modelscope.hub.api import HubApi
        from modelscope.hub.snapshot_download import snapshot_download

        if token:
            HubApi().login(token)
        with _progress(target, progress, interval, None):
            snapshot_download(model_id, revision=revision, local_dir=target)
    elif source == "huggingface":
        from huggingface_hub import HfApi, snapshot_download

        # Passed with each call: HF_ENDPOINT is read once, when huggingface_hub's constants are first imported, so
        # a process that had imported them already would still go to huggingface.co.
        url = endpoint_url(endpoint) if endpoint else None
        api = HfApi(endpoint=url, token=token or None)
        expected, total = {}, 0
        for entry in api.list_repo_tree(model_id, revision=revision, recursive=True):
            if getattr(entry, "blob_id", None) is None:
                continue  # a folder
            lfs = getattr(entry, "lfs", None)
            expected[entry.path] = ("sha256", lfs.sha256) if lfs else ("git-blob", entry.blob_id)
            total += entry.size or 0
        remove_stale_partial_files(target)
        with _progress(target, progress, interval, total):
            snapshot_download(repo_id=model_id, revision=revision, local_dir=target, token=token or None, endpoint=url)
        problems, bad = hash_problems(target, expected, remove=True)
        if problems:
            raise DownloadFailure(
                "%s failed its hash check: %s The file was removed; run again to fetch it anew, and if it fails "
                "again the hub or a proxy serves it damaged." % (", ".join(bad), " ".join(problems)),
                kind="hash",
                files=bad,
            )
    else:
        raise ValueError("download_with_sdk does not handle source %r" % source)


def _progress(target, report, interval, total_bytes):
    """A ProgressReporter when ``report`` is given, else a context that does nothing."""
    if report is None:
        return _NoProgress()
    return ProgressReporter(target, report, interval, total_bytes)


class _NoProgress:
    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return None
