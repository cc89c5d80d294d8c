"""ray_node's pieces: the ray start command, the node environment, the systemd unit, process discovery, and the
lifecycle (what a task decides and does, check mode and diff included) against a stand-in machine."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time

import pytest

from ansible_collections.llmops.ray_vllm.plugins.module_utils._ray_node import (
    NodeLifecycle,
    NodeTools,
    RayNodeError,
    _alive,
    attached_processes,
    build_start_args,
    config_hash,
    died_message,
    node_environment,
    node_processes,
    plan_action,
    port_in_use,
    read_state,
    stop_processes,
    systemd_unit,
    token_file_problem,
    write_state,
)


def reap(*processes):
    """Kill what still runs of ``processes`` and wait for each, so no test leaves a process or a zombie."""
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait()


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


def found_processes(temp_dir, count, timeout=5):
    """node_processes(temp_dir) once it finds ``count`` processes (they take a moment to exec), or at the timeout."""
    deadline = time.monotonic() + timeout
    pids, raylet = node_processes(temp_dir)
    while len(pids) < count and time.monotonic() < deadline:
        time.sleep(0.1)
        pids, raylet = node_processes(temp_dir)
    return pids, raylet


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


def test_token_mode_exports_the_mode_and_the_file_never_the_token():
    # A RAY_AUTH_MODE in env does not turn authentication off behind auth_mode's back.
    params = dict(HEAD, env={"RAY_AUTH_MODE": "disabled"}, auth_mode="token", auth_token_file="/etc/llmops/tok")
    env = node_environment(params)
    assert env["RAY_AUTH_MODE"] == "token" and env["RAY_AUTH_TOKEN_PATH"] == "/etc/llmops/tok"
    assert "RAY_AUTH_TOKEN" not in env
    assert node_environment(dict(HEAD, auth_mode="disabled"))["RAY_AUTH_MODE"] == "disabled"
    assert "RAY_AUTH_MODE" not in node_environment(dict(HEAD, auth_mode=None))


def test_token_file_problems_are_named(tmp_path):
    token = tmp_path / "token"
    assert "does not exist" in token_file_problem(str(token))
    token.write_text("")
    token.chmod(0o600)
    assert token_file_problem(str(token)) == "is empty"
    token.write_text("secret")
    token.chmod(0o644)
    assert token_file_problem(str(token)) == "is readable by others than its owner (mode 0644; expected 0600)"
    token.chmod(0o600)
    assert token_file_problem(str(token)) is None


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
        pids, raylet = found_processes(temp_dir, 2)
        assert sorted(pids) == sorted([mine.pid, raylet_like.pid])
        assert raylet == raylet_like.pid
        assert other.pid not in pids
        left = stop_processes(pids, timeout=5)
        assert left == []
        mine.wait(timeout=5)
        raylet_like.wait(timeout=5)
        assert node_processes(temp_dir) == ([], None)
    finally:
        reap(mine, raylet_like, other)


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
        pids, _raylet = found_processes(temp_dir, 2)
        assert parent.pid in pids and len(pids) == 2
        child = [pid for pid in pids if pid != parent.pid][0]
        assert stop_processes(pids, timeout=5) == []
        parent.wait(timeout=5)
        assert not os.path.exists("/proc/%d/cmdline" % child) or node_processes(temp_dir) == ([], None)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def test_stop_waits_on_the_given_clock_then_kills_and_returns_once_the_process_is_gone():
    ignores_term = "import signal, time; signal.signal(15, lambda *a: None); print('ready', flush=True); time.sleep(60)"
    sleeper = subprocess.Popen([sys.executable, "-c", ignores_term], stdout=subprocess.PIPE)
    try:
        assert sleeper.stdout.readline() == b"ready\n"
        # The SIGTERM wait: its deadline, one look, then past it; the SIGKILL wait: its deadline, then looks.
        ticks = itertools.chain([0.0, 0.0, 99.0, 99.0], itertools.repeat(100.0))
        slept = []
        left = stop_processes([sleeper.pid], timeout=5, sleep=slept.append, clock=lambda: next(ticks))
        assert left == [sleeper.pid] and slept[:2] == [0.2, 0.2]
        # Gone when stop_processes returns (a zombie of this test's own: nothing of it runs or listens).
        assert not _alive(sleeper.pid)
        assert sleeper.wait(timeout=5) == -9
    finally:
        reap(sleeper)
        sleeper.stdout.close()


# ---- the lifecycle ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "want, running, up_to_date, leftovers, action",
    [
        ("started", False, False, False, "start"),
        ("started", True, True, True, "none"),
        ("started", True, False, True, "restart"),
        ("started", False, False, True, "start"),
        ("restarted", True, True, True, "restart"),
        ("restarted", False, True, False, "restart"),
        ("stopped", True, True, True, "stop"),
        ("stopped", False, False, True, "stop"),
        ("stopped", False, False, False, "none"),
    ],
)
def test_plan_action(want, running, up_to_date, leftovers, action):
    assert plan_action(want, running, up_to_date, leftovers) == action


class Machine:
    """Stands in for the machine: the node's processes, the GCS port, ray start and systemctl; records each call."""

    def __init__(
        self, pids=(), raylet=None, port_busy=False, start_rc=0, raylet_after_start=True, active=False, stale=()
    ):
        self.pids, self.raylet, self.stale = list(pids), raylet, list(stale)
        self.port_busy, self.start_rc, self.raylet_after_start = port_busy, start_rc, raylet_after_start
        self.active = active
        self.failing = {}
        self.calls = []

    def tools(self):
        return NodeTools(
            systemctl=self.systemctl,
            processes=self.processes,
            port_in_use=self.port_in_use,
            start=self.start,
            stop=self.stop,
            attached=self.attached,
        )

    def attached(self, port):
        return list(self.stale)

    def processes(self, temp_dir):
        return list(self.pids), self.raylet

    def port_in_use(self, host, port):
        self.calls.append(("port_in_use", host, port))
        return self.port_busy

    def start(self, ray_path, args, env, temp_dir, timeout):
        self.calls.append(("start", ray_path, args[0], env, timeout))
        if self.start_rc == 0:
            self.pids = [200, 201]
            self.raylet = 201 if self.raylet_after_start else None
        return self.start_rc, "ray start output"

    def stop(self, pids, timeout):
        self.calls.append(("stop", list(pids), timeout))
        self.pids, self.raylet = [], None
        return []

    def systemctl(self, *args):
        self.calls.append(("systemctl",) + args)
        if args[0] == "is-active":
            return (0, "active\n", "") if self.active else (3, "inactive\n", "")
        if args[0] in self.failing:
            return 1, "", self.failing[args[0]]
        return 0, "", ""

    def mutations(self):
        """The calls that change something (looking at the port or a unit's state changes nothing)."""
        return [call for call in self.calls if call[0] != "port_in_use" and call[1:2] != ("is-active",)]


def node(tmp_path, **change):
    params = dict(
        HEAD,
        name="head",
        state="started",
        supervisor="background",
        ray_path="/opt/venv/bin/ray",
        temp_dir=str(tmp_path / "ray-head"),
        head_address=None,
        dashboard_agent_listen_port=None,
        start_timeout=120,
        stop_timeout=10,
        unit_dir=str(tmp_path),
    )
    params.update(change)
    return params


def run_node(params, machine, check_mode=False):
    return NodeLifecycle(params, check_mode=check_mode, tools=machine.tools()).run()


def recorded_hash(params):
    return config_hash(build_start_args(params), node_environment(params))


def test_background_start_records_the_config_and_reports_the_processes(tmp_path):
    params = node(tmp_path)
    machine = Machine()
    result = run_node(params, machine)
    assert result["action"] == "start" and result["changed"] is True
    assert result["running"] is True and result["pids"] == [200, 201] and result["log"] == "ray start output"
    assert machine.calls[0] == ("port_in_use", "10.0.0.10", 6379)
    assert machine.calls[1] == ("start", "/opt/venv/bin/ray", "start", node_environment(params), 120)
    assert read_state(params["temp_dir"])["config_hash"] == recorded_hash(params)
    assert result["diff"] == {
        "before": {"running": False, "config_hash": None},
        "after": {"running": True, "config_hash": recorded_hash(params)},
    }


def test_background_check_mode_changes_nothing_and_predicts_the_start(tmp_path):
    params = node(tmp_path)
    machine = Machine()
    result = run_node(params, machine, check_mode=True)
    assert result["action"] == "start" and result["changed"] is True and result["running"] is True
    assert machine.mutations() == []
    assert not os.path.exists(params["temp_dir"])
    assert result["diff"]["after"] == {"running": True, "config_hash": recorded_hash(params)}


def test_background_node_running_with_its_settings_is_left_alone(tmp_path):
    params = node(tmp_path)
    write_state(params["temp_dir"], {"config_hash": recorded_hash(params)})
    machine = Machine(pids=[100, 101], raylet=101)
    result = run_node(params, machine)
    assert result["action"] == "none" and result["changed"] is False
    assert result["running"] is True and result["pids"] == [100, 101]
    assert machine.calls == []
    assert result["diff"]["before"] == result["diff"]["after"]


def test_background_node_with_changed_settings_is_restarted(tmp_path):
    params = node(tmp_path)
    write_state(params["temp_dir"], {"config_hash": recorded_hash(dict(params, num_gpus=1))})
    machine = Machine(pids=[100, 101], raylet=101)
    result = run_node(params, machine)
    assert result["action"] == "restart" and result["changed"] is True
    # A running head keeps its own port: nothing to look at before the restart.
    assert [call[0] for call in machine.calls] == ["stop", "start"]
    assert machine.calls[0] == ("stop", [100, 101], 10)
    assert read_state(params["temp_dir"])["config_hash"] == recorded_hash(params)


def test_background_stop_cleans_up_a_crashed_node_and_keeps_its_record(tmp_path):
    params = node(tmp_path, state="stopped")
    write_state(params["temp_dir"], {"config_hash": "old"})
    # In check mode nothing is stopped.
    machine = Machine(pids=[100], raylet=None)
    result = run_node(params, machine, check_mode=True)
    assert result["action"] == "stop" and result["changed"] is True and machine.mutations() == []
    result = run_node(params, machine)
    assert result["action"] == "stop" and result["running"] is False and result["pids"] == []
    assert machine.calls == [("stop", [100], 10)]
    assert result["diff"] == {
        "before": {"running": False, "config_hash": "old"},
        "after": {"running": False, "config_hash": "old"},
    }


def test_background_head_on_a_busy_port_fails_naming_the_port_option(tmp_path):
    for check_mode in (True, False):
        machine = Machine(port_busy=True)
        with pytest.raises(RayNodeError) as raised:
            run_node(node(tmp_path), machine, check_mode=check_mode)
        assert str(raised.value) == (
            "The Ray head 'head' needs its GCS port free, but port 6379 on 10.0.0.10 is already in use by another "
            "process, so the head cannot start there. Stop that process, or set port to a free port."
        )
        assert raised.value.result["action"] == "start" and machine.mutations() == []


def test_a_worker_does_not_look_at_the_gcs_port(tmp_path):
    params = node(tmp_path, role="worker", head_address="10.0.0.10:6379")
    machine = Machine(port_busy=True)
    assert run_node(params, machine)["running"] is True
    assert [call[0] for call in machine.calls] == ["start"]


def test_background_failed_start_keeps_the_log_and_records_nothing(tmp_path):
    params = node(tmp_path)
    with pytest.raises(RayNodeError) as raised:
        run_node(params, Machine(start_rc=1))
    assert "'ray start' for node 'head' exited 1" in str(raised.value)
    assert raised.value.result["log"] == "ray start output"
    assert read_state(params["temp_dir"]) == {}
    with pytest.raises(RayNodeError) as raised:
        run_node(params, Machine(raylet_after_start=False))
    assert (
        str(raised.value) == "'ray start' for node 'head' returned 0 but no raylet runs from %s." % params["temp_dir"]
    )
    assert raised.value.result["running"] is False and raised.value.result["pids"] == [200, 201]


def test_systemd_first_start_writes_the_unit_and_enables_it(tmp_path):
    params = node(tmp_path, supervisor="systemd")
    unit_path = str(tmp_path / "ray-head.service")
    machine = Machine()
    result = run_node(params, machine, check_mode=True)
    assert result["action"] == "start" and result["changed"] is True and result["running"] is True
    assert machine.mutations() == [] and not os.path.exists(unit_path)
    result = run_node(params, machine)
    wanted = systemd_unit("head", "/opt/venv/bin/ray", build_start_args(params), node_environment(params))
    with open(unit_path) as handle:
        assert handle.read() == wanted
    assert machine.mutations() == [("systemctl", "daemon-reload"), ("systemctl", "enable", "--now", "ray-head.service")]
    assert result["unit"] == unit_path and result["pids"] == []
    assert result["diff"] == {"before": "", "after": wanted}


def test_systemd_active_unit_as_wanted_is_left_alone_and_a_changed_one_restarts(tmp_path):
    params = node(tmp_path, supervisor="systemd")
    run_node(params, Machine())
    machine = Machine(active=True)
    result = run_node(params, machine)
    assert result["action"] == "none" and result["changed"] is False and machine.mutations() == []
    changed = dict(params, num_gpus=1)
    result = run_node(changed, machine)
    assert result["action"] == "restart" and result["diff"]["before"] != result["diff"]["after"]
    assert machine.mutations() == [
        ("systemctl", "daemon-reload"),
        ("systemctl", "enable", "ray-head.service"),
        ("systemctl", "restart", "ray-head.service"),
    ]


def test_systemd_stop_leaves_the_unit_file(tmp_path):
    params = node(tmp_path, supervisor="systemd")
    run_node(params, Machine())
    machine = Machine(active=True)
    result = run_node(dict(params, state="stopped", num_gpus=1), machine)
    assert result["action"] == "stop" and result["running"] is False
    assert machine.mutations() == [("systemctl", "disable", "--now", "ray-head.service")]
    assert result["diff"]["before"] == result["diff"]["after"] != ""


def test_systemd_failure_names_the_unit_and_its_journal(tmp_path):
    machine = Machine()
    machine.failing["enable"] = "Failed to enable unit: Access denied\n"
    with pytest.raises(RayNodeError) as raised:
        run_node(node(tmp_path, supervisor="systemd"), machine)
    assert str(raised.value) == (
        "systemctl could not start ray-head.service: Failed to enable unit: Access denied. "
        "Read 'journalctl -u ray-head.service'."
    )


def test_token_mode_without_a_usable_token_file_fails_before_anything_starts(tmp_path):
    params = node(tmp_path, auth_mode="token", auth_token_file=str(tmp_path / "missing"))
    machine = Machine()
    with pytest.raises(RayNodeError) as error:
        run_node(params, machine)
    assert machine.mutations() == []
    message = str(error.value)
    assert str(tmp_path / "missing") in message and "does not exist" in message
    assert "mode 0600" in message and "auth_mode=disabled" in message
    # In check mode the task that would write the file did not run either: the start is predicted.
    assert run_node(params, Machine(), check_mode=True)["action"] == "start"
    # Stopping a node needs no token.
    run_node(dict(params, state="stopped"), Machine())


def test_token_mode_with_its_file_starts_with_the_file_in_the_environment(tmp_path):
    token = tmp_path / "token"
    token.write_text("secret")
    token.chmod(0o600)
    params = node(tmp_path, auth_mode="token", auth_token_file=str(token))
    machine = Machine()
    result = run_node(params, machine)
    assert result["action"] == "start"
    started_env = machine.calls[1][3]
    assert started_env["RAY_AUTH_TOKEN_PATH"] == str(token) and "secret" not in json.dumps(result)


def test_a_process_naming_only_the_node_id_is_the_nodes_too(tmp_path):
    """The head's Ray client server names no session path and is init's child (ray start daemonizes it), but it
    carries the node's id, as the raylet does: a stop must take it, and leave another node's alone."""
    temp_dir = str(tmp_path / "ray-node-d")
    script = "import time; time.sleep(60)"
    node_id, other_id = "439deb938fa81474" * 3, "52f5b51d10139391" * 3
    raylet_like = subprocess.Popen(
        [
            sys.executable,
            "-c",
            script,
            "/x/raylet/raylet",
            "--node_id=%s" % node_id,
            "--temp_dir=%s/session_x" % temp_dir,
        ]
    )
    client = subprocess.Popen([sys.executable, "-c", script, "ray.util.client.server", "--node-id=%s" % node_id])
    other = subprocess.Popen([sys.executable, "-c", script, "ray.util.client.server", "--node-id=%s" % other_id])
    try:
        pids, raylet = found_processes(temp_dir, 2)
        assert sorted(pids) == sorted([raylet_like.pid, client.pid]) and raylet == raylet_like.pid
        assert stop_processes(pids, timeout=5) == []
        assert other.poll() is None
    finally:
        reap(raylet_like, client, other)


def test_a_node_that_ran_before_is_found_dead_with_its_logs():
    params = {"role": "head", "name": "ray-head-local", "temp_dir": "/tmp/ray-llmops-ray-head-local"}
    found = died_message(params, leftovers=[41, 42])
    assert found.startswith("The Ray head 'ray-head-local' ran before but is not running")
    assert "2 of its processes were left without their raylet (pids 41, 42)" in found
    assert "/tmp/ray-llmops-ray-head-local/session_latest/logs (raylet.out, gcs_server.out, dashboard.log)" in found
    worker = died_message(dict(params, role="worker", name="w1"), unit="ray-w1.service")
    assert "journalctl -u ray-w1.service" in worker and "gcs_server" not in worker


def test_background_node_that_died_is_found_then_started_and_a_fresh_one_is_not(tmp_path):
    params = node(tmp_path)
    assert "found" not in run_node(params, Machine(), check_mode=True)
    write_state(params["temp_dir"], {"config_hash": recorded_hash(params)})
    machine = Machine(pids=[100], raylet=None)
    result = run_node(params, machine, check_mode=True)
    assert result["found"] == died_message(params, leftovers=[100]) and machine.mutations() == []
    result = run_node(params, machine)
    assert result["action"] == "start" and result["found"] == died_message(params, leftovers=[100])
    assert [call[0] for call in machine.mutations()] == ["stop", "start"]


def test_a_head_starting_again_first_stops_what_is_still_attached_to_its_dead_gcs(tmp_path):
    params = node(tmp_path)
    write_state(params["temp_dir"], {"config_hash": recorded_hash(params)})
    machine = Machine(stale=[300, 301])
    result = run_node(params, machine, check_mode=True)
    assert result["stale"] == [300, 301] and machine.mutations() == []
    assert result["found"].startswith(died_message(params))
    assert result["found"].endswith(
        "2 Ray process(es) on this host were still attached to the dead head's GCS port 6379 (pids 300, 301), and "
        "Ray refuses to start a head at an address they name. A run stops them first."
    )
    result = run_node(params, machine)
    assert [call[:2] for call in machine.mutations()] == [("stop", [300, 301]), ("start", "/opt/venv/bin/ray")]
    assert result["found"].endswith("Stopped them first.")
    # A running head, and a worker, never look.
    machine = Machine(pids=[200, 201], raylet=201, stale=[300])
    assert "stale" not in run_node(params, machine) and machine.mutations() == []
    worker = node(tmp_path, role="worker", head_address="10.0.0.10:6379", name="worker")
    assert "stale" not in run_node(worker, Machine(stale=[300]), check_mode=True)


def test_processes_attached_to_a_local_gcs_port_are_found_by_their_command_line():
    sleeper = [sys.executable, "-c", "import time; time.sleep(30)"]
    local = subprocess.Popen([*sleeper, "--gcs-address=127.0.0.1:46379"])
    remote = subprocess.Popen([*sleeper, "--gcs-address=198.51.100.7:46379"])
    other_port = subprocess.Popen([*sleeper, "--gcs-address=127.0.0.1:46380"])
    try:
        deadline = time.monotonic() + 5
        while local.pid not in attached_processes(46379) and time.monotonic() < deadline:
            time.sleep(0.05)
        found = attached_processes(46379)
        assert local.pid in found and remote.pid not in found and other_port.pid not in found
    finally:
        for process in (local, remote, other_port):
            process.kill()
            process.wait()
