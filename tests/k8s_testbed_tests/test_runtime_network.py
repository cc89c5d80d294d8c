# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pod network (bridge, namespaces), ClusterIP forwarding, pods' hosts/resolv.conf, and the API server's
service proxy to pod endpoints.

Servers run as real processes inside pod network namespaces (``ip netns exec``). Tests that touch the network need
root and iproute2; every fixture removes what it made, even when a test fails.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from k8s_testbed.runtime import network, services
from k8s_testbed.runtime.network import BRIDGE, GATEWAY, NetworkError, PodNetwork
from k8s_testbed.runtime.services import ServiceRoute, ServiceRouter

TESTS_DIR = str(Path(__file__).resolve().parents[1])
needs_network = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None, reason="the pod network needs root and iproute2's ip"
)
LINE_PORT = 7000
HTTP_PORT = 8080

# A server for inside a pod: "lines" answers each line with "<name>:<line>" and "<name>:bye" once the client has
# finished sending (a half-close); "http" answers GET with "<name> <path>", and /events streams three events.
POD_SERVER = r"""
import socket, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

mode, name, port = sys.argv[1], sys.argv[2], int(sys.argv[3])


def serve_lines(conn):
    with conn:
        for line in conn.makefile("rb"):
            conn.sendall(name.encode() + b":" + line)
        conn.sendall(name.encode() + b":bye\n")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/events":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for number in range(3):
                self.wfile.write(b"data: %d\n\n" % number)
                self.wfile.flush()
                time.sleep(0.4)
            return
        body = ("%s %s" % (name, self.path)).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


if mode == "http":
    ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()
else:
    listener = socket.create_server(("0.0.0.0", port))
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve_lines, args=(conn,), daemon=True).start()
"""

# Resolves each name given inside a pod; prints {name: [sorted IPv4 addresses or "error: ...", seconds]}.
RESOLVER = r"""
import json, socket, sys, time
answers = {}
for name in sys.argv[1:]:
    started = time.monotonic()
    try:
        found = sorted({info[4][0] for info in socket.getaddrinfo(name, 80, socket.AF_INET, socket.SOCK_STREAM)})
    except socket.gaierror as error:
        found = "error: %s" % error
    answers[name] = [found, time.monotonic() - started]
print(json.dumps(answers))
"""

# A runtime that dies without cleaning up: it makes pods and a ClusterIP, says "ready", and waits to be killed.
CRASHING_OWNER = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
from k8s_testbed.runtime.network import PodNetwork
from k8s_testbed.runtime.services import ServiceRoute, ServiceRouter

pod_network = PodNetwork()
pod_network.start()
pod_network.add_pod("crashed-a", "10.244.1.10")
pod_network.add_pod("crashed-b", "10.244.1.11")
ServiceRouter().sync([ServiceRoute("default", "svc", "10.96.0.50", 80, (("10.244.1.10", 80),))])
print("ready", flush=True)
time.sleep(600)
"""


# ------------------------------------------------------------------------------------------------ helpers


def ip_json(*args: str) -> list:
    output = subprocess.run(["ip", "-j", *args], check=True, capture_output=True, text=True).stdout.strip()
    return json.loads(output) if output else []


def leftovers() -> dict:
    """Everything of the test bed's network on this machine: namespaces, links, addresses on the bridge."""
    links = [link["ifname"] for link in ip_json("link", "show") if link["ifname"].startswith("llmtb")]
    addresses = []
    if BRIDGE in links:
        for link in ip_json("addr", "show", "dev", BRIDGE):
            addresses += ["%s/%d" % (a["local"], a["prefixlen"]) for a in link["addr_info"] if a["family"] == "inet"]
    return {
        "namespaces": sorted(n["name"] for n in ip_json("netns", "list") if n["name"].startswith("llmtb-")),
        "links": sorted(links),
        "bridge_addresses": sorted(addresses),
    }


NOTHING_LEFT = {"namespaces": [], "links": [], "bridge_addresses": []}


def wait_for_port(ip: str, port: int, process: subprocess.Popen, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((ip, port), timeout=1).close()
            return
        except OSError:
            if process.poll() is not None:
                raise AssertionError("server for %s:%d exited: %s" % (ip, port, process.stdout.read())) from None
            if time.monotonic() > deadline:
                raise AssertionError("nothing listens on %s:%d after %.0f s" % (ip, port, timeout)) from None
            time.sleep(0.05)


def run_in_pod(pod_uid: str, *command: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ip", "netns", "exec", network.netns_name(pod_uid), *command],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class LineClient:
    """A connection to a "lines" server (directly or through a ClusterIP)."""

    def __init__(self, ip: str, port: int) -> None:
        self.sock = socket.create_connection((ip, port), timeout=5)
        self.reader = self.sock.makefile("rb")

    def ask(self, text: str) -> str:
        """The server's answer to one line; "" once the connection is closed."""
        try:
            self.sock.sendall(text.encode() + b"\n")
            return self.reader.readline().decode().strip()
        except OSError:
            return ""

    def finish(self) -> list:
        """Half-close, then every line the server still sends before it closes."""
        self.sock.shutdown(socket.SHUT_WR)
        lines = self.reader.read().decode().split()
        self.close()
        return lines

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


def answer_once(ip: str, port: int, text: str = "hi") -> str:
    client = LineClient(ip, port)
    try:
        return client.ask(text)
    finally:
        client.close()


def connection_refused(ip: str, port: int) -> bool:
    try:
        socket.create_connection((ip, port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture
def pod_network():
    """A started PodNetwork (waiting for another owner of the bridge on this machine), stopped afterwards."""
    owner = PodNetwork(lock_wait_seconds=120)
    owner.start()
    try:
        yield owner
    finally:
        owner.stop()


@pytest.fixture
def start_in_pod(pod_network):
    """start_in_pod(uid, mode, name, port): a POD_SERVER in the pod's namespace, ready; all killed afterwards."""
    processes = []

    def start(pod_uid: str, ip: str, mode: str, name: str, port: int) -> subprocess.Popen:
        command = [sys.executable, "-c", POD_SERVER, mode, name, str(port)]
        process = subprocess.Popen(
            ["ip", "netns", "exec", network.netns_name(pod_uid), *command],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        processes.append(process)
        wait_for_port(ip, port, process)
        return process

    yield start
    for process in processes:
        process.kill()
        process.wait(10)
        process.stdout.close()


@pytest.fixture
def router(pod_network):
    service_router = ServiceRouter()
    yield service_router
    service_router.stop()


@pytest.fixture
def two_line_pods(pod_network, start_in_pod):
    """Pods a (10.244.1.2) and b (10.244.2.3), each with a "lines" server on LINE_PORT."""
    pods = {"a": "10.244.1.2", "b": "10.244.2.3"}
    for name, ip in pods.items():
        pod_network.add_pod("uid-" + name, ip)
        start_in_pod("uid-" + name, ip, "lines", name, LINE_PORT)
    return pods


# ------------------------------------------------------------------------------------------------ PodNetwork


@needs_network
def test_pods_reach_each_other_and_the_host_reaches_them(pod_network, start_in_pod):
    path_a = pod_network.add_pod("uid-a", "10.244.1.2")
    pod_network.add_pod("uid-b", "10.244.2.3")
    assert path_a == "/run/netns/" + network.netns_name("uid-a") and os.path.exists(path_a)
    start_in_pod("uid-a", "10.244.1.2", "http", "pod-a", HTTP_PORT)
    start_in_pod("uid-b", "10.244.2.3", "http", "pod-b", HTTP_PORT)

    assert requests.get("http://10.244.1.2:%d/x" % HTTP_PORT, timeout=5).text == "pod-a /x"
    assert requests.get("http://10.244.2.3:%d/y" % HTTP_PORT, timeout=5).text == "pod-b /y"
    fetch = "import urllib.request, sys; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())"
    across = run_in_pod("uid-a", sys.executable, "-c", fetch, "http://10.244.2.3:%d/from-a" % HTTP_PORT)
    assert across.stdout.strip() == "pod-b /from-a", across.stderr
    across = run_in_pod("uid-b", sys.executable, "-c", fetch, "http://10.244.1.2:%d/from-b" % HTTP_PORT)
    assert across.stdout.strip() == "pod-a /from-b", across.stderr

    inside = network.netns_name("uid-a")
    eth0 = ip_json("-n", inside, "-4", "addr", "show", "dev", "eth0")[0]
    assert [(a["local"], a["prefixlen"]) for a in eth0["addr_info"]] == [("10.244.1.2", 16)]
    assert [(r["dst"], r.get("gateway")) for r in ip_json("-n", inside, "route", "show", "default")] == [
        ("default", GATEWAY)
    ]
    veth = ip_json("link", "show", "dev", network.host_veth_name("uid-a"))[0]
    assert veth["master"] == BRIDGE and len(veth["ifname"]) <= 15


@needs_network
def test_add_and_remove_pod_are_idempotent(pod_network):
    path = pod_network.add_pod("uid-a", "10.244.1.2")
    assert pod_network.add_pod("uid-a", "10.244.1.2") == path
    assert leftovers()["namespaces"] == [network.netns_name("uid-a")]
    assert leftovers()["links"] == sorted([BRIDGE, network.host_veth_name("uid-a")])
    with pytest.raises(NetworkError, match="already has network namespace .* with address 10.244.1.2, not 10.244.1.9"):
        pod_network.add_pod("uid-a", "10.244.1.9")

    pod_network.remove_pod("uid-a")
    pod_network.remove_pod("uid-a")
    pod_network.remove_pod("uid-never-added")
    assert leftovers()["namespaces"] == [] and leftovers()["links"] == [BRIDGE]

    # A namespace left half-made (no veth, no address) by a failed call is made again.
    subprocess.run(["ip", "netns", "add", network.netns_name("uid-half")], check=True)
    pod_network.add_pod("uid-half", "10.244.1.3")
    assert connection_refused("10.244.1.3", 9)  # reachable: the pod's kernel answers with a reset


@needs_network
def test_add_pod_from_several_threads(pod_network):
    uids = ["uid-%d" % number for number in range(8)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: pod_network.add_pod(uids[n], "10.244.3.%d" % (n + 2)), range(8)))
    assert leftovers()["namespaces"] == sorted(network.netns_name(uid) for uid in uids)
    assert all(connection_refused("10.244.3.%d" % (n + 2), 9) for n in range(8))
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(pod_network.remove_pod, uids))
    assert leftovers()["namespaces"] == []


@needs_network
def test_add_pod_needs_a_started_network():
    with pytest.raises(NetworkError, match=r"not started: call PodNetwork.start\(\) before add_pod"):
        PodNetwork().add_pod("uid-a", "10.244.1.2")


@needs_network
def test_stop_leaves_nothing_behind(pod_network):
    pod_network.add_pod("uid-a", "10.244.1.2")
    pod_network.add_pod("uid-b", "10.244.1.3")
    service_router = ServiceRouter()
    try:
        service_router.sync([ServiceRoute("default", "svc", "10.96.0.40", 80, (("10.244.1.2", 80),))])
        assert "10.96.0.40/32" in leftovers()["bridge_addresses"]
    finally:
        service_router.stop()
    assert leftovers()["bridge_addresses"] == ["10.244.0.1/16"]
    pod_network.stop()
    assert leftovers() == NOTHING_LEFT
    pod_network.stop()  # idempotent; the fixture calls it once more


@needs_network
def test_start_sweeps_what_a_crashed_owner_left(tmp_path):
    waiting = PodNetwork(lock_wait_seconds=120)  # until no other PodNetwork owns the bridge
    waiting.start()
    waiting.stop()
    owner = subprocess.Popen(
        [sys.executable, "-c", CRASHING_OWNER, TESTS_DIR], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    successor = PodNetwork(lock_wait_seconds=10)
    try:
        assert owner.stdout.readline().strip() == "ready", owner.stdout.read()
        with pytest.raises(NetworkError, match="another PodNetwork owns bridge llmtb0"):
            PodNetwork().start()
        before = leftovers()
        assert before["namespaces"] == sorted(network.netns_name(u) for u in ("crashed-a", "crashed-b"))
        assert "10.96.0.50/32" in before["bridge_addresses"]
        owner.send_signal(signal.SIGKILL)
        owner.wait(10)

        successor.start()
        assert leftovers() == {"namespaces": [], "links": [BRIDGE], "bridge_addresses": ["10.244.0.1/16"]}
    finally:
        owner.kill()
        owner.wait(10)
        owner.stdout.close()
        successor.stop()
    assert leftovers() == NOTHING_LEFT


# ------------------------------------------------------------------------------------------------ ServiceRouter


@needs_network
def test_router_forwards_round_robin_with_half_close(two_line_pods, router):
    targets = ((two_line_pods["a"], LINE_PORT), (two_line_pods["b"], LINE_PORT))
    router.sync([ServiceRoute("default", "lines", "10.96.0.30", 80, targets)])
    answers = {answer_once("10.96.0.30", 80) for _turn in range(4)}
    assert answers == {"a:hi", "b:hi"}

    client = LineClient("10.96.0.30", 80)
    first = client.ask("one")
    assert first in ("a:one", "b:one")
    # After our half-close the server still answers ("bye"), and then the forwarder closes our side.
    assert client.finish() == [first[0] + ":bye"]

    # From inside a pod, through its default route to the bridge.
    fetch = (
        "import socket; s = socket.create_connection(('10.96.0.30', 80), timeout=5); s.sendall(b'x\\n');"
        "print(s.makefile('rb').readline().decode().strip())"
    )
    assert run_in_pod("uid-a", sys.executable, "-c", fetch).stdout.strip() in ("a:x", "b:x")


@needs_network
def test_router_keeps_connections_to_endpoints_that_stay(two_line_pods, router):
    endpoint_a, endpoint_b = (two_line_pods["a"], LINE_PORT), (two_line_pods["b"], LINE_PORT)
    router.sync([ServiceRoute("default", "lines", "10.96.0.31", 80, (endpoint_a,))])
    to_a = LineClient("10.96.0.31", 80)
    assert to_a.ask("1") == "a:1"

    router.sync([ServiceRoute("default", "lines", "10.96.0.31", 80, (endpoint_a, endpoint_b))])
    assert to_a.ask("2") == "a:2"
    assert {answer_once("10.96.0.31", 80) for _turn in range(4)} == {"a:hi", "b:hi"}

    router.sync([ServiceRoute("default", "lines", "10.96.0.31", 80, (endpoint_b,))])
    assert to_a.ask("3") == ""  # its endpoint left the Service: the connection is closed
    to_a.close()
    assert {answer_once("10.96.0.31", 80) for _turn in range(3)} == {"b:hi"}

    # A new port of the same Service is served beside the first, which keeps its connections.
    to_b = LineClient("10.96.0.31", 80)
    assert to_b.ask("4") == "b:4"
    router.sync(
        [
            ServiceRoute("default", "lines", "10.96.0.31", 80, (endpoint_b,)),
            ServiceRoute("default", "lines", "10.96.0.31", 81, (endpoint_a,)),
        ]
    )
    assert to_b.ask("5") == "b:5"
    assert answer_once("10.96.0.31", 81) == "a:hi"
    to_b.close()


@needs_network
def test_router_removes_ports_and_addresses(two_line_pods, router):
    endpoint_a = (two_line_pods["a"], LINE_PORT)
    router.sync([ServiceRoute("default", "lines", "10.96.0.32", 80, (endpoint_a,))])
    open_client = LineClient("10.96.0.32", 80)
    assert open_client.ask("1") == "a:1"
    # No ready endpoint left: the address stays, nothing listens, a connection is refused (kube-proxy rejects).
    router.sync([ServiceRoute("default", "lines", "10.96.0.32", 80, ())])
    assert open_client.ask("2") == ""
    open_client.close()
    assert connection_refused("10.96.0.32", 80)
    assert "10.96.0.32/32" in leftovers()["bridge_addresses"]

    router.sync([])
    assert leftovers()["bridge_addresses"] == ["10.244.0.1/16"]
    router.sync([ServiceRoute("default", "lines", "10.96.0.32", 80, (endpoint_a,))])
    assert answer_once("10.96.0.32", 80) == "a:hi"


@needs_network
def test_router_skips_refusing_endpoints_and_closes_when_all_refuse(two_line_pods, router):
    refusing = (two_line_pods["a"], LINE_PORT + 1)
    good = (two_line_pods["b"], LINE_PORT)
    router.sync([ServiceRoute("default", "lines", "10.96.0.33", 80, (refusing, good))])
    assert {answer_once("10.96.0.33", 80) for _turn in range(4)} == {"b:hi"}

    router.sync([ServiceRoute("default", "lines", "10.96.0.33", 80, (refusing,))])
    started = time.monotonic()
    assert answer_once("10.96.0.33", 80) == ""  # accepted, then closed: the only endpoint refused
    assert time.monotonic() - started < 2


@needs_network
def test_router_serves_routes_of_services_and_endpoints(two_line_pods, router):
    service_list = [
        service("lines", "10.96.0.34", [{"name": "tcp", "port": 80, "targetPort": LINE_PORT}]),
        service("peers", "None", [{"name": "tcp", "port": 80}]),
    ]
    endpoint_list = [
        endpoints("lines", [subset([two_line_pods["a"]], [{"name": "tcp", "port": LINE_PORT}])]),
        endpoints("peers", [subset([two_line_pods["a"]], [{"name": "tcp", "port": LINE_PORT}])]),
    ]
    routes = services.service_routes(service_list, endpoint_list)
    assert routes == [ServiceRoute("default", "lines", "10.96.0.34", 80, ((two_line_pods["a"], LINE_PORT),))]
    router.sync(routes)
    router.sync(services.service_routes(service_list, endpoint_list))  # nothing changed: nothing to do
    assert answer_once("10.96.0.34", 80) == "a:hi"
    assert leftovers()["bridge_addresses"] == ["10.244.0.1/16", "10.96.0.34/32"]


@needs_network
def test_router_reports_a_port_it_cannot_listen_on(pod_network, router):
    blocker = socket.socket()
    try:
        subprocess.run(["ip", "addr", "add", "10.96.0.35/32", "dev", BRIDGE], check=True)
        blocker.bind(("10.96.0.35", 80))
        blocker.listen()
        good = ServiceRoute("default", "ok", "10.96.0.36", 80, (("10.244.1.2", 80),))
        taken = ServiceRoute("default", "taken", "10.96.0.35", 80, (("10.244.1.2", 80),))
        with pytest.raises(services.RouterError, match=r"could not listen on 10.96.0.35:80 \(.*in use"):
            router.sync([good, taken])
        assert not connection_refused("10.96.0.36", 80)  # the other route is served
    finally:
        blocker.close()
    router.sync([good, taken])  # retried once the address is free


@needs_network
def test_router_needs_the_bridge(pod_network, router):
    subprocess.run(["ip", "link", "del", BRIDGE], check=True)
    route = ServiceRoute("default", "svc", "10.96.0.38", 80, (("10.244.1.2", 80),))
    with pytest.raises(NetworkError, match=r"Cannot find device .*PodNetwork.start\(\) creates it"):
        router.sync([route])


# ------------------------------------------------------------------------------------------------ names


def service(name: str, cluster_ip: str, ports: list, namespace: str = "default", **spec) -> dict:
    body = {"clusterIP": cluster_ip, "ports": ports, **spec}
    if cluster_ip != "None":
        body["clusterIPs"] = [cluster_ip]
    return {"metadata": {"name": name, "namespace": namespace}, "spec": body}


def endpoints(name: str, subsets: list, namespace: str = "default") -> dict:
    return {"metadata": {"name": name, "namespace": namespace}, "subsets": subsets}


def subset(ips: list, ports: list, not_ready: tuple = (), hostnames: dict | None = None) -> dict:
    def address(ip):
        entry = {"ip": ip}
        if (hostnames or {}).get(ip):
            entry["hostname"] = hostnames[ip]
        return entry

    body = {"addresses": [address(ip) for ip in ips], "ports": ports}
    if not_ready:
        body["notReadyAddresses"] = [address(ip) for ip in not_ready]
    return body


def pod(name: str, namespace: str, ip: str, **spec) -> dict:
    return {"metadata": {"name": name, "namespace": namespace}, "spec": spec, "status": {"podIP": ip}}


def test_service_routes_pair_ports_by_name_and_skip_what_is_not_forwarded():
    service_list = [
        service(
            "web",
            "10.96.0.20",
            [
                {"name": "http", "port": 80, "targetPort": "web"},
                {"name": "admin", "port": 81, "targetPort": 9000},
                {"name": "dns", "port": 53, "protocol": "UDP"},
            ],
        ),
        service("single", "10.96.0.21", [{"port": 80, "targetPort": 8080}]),
        service("peers", "None", [{"name": "http", "port": 80}]),
        {"metadata": {"name": "ext", "namespace": "default"}, "spec": {"type": "ExternalName", "externalName": "x"}},
    ]
    endpoint_list = [
        endpoints(
            "web",
            [
                subset(["10.244.1.3", "10.244.1.2"], [{"name": "http", "port": 8080}, {"name": "dns", "port": 53}]),
                subset(
                    ["10.244.2.2"], [{"name": "http", "port": 8081}, {"name": "admin", "port": 9000}], ["10.244.2.9"]
                ),
            ],
        ),
        endpoints("single", [subset(["10.244.1.4"], [{"port": 8080}])]),
        endpoints("peers", [subset(["10.244.1.5"], [{"name": "http", "port": 80}])]),
    ]
    assert services.service_routes(service_list, endpoint_list) == [
        ServiceRoute(
            "default", "web", "10.96.0.20", 80, (("10.244.1.2", 8080), ("10.244.1.3", 8080), ("10.244.2.2", 8081))
        ),
        ServiceRoute("default", "web", "10.96.0.20", 81, (("10.244.2.2", 9000),)),
        ServiceRoute("default", "single", "10.96.0.21", 80, (("10.244.1.4", 8080),)),
    ]
    # A Service whose Endpoints do not exist yet still has its ClusterIP (nothing to forward to).
    assert services.service_routes(service_list[1:2], []) == [ServiceRoute("default", "single", "10.96.0.21", 80, ())]


CLUSTER = (
    [
        service("web", "10.96.0.20", [{"name": "http", "port": 80}], namespace="team"),
        service("db", "10.96.0.21", [{"port": 5432}], namespace="other"),
        service("peers", "None", [{"name": "http", "port": 80}], namespace="team"),
        service("warm", "None", [{"port": 80}], namespace="team", publishNotReadyAddresses=True),
        {"metadata": {"name": "ext", "namespace": "team"}, "spec": {"type": "ExternalName", "externalName": "x.org"}},
    ],
    [
        endpoints("web", [subset(["10.244.1.7"], [{"name": "http", "port": 8080}])], namespace="team"),
        endpoints(
            "peers",
            [subset(["10.244.1.7", "10.244.2.8"], [{"port": 80}], ["10.244.2.9"], {"10.244.1.7": "peer-0"})],
            namespace="team",
        ),
        # Hand-written: the Endpoints controller would have put this address under "addresses" already.
        endpoints("warm", [subset([], [{"port": 80}], ["10.244.3.3"])], namespace="team"),
    ],
)


def test_hosts_file_has_localhost_the_pod_and_every_service():
    text = services.hosts_file(pod("client", "team", "10.244.1.5"), *CLUSTER)
    assert text.splitlines()[1:] == [
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "fe00::0\tip6-localnet",
        "fe00::0\tip6-mcastprefix",
        "fe00::1\tip6-allnodes",
        "fe00::2\tip6-allrouters",
        "10.244.1.5\tclient",
        "10.96.0.21\tdb.other.svc.cluster.local db.other.svc db.other",
        "10.244.1.7\tpeers.team.svc.cluster.local peers.team.svc peers.team peers",
        "10.244.1.7\tpeer-0.peers.team.svc.cluster.local",
        "10.244.2.8\tpeers.team.svc.cluster.local peers.team.svc peers.team peers",
        "10.244.3.3\twarm.team.svc.cluster.local warm.team.svc warm.team warm",
        "10.96.0.20\tweb.team.svc.cluster.local web.team.svc web.team web",
    ]
    assert text.startswith("#") and text.endswith("\n")


def test_hosts_file_short_names_only_in_the_pods_namespace():
    lines = services.hosts_file(pod("client", "other", "10.244.1.5"), *CLUSTER).splitlines()
    assert "10.96.0.21\tdb.other.svc.cluster.local db.other.svc db.other db" in lines
    assert "10.96.0.20\tweb.team.svc.cluster.local web.team.svc web.team" in lines


def test_hosts_file_pod_hostname_and_subdomain():
    member = pod("peer-0", "team", "10.244.1.7", hostname="peer-0", subdomain="peers")
    assert "10.244.1.7\tpeer-0.peers.team.svc.cluster.local peer-0" in services.hosts_file(member, [], [])
    renamed = pod("client-7f9", "team", "10.244.1.6", hostname="front")
    assert "10.244.1.6\tfront" in services.hosts_file(renamed, [], []).splitlines()
    long_name = "a" * 62 + "-bcdef"  # cut at 63 ends in "-", which goes too
    assert services.pod_hostname(pod(long_name, "team", "10.244.1.8")) == "a" * 62
    assert "10.244.1.8\t" + "a" * 62 in services.hosts_file(pod(long_name, "team", "10.244.1.8"), [], [])


def test_resolv_conf():
    assert services.resolv_conf("team").splitlines()[1:] == [
        "search team.svc.cluster.local svc.cluster.local cluster.local",
        "nameserver 127.0.0.1",
        "options ndots:5 timeout:1 attempts:1",
    ]


@needs_network
def test_names_resolve_inside_a_pod_and_unknown_names_fail_fast(two_line_pods, router, tmp_path):
    service_list = [service("lines", "10.96.0.37", [{"port": 80}], namespace="default"), *CLUSTER[0]]
    endpoint_list = [endpoints("lines", [subset([two_line_pods["b"]], [{"port": LINE_PORT}])]), *CLUSTER[1]]
    router.sync(services.service_routes(service_list, endpoint_list))
    client = pod("client", "default", two_line_pods["a"])
    (tmp_path / "hosts").write_text(services.hosts_file(client, service_list, endpoint_list))
    (tmp_path / "resolv.conf").write_text(services.resolv_conf("default"))
    names = ["lines", "lines.default", "lines.default.svc.cluster.local", "peers.team", "client", "web", "nosuch"]
    # Own mount namespace: the pod's files cover /etc/hosts and /etc/resolv.conf for this process only.
    script = 'mount --bind "$1" /etc/hosts && mount --bind "$2" /etc/resolv.conf && shift 2 && exec "$@"'
    done = run_in_pod(
        "uid-a",
        "unshare",
        "--mount",
        "sh",
        "-c",
        script,
        "sh",
        str(tmp_path / "hosts"),
        str(tmp_path / "resolv.conf"),
        sys.executable,
        "-c",
        RESOLVER,
        *names,
    )
    assert done.returncode == 0, done.stderr
    answers = json.loads(done.stdout)
    found = {name: answer[0] for name, answer in answers.items()}
    assert found["lines"] == found["lines.default"] == found["lines.default.svc.cluster.local"] == ["10.96.0.37"]
    assert found["peers.team"] == ["10.244.1.7", "10.244.2.8"]
    assert found["client"] == [two_line_pods["a"]]
    assert found["web"].startswith("error")  # in another namespace: only web.team resolves
    assert found["nosuch"].startswith("error")
    assert answers["nosuch"][1] < 0.5, answers  # 127.0.0.1 refuses: no DNS timeout

    connect = (
        "import socket; s = socket.create_connection(('lines', 80), timeout=5); s.sendall(b'n\\n');"
        "print(s.makefile('rb').readline().decode().strip())"
    )
    done = run_in_pod(
        "uid-a",
        "unshare",
        "--mount",
        "sh",
        "-c",
        script,
        "sh",
        str(tmp_path / "hosts"),
        str(tmp_path / "resolv.conf"),
        sys.executable,
        "-c",
        connect,
    )
    assert done.stdout.strip() == "b:n", done.stderr
    assert Path("/etc/hosts").read_text() != (tmp_path / "hosts").read_text()  # the host's own file is untouched


# ------------------------------------------------------------------------------------------------ API server proxy


def create(bed, path: str, body: dict) -> dict:
    status, answer = bed.request("POST", path, body)
    assert status == 201, answer
    return answer


def wait_for_pod_ip(bed, namespace: str, name: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, answer = bed.request("GET", "/api/v1/namespaces/%s/pods/%s" % (namespace, name))
        if status == 200 and (answer.get("status") or {}).get("podIPs"):
            return answer
        time.sleep(0.1)
    raise AssertionError("pod %s/%s got no IP in %.0f s" % (namespace, name, timeout))


def proxy(bed, target: str, tail: str, **kwargs) -> requests.Response:
    url = "%s/api/v1/namespaces/default/services/%s/proxy%s" % (bed.server_url, target, tail)
    headers = {"Authorization": "Bearer " + bed.token}
    return requests.get(url, headers=headers, verify=bed.ca_path, timeout=30, **kwargs)


class HostServer:
    """An HTTP server on 127.0.0.1 that answers "host <path>" (a backend mapped with the admin API)."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body = ("host %s" % self.path).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@needs_network
def test_service_proxy_goes_to_a_ready_pod_endpoint(testbed, pod_network, start_in_pod):
    create(
        testbed,
        "/api/v1/namespaces/default/pods",
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web"},
            "spec": {"containers": [{"name": "web", "image": "busybox"}]},
        },
    )
    web = wait_for_pod_ip(testbed, "default", "web")
    ip = web["status"]["podIP"]
    pod_network.add_pod(web["metadata"]["uid"], ip)
    start_in_pod(web["metadata"]["uid"], ip, "http", "web", HTTP_PORT)
    ports = [{"name": "http", "port": 80, "targetPort": HTTP_PORT}, {"name": "metrics", "port": 9100}]
    create(testbed, "/api/v1/namespaces/default/services", {"metadata": {"name": "web"}, "spec": {"ports": ports}})
    reference = {"kind": "Pod", "namespace": "default", "name": "web", "uid": web["metadata"]["uid"]}
    endpoint_ports = [{"name": "http", "port": HTTP_PORT}, {"name": "metrics", "port": 9100}]
    create(
        testbed,
        "/api/v1/namespaces/default/endpoints",
        {
            "metadata": {"name": "web"},
            "subsets": [{"addresses": [{"ip": ip, "targetRef": reference}], "ports": endpoint_ports}],
        },
    )

    assert proxy(testbed, "web:80", "/hello?x=1").text == "web /hello?x=1"
    assert proxy(testbed, "web:http", "/by-name").text == "web /by-name"
    assert proxy(testbed, "http:web:80", "/with-scheme").text == "web /with-scheme"
    started = time.monotonic()
    with proxy(testbed, "web:80", "/events", stream=True) as response:
        arrivals = [(time.monotonic() - started, chunk) for chunk in response.iter_content(chunk_size=None)]
    assert b"".join(chunk for _stamp, chunk in arrivals) == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
    assert arrivals[0][1] == b"data: 0\n\n" and arrivals[0][0] < 0.35  # streamed as it came, not buffered
    assert arrivals[-1][0] >= 0.8

    refused = proxy(testbed, "web:9100", "/")
    assert refused.status_code == 503
    assert (
        refused.json()["message"] == "error trying to reach service: dial tcp %s:9100: connect: connection refused" % ip
    )
    assert refused.json()["reason"] == "ServiceUnavailable"

    # A mapping made with the admin API wins for that port while it is set.
    host_server = HostServer()
    try:
        testbed.admin("PUT", "service-backends", {"default/web:80": host_server.url})
        assert proxy(testbed, "web:80", "/mapped").text == "host /mapped"
        assert proxy(testbed, "web:http", "/mapped").text == "host /mapped"
        testbed.admin("PUT", "service-backends", {"default/web:80": ""})
        assert proxy(testbed, "web:80", "/back").text == "web /back"
    finally:
        host_server.stop()


def test_service_proxy_without_usable_endpoints(testbed):
    ports = [{"name": "http", "port": 80, "targetPort": 8080}]
    for name in ("empty", "loose", "unwritten"):
        create(testbed, "/api/v1/namespaces/default/services", {"metadata": {"name": name}, "spec": {"ports": ports}})
    create(testbed, "/api/v1/namespaces/default/endpoints", {"metadata": {"name": "empty"}})
    # An address without targetRef is skipped by kube-apiserver's proxy (kube-proxy would still use it).
    create(
        testbed,
        "/api/v1/namespaces/default/endpoints",
        {
            "metadata": {"name": "loose"},
            "subsets": [{"addresses": [{"ip": "10.244.1.99"}], "ports": [{"name": "http", "port": 8080}]}],
        },
    )

    expectations = [
        ("empty:80", 503, 'no endpoints available for service "empty"'),
        ("loose:80", 503, 'no endpoints available for service "loose:80"'),
        ("loose:nope", 503, 'no endpoints available for service "loose:nope"'),
        ("loose:81", 503, 'no service port 81 found for service "loose"'),
        ("unwritten:80", 404, 'endpoints "unwritten" not found'),
        ("missing:80", 404, 'services "missing" not found'),
    ]
    for target, code, message in expectations:
        response = proxy(testbed, target, "/")
        assert (response.status_code, response.json()["message"]) == (code, message), target
