# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The recording of vLLM's metric names that the dashboard's unit tests read (test_monitoring.py) is what the vLLM
that make setup installs makes: its files' digests and every name read again from its source."""

from __future__ import annotations

import importlib.metadata
import json

import pytest
import vllm_metric_names

pytestmark = pytest.mark.integration


def test_the_recorded_metric_names_are_the_installed_vllms():
    version = importlib.metadata.version(vllm_metric_names.DISTRIBUTION)
    path = vllm_metric_names.recording_path(version)
    recorder = vllm_metric_names.__file__
    assert path.exists(), f"no recording for {vllm_metric_names.DISTRIBUTION} {version}: run {recorder}"
    recorded = json.loads(path.read_text())
    assert recorded == dict(vllm_metric_names.names(vllm_metric_names.installed_sources()), version=version)
    assert recorded["ray"]["replica_tags"] == ["ReplicaId"]
