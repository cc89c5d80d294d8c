# -*- coding: utf-8 -*-
# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""Start, find and stop one Ray node (head or worker) on this machine, and bring it to a wanted state.

:class:`NodeLifecycle` decides and does what the ray_node module reports; what it does to the machine (systemctl,
processes, ports, ``ray start``) comes from a :class:`NodeTools`, so tests can stand in for any of it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import time

STATE_FILE_NAME = "llmops-node.json"
# A Ray node's id as its processes name it: the raylet --node_id=, the dashboard and the client server --node-id=.
NODE_ID = re.compile(r"--node[-_]id=([0-9a-f]{16,})")
GCS_ADDRESS = re.compile(r"--gcs[-_]address=\[?([^\s\]]+?)\]?:(\d+)(?:\s|$)")


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
    """Environment of the Ray processes: VLLM_HOST_IP pins the address vLLM advertises on multi-NIC hosts; the
    authentication mode goes last, so ``env`` cannot turn it off behind ``auth_mode``'s back."""
    env = {}
    if params.get("node_ip"):
        env["VLLM_HOST_IP"] = params["node_ip"]
    env.update({str(k): str(v) for k, v in (params.get("env") or {}).items()})
    env.update(auth_environment(params))
    return env


def auth_environment(params):
    """RAY_AUTH_MODE of every Ray process of the node and, in token mode, the token's file: never the token, which
    would show in the unit file, the diff and /proc/<pid>/environ. Nothing without ``auth_mode`` (Ray's default)."""
    mode = params.get("auth_mode")
    if not mode:
        return {}
    env = {"RAY_AUTH_MODE": mode}
    if mode == "token":
        env["RAY_AUTH_TOKEN_PATH"] = params["auth_token_file"]
    return env


def token_file_problem(path, stat=os.stat):
    """Why the token file cannot serve Ray's token authentication (None when it can): missing, empty, or readable
    by others than its owner."""
    try:
        info = stat(path)
    except OSError as error:
        return "does not exist or cannot be read (%s)" % (error.strerror or error)
    if info.st_size == 0:
        return "is empty"
    if info.st_mode & 0o077:
        return "is readable by others than its owner (mode %04o; expected 0600)" % (info.st_mode & 0o777)
    return None


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


def stat_number(pid, field, proc_root="/proc"):
    """Field ``field`` (1-based, as proc(5) counts) of /proc/<pid>/stat as an int; None when it cannot be read.
    Fields are counted after the command name's last ")", which may hold spaces and parentheses."""
    try:
        with open("%s/%s/stat" % (proc_root, pid)) as handle:
            return int(handle.read().rsplit(")", 1)[1].split()[field - 3])
    except (OSError, IndexError, ValueError):
        return None


def _parent_pid(pid, proc_root="/proc"):
    return stat_number(pid, 4, proc_root)


def node_processes(temp_dir, proc_root="/proc"):
    """PIDs of the live processes of the node whose Ray temp dir is ``temp_dir``, and the raylet's PID.

    Every Ray process of a node names a file under ``<temp_dir>/session_`` on its command line, which tells this
    node's processes apart from another node's on the same machine. Their descendants count too: some rename
    themselves (``ray::DashboardAgent``) and would otherwise outlive a stop, holding their ports. So does a process
    that names the node's id (``--node-id=``) and nothing else: the head's Ray client server, which ``ray start``
    daemonizes (its parent is init) and which would otherwise keep port 10001 after a stop.
    """
    marker = temp_dir.rstrip("/") + "/session_"
    own = os.getpid()
    live = [int(entry) for entry in os.listdir(proc_root) if entry.isdigit() and int(entry) != own]
    cmdlines = {pid: _read_cmdline(pid) for pid in live}
    pids = set()
    raylet = None
    for pid in live:
        if marker not in cmdlines[pid] or _is_zombie(pid):
            continue
        pids.add(pid)
        if "/raylet/raylet " in cmdlines[pid] or cmdlines[pid].startswith("raylet "):
            raylet = pid
    node_ids = {match for pid in pids for match in NODE_ID.findall(cmdlines[pid])}
    for pid in live:
        if pid not in pids and node_ids & set(NODE_ID.findall(cmdlines[pid])) and not _is_zombie(pid):
            pids.add(pid)
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


def _is_local_address(host):
    """Whether ``host`` is an address of this machine: only those can be bound."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.bind((host, 0))
    except (OSError, UnicodeError):
        return False
    return True


def attached_processes(port, proc_root="/proc"):
    """PIDs of this machine's processes attached to a GCS at one of its own addresses on ``port``.

    With no head running here, they are a worker's raylet and Ray workers still attached to a head that died: Ray
    refuses to start a head at an address that a local process names (``--gcs-address``), and they cannot rejoin.
    """
    own = os.getpid()
    found = []
    for entry in os.listdir(proc_root):
        if not entry.isdigit() or int(entry) == own:
            continue
        addresses = GCS_ADDRESS.findall(_read_cmdline(entry))
        if any(int(gcs_port) == port and _is_local_address(host) for host, gcs_port in addresses):
            if not _is_zombie(entry):
                found.append(int(entry))
    return sorted(found)


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


# Seconds a SIGKILLed process is given to be gone: until it is, it may still hold its ports.
KILL_WAIT_S = 5


def stop_processes(pids, timeout, sleep=time.sleep, clock=time.monotonic):
    """SIGTERM the node's processes, then SIGKILL what is left after ``timeout`` seconds, and wait until those are
    gone too (at most KILL_WAIT_S). Returns the PIDs that needed SIGKILL."""
    _signal_all(pids, signal.SIGTERM)
    alive = _wait_gone(pids, timeout, sleep, clock)
    _signal_all(alive, signal.SIGKILL)
    _wait_gone(alive, KILL_WAIT_S, sleep, clock)
    return alive


def _signal_all(pids, signum):
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def _wait_gone(pids, timeout, sleep, clock):
    """The PIDs of ``pids`` still alive after at most ``timeout`` seconds."""
    deadline = clock() + timeout
    alive = list(pids)
    while alive and clock() < deadline:
        sleep(0.2)
        alive = [pid for pid in alive if _alive(pid)]
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


class RayNodeError(Exception):
    """A failure the module reports as it is; ``result`` holds what was seen and done up to then."""

    def __init__(self, msg, result):
        super().__init__(msg)
        self.result = result


class NodeTools:
    """What the lifecycle does to the machine; tests stand in for any part of it.

    ``systemctl(*args)`` returns ``(rc, stdout, stderr)`` (the module passes its run_command); it is only needed for
    the systemd supervisor. The others default to this module's functions of the same purpose.
    """

    def __init__(
        self,
        systemctl=None,
        processes=node_processes,
        port_in_use=port_in_use,
        start=start_background,
        stop=stop_processes,
        token_file_problem=token_file_problem,
        attached=attached_processes,
    ):
        self.systemctl = systemctl
        self.processes = processes
        self.attached = attached
        self.port_in_use = port_in_use
        self.start = start
        self.stop = stop
        self.token_file_problem = token_file_problem


def plan_action(want, running, up_to_date, leftovers=False):
    """``none``, ``start``, ``restart`` or ``stop``: what brings the node from what runs now to ``want``.

    ``leftovers`` are processes of a node whose raylet is gone (a crash); a stop cleans them up too.
    """
    if want == "stopped":
        return "stop" if running or leftovers else "none"
    if want == "restarted" or (running and not up_to_date):
        return "restart"
    return "none" if running else "start"


# The systemctl commands of each action; only the last one's exit status decides (enable before a restart may fail
# harmlessly on a unit that is already enabled).
UNIT_COMMANDS = {
    "stop": [("disable", "--now")],
    "start": [("enable", "--now")],
    "restart": [("enable",), ("restart",)],
}


def _read_text(path):
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return None


def died_message(params, leftovers=(), unit=None):
    """What a start finds of a node that ran before (its state file or unit exists) and runs no more: a crash, a
    kill, a reboot. Names the node and where its logs are."""
    kind = "head" if params["role"] == "head" else "worker"
    logs = "%s/session_latest/logs (raylet.out%s)" % (
        params["temp_dir"],
        ", gcs_server.out, dashboard.log" if kind == "head" else "",
    )
    if unit:
        where = "journalctl -u %s, and Ray's own logs under %s" % (unit, logs)
    else:
        where = logs
    left = ""
    if leftovers:
        left = " %d of its processes were left without their raylet (pids %s) and are stopped first." % (
            len(leftovers),
            ", ".join(str(pid) for pid in leftovers),
        )
    return (
        "The Ray %s '%s' ran before but is not running: it died or was stopped outside Ansible.%s Why it "
        "stopped is in its logs: %s." % (kind, params["name"], left, where)
    )


class NodeLifecycle:
    """One ray_node task: look at the node, decide what to do, and do it unless in check mode.

    ``run()`` returns the module's result; a failure raises :class:`RayNodeError`. Nothing on the machine changes
    in check mode, and ``diff`` shows what the run changes (or would change).
    """

    def __init__(self, params, check_mode=False, tools=None):
        self.params = params
        self.check_mode = check_mode
        self.tools = tools or NodeTools()
        self.want = params["state"]
        self.args = build_start_args(params)
        self.env = node_environment(params)
        command = [params["ray_path"]] + self.args
        self.result = dict(changed=False, command=command, running=False, pids=[], action="none")

    def run(self):
        self._check_token_file()
        if self.params["supervisor"] == "background":
            self._run_background()
        else:
            self._run_systemd()
        return self.result

    def _fail(self, msg):
        raise RayNodeError(msg, self.result)

    def _check_token_file(self):
        """A node started in token mode needs the cluster's token in its file, kept from other users. Not in check
        mode: the task that writes the file did not run either."""
        params = self.params
        if params.get("auth_mode") != "token" or self.want == "stopped" or self.check_mode:
            return
        problem = self.tools.token_file_problem(params["auth_token_file"])
        if problem:
            self._fail(
                "Ray's token authentication (auth_mode=token) needs the cluster's token in auth_token_file, but %s %s. "
                "Write the token there with mode 0600 (the ray_cluster role does), or set auth_mode=disabled to run "
                "without authentication." % (params["auth_token_file"], problem)
            )

    def _check_port_free(self, running):
        """A head that is about to start needs its GCS port; a port held by something else fails now, check mode too."""
        params = self.params
        starting = self.result["action"] in ("start", "restart") and not running
        if not starting or params["role"] != "head" or not self.tools.port_in_use(params["node_ip"], params["port"]):
            return
        self._fail(
            "The Ray head '%s' needs its GCS port free, but port %d on %s is already in use by another process, so "
            "the head cannot start there. Stop that process, or set port to a free port."
            % (params["name"], params["port"], params["node_ip"] or "127.0.0.1")
        )

    def _stop_stale_attachments(self, running, own_pids=()):
        """Before a head starts where it ran before, the processes still attached to its dead GCS go (in check mode,
        are named): Ray refuses the head otherwise. Their nodes start again once the head runs (ray_cluster)."""
        params = self.params
        if params["role"] != "head" or running or self.result["action"] not in ("start", "restart"):
            return
        stale = [pid for pid in self.tools.attached(params["port"]) if pid not in own_pids]
        if not stale:
            return
        self.result["stale"] = stale
        message = (
            "%d Ray process(es) on this host were still attached to the dead head's GCS port %d (pids %s), and Ray "
            "refuses to start a head at an address they name. %s"
            % (
                len(stale),
                params["port"],
                ", ".join(str(pid) for pid in stale),
                "A run stops them first." if self.check_mode else "Stopped them first.",
            )
        )
        self.result["found"] = "%s %s" % (self.result["found"], message) if self.result.get("found") else message
        if not self.check_mode:
            self.tools.stop(stale, params["stop_timeout"])

    # ---- background supervisor: detached processes, found by their temp dir ----

    def _run_background(self):
        temp_dir = self.params["temp_dir"]
        digest = config_hash(self.args, self.env)
        pids, raylet = self.tools.processes(temp_dir)
        running = raylet is not None
        recorded = read_state(temp_dir).get("config_hash")
        action = plan_action(self.want, running, recorded == digest, leftovers=bool(pids))
        # The state file keeps the hash of the last start; only a start records a new one.
        after_hash = digest if action in ("start", "restart") else recorded
        self.result.update(
            action=action,
            changed=action != "none",
            diff={
                "before": {"running": running, "config_hash": recorded},
                "after": {"running": self.want != "stopped", "config_hash": after_hash},
            },
        )
        self._check_port_free(running)
        if action == "start" and recorded is not None:
            self.result["found"] = died_message(self.params, leftovers=pids)
        self._stop_stale_attachments(running, own_pids=pids)
        if self.check_mode or action == "none":
            self.result.update(running=running if action == "none" else self.want != "stopped", pids=pids)
            return
        if pids:
            # A raylet-less remnant (a crashed node) is cleaned up as well before a fresh start.
            self.tools.stop(pids, self.params["stop_timeout"])
        if self.want == "stopped":
            self.result.update(running=False, pids=[])
            return
        self._start_background(digest)

    def _start_background(self, digest):
        params = self.params
        temp_dir = params["temp_dir"]
        rc, output = self.tools.start(params["ray_path"], self.args, self.env, temp_dir, params["start_timeout"])
        self.result["log"] = output
        if rc != 0:
            self._fail(
                "'ray start' for node '%s' exited %s. Its output is in 'log'; "
                "the node's own logs are under %s/session_latest/logs." % (params["name"], rc, temp_dir)
            )
        write_state(temp_dir, {"config_hash": digest, "command": self.result["command"], "name": params["name"]})
        pids, raylet = self.tools.processes(temp_dir)
        self.result.update(running=raylet is not None, pids=pids)
        if raylet is None:
            self._fail("'ray start' for node '%s' returned 0 but no raylet runs from %s." % (params["name"], temp_dir))

    # ---- systemd supervisor: a unit running ``ray start --block`` ----

    def _run_systemd(self):
        params = self.params
        unit_name = "ray-%s.service" % params["name"]
        unit_path = "%s/%s" % (params["unit_dir"].rstrip("/"), unit_name)
        self.result.update(unit=unit_path, pids=[])
        wanted = systemd_unit(params["name"], params["ray_path"], self.args, self.env)
        current = _read_text(unit_path)
        rc, out, err = self.tools.systemctl("is-active", unit_name)
        active = out.strip() == "active"
        action = plan_action(self.want, active, current == wanted)
        # A stop leaves the unit file as it is; any other state writes the wanted unit.
        rewrite = self.want != "stopped" and current != wanted
        self.result.update(
            action=action,
            changed=action != "none" or rewrite,
            diff={"before": current or "", "after": wanted if rewrite else current or ""},
        )
        self._check_port_free(active)
        if action == "start" and current is not None:
            self.result["found"] = died_message(self.params, unit=unit_name)
        self._stop_stale_attachments(active)
        if not self.check_mode:
            if rewrite:
                self._write_unit(unit_path, wanted)
            self._apply_unit_action(action, unit_name)
        self.result["running"] = self.want != "stopped"

    def _write_unit(self, unit_path, text):
        with open(unit_path, "w") as handle:
            handle.write(text)
        self.tools.systemctl("daemon-reload")

    def _apply_unit_action(self, action, unit_name):
        rc, out, err = 0, "", ""
        for command in UNIT_COMMANDS.get(action, []):
            rc, out, err = self.tools.systemctl(*(command + (unit_name,)))
        if rc != 0:
            self._fail(
                "systemctl could not %s %s: %s. Read 'journalctl -u %s'."
                % (action, unit_name, (err or out).strip(), unit_name)
            )
