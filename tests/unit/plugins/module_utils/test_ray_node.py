"""ray_node's pure pieces: the ray start command, the node environment, the systemd unit, process discovery."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from ansible_collections.llmops.ray_vllm.plugins.module_utils._ray_node import (
    build_start_args,
    config_hash,
    node_environment,
    node_processes,
    port_in_use,
    read_state,
    stop_processes,
    systemd_unit,
    write_state,
)

HEAD = {
    "role": "head",
    "port": 6379,
    "dashboard_host": "127.0.0.1",
    "dashboard_port": 8265,
    "node_ip": "10.0.0.10",
    "temp_dir": "/tmp/ray-llmops-head",
    "num_cpus": 4,
    "num_gpus": 0,
    "object_store_memory": None,
    "resources": {"llmops_host:head": 1},
    "env": {"NCCL_SOCKET_IFNAME": "eth0"},
}


def test_head_command_carries_ports_dashboard_and_resources():
    args = build_start_args(HEAD)
    assert args[:2] == ["start", "--head"]
    assert "--port=6379" in args and "--dashboard-port=8265" in args
    assert "--dashboard-host=127.0.0.1" in args and "--include-dashboard=true" in args
    assert "--num-gpus=0" in args and "--num-cpus=4" in args
    assert "--node-ip-address=10.0.0.10" in args
    assert json.loads(args[args.index('--resources={"llmops_host:head": 1}')].split("=", 1)[1]) == {
        "llmops_host:head": 1
    }
    assert not any(a.startswith("--object-store-memory") for a in args)


def test_worker_command_joins_the_head_and_omits_unset_counts():
    worker = dict(HEAD, role="worker", head_address="10.0.0.10:6379", num_cpus=None, num_gpus=None)
    args = build_start_args(worker)
    assert "--address=10.0.0.10:6379" in args
    assert "--head" not in args and not any(a.startswith("--dashboard") for a in args)
    assert not any(a.startswith("--num-cpus") or a.startswith("--num-gpus") for a in args)


def test_environment_pins_vllm_host_ip_and_keeps_extra_variables():
    env = node_environment(HEAD)
    assert env == {"VLLM_HOST_IP": "10.0.0.10", "NCCL_SOCKET_IFNAME": "eth0"}


def test_config_hash_changes_with_any_setting():
    args = build_start_args(HEAD)
    env = node_environment(HEAD)
    assert config_hash(args, env) == config_hash(list(args), dict(env))
    assert config_hash(args, env) != config_hash(build_start_args(dict(HEAD, num_gpus=1)), env)
    assert config_hash(args, env) != config_hash(args, dict(env, NCCL_SOCKET_IFNAME="ib0"))


def test_systemd_unit_blocks_restarts_and_quotes_json():
    unit = systemd_unit("head", "/opt/llmops/venv/bin/ray", build_start_args(HEAD), node_environment(HEAD))
    exec_start = [line for line in unit.splitlines() if line.startswith("ExecStart=")][0]
    assert exec_start.startswith("ExecStart=/opt/llmops/venv/bin/ray start --head")
    assert exec_start.endswith("--block")
    assert '"--resources={\\"llmops_host:head\\": 1}"' in exec_start
    assert 'Environment="VLLM_HOST_IP=10.0.0.10"' in unit
    assert "Restart=always" in unit and "WantedBy=multi-user.target" in unit


def test_state_file_round_trip(tmp_path):
    assert read_state(str(tmp_path)) == {}
    write_state(str(tmp_path / "node"), {"config_hash": "abc"})
    assert read_state(str(tmp_path / "node")) == {"config_hash": "abc"}


def test_processes_are_found_by_their_temp_dir_and_stopped(tmp_path):
    temp_dir = str(tmp_path / "ray-node-a")
    other_dir = str(tmp_path / "ray-node-ab")
    script = "import time; time.sleep(60)"
    # Real processes whose command lines name a session path, as Ray's do; one of a node whose dir shares a prefix.
    mine = subprocess.Popen([sys.executable, "-c", script, temp_dir + "/session_x/sockets/raylet"])
    raylet_like = subprocess.Popen(
        [sys.executable, "-c", script, "/x/raylet/raylet", "--raylet_socket_name=%s/session_x/s" % temp_dir]
    )
    other = subprocess.Popen([sys.executable, "-c", script, other_dir + "/session_x/sockets/raylet"])
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            pids, raylet = node_processes(temp_dir)
            if len(pids) == 2:
                break
            time.sleep(0.1)
        assert sorted(pids) == sorted([mine.pid, raylet_like.pid])
        assert raylet == raylet_like.pid
        assert other.pid not in pids
        left = stop_processes(pids, timeout=5)
        assert left == []
        mine.wait(timeout=5)
        raylet_like.wait(timeout=5)
        assert node_processes(temp_dir) == ([], None)
    finally:
        for proc in (mine, raylet_like, other):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_port_in_use_sees_a_listening_socket():
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    try:
        assert port_in_use("127.0.0.1", port)
    finally:
        server.close()
    assert not port_in_use("127.0.0.1", port)


def test_renamed_descendants_are_found_and_stopped(tmp_path):
    temp_dir = str(tmp_path / "ray-node-c")
    # A process named by the session path whose child carries no path at all, as ray::DashboardAgent does.
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
            "time.sleep(60)",
            temp_dir + "/session_x/logs",
        ]
    )
    try:
        deadline = time.monotonic() + 5
        pids = []
        while time.monotonic() < deadline and len(pids) < 2:
            pids, _raylet = node_processes(temp_dir)
            time.sleep(0.1)
        assert parent.pid in pids and len(pids) == 2
        child = [pid for pid in pids if pid != parent.pid][0]
        assert stop_processes(pids, timeout=5) == []
        parent.wait(timeout=5)
        assert not os.path.exists("/proc/%d/cmdline" % child) or node_processes(temp_dir) == ([], None)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
