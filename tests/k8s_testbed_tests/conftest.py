# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Fixtures for the test bed's own tests: a running emulated cluster per module (default seed) or per test."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from k8s_testbed.harness import RunningTestBed, TestBeds


@pytest.fixture(scope="module")
def testbed(tmp_path_factory):
    with RunningTestBed(tmp_path_factory.mktemp("testbed")) as bed:
        yield bed


@pytest.fixture
def fresh_testbed(tmp_path):
    """A test bed of one's own, for tests that break things (faults, compaction, controllers off)."""
    beds = TestBeds(tmp_path)
    yield beds.start
    beds.stop_all()
