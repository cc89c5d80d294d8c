# -*- coding: utf-8 -*-
# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""Keep several small text files with given contents in one module call (the file_set module).

One call instead of a folder task and a copy task per file: on a re-run that changes nothing, each of those is a
round trip of its own.
"""

from __future__ import annotations

import os


def read_text(path):
    """The file's text, or None when there is none (a missing file, or a folder in its place is the caller's)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def planned(files, read=read_text):
    """``[(path, before, after)]`` of the files whose content differs from the wanted one; ``before`` None: new."""
    changes = []
    for wanted in files:
        before = read(wanted["path"])
        if before != wanted["content"]:
            changes.append((wanted["path"], before, wanted["content"]))
    return changes


def missing_folders(paths, exists=os.path.isdir):
    """The parent folders of ``paths`` that do not exist yet, each once, outermost first."""
    missing = []
    for path in paths:
        folder = os.path.dirname(path)
        chain = []
        while folder and not exists(folder) and folder not in missing:
            chain.append(folder)
            folder = os.path.dirname(folder)
        missing.extend(reversed(chain))
    return sorted(set(missing), key=lambda folder: (folder.count(os.sep), folder))


def diff_of(changes):
    """Ansible's diff list: one before/after per changed file, named by its path."""
    return [
        {"before_header": path, "after_header": path, "before": before or "", "after": after}
        for path, before, after in changes
    ]
