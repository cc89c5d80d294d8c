# -*- coding: utf-8 -*-
# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""Polling shared by the gate modules."""

from __future__ import annotations

import time

# The first pause between two observations; each next pause doubles, up to the caller's interval. A gate then
# answers within a fraction of a second of readiness instead of at the next fixed tick.
FIRST_PAUSE_S = 0.25


def pauses(interval, first=FIRST_PAUSE_S):
    """The pauses between observations: ``first``, doubling, never longer than ``interval``."""
    pause = min(first, interval)
    while True:
        yield max(pause, 0)
        pause = min(pause * 2, interval)


def poll(observe, is_done, timeout, interval, clock=time.monotonic, sleep=time.sleep):
    """Call ``observe()`` until ``is_done(result)`` or ``timeout`` seconds pass, pausing as ``pauses(interval)``.

    The last pause is cut short so that the last observation falls on the timeout.
    Returns ``(result, attempts, elapsed_seconds)`` with the last observation, done or not.
    ``timeout <= 0`` means a single observation.
    """
    start = clock()
    attempts = 0
    for pause in pauses(interval):
        result = observe()
        attempts += 1
        elapsed = clock() - start
        if is_done(result) or elapsed >= timeout:
            return result, attempts, elapsed
        sleep(min(pause, timeout - elapsed))
