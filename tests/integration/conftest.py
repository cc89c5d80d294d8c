# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Fixtures for the integration tests: real processes, always cleaned up. Ray helpers live in ray_local.py."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ray_local
import testbed_backends

COLLECTION_ROOT = Path(__file__).resolve().parents[2]


def pytest_configure(config):
    config.addinivalue_line("markers", "integration: starts real processes (Ray, vLLM) on this machine")


@pytest.fixture(scope="session")
def ray_binary():
    """The `ray` of the Python running the tests; a missing one fails the test (never a skip)."""
    return ray_local.default_ray_binary()


@pytest.fixture(scope="session")
def collections_path():
    """A folder holding ansible_collections/llmops/ray_vllm (this checkout), for PYTHONPATH/ANSIBLE_COLLECTIONS_PATH."""
    if COLLECTION_ROOT.parent.name == "llmops" and COLLECTION_ROOT.parents[1].name == "ansible_collections":
        yield str(COLLECTION_ROOT.parents[2])
        return
    with tempfile.TemporaryDirectory(prefix="coll-") as folder:
        namespace = Path(folder, "ansible_collections", "llmops")
        namespace.mkdir(parents=True)
        (namespace / "ray_vllm").symlink_to(COLLECTION_ROOT)
        yield folder


@pytest.fixture
def ray_cluster_factory(ray_binary):
    """``start(head=dict(...), workers=[dict(...)], **LocalRayCluster options)`` -> a started LocalRayCluster.

    Every cluster started through it is stopped at teardown, pass or fail.
    """
    clusters = []

    def start(head=None, workers=(), **options):
        cluster = ray_local.LocalRayCluster(ray_binary=options.pop("ray_binary", ray_binary), **options)
        clusters.append(cluster)
        cluster.start_head(**(head or {}))
        for worker in workers:
            cluster.add_worker(**worker)
        return cluster

    yield start
    for cluster in reversed(clusters):
        cluster.stop()


# One vLLM server with an API key for every Kubernetes-platform test (testbed_backends.py).
SHARED_VLLM_KEY = testbed_backends.SHARED_VLLM_KEY
SHARED_VLLM_NAMES = testbed_backends.SHARED_VLLM_NAMES


@pytest.fixture(scope="session")
def keyed_vllm(tmp_path_factory):
    with testbed_backends.keyed_vllm_server(tmp_path_factory.mktemp("vllm-keyed")) as server:
        yield server
