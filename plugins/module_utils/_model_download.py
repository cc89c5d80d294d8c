# -*- coding: utf-8 -*-
# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""Fetch a model from ModelScope or Hugging Face into a directory, or check one already there.

A download goes to ``<dest>.partial`` (the SDKs resume their partial files there on the next run), is checked
complete, gets its completion marker, and only then is renamed to ``dest``: a partial model is never at ``dest``.
"""

from __future__ import annotations

import glob
import json
import os
import shutil

from ansible_collections.llmops.ray_vllm.plugins.module_utils._model_facts import (
    INDEX_NAME,
    ModelFactsError,
    architecture_facts,
    read_config,
    read_safetensors_header,
)
from ansible_collections.llmops.ray_vllm.plugins.module_utils._model_marker import (
    build_marker,
    marker_differences,
    read_marker,
    write_marker,
)

PARTIAL_SUFFIX = ".partial"


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
    """Sentences naming what is missing or truncated in a model directory; empty when it is complete."""
    if not os.path.isdir(model_dir):
        return ["%s does not exist or is not a directory." % model_dir]
    problems = []
    try:
        read_config(model_dir)
    except ModelFactsError as error:
        problems.append(str(error))
    index_path = os.path.join(model_dir, INDEX_NAME)
    if os.path.isfile(index_path):
        try:
            with open(index_path, encoding="utf-8") as stream:
                shards = sorted(set((json.load(stream).get("weight_map") or {}).values()))
        except (OSError, ValueError) as error:
            return problems + ["%s cannot be read: %s." % (index_path, error)]
        missing = [name for name in shards if not os.path.isfile(os.path.join(model_dir, name))]
        if missing:
            problems.append(
                "%d of the %d weight shards listed in %s are missing (first: %s)."
                % (len(missing), len(shards), INDEX_NAME, missing[0])
            )
        files = [os.path.join(model_dir, name) for name in shards if name not in missing]
    else:
        files = sorted(glob.glob(os.path.join(model_dir, "*.safetensors")))
        if not files:
            problems.append("%s holds no *.safetensors weights." % model_dir)
    for path in files:
        problem = safetensors_file_problem(path)
        if problem:
            problems.append(problem)
    return problems


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
    differences = marker_differences(read_marker(dest), wanted_marker(source, model_id, revision))
    if differences:
        return differences
    return completeness_problems(dest)


def download_with_sdk(source, model_id, revision, target, token=None, endpoint=None):
    """Download ``model_id@revision`` into ``target`` with the source's own SDK (which checks file hashes)."""
    if source == "modelscope":
        if endpoint:
            os.environ["MODELSCOPE_DOMAIN"] = endpoint
        from modelscope.hub.api import HubApi
        from modelscope.hub.snapshot_download import snapshot_download

        if token:
            HubApi().login(token)
        snapshot_download(model_id, revision=revision, local_dir=target)
    elif source == "huggingface":
        if endpoint:
            os.environ["HF_ENDPOINT"] = endpoint
        from huggingface_hub import snapshot_download

        snapshot_download(repo_id=model_id, revision=revision, local_dir=target, token=token or None)
    else:
        raise ValueError("download_with_sdk does not handle source %r" % source)


def finish(partial, dest, source, model_id, revision):
    """Mark a checked download complete and move it to ``dest``, replacing an older model there."""
    write_marker(partial, wanted_marker(source, model_id, revision))
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
