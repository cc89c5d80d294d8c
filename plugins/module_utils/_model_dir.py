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
import json
import os
import tempfile

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


def endpoint_url(endpoint):
    """A hub endpoint as the SDKs take it: a URL (a bare host gets https://), without a trailing slash."""
    return (endpoint if "://" in endpoint else "https://" + endpoint).rstrip("/")


def download_with_sdk(source, model_id, revision, target, token=None, endpoint=None):
    """Download ``model_id@revision`` into ``target`` with the source's own SDK (which checks file hashes)."""
    if source == "modelscope":
        if endpoint:
            # modelscope 1.40 reads MODELSCOPE_ENDPOINT (a URL); MODELSCOPE_DOMAIN is deprecated there.
            os.environ["MODELSCOPE_ENDPOINT"] = endpoint_url(endpoint)
        from modelscope.hub.api import HubApi
        from modelscope.hub.snapshot_download import snapshot_download

        if token:
            HubApi().login(token)
        snapshot_download(model_id, revision=revision, local_dir=target)
    elif source == "huggingface":
        from huggingface_hub import snapshot_download

        # Passed with the call: HF_ENDPOINT is read once, when huggingface_hub's constants are first imported, so a
        # process that had imported them already would still go to huggingface.co.
        snapshot_download(
            repo_id=model_id,
            revision=revision,
            local_dir=target,
            token=token or None,
            endpoint=endpoint_url(endpoint) if endpoint else None,
        )
    else:
        raise ValueError("download_with_sdk does not handle source %r" % source)
