# -*- coding: utf-8 -*-
# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""Polling shared by the gate modules."""

from __future__ import annotations

import time


def poll(observe, is_done, timeout, interval, clock=time.monotonic, sleep=time.sleep):
    """Call ``observe()`` until ``is_done(result)`` or ``timeout`` seconds pass.

    Returns ``(result, attempts, elapsed_seconds)`` with the last observation, done or not.
    ``timeout <= 0`` means a single observation.
    """
    start = clock()
    attempts = 0
    while True:
        result = observe()
        attempts += 1
        elapsed = clock() - start
        if is_done(result) or elapsed + interval > timeout:
            return result, attempts, elapsed
        sleep(max(interval, 0))
