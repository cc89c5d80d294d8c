"""Where the shared real recordings (../shared/fixtures beside the project) are, for every unit test."""

from __future__ import annotations

import os


def shared_fixtures():
    """The shared/fixtures folder, found by walking up from this file.

    The tree may be a copy (ansible-test runs from .build/test/...), and CI puts shared/ beside its clone;
    walking up finds it from either. Missing recordings fail the tests rather than skipping them.
    """
    start = os.path.dirname(os.path.abspath(__file__))
    directory = start
    while True:
        candidate = os.path.join(directory, "shared", "fixtures")
        if os.path.isdir(candidate):
            return candidate
        parent = os.path.dirname(directory)
        if parent == directory:
            raise AssertionError("no shared/fixtures above %s: the real GPU and Ray recordings are missing" % start)
        directory = parent
