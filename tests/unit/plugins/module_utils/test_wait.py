# -*- coding: utf-8 -*-
# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import itertools

from ansible_collections.llmops.ray_vllm.plugins.module_utils import _wait


class FakeTime:
    """A clock that moves only when slept on."""

    def __init__(self):
        self.now = 0.0
        self.slept = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


def test_pauses_start_short_and_double_up_to_the_interval():
    assert list(itertools.islice(_wait.pauses(5), 7)) == [0.25, 0.5, 1, 2, 4, 5, 5]
    assert list(itertools.islice(_wait.pauses(0.1), 3)) == [0.1, 0.1, 0.1]


def test_a_condition_met_soon_is_seen_within_a_fraction_of_a_second():
    time = FakeTime()
    result, attempts, elapsed = _wait.poll(lambda: time.now >= 0.6, bool, 300, 5, clock=time.clock, sleep=time.sleep)
    assert (result, attempts, elapsed) == (True, 3, 0.75)


def test_the_last_observation_falls_on_the_timeout():
    """A settle wait (nothing may change for ``timeout`` seconds) must look at its end, not one pause before."""
    time = FakeTime()
    seen = []
    result, attempts, elapsed = _wait.poll(
        lambda: seen.append(time.now), lambda _none: False, 10, 5, clock=time.clock, sleep=time.sleep
    )
    assert seen == [0, 0.25, 0.75, 1.75, 3.75, 7.75, 10]
    assert (attempts, elapsed) == (7, 10)


def test_no_timeout_means_one_look():
    time = FakeTime()
    assert _wait.poll(lambda: False, bool, 0, 5, clock=time.clock, sleep=time.sleep) == (False, 1, 0)
    assert time.slept == []
