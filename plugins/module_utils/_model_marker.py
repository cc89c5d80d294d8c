# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""Completion marker written last into a model directory, so a partial download or conversion is never taken as done."""

from __future__ import annotations

import datetime
import json
import os
import tempfile

MARKER_NAME = ".ray_vllm_complete.json"

# Keys that decide whether the directory holds what was asked for; completed_at is informative only.
IDENTITY_KEYS = ("source", "model_id", "revision", "dtype")


def marker_path(directory):
    return os.path.join(directory, MARKER_NAME)


def build_marker(source, model_id, revision, dtype, completed_at=None):
    """The marker content for a model directory (``completed_at`` defaults to now, UTC, ISO 8601)."""
    if completed_at is None:
        completed_at = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()
    return {
        "source": source,
        "model_id": model_id,
        "revision": revision,
        "dtype": dtype,
        "completed_at": completed_at,
    }


def read_marker(directory):
    """The marker of ``directory`` as a dict, or None when it is missing or not a JSON object."""
    try:
        with open(marker_path(directory), encoding="utf-8") as marker_file:
            content = json.load(marker_file)
    except (OSError, ValueError):
        return None
    return content if isinstance(content, dict) else None


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
