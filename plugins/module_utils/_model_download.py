# -*- coding: utf-8 -*-
# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""Fetch a model from ModelScope or Hugging Face into a directory, or check one already there.

A download goes to ``<dest>.partial`` (the SDKs resume their partial files there on the next run), is checked
complete, gets its completion marker, and only then is renamed to ``dest``: a partial model is never at ``dest``.
"""

from __future__ import annotations

import os
import shutil
import sys
import traceback

from ansible_collections.llmops.ray_vllm.plugins.module_utils._model_dir import (
    SAFETENSORS_WEIGHTS,
    DownloadFailure,
    build_marker,
    download_with_sdk,
    inventory_problems,
    marker_differences,
    model_dir_problems,
    read_marker,
    with_inventory,
    write_marker,
)
from ansible_collections.llmops.ray_vllm.plugins.module_utils._model_facts import (
    ModelFactsError,
    architecture_facts,
    read_config,
    read_safetensors_header,
)

PARTIAL_SUFFIX = ".partial"

# The Python package each source's SDK comes in.
SDK_PACKAGES = {"modelscope": "modelscope", "huggingface": "huggingface_hub"}


class ModelDownloadError(Exception):
    """A failure the module reports as it is; ``result`` holds what was seen, plus ``problems`` or ``exception``."""

    def __init__(self, msg, result, **details):
        super().__init__(msg)
        self.result = dict(result, **details)


def safetensors_file_problem(path):
    """None when the file holds every byte its header promises, else a sentence saying what is wrong."""
    try:
        header = read_safetensors_header(path)
    except ModelFactsError as error:
        return str(error)
    with open(path, "rb") as stream:
        header_length = int.from_bytes(stream.read(8), "little")
    data_end = 0
    for name, entry in header.items():
        if name == "__metadata__" or not isinstance(entry, dict):
            continue
        offsets = entry.get("data_offsets") or [0, 0]
        data_end = max(data_end, int(offsets[1]))
    expected = 8 + header_length + data_end
    actual = os.path.getsize(path)
    if actual < expected:
        return "%s has %d of its %d bytes; the download was cut short." % (path, actual, expected)
    return None


def completeness_problems(model_dir):
    """Sentences naming what is missing or truncated in a model directory; empty when it is complete.

    The check the download Job runs too (_model_dir), with safetensors weights only, each read to its last byte.
    """
    return model_dir_problems(model_dir, SAFETENSORS_WEIGHTS, safetensors_file_problem)


def model_summary(model_dir):
    """Architecture facts of a complete model directory (what the plan and vLLM need)."""
    facts = architecture_facts(read_config(model_dir))
    keys = (
        "model_type",
        "architectures",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "hidden_size",
        "vocab_size",
        "max_position_embeddings",
        "torch_dtype",
    )
    return {key: facts.get(key) for key in keys}


def wanted_marker(source, model_id, revision):
    return build_marker(source, model_id, revision, None)


def needs_fetch(dest, source, model_id, revision):
    """Sentences saying why ``dest`` must be fetched again; empty when it already holds this model."""
    marker = read_marker(dest)
    differences = marker_differences(marker, wanted_marker(source, model_id, revision))
    if differences:
        return differences
    return completeness_problems(dest) or inventory_problems(dest, marker)


def finish(partial, dest, source, model_id, revision):
    """Mark a checked download complete and move it to ``dest``, replacing an older model there."""
    write_marker(partial, with_inventory(wanted_marker(source, model_id, revision), partial))
    if os.path.isdir(dest):
        retired = dest + ".old"
        shutil.rmtree(retired, ignore_errors=True)
        os.replace(dest, retired)
        os.replace(partial, dest)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        parent = os.path.dirname(dest.rstrip("/"))
        if parent:
            os.makedirs(parent, exist_ok=True)
        os.replace(partial, dest)


def check_local(dest):
    """The module's result for a model put at ``dest`` by other means; raises when it is not complete."""
    result = dict(changed=False, path=dest, reasons=[])
    problems = completeness_problems(dest)
    if problems:
        raise ModelDownloadError(
            "The model at %s is not complete: %s Put the whole model there (config.json and every "
            "weight file), or fetch it with source modelscope or huggingface." % (dest, " ".join(problems)),
            result,
            problems=problems,
        )
    return dict(result, marker=read_marker(dest) or {}, model=model_summary(dest))


def fetch_model(params, check_mode=False, download=None):
    """The module's result for a model fetched from a hub into ``params["dest"]``; nothing changes in check mode.

    ``download`` (default :func:`download_with_sdk`) takes the arguments of :func:`download_with_sdk`.
    """
    dest = params["dest"].rstrip("/")
    source, model_id, revision = params["source"], params["model_id"], params["revision"]
    reasons = needs_fetch(dest, source, model_id, revision)
    before = read_marker(dest) or {}
    after = {"source": source, "model_id": model_id, "revision": revision}
    result = dict(changed=bool(reasons), path=dest, reasons=reasons)
    result["diff"] = {"before": before, "after": after if reasons else before}
    if not reasons:
        return dict(result, marker=before, model=model_summary(dest))
    if check_mode:
        return result
    partial = dest + PARTIAL_SUFFIX
    _download(params, partial, download or download_with_sdk, result)
    problems = completeness_problems(partial)
    if problems:
        raise ModelDownloadError(
            "The download of %s@%s finished but the model is not complete: %s It stays in %s; run again to resume."
            % (model_id, revision, " ".join(problems), partial),
            result,
            problems=problems,
        )
    finish(partial, dest, source, model_id, revision)
    return dict(result, marker=read_marker(dest), model=model_summary(dest))


def _download(params, partial, download, result):
    source, model_id, revision = params["source"], params["model_id"], params["revision"]
    try:
        download(source, model_id, revision, partial, params["token"], params["endpoint"])
    except ImportError as error:
        raise ModelDownloadError(sdk_missing_message(source, error), result, exception=traceback.format_exc()) from None
    except DownloadFailure as error:
        raise ModelDownloadError(
            failure_message(error, params, partial), result, failure=error.kind, files=error.files
        ) from None
    except Exception as error:  # the SDKs raise many types; the operator needs the text and the resume hint
        raise ModelDownloadError(
            "Downloading %s@%s from %s failed: %s. What was fetched stays in %s and the next run resumes from it."
            % (model_id, revision, source, error, partial),
            result,
            exception=traceback.format_exc(),
        ) from None


def failure_message(failure, params, partial):
    """The module's message for a DownloadFailure: what failed (naming the option to change) and what is kept."""
    source, model_id, revision = params["source"], params["model_id"], params["revision"]
    fix = {
        "not_found": " Set model_id and revision to a repository and revision the endpoint serves.",
        "disk_full": "",
        "hash": "",
    }.get(failure.kind, "")
    return "Downloading %s@%s from %s failed: %s%s What was fetched stays in %s and the next run resumes from it." % (
        model_id,
        revision,
        source,
        failure,
        fix,
        partial,
    )


def sdk_missing_message(source, error, interpreter=None):
    """What to do when the source's SDK cannot be imported by the Python that runs the module."""
    return (
        "source=%s needs the Python package %s, which the interpreter running this module (%s) cannot import: %s. "
        "Install %s into that interpreter, or set ansible_python_interpreter to a Python that has it."
        % (source, SDK_PACKAGES[source], interpreter or sys.executable, error, SDK_PACKAGES[source])
    )
