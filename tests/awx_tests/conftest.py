# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Fixtures for the AWX suite: the AWX API double (tests/awx_double) and jobs run as AWX runs them."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="session")
def awx_double():
    """A running AWX API v2 double (tests/awx_double/server.py) for the whole session; handle.reset() clears it."""
    from awx_double import server

    handle = server.start()
    yield handle
    handle.stop()
