# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""llmops.ray_vllm.ray_status run as a real module process against a real local Ray cluster.

The cluster: a head (1 CPU, no GPU) and a worker (1 CPU, 1 logical GPU), as the seed's head + GPU worker.
Each module run is ``python -m ansible_collections.llmops.ray_vllm.plugins.modules.ray_status ARGS.json``,
the way Ansible runs a module, with its JSON answer read from stdout.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time

import pytest
import ray_local

pytestmark = pytest.mark.integration

MODULE = "ansible_collections.llmops.ray_vllm.plugins.modules.ray_status"
SOURCES = ["address", "dashboard_url", "status_text"]


class ModuleRun:
    """A module process started with an args file; ``result()`` waits and decodes its JSON answer."""

    def __init__(self, args, collections_path, env=None):
        handle, self.args_path = tempfile.mkstemp(prefix="ray-status-args-", suffix=".json")
        with os.fdopen(handle, "w") as args_file:
            json.dump({"ANSIBLE_MODULE_ARGS": args}, args_file)
        run_env = dict(os.environ, PYTHONPATH=collections_path)
        run_env.pop("RAY_ADDRESS", None)
        for name, value in (env or {}).items():
            if value is None:
                run_env.pop(name, None)
            else:
                run_env[name] = value
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", MODULE, self.args_path],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=run_env,
        )

    def result(self, timeout=180):
        try:
            stdout, stderr = self.process.communicate(timeout=timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            os.unlink(self.args_path)
        self.seconds = time.monotonic() - self.started
        try:
            answer = json.loads(stdout)
        except ValueError:
            raise AssertionError(
                f"module printed no JSON (rc={self.process.returncode}):\n{stdout}\n{stderr}"
            ) from None
        answer["rc"] = self.process.returncode
        answer["wall_seconds"] = self.seconds
        return answer


def run_module(args, collections_path, timeout=180, env=None):
    return ModuleRun(args, collections_path, env).result(timeout)


def source_args(cluster, source, ray_binary):
    if source == "address":
        return dict(address=cluster.gcs_address, ray_binary=ray_binary)
    if source == "dashboard_url":
        return dict(dashboard_url=cluster.dashboard_url)
    text = subprocess.run(
        [ray_binary, "status", "--address", cluster.gcs_address, "-v"],
        stdout=subprocess.PIPE,
        check=True,
        env=cluster.env,
    ).stdout.decode()
    return dict(status_text=text)


def wait_for_status_nodes(cluster, ray_binary, count, timeout=60):
    """The autoscaler monitor refreshes ``ray status`` every few seconds, after the GCS already knows a node."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = subprocess.run(
            [ray_binary, "status", "--address", cluster.gcs_address],
            stdout=subprocess.PIPE,
            env=cluster.env,
            check=False,
        ).stdout.decode()
        if len(re.findall(r"^ \d+ node_[0-9a-f]+$", text, flags=re.M)) == count:
            return
        time.sleep(1)
    raise AssertionError(f"ray status never listed {count} nodes:\n{text}")


@pytest.fixture(scope="module")
def cluster(ray_binary):
    with ray_local.local_ray_cluster(
        head=dict(num_cpus=1, num_gpus=0), workers=[dict(num_cpus=1, num_gpus=1)], ray_binary=ray_binary
    ) as started:
        wait_for_status_nodes(started, ray_binary, 2)
        yield started


@pytest.mark.parametrize("source", SOURCES)
def test_gate_passes_with_both_nodes_and_the_gpu(cluster, ray_binary, collections_path, source):
    args = dict(source_args(cluster, source, ray_binary), expected_nodes=2, expected_gpus=1, expected_cpus=2)
    result = run_module(args, collections_path)

    assert result["rc"] == 0, result["msg"]
    assert result["ready"] is True and result["problems"] == []
    assert result["changed"] is False
    assert result["nodes"]["alive"] == 2 and result["nodes"]["failed"] == 0
    assert result["resources"]["GPU"] == {"used": 0.0, "total": 1.0}
    assert result["resources"]["CPU"]["total"] == 2.0
    assert result["resources"]["object_store_memory"]["total"] == 2 * 100 * 1024 * 1024
    alive_ids = {node["node_id"] for node in result["node_details"] if node["state"] == "ALIVE"}
    assert {cluster.head.node_id, cluster.workers[0].node_id} <= alive_ids
    gpu_node = next(node for node in result["node_details"] if node["node_id"] == cluster.workers[0].node_id)
    assert gpu_node["resources"]["GPU"]["total"] == 1.0
    if source == "dashboard_url":
        head = next(node for node in result["node_details"] if node["node_id"] == cluster.head.node_id)
        assert head["is_head_node"] is True and head["node_ip"]
    assert "Ray cluster ready" in result["msg"]


@pytest.mark.parametrize("source", SOURCES)
def test_gate_without_wait_fails_at_once_and_says_why(cluster, ray_binary, collections_path, source):
    args = dict(source_args(cluster, source, ray_binary), expected_nodes=3, expected_gpus=2)
    result = run_module(args, collections_path)

    assert result["rc"] == 1 and result.get("failed") is True
    assert result["ready"] is False and result["attempts"] == 1
    assert result["nodes"]["alive"] == 2  # the facts come back with the failure
    assert "expected >= 3 alive node(s), >= 2 GPU(s)" in result["msg"]
    assert "2/3 nodes alive" in result["msg"]
    assert "a worker has not joined; check the worker pod/host" in result["msg"]
    assert "1/2 GPUs in the cluster" in result["msg"]


def test_check_mode_reads_the_same(cluster, ray_binary, collections_path):
    args = dict(address=cluster.gcs_address, ray_binary=ray_binary, expected_nodes=2, _ansible_check_mode=True)
    result = run_module(args, collections_path)
    assert result["rc"] == 0 and result["ready"] is True and result["changed"] is False


@pytest.mark.parametrize("source", ["address", "dashboard_url"])
def test_gate_waits_for_a_late_worker_then_fails_when_it_is_killed(cluster, ray_binary, collections_path, source):
    base = source_args(cluster, source, ray_binary)
    alive = cluster.alive_node_count()
    gpus = sum(node.num_gpus for node in cluster.nodes if not node.killed)

    waiting = ModuleRun(
        dict(base, expected_nodes=alive + 1, expected_gpus=gpus + 1, wait=True, timeout=150, interval=1),
        collections_path,
    )
    time.sleep(3)  # the gate has looked at least once and found one node short
    late = cluster.add_worker(num_cpus=1, num_gpus=1)
    joined = waiting.result()
    assert joined["rc"] == 0, joined["msg"]
    assert joined["ready"] is True and joined["attempts"] > 1
    assert joined["nodes"]["alive"] == alive + 1
    assert joined["resources"]["GPU"]["total"] == gpus + 1

    # Now expect one node more than there is, so the gate keeps polling, and kill the late worker under it.
    doomed = ModuleRun(
        dict(base, expected_nodes=alive + 2, wait=True, timeout=150, interval=1, fail_on_failures=True),
        collections_path,
    )
    time.sleep(6)  # several polls saw the late worker alive
    cluster.kill_node(late)
    failed = doomed.result()

    assert failed["rc"] == 1 and failed["ready"] is False
    assert failed["elapsed"] < 120, "fail_on_failures should stop the wait as soon as the node is gone"
    assert [node["node_id"] for node in failed["vanished_nodes"]] == [late.node_id]
    assert f"{late.node_id} (" in failed["msg"] and "1 GPU)" in failed["msg"]
    assert "was alive earlier in this wait and is gone" in failed["msg"]
    assert "nodes alive" in failed["msg"]


def test_nothing_listening_at_the_address_names_it(ray_binary, collections_path):
    address = f"127.0.0.1:{ray_local.free_tcp_port()}"
    result = run_module(dict(address=address, ray_binary=ray_binary, expected_nodes=1), collections_path)

    assert result["rc"] == 1 and result["ready"] is False
    assert result["source_error"]["kind"] == "connection"
    assert f"Could not reach the Ray GCS at {address} (TCP connection to {address} failed:" in result["msg"]
    assert "Ray head is running" in result["msg"] and "firewall" in result["msg"]
    assert "Connection refused" in result["source_error"]["detail"]
    assert result["wall_seconds"] < 30  # the TCP probe answers at once; `ray status` alone retries ~40 s


def test_nothing_listening_at_the_dashboard_names_it(collections_path):
    url = f"http://127.0.0.1:{ray_local.free_tcp_port()}"
    result = run_module(dict(dashboard_url=url, expected_nodes=1), collections_path)

    assert result["rc"] == 1
    assert result["source_error"]["kind"] == "http_unreachable"
    assert f"Could not reach the Ray dashboard at {url}/api/cluster_status?format=1" in result["msg"]


def test_missing_ray_binary_is_reported(collections_path):
    result = run_module(
        dict(address="127.0.0.1:6379", ray_binary="/nonexistent/ray", wait=True, timeout=60), collections_path
    )
    assert result["rc"] == 1 and result["attempts"] == 1  # waiting cannot bring a binary
    assert result["source_error"]["kind"] == "ray_missing"
    assert "/nonexistent/ray" in result["msg"]


def test_token_protected_cluster(ray_cluster_factory, ray_binary, collections_path):
    token = secrets.token_hex(16)
    secured = ray_cluster_factory(head=dict(num_cpus=1, num_gpus=1), token=token)
    wait_for_status_nodes(secured, ray_binary, 1)
    # The module's own environment must not lend it the token: only the `token` option may.
    clean_env = {
        "RAY_AUTH_MODE": None,
        "RAY_AUTH_TOKEN": None,
        "RAY_AUTH_TOKEN_PATH": None,
        "HOME": tempfile.mkdtemp(prefix="home-"),
    }

    refused = run_module(dict(dashboard_url=secured.dashboard_url, expected_nodes=1), collections_path, env=clean_env)
    assert refused["rc"] == 1 and refused["source_error"]["kind"] == "http_unauthorized"
    assert "HTTP 401" in refused["msg"] and "token" in refused["msg"] and refused["attempts"] == 1

    wrong = run_module(
        dict(dashboard_url=secured.dashboard_url, token="0" * 32, expected_nodes=1), collections_path, env=clean_env
    )
    assert wrong["rc"] == 1 and "HTTP 403" in wrong["msg"]

    for args in (dict(dashboard_url=secured.dashboard_url), dict(address=secured.gcs_address, ray_binary=ray_binary)):
        accepted = run_module(
            dict(args, token=token, expected_nodes=1, expected_gpus=1), collections_path, env=clean_env
        )
        assert accepted["rc"] == 0, accepted["msg"]
        assert token not in json.dumps(accepted)
