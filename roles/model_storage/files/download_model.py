# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Download one model into the shared volume; the Job <release>-model-download of the model_storage role runs it.

Standard library only, besides the hub SDK it installs when missing (the image is a plain python:3.11-slim).
Environment: MODEL_SOURCE (modelscope | huggingface), MODEL_ID, MODEL_REVISION, MODEL_DIR (model_storage_path, on
the volume), MODELSCOPE_VERSION / HUGGINGFACE_HUB_VERSION (pinned SDK), PIP_INDEX_URL (optional mirror),
MODEL_ENDPOINT (optional hub mirror), MODELSCOPE_API_TOKEN / HF_TOKEN (optional, from a Secret),
MODEL_PROGRESS_INTERVAL (seconds between progress lines, default 30).

While the SDK works, a progress line (bytes on disk, of the total when the hub lists it, and the rate) is printed every
MODEL_PROGRESS_INTERVAL seconds. Every file is checked against the hub's hash (modelscope's SDK does it; for
huggingface _model_dir does it after the download); a failure names the file, a missing model or revision, or a full
disk, and leaves no completion marker.

The SDK downloads into MODEL_DIR and resumes partial files on a retry. Only a finished, checked download gets the
completion marker MODEL_DIR/.ray_vllm_complete.json (source, model_id, revision, dtype, completed_at, plus the files
and their sizes). A marker for another model or revision is removed before the download starts, so a directory in
the middle of a change is never taken as complete; so is the marker of a model damaged since (a file the marker lists
gone, resized or unreadable), whose missing files are then fetched again. A mode changed by hand (chmod 000) is undone
first: the serving containers read without CAP_DAC_OVERRIDE.

The marker and the completeness check are the collection's plugins/module_utils/_model_dir.py, the one the hosts
platform's model_download module uses: the role's ConfigMap carries that file beside this one, and Python finds it
in this script's own directory.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

from _model_dir import (
    ANY_WEIGHTS,
    DownloadFailure,
    build_marker,
    download_with_sdk,
    inventory_problems,
    marker_differences,
    marker_path,
    model_dir_problems,
    model_files,
    read_marker,
    restore_access,
    write_marker,
)

PYDEPS = "/tmp/llmops-ray-vllm-pydeps"


def log(message):
    print(f"[model-download] {message}", flush=True)


def fail(message):
    print(f"[model-download] ERROR: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


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


# What the operator changes for each kind of failure, in the model_storage role's terms.
FIXES = {
    "not_found": "set model_storage_model_id (MODEL_ID) and model_storage_revision (MODEL_REVISION) to a repository "
    "and revision that model_storage_endpoint (MODEL_ENDPOINT) serves",
    "disk_full": "make model_storage_volume_size larger or free space on the volume",
    "hash": "run the Job again; if the same file fails again, the hub or a proxy serves it damaged",
}


def download(source, model_id, revision, target):
    token = os.environ.get("MODELSCOPE_API_TOKEN") or os.environ.get("HF_TOKEN") or None
    endpoint = os.environ.get("MODEL_ENDPOINT") or None
    interval = float(os.environ.get("MODEL_PROGRESS_INTERVAL") or 30)
    ensure_sdk(source)
    download_with_sdk(
        source, model_id, revision, target, token=token, endpoint=endpoint, progress=log, interval=interval
    )


def main():
    source = os.environ.get("MODEL_SOURCE", "modelscope")
    model_id = os.environ["MODEL_ID"]
    revision = os.environ.get("MODEL_REVISION", "master")
    target = os.environ["MODEL_DIR"]
    if source not in ("modelscope", "huggingface"):
        fail(f"MODEL_SOURCE {source!r} is not modelscope or huggingface")
    os.makedirs(target, exist_ok=True)
    restored = restore_access(target)
    if restored:
        log(f"gave the owner back read access (and others read) to {len(restored)} path(s): {', '.join(restored[:5])}")
    existing = read_marker(target)
    differences = marker_differences(existing, build_marker(source, model_id, revision, None))
    damage = [] if differences else inventory_problems(target, existing)
    if not differences and not damage:
        log(f"{model_id}@{revision} is already complete in {target} ({marker_path(target)}); nothing to do")
        return
    if damage:
        log(f"{target} was marked complete but is damaged ({'; '.join(damage)}); fetching what is missing again")
        os.unlink(marker_path(target))
    elif existing:
        held = f"{existing.get('model_id')}@{existing.get('revision')}"
        log(f"{target} holds {held} ({'; '.join(differences)}); replacing it")
        os.unlink(marker_path(target))
    log(f"downloading {source}:{model_id}@{revision} into {target} (partial files resume on a retry)")
    try:
        download(source, model_id, revision, target)
    except DownloadFailure as error:
        fix = FIXES.get(error.kind, "run the Job again: finished files are kept and a partial file resumes")
        fail(f"downloading {model_id}@{revision} failed: {error} Fix: {fix}. No completion marker was written.")
    except Exception as error:  # the SDKs raise many kinds; the message matters
        fail(f"downloading {model_id}@{revision} failed: {type(error).__name__}: {error}")
    problems = model_dir_problems(target, ANY_WEIGHTS)
    if problems:
        fail(f"the download of {model_id}@{revision} is incomplete: {' '.join(problems)}")
    marker = build_marker(source, model_id, revision, None, files=model_files(target))
    written = write_marker(target, marker)
    log(f"complete: {len(marker['files'])} files, {marker['total_bytes']} bytes; wrote {written}")


if __name__ == "__main__":
    main()
