# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The pod network: one Linux bridge on this machine and a network namespace per pod.

Layout (everything the test bed creates is named ``llmtb...``, so a sweep finds it again):

- the bridge ``llmtb0`` holds the gateway address 10.244.0.1/16, the whole pod CIDR (the kubelet controller gives
  pods 10.244.<node index>.<n>; nodes' podCIDRs are 10.244.<index>.0/24). The host (API server, probes, tests)
  reaches every pod IP directly through it; Service ClusterIPs are added to it as /32 addresses by
  ``services.ServiceRouter``;
- a pod is a network namespace ``llmtb-<key>`` (``<key>``: ten hex digits of a hash of the pod uid,
  :func:`pod_key`) with a veth pair: the host end ``llmtb<key>`` (15 characters, the kernel's limit) enslaved to the
  bridge, the pod end ``eth0`` inside the namespace with the pod IP /16; ``lo`` up and a default route via the
  gateway. Containers join the namespace by its path, ``/run/netns/llmtb-<key>`` (runc's network namespace path).

Only one :class:`PodNetwork` may own the bridge on a machine: ``start`` takes an exclusive ``flock`` on
``/run/llmtb0.lock`` (released by the kernel when the owner dies), so a second owner waits or fails instead of
tearing down a live network; whatever is left once the lock is free belongs to a crashed owner and is swept away.
Everything is done with iproute2's ``ip``; this needs root (CAP_NET_ADMIN).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import subprocess
import threading
import time

BRIDGE = "llmtb0"
GATEWAY = "10.244.0.1"
POD_PREFIX_LEN = 16
NETNS_PREFIX = "llmtb-"
NETNS_DIR = "/run/netns"
LOCK_PATH = "/run/llmtb0.lock"
KEY_LENGTH = 10  # "llmtb" + 10 hex digits = 15 characters, the longest interface name Linux accepts
HOST_VETH = re.compile(r"llmtb[0-9a-f]{%d}" % KEY_LENGTH)


class NetworkError(RuntimeError):
    """An ``ip`` command failed or the network is not in the state the caller needs."""


def pod_key(pod_uid: str) -> str:
    """A short stable id for a pod: valid in namespace and interface names, the same for the same uid."""
    return hashlib.sha256(pod_uid.encode()).hexdigest()[:KEY_LENGTH]


def netns_name(pod_uid: str) -> str:
    return NETNS_PREFIX + pod_key(pod_uid)


def netns_path(pod_uid: str) -> str:
    """Where runc finds the pod's network namespace."""
    return os.path.join(NETNS_DIR, netns_name(pod_uid))


def host_veth_name(pod_uid: str) -> str:
    return "llmtb" + pod_key(pod_uid)


def run_ip(*args: str) -> str:
    """Run ``ip <args>`` and return its stdout; a failure raises NetworkError naming the command and its stderr."""
    command = ["ip", *args]
    try:
        done = subprocess.run(command, check=True, capture_output=True, text=True)
    except FileNotFoundError:
        raise NetworkError("`ip` was not found: the pod network needs iproute2 (apt-get install iproute2)") from None
    except subprocess.CalledProcessError as error:
        stderr = error.stderr.strip() or "no error output"
        raise NetworkError(
            "`%s` failed with exit code %d: %s%s" % (" ".join(command), error.returncode, stderr, _hint(stderr))
        ) from None
    return done.stdout


def _hint(stderr: str) -> str:
    """The likely cause of an ``ip`` failure and its fix, for the two that callers meet."""
    if "Operation not permitted" in stderr:
        return " (the pod network needs root, or CAP_NET_ADMIN)"
    if 'Cannot find device "%s"' % BRIDGE in stderr:
        return " (the bridge is missing: PodNetwork.start() creates it, before pods and Services are added)"
    return ""


def _ip_json(*args: str) -> list:
    output = run_ip("-j", *args).strip()
    return json.loads(output) if output else []


def _namespaces() -> set:
    return {entry["name"] for entry in _ip_json("netns", "list")}


def _links() -> list:
    return _ip_json("link", "show")


class PodNetwork:
    """The bridge and the pods' namespaces on this machine; ``add_pod``/``remove_pod`` may be called from any thread.

    ``lock_wait_seconds``: how long ``start`` waits for another owner of the bridge to finish (0: fail at once).
    """

    def __init__(self, lock_wait_seconds: float = 0.0) -> None:
        self.lock_wait_seconds = lock_wait_seconds
        self._lock = threading.Lock()
        self._lock_file = None

    # ---- the bridge ----------------------------------------------------------------------------------------
    def start(self) -> None:
        """Own the bridge: wait for the machine-wide lock, sweep a crashed owner's leftovers, create the bridge."""
        with self._lock:
            if self._lock_file is None:
                self._lock_file = _acquire_machine_lock(self.lock_wait_seconds)
            _sweep()
            run_ip("link", "add", BRIDGE, "type", "bridge")
            run_ip("addr", "add", "%s/%d" % (GATEWAY, POD_PREFIX_LEN), "dev", BRIDGE)
            run_ip("link", "set", BRIDGE, "up")

    def stop(self) -> None:
        """Remove every pod namespace, host veth and the bridge (with the Service addresses on it); idempotent."""
        with self._lock:
            if self._lock_file is None:
                return
            try:
                _sweep()
            finally:
                self._lock_file.close()  # releases the flock
                self._lock_file = None

    # ---- pods ----------------------------------------------------------------------------------------------
    def add_pod(self, pod_uid: str, ip: str) -> str:
        """Give the pod its namespace with ``ip`` on eth0; returns the namespace path for runc. Idempotent.

        A half-made pod (an earlier call that failed midway) is made again; a pod that has another IP already is
        refused, since its containers may be using the namespace.
        """
        with self._lock:
            self._require_started()
            name, veth = netns_name(pod_uid), host_veth_name(pod_uid)
            if name in _namespaces():
                configured = _pod_addresses(name)
                if configured and ip not in configured:
                    raise NetworkError(
                        "pod %s already has network namespace %s with address %s, not %s: a pod keeps its IP for "
                        "its whole life; remove_pod it first if it really is a new pod"
                        % (pod_uid, name, ", ".join(sorted(configured)), ip)
                    )
                if configured and _link_exists(veth):
                    return netns_path(pod_uid)
                _remove_pod_links(name, veth)
            _create_pod_links(name, veth, ip)
            return netns_path(pod_uid)

    def remove_pod(self, pod_uid: str) -> None:
        """Delete the pod's veth pair and namespace; nothing happens for a pod that has none."""
        with self._lock:
            _remove_pod_links(netns_name(pod_uid), host_veth_name(pod_uid))

    def _require_started(self) -> None:
        if self._lock_file is None:
            raise NetworkError("the pod network is not started: call PodNetwork.start() before add_pod")


def _acquire_machine_lock(wait_seconds: float):
    lock_file = open(LOCK_PATH, "a+")  # held open for as long as this owner lives
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                lock_file.seek(0)
                holder = lock_file.read().strip() or "unknown"
                lock_file.close()
                raise NetworkError(
                    "another PodNetwork owns bridge %s on this machine (process %s holds %s; waited %.0f s): only "
                    "one test bed runtime can run its pods here at a time; stop the other one or let it finish"
                    % (BRIDGE, holder, LOCK_PATH, wait_seconds)
                ) from None
            time.sleep(0.2)
    lock_file.seek(0)
    lock_file.truncate()
    lock_file.write("%d\n" % os.getpid())
    lock_file.flush()
    return lock_file


def _sweep() -> None:
    """Delete every test bed namespace, host veth (and whatever else is enslaved to the bridge), and the bridge."""
    for link in _links():
        name = link["ifname"]
        if HOST_VETH.fullmatch(name) or link.get("master") == BRIDGE:
            _delete_link(name)
    for name in _namespaces():
        if name.startswith(NETNS_PREFIX):
            _delete_namespace(name)
    if _link_exists(BRIDGE):
        run_ip("link", "del", BRIDGE)  # takes the gateway and the Service /32 addresses with it


def _create_pod_links(name: str, veth: str, ip: str) -> None:
    run_ip("netns", "add", name)
    # The pod end is born inside the namespace as eth0: no rename, and no window where it is on the host.
    run_ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", name)
    run_ip("link", "set", veth, "master", BRIDGE, "up")
    run_ip("-n", name, "addr", "add", "%s/%d" % (ip, POD_PREFIX_LEN), "dev", "eth0")
    run_ip("-n", name, "link", "set", "lo", "up")
    run_ip("-n", name, "link", "set", "eth0", "up")
    run_ip("-n", name, "route", "add", "default", "via", GATEWAY)


def _remove_pod_links(name: str, veth: str) -> None:
    # The host end first: deleting one end destroys the pair at once, whereas the kernel frees a deleted
    # namespace (and the veth end in it) asynchronously, or never while a process still lives in it.
    if _link_exists(veth):
        _delete_link(veth)
    if name in _namespaces():
        _delete_namespace(name)


def _pod_addresses(name: str) -> set:
    """The IPv4 addresses on eth0 inside namespace ``name`` (empty when eth0 is missing)."""
    links = _ip_json("-n", name, "-4", "addr", "show")
    return {
        address["local"] for link in links if link.get("ifname") == "eth0" for address in link.get("addr_info") or []
    }


def _link_exists(name: str) -> bool:
    return any(link["ifname"] == name for link in _links())


def _delete_link(name: str) -> None:
    try:
        run_ip("link", "del", name)
    except NetworkError:
        if _link_exists(name):  # gone meanwhile (its peer's namespace was freed) is what we wanted
            raise


def _delete_namespace(name: str) -> None:
    try:
        run_ip("netns", "del", name)
    except NetworkError:
        if name in _namespaces():
            raise
