# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Start and stop a real, private Ray cluster on this machine (head + N workers), for tests and recordings.

Standard library only and Python 3.8+ compatible, because tests/fixtures/record_ray_status.py loads it
under the old Pythons of throwaway venvs holding old Ray releases.

Every node is a ``ray start --block`` process in its own session (process group), on free ports, with
its own temp dir, so it can be killed alone (``LocalRayCluster.kill_node``) and everything is stopped by
process group, never with ``ray stop`` (which would kill other people's Ray clusters on this machine).

Typical use (pytest: the ``ray_cluster_factory`` fixture of tests/integration/conftest.py does the same)::

    with local_ray_cluster(head=dict(num_cpus=1), workers=[dict(num_cpus=1, num_gpus=1)]) as cluster:
        cluster.gcs_address          # "127.0.0.1:PORT", for `ray status --address` / ray.init
        cluster.dashboard_url        # "http://127.0.0.1:PORT"
        cluster.workers[0].node_id   # the Ray node ID (hex) the GCS gave it
        cluster.workers[0].pids()    # raylet, agents, workers ... of that node
        late = cluster.add_worker(num_cpus=1, num_gpus=1)
        cluster.kill_node(late)      # SIGKILL to its whole process group, like a lost host

``--num-gpus`` on a machine without GPUs gives Ray logical GPUs, enough for scheduling and status tests.
Nodes run with fast GCS health checks (a killed node is declared dead in about 5 s), usage stats off,
and ``RAY_AUTH_MODE=disabled`` unless ``token=`` is given (then Ray's token authentication is on).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

# GCS failure detection defaults to about 30 s; tests that kill a node should not wait that long.
FAST_HEALTH_CHECK_ENV = {
    "RAY_health_check_initial_delay_ms": "1000",
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
}

_START_OPTIONS_CACHE = {}


def default_ray_binary():
    """The ``ray`` script next to the running interpreter, else the one on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "ray")
    if os.path.exists(beside):
        return beside
    found = shutil.which("ray")
    if not found:
        raise RuntimeError(f"no `ray` executable next to {sys.executable} nor on PATH")
    return found


def free_tcp_port(taken=None):
    """A TCP port that is free on 127.0.0.1 and 0.0.0.0 now and not in ``taken``."""
    taken = taken if taken is not None else set()
    for _attempt in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("0.0.0.0", 0))
            port = probe.getsockname()[1]
        if port not in taken:
            taken.add(port)
            return port
    raise RuntimeError("could not find a free TCP port")


def port_is_open(host, port, timeout=0.5):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def supported_start_options(ray_binary):
    """The long options that this Ray's ``ray start`` knows (they change between releases)."""
    if ray_binary not in _START_OPTIONS_CACHE:
        text = subprocess.run(
            [ray_binary, "start", "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False
        ).stdout.decode("utf-8", "replace")
        options = set()
        for word in text.replace(",", " ").replace("=", " ").split():
            if word.startswith("--"):
                options.add(word.strip())
        _START_OPTIONS_CACHE[ray_binary] = options
    return _START_OPTIONS_CACHE[ray_binary]


def _process_group_pids(pgid):
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat_file:
                fields = stat_file.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # Fields after the command name: state, ppid, pgrp, ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(entry))
    return sorted(pids)


def pids_mentioning(text):
    """PIDs of the live processes (zombies left out) whose command line contains ``text`` (a unique temp dir)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline_file:
                cmdline = cmdline_file.read().replace(b"\0", b" ").decode("utf-8", "replace")
            with open(f"/proc/{entry}/stat") as stat_file:
                state = stat_file.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            pids.append(int(entry))
    return pids


class WorkerExitedEarly(RuntimeError):
    """A worker's ``ray start`` exited before its node registered with the GCS."""


class RayNode:
    """One ``ray start --block`` process and the Ray processes of its process group."""

    def __init__(self, role, process, log_path, num_cpus, num_gpus, resources):
        self.role = role
        self.process = process
        self.log_path = log_path
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.resources = dict(resources or {})
        self.pgid = process.pid  # started with start_new_session=True
        self.killed = False
        self.node_id = None  # hex Ray node ID, known once the node registered

    @property
    def pid(self):
        return self.process.pid

    def pids(self):
        """PIDs still running in this node's process group (raylet, agents, workers ...)."""
        return _process_group_pids(self.pgid)

    def is_running(self):
        return self.process.poll() is None

    def log_tail(self, lines=30):
        try:
            with open(self.log_path, "rb") as log_file:
                return "\n".join(log_file.read().decode("utf-8", "replace").splitlines()[-lines:])
        except OSError:
            return ""

    def signal_group(self, sig):
        try:
            os.killpg(self.pgid, sig)
        except ProcessLookupError:
            pass

    def __repr__(self):
        return f"RayNode({self.role} pid={self.pid} cpus={self.num_cpus} gpus={self.num_gpus})"


class LocalRayCluster:
    """A private Ray cluster on this machine: one head, any number of workers, all on free ports."""

    def __init__(
        self, ray_binary=None, temp_root="/tmp", fast_health_check=True, env=None, object_store_bytes=None, token=None
    ):
        self.ray_binary = ray_binary or default_ray_binary()
        # With a token, the cluster runs with Ray's token authentication (Ray >= 2.52) and the helpers send it.
        self.token = token
        # Short path: Ray puts unix sockets under it and those paths must stay under 108 bytes.
        self.temp_dir = tempfile.mkdtemp(prefix="rl-", dir=temp_root)
        self.log_dir = os.path.join(self.temp_dir, "launch-logs")
        os.makedirs(self.log_dir)
        self.ports = set()
        self.gcs_port = None
        self.dashboard_port = None
        self.head = None
        self.workers = []
        self.discarded = []  # workers that never joined, still stopped by stop()
        self.object_store_bytes = object_store_bytes or 100 * 1024 * 1024
        self.env = dict(os.environ)
        self.env.pop("RAY_ADDRESS", None)
        self.env["RAY_USAGE_STATS_ENABLED"] = "0"
        # Ray >= 2.52 turns token auth on when ~/.ray/auth_token exists (HOME is shared here): be explicit.
        self.env["RAY_AUTH_MODE"] = "disabled"
        if fast_health_check:
            self.env.update(FAST_HEALTH_CHECK_ENV)
        if token:
            self.env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
        self.env.update(env or {})

    # Addresses -------------------------------------------------------------------------------------------

    @property
    def gcs_address(self):
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard_url(self):
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def nodes(self):
        return ([self.head] if self.head else []) + list(self.workers)

    # Starting ---------------------------------------------------------------------------------------------

    def _port_options(self, head):
        known = supported_start_options(self.ray_binary)
        wanted = [
            "--node-manager-port",
            "--object-manager-port",
            "--dashboard-agent-listen-port",
            "--dashboard-agent-grpc-port",
            "--metrics-export-port",
            "--runtime-env-agent-port",
        ]
        if head:
            wanted += ["--ray-client-server-port", "--dashboard-grpc-port"]
        args = [f"{option}={free_tcp_port(self.ports)}" for option in wanted if option in known]
        # A private worker port range, so two clusters on one machine do not race for the same ports; it must not
        # hold any port picked above (Ray refuses to start when one does: seen once in CI).
        while True:
            base = random.randrange(20000, 59000, 200)
            if not any(base <= port <= base + 199 for port in self.ports):
                break
        args += [f"--min-worker-port={base}", f"--max-worker-port={base + 199}"]
        return args

    def _resource_options(self, num_cpus, num_gpus, resources):
        args = [f"--num-cpus={num_cpus}", f"--num-gpus={num_gpus}"]
        if resources:
            args.append(f"--resources={json.dumps(resources)}")
        return args

    def _spawn(self, role, args, num_cpus, num_gpus, resources):
        log_path = os.path.join(self.log_dir, f"{role}-{len(self.nodes)}.log")
        log_file = open(log_path, "wb")
        try:
            process = subprocess.Popen(
                [self.ray_binary, "start", "--block"] + args,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,
            )
        finally:
            log_file.close()
        return RayNode(role, process, log_path, num_cpus, num_gpus, resources)

    def start_head(self, num_cpus=1, num_gpus=0, resources=None, dashboard=True, wait=True, timeout=180):
        """Start the head node; with ``wait`` return once GCS (and the dashboard) answer."""
        if self.head is not None:
            raise RuntimeError("head already started")
        self.gcs_port = free_tcp_port(self.ports)
        self.dashboard_port = free_tcp_port(self.ports)
        args = [
            "--head",
            f"--port={self.gcs_port}",
            "--node-ip-address=127.0.0.1",
            f"--temp-dir={self.temp_dir}",
            f"--object-store-memory={self.object_store_bytes}",
            "--include-dashboard=%s" % ("true" if dashboard else "false"),
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={self.dashboard_port}",
            "--disable-usage-stats",
        ]
        args += self._port_options(head=True) + self._resource_options(num_cpus, num_gpus, resources)
        self.head = self._spawn("head", args, num_cpus, num_gpus, resources)
        if wait:
            self.wait_for_head(timeout=timeout, dashboard=dashboard)
        return self.head

    def wait_for_head(self, timeout=180, dashboard=True):
        """Wait until the GCS port answers and, with the dashboard, the head node itself is registered ALIVE."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.head.is_running():
                raise RuntimeError(f"Ray head exited early:\n{self.head.log_tail()}")
            if port_is_open("127.0.0.1", self.gcs_port):
                if not dashboard:
                    return
                alive = self.alive_node_ids()
                if alive:
                    self.head.node_id = next(iter(alive))
                    return
            time.sleep(0.5)
        raise RuntimeError(f"Ray head did not come up in {timeout}s:\n{self.head.log_tail()}")

    def add_worker(self, num_cpus=1, num_gpus=0, resources=None, wait=True, timeout=180, attempts=2):
        """Start a worker node that joins the head; with ``wait`` return once the head counts it alive.

        A worker whose ``ray start`` exits before it registers (its raylet gives up waiting for its agents
        when the machine is overloaded) is started again, up to ``attempts`` times.
        """
        if self.head is None:
            raise RuntimeError("start the head first")
        alive_before = set()
        if wait:
            alive_before = self.alive_node_ids()
            if alive_before is None:
                raise RuntimeError("the dashboard does not answer, so a joining worker cannot be confirmed")
        args = [
            f"--address={self.gcs_address}",
            "--node-ip-address=127.0.0.1",
            f"--object-store-memory={self.object_store_bytes}",
        ]
        if "--temp-dir" in supported_start_options(self.ray_binary):
            args.append(f"--temp-dir={self.temp_dir}")
        args += self._port_options(head=False) + self._resource_options(num_cpus, num_gpus, resources)
        for attempt in range(1, attempts + 1):
            worker = self._spawn("worker", args, num_cpus, num_gpus, resources)
            self.workers.append(worker)
            if not wait:
                return worker
            try:
                new_ids = self._wait_for_new_node(alive_before, worker, timeout)
            except WorkerExitedEarly:
                self.workers.remove(worker)
                worker.signal_group(signal.SIGKILL)  # what its `ray start` left behind
                self.discarded.append(worker)
                if attempt == attempts:
                    raise
                continue
            worker.node_id = new_ids.pop() if len(new_ids) == 1 else None
            return worker
        raise AssertionError("unreachable")

    def _wait_for_new_node(self, alive_before, worker, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not worker.is_running():
                raise WorkerExitedEarly(f"Ray worker exited before joining:\n{worker.log_tail()}")
            new_ids = (self.alive_node_ids() or set()) - alive_before
            if new_ids:
                return new_ids
            time.sleep(0.5)
        raise RuntimeError(f"Ray worker did not join within {timeout}s:\n{worker.log_tail()}")

    # Looking -------------------------------------------------------------------------------------------

    def dashboard_json(self, path, timeout=5):
        """GET a dashboard path and decode its JSON, or None when the dashboard does not answer yet."""
        request = urllib.request.Request(self.dashboard_url + path)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read().decode("utf-8"))
        except (OSError, ValueError):
            return None

    def alive_node_ids(self):
        """IDs of the alive nodes as the GCS sees them (through the dashboard state API); None when unknown."""
        answer = self.dashboard_json("/api/v0/nodes?limit=10000")
        try:
            rows = answer["data"]["result"]["result"]
        except (TypeError, KeyError):
            return None
        return {row["node_id"] for row in rows if row.get("state") == "ALIVE"}

    def alive_node_count(self):
        """How many nodes the GCS counts alive, or -1 when the dashboard does not answer."""
        ids = self.alive_node_ids()
        return -1 if ids is None else len(ids)

    def wait_for_alive_nodes(self, count, timeout=90, starting=None):
        deadline = time.monotonic() + timeout
        seen = -1
        while time.monotonic() < deadline:
            if starting is not None and not starting.is_running():
                raise RuntimeError(f"Ray {starting.role} exited early:\n{starting.log_tail()}")
            seen = self.alive_node_count()
            if seen == count:
                return
            time.sleep(0.5)
        raise RuntimeError(f"expected {count} alive Ray nodes within {timeout}s, saw {seen}")

    # Stopping ------------------------------------------------------------------------------------------

    def kill_node(self, node, sig=signal.SIGKILL):
        """Kill a node's whole process group at once, as a lost host or an OOM-killed pod would."""
        node.killed = True
        node.signal_group(sig)
        try:
            node.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            node.signal_group(signal.SIGKILL)
            node.process.wait(timeout=30)

    def stop(self):
        """Stop every node of this cluster by process group, then sweep stragglers by our temp dir."""
        nodes = list(reversed(self.nodes)) + self.discarded
        for node in nodes:
            node.signal_group(signal.SIGTERM)
        # A short grace: nothing here needs a clean Ray shutdown, and SIGKILL follows anyway.
        deadline = time.monotonic() + 5
        for node in nodes:
            try:
                node.process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                pass
            node.signal_group(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.process.wait(timeout=10)
        # Ray workers that left the process group still name our temp dir on their command line.
        for pid in pids_mentioning(self.temp_dir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.stop()


@contextlib.contextmanager
def local_ray_cluster(head=None, workers=(), ray_binary=None, **cluster_options):
    """Start a head (``head``: kwargs of ``start_head``) and workers (each kwargs of ``add_worker``).

    Yields the ``LocalRayCluster``; every process is stopped on exit, even when the body raised.
    """
    cluster = LocalRayCluster(ray_binary=ray_binary, **cluster_options)
    try:
        cluster.start_head(**(head or {}))
        for worker in workers:
            cluster.add_worker(**worker)
        yield cluster
    finally:
        cluster.stop()
