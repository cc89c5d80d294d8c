# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Download one model into the shared volume; the Job <release>-model-download of the model_storage role runs it.

Standard library only, besides the hub SDK it installs when missing (the image is a plain python:3.11-slim).
Environment: MODEL_SOURCE (modelscope | huggingface), MODEL_ID, MODEL_REVISION, MODEL_DIR (model_storage_path, on
the volume), MODELSCOPE_VERSION / HUGGINGFACE_HUB_VERSION (pinned SDK), PIP_INDEX_URL (optional mirror),
MODEL_ENDPOINT (optional hub mirror), MODELSCOPE_API_TOKEN / HF_TOKEN (optional, from a Secret).

The SDK downloads into MODEL_DIR and resumes partial files on a retry. Only a finished, checked download gets the
completion marker MODEL_DIR/.ray_vllm_complete.json, in the format the hosts platform's model_download module
writes (plugins/module_utils/_model_marker.py: source, model_id, revision, dtype, completed_at), plus the files
and their sizes. A marker for another model or revision is removed before the download starts, so a directory in
the middle of a change is never taken as complete.
"""

from __future__ import annotations

import datetime
import importlib
import json
import os
import subprocess
import sys
import tempfile

MARKER_NAME = ".ray_vllm_complete.json"
IDENTITY_KEYS = ("source", "model_id", "revision", "dtype")
INDEX_NAME = "model.safetensors.index.json"
PYDEPS = "/tmp/llmops-ray-vllm-pydeps"


def log(message):
    print(f"[model-download] {message}", flush=True)


def fail(message):
    print(f"[model-download] ERROR: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def read_marker(directory):
    try:
        with open(os.path.join(directory, MARKER_NAME), encoding="utf-8") as handle:
            content = json.load(handle)
    except (OSError, ValueError):
        return None
    return content if isinstance(content, dict) else None


def write_marker(directory, marker):
    fd, temporary = tempfile.mkstemp(prefix=MARKER_NAME + ".", dir=directory)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(marker, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.replace(temporary, os.path.join(directory, MARKER_NAME))


def ensure_sdk(source):
    """Import the hub SDK, pip-installing the pinned version first when it is missing or another version."""
    if source == "modelscope":
        module, distribution, version = "modelscope", "modelscope", os.environ.get("MODELSCOPE_VERSION", "")
    else:
        module, distribution, version = (
            "huggingface_hub",
            "huggingface_hub",
            os.environ.get("HUGGINGFACE_HUB_VERSION", ""),
        )
    sys.path.insert(0, PYDEPS)
    try:
        from importlib import metadata

        installed = metadata.version(distribution)
    except Exception:  # any failure means it is not usable
        installed = None
    if installed and (not version or installed == version):
        log(f"{distribution} {installed} is installed")
        return importlib.import_module(module)
    requirement = f"{distribution}=={version}" if version else distribution
    command = [sys.executable, "-m", "pip", "install", "--no-cache-dir", "--disable-pip-version-check", "--quiet"]
    command += ["--target", PYDEPS, requirement]
    if os.environ.get("PIP_INDEX_URL"):
        command += ["--index-url", os.environ["PIP_INDEX_URL"]]
    log(f"installing {requirement} ({' '.join(command[1:])})")
    completed = subprocess.run(command, check=False)
    if completed.returncode != 0:
        fail(
            f"pip could not install {requirement} (exit {completed.returncode}); set model_storage_pip_index_url to "
            "a reachable index, or use a model_storage_download_image that has it"
        )
    importlib.invalidate_caches()
    return importlib.import_module(module)


def download(source, model_id, revision, target):
    token = os.environ.get("MODELSCOPE_API_TOKEN") or os.environ.get("HF_TOKEN") or None
    endpoint = os.environ.get("MODEL_ENDPOINT") or None
    ensure_sdk(source)
    if source == "modelscope":
        if endpoint:
            os.environ["MODELSCOPE_DOMAIN"] = endpoint
        from modelscope.hub.api import HubApi
        from modelscope.hub.snapshot_download import snapshot_download

        if token:
            HubApi().login(token)
        snapshot_download(model_id, revision=revision, local_dir=target)
    else:
        if endpoint:
            os.environ["HF_ENDPOINT"] = endpoint
        from huggingface_hub import snapshot_download

        snapshot_download(repo_id=model_id, revision=revision, local_dir=target, token=token)


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


def completeness_problems(directory, files):
    problems = []
    if "config.json" not in files:
        problems.append("config.json is missing")
    index_path = os.path.join(directory, INDEX_NAME)
    if os.path.isfile(index_path):
        with open(index_path, encoding="utf-8") as handle:
            shards = sorted(set((json.load(handle).get("weight_map") or {}).values()))
        missing = [shard for shard in shards if not files.get(shard)]
        if missing:
            problems.append(
                f"{len(missing)} weight shard(s) listed in {INDEX_NAME} are missing or empty: {missing[:5]}"
            )
    elif not any(name.endswith((".safetensors", ".bin", ".gguf", ".pt")) for name in files):
        problems.append("no weight file (*.safetensors, *.bin) was downloaded")
    return problems


def main():
    source = os.environ.get("MODEL_SOURCE", "modelscope")
    model_id = os.environ["MODEL_ID"]
    revision = os.environ.get("MODEL_REVISION", "master")
    target = os.environ["MODEL_DIR"]
    wanted = {"source": source, "model_id": model_id, "revision": revision, "dtype": None}
    if source not in ("modelscope", "huggingface"):
        fail(f"MODEL_SOURCE {source!r} is not modelscope or huggingface")
    os.makedirs(target, exist_ok=True)
    existing = read_marker(target)
    if existing and all(existing.get(key) == wanted[key] for key in IDENTITY_KEYS):
        log(f"{model_id}@{revision} is already complete in {target} ({MARKER_NAME}); nothing to do")
        return
    if existing:
        log(f"{target} holds {existing.get('model_id')}@{existing.get('revision')}; replacing it")
        os.unlink(os.path.join(target, MARKER_NAME))
    log(f"downloading {source}:{model_id}@{revision} into {target} (partial files resume on a retry)")
    try:
        download(source, model_id, revision, target)
    except Exception as error:  # the SDKs raise many kinds; the message matters
        fail(f"downloading {model_id}@{revision} failed: {type(error).__name__}: {error}")
    files = model_files(target)
    problems = completeness_problems(target, files)
    if problems:
        fail(f"the download of {model_id}@{revision} is incomplete: {'; '.join(problems)}")
    completed_at = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()
    marker = dict(wanted, completed_at=completed_at, files=files, total_bytes=sum(files.values()))
    write_marker(target, marker)
    log(f"complete: {len(files)} files, {marker['total_bytes']} bytes; wrote {os.path.join(target, MARKER_NAME)}")


if __name__ == "__main__":
    main()
