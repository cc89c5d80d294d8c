# -*- coding: utf-8 -*-
# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""Start, find and stop one Ray node (head or worker) on this machine."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import time

STATE_FILE_NAME = "llmops-node.json"


def build_start_args(params):
    """Return the ``ray start`` arguments (without the executable) for a node's settings."""
    args = ["start"]
    if params["role"] == "head":
        args += ["--head", "--port=%d" % params["port"]]
        args += ["--include-dashboard=true", "--dashboard-host=%s" % params["dashboard_host"]]
        args += ["--dashboard-port=%d" % params["dashboard_port"]]
    else:
        args += ["--address=%s" % params["head_address"]]
    if params.get("dashboard_agent_listen_port"):
        args.append("--dashboard-agent-listen-port=%d" % params["dashboard_agent_listen_port"])
    if params.get("node_ip"):
        args.append("--node-ip-address=%s" % params["node_ip"])
    args.append("--temp-dir=%s" % params["temp_dir"])
    if params.get("num_cpus") is not None:
        args.append("--num-cpus=%d" % params["num_cpus"])
    if params.get("num_gpus") is not None:
        args.append("--num-gpus=%d" % params["num_gpus"])
    if params.get("object_store_memory") is not None:
        args.append("--object-store-memory=%d" % params["object_store_memory"])
    if params.get("resources"):
        args.append("--resources=%s" % json.dumps(params["resources"], sort_keys=True))
    args.append("--disable-usage-stats")
    return args


def node_environment(params):
    """Environment of the Ray processes: VLLM_HOST_IP pins the address vLLM advertises on multi-NIC hosts."""
    env = {}
    if params.get("node_ip"):
        env["VLLM_HOST_IP"] = params["node_ip"]
    env.update({str(k): str(v) for k, v in (params.get("env") or {}).items()})
    return env


def config_hash(args, env):
    payload = json.dumps({"args": args, "env": env}, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _read_cmdline(pid):
    try:
        with open("/proc/%s/cmdline" % pid, "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def _is_zombie(pid):
    try:
        with open("/proc/%s/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def _parent_pid(pid, proc_root="/proc"):
    try:
        with open("%s/%s/stat" % (proc_root, pid)) as handle:
            return int(handle.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def node_processes(temp_dir, proc_root="/proc"):
    """PIDs of the live processes of the node whose Ray temp dir is ``temp_dir``, and the raylet's PID.

    Every Ray process of a node names a file under ``<temp_dir>/session_`` on its command line, which tells this
    node's processes apart from another node's on the same machine. Their descendants count too: some rename
    themselves (``ray::DashboardAgent``) and would otherwise outlive a stop, holding their ports.
    """
    marker = temp_dir.rstrip("/") + "/session_"
    own = os.getpid()
    live = [int(entry) for entry in os.listdir(proc_root) if entry.isdigit() and int(entry) != own]
    pids = set()
    raylet = None
    for pid in live:
        cmdline = _read_cmdline(pid)
        if marker not in cmdline or _is_zombie(pid):
            continue
        pids.add(pid)
        if "/raylet/raylet " in cmdline or cmdline.startswith("raylet "):
            raylet = pid
    children = {}
    for pid in live:
        children.setdefault(_parent_pid(pid, proc_root), []).append(pid)
    queue = list(pids)
    while queue:
        for child in children.get(queue.pop(), []):
            if child not in pids and not _is_zombie(child):
                pids.add(child)
                queue.append(child)
    return sorted(pids), raylet


def read_state(temp_dir):
    try:
        with open(os.path.join(temp_dir, STATE_FILE_NAME)) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {}


def write_state(temp_dir, state):
    os.makedirs(temp_dir, exist_ok=True)
    path = os.path.join(temp_dir, STATE_FILE_NAME)
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(state, handle, indent=2, sort_keys=True)
    os.replace(tmp, path)


def port_in_use(host, port, timeout=1.0):
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host or "127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def start_background(ray_path, args, env, temp_dir, timeout):
    """Run ``ray start`` detached in a new session so the node outlives the Ansible task.

    Returns (rc, output).
    """
    os.makedirs(temp_dir, exist_ok=True)
    log_path = temp_dir.rstrip("/") + ".start.log"
    full_env = dict(os.environ)
    full_env.update(env)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [ray_path] + args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            start_new_session=True,
            close_fds=True,
        )
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = -1
    with open(log_path, errors="replace") as log:
        output = log.read()
    return rc, output


def stop_processes(pids, timeout, sleep=time.sleep):
    """SIGTERM the node's processes, then SIGKILL what is left after ``timeout`` seconds."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        sleep(0.2)
        alive = [pid for pid in alive if _alive(pid)]
    for pid in alive:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return alive


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def systemd_unit(name, ray_path, args, env):
    """Text of a systemd unit that supervises the node (``ray start --block`` restarted on failure)."""
    lines = [
        "# Managed by llmops.ray_vllm (ray_node); local changes are overwritten.",
        "[Unit]",
        "Description=Ray node %s (llmops.ray_vllm)" % name,
        "Wants=network-online.target",
        "After=network-online.target",
        "",
        "[Service]",
        "Type=simple",
    ]
    for key in sorted(env):
        lines.append('Environment="%s=%s"' % (key, env[key].replace('"', '\\"')))
    lines += [
        "ExecStart=%s %s --block" % (ray_path, " ".join(_systemd_quote(a) for a in args)),
        "ExecStop=%s stop" % ray_path,
        "Restart=always",
        "RestartSec=5",
        "TimeoutStopSec=60",
        "LimitNOFILE=65536",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ]
    return "\n".join(lines)


def _systemd_quote(arg):
    if any(c in arg for c in ' "\\{}'):
        return '"%s"' % arg.replace("\\", "\\\\").replace('"', '\\"')
    return arg
