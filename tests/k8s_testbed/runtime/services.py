# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Services for pods that run as containers: ClusterIP forwarding, and names without cluster DNS.

ClusterIPs (``ServiceRouter``): every ClusterIP a Service has (the workloads controller allocates them from
10.96.0.0/12) is a /32 address on the pod bridge (``network.BRIDGE``), so pods (through their default route) and
the host reach it. For each TCP port of the Service a userspace forwarder, like kube-proxy's old userspace mode,
listens on clusterIP:port and hands each connection to the next ready endpoint (round robin), streaming both ways
and passing half-closes on. Endpoints are the Endpoints object's ready ``addresses`` with the endpoint port whose
name equals the Service port's name, as kube-proxy pairs them. Details:

- a port without ready endpoints has no listener, so a connection is refused at once, as kube-proxy's reject rule
  for a Service without endpoints makes it;
- an endpoint that refuses (or does not answer within ``connect_timeout``) is skipped for the next one; when every
  endpoint failed, the client's connection is closed, as the userspace proxy did after its retries;
- ``sync`` changes listeners in place: connections to endpoints that are still ready stay up; connections to
  removed endpoints, and those of removed ports, are closed;
- headless Services (clusterIP None), ExternalName Services and non-TCP ports (UDP, SCTP) are not forwarded.

Names (``hosts_file``, ``resolv_conf``): there is no cluster DNS. The kubelet writes each pod its own /etc/hosts
with what cluster DNS would answer (``<svc>.<ns>.svc.cluster.local``, ``<svc>.<ns>.svc``, ``<svc>.<ns>``, and
``<svc>`` in the pod's own namespace: the ClusterIP, or for a headless Service each ready endpoint, plus the
not-ready ones under publishNotReadyAddresses, and ``<hostname>.<svc>.<ns>.svc.cluster.local`` for its endpoints
with a hostname; the pod's own hostname as the kubelet writes it), and a resolv.conf with the cluster's search path
whose nameserver, 127.0.0.1 inside the pod's network namespace, refuses at once: an unknown name fails in
milliseconds instead of waiting for a DNS timeout. ``hosts_file`` describes the cluster as it is when called; the
kubelet writes the file again when Services or Endpoints change.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import threading
from dataclasses import dataclass
from typing import Iterable

from .network import BRIDGE, NetworkError, run_ip

LOG = logging.getLogger(__name__)
CLUSTER_DOMAIN = "cluster.local"
HOSTNAME_MAX = 63  # the kubelet cuts a pod's hostname to a DNS label
COPY_CHUNK = 64 * 1024
# glibc gets ICMP port unreachable from 127.0.0.1:53 and gives up at once; musl does not see it, so timeout:1
# attempts:1 bound its wait for an unknown name to about a second per search domain.
RESOLV_OPTIONS = "ndots:5 timeout:1 attempts:1"


# ---- routes ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceRoute:
    """One Service port on one ClusterIP and the ready endpoints behind it, as (ip, port) tuples, sorted."""

    namespace: str
    name: str
    cluster_ip: str
    port: int
    targets: tuple

    @property
    def address(self) -> tuple:
        return (self.cluster_ip, self.port)


def service_routes(services: list, endpoints: list) -> list:
    """The ServiceRoutes of every TCP port of every Service with a ClusterIP (targets may be empty)."""
    endpoints_of = _by_service(endpoints)
    routes = []
    for service in services:
        spec = service.get("spec") or {}
        subsets = (endpoints_of.get(_key(service)) or {}).get("subsets") or []
        for port in spec.get("ports") or []:
            if port.get("protocol", "TCP") != "TCP":
                continue
            targets = _ready_targets(subsets, port.get("name") or "")
            for ip in cluster_ips(service):
                routes.append(ServiceRoute(*_key(service), ip, int(port["port"]), targets))
    return routes


def cluster_ips(service: dict) -> list:
    """The Service's ClusterIPs; none for headless (``None``) and ExternalName Services."""
    spec = service.get("spec") or {}
    if spec.get("type") == "ExternalName":
        return []
    ips = spec.get("clusterIPs") or [spec.get("clusterIP")]
    return [ip for ip in ips if ip and ip != "None"]


def _ready_targets(subsets: list, port_name: str) -> tuple:
    targets = set()
    for subset in subsets:
        for port in subset.get("ports") or []:
            if (port.get("name") or "") != port_name or port.get("protocol", "TCP") != "TCP":
                continue
            targets.update((address["ip"], int(port["port"])) for address in subset.get("addresses") or [])
    return tuple(sorted(targets))


def _key(obj: dict) -> tuple:
    return (obj["metadata"].get("namespace") or "default", obj["metadata"]["name"])


def _by_service(endpoints: list) -> dict:
    return {_key(entry): entry for entry in endpoints}


# ---- /etc/hosts and /etc/resolv.conf -------------------------------------------------------------------------


def hosts_file(pod: dict, services: list, endpoints: list) -> str:
    """The pod's /etc/hosts: localhost, the pod itself, and every Service of the cluster by its DNS names."""
    lines = [
        "# Written by the test bed's kubelet: the cluster has no DNS, Service names resolve from this file.",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "fe00::0\tip6-localnet",
        "fe00::0\tip6-mcastprefix",
        "fe00::1\tip6-allnodes",
        "fe00::2\tip6-allrouters",
    ]
    lines += _own_lines(pod)
    namespace = pod["metadata"].get("namespace") or "default"
    endpoints_of = _by_service(endpoints)
    for service in sorted(services, key=_key):
        lines += _service_lines(service, endpoints_of.get(_key(service)), namespace)
    return "\n".join(lines) + "\n"


def resolv_conf(namespace: str) -> str:
    """The pod's /etc/resolv.conf: the cluster's search path, and a nameserver that refuses at once."""
    return (
        "# Written by the test bed's kubelet: no cluster DNS; names are in /etc/hosts, 127.0.0.1 refuses queries.\n"
        "search %s.svc.%s svc.%s %s\n"
        "nameserver 127.0.0.1\n"
        "options %s\n" % (namespace, CLUSTER_DOMAIN, CLUSTER_DOMAIN, CLUSTER_DOMAIN, RESOLV_OPTIONS)
    )


def pod_hostname(pod: dict) -> str:
    """spec.hostname, else the pod's name, cut to 63 characters without a trailing '-' or '.' as the kubelet does."""
    hostname = (pod.get("spec") or {}).get("hostname") or pod["metadata"]["name"]
    if len(hostname) > HOSTNAME_MAX:
        hostname = hostname[:HOSTNAME_MAX].rstrip("-.")
    return hostname


def _own_lines(pod: dict) -> list:
    status, spec = pod.get("status") or {}, pod.get("spec") or {}
    ips = [entry["ip"] for entry in status.get("podIPs") or []] or [status.get("podIP")]
    hostname = pod_hostname(pod)
    names = [hostname]
    if spec.get("subdomain"):
        namespace = pod["metadata"].get("namespace") or "default"
        names.insert(0, "%s.%s.%s.svc.%s" % (hostname, spec["subdomain"], namespace, CLUSTER_DOMAIN))
    return [_hosts_line(ip, names) for ip in ips if ip]


def _service_lines(service: dict, endpoints: dict | None, pod_namespace: str) -> list:
    namespace, name = _key(service)
    spec = service.get("spec") or {}
    names = _service_names(namespace, name, pod_namespace)
    if spec.get("type") == "ExternalName":
        return []  # a CNAME in cluster DNS; a hosts file cannot say that
    if spec.get("clusterIP") != "None":
        return [_hosts_line(ip, names) for ip in cluster_ips(service)]
    lines = []
    for address in _published_addresses(spec, endpoints):
        lines.append(_hosts_line(address["ip"], names))
        if address.get("hostname"):
            fqdn = "%s.%s.%s.svc.%s" % (address["hostname"], name, namespace, CLUSTER_DOMAIN)
            lines.append(_hosts_line(address["ip"], [fqdn]))
    return lines


def _service_names(namespace: str, name: str, pod_namespace: str) -> list:
    names = ["%s.%s.svc.%s" % (name, namespace, CLUSTER_DOMAIN), "%s.%s.svc" % (name, namespace)]
    names.append("%s.%s" % (name, namespace))
    if namespace == pod_namespace:
        names.append(name)
    return names


def _published_addresses(spec: dict, endpoints: dict | None) -> list:
    """The endpoint addresses a headless Service's name resolves to, each IP once."""
    kinds = ("addresses", "notReadyAddresses") if spec.get("publishNotReadyAddresses") else ("addresses",)
    published = {}
    for subset in (endpoints or {}).get("subsets") or []:
        for kind in kinds:
            for address in subset.get(kind) or []:
                published.setdefault(address["ip"], address)
    return list(published.values())


def _hosts_line(ip: str, names: list) -> str:
    return "%s\t%s" % (ip, " ".join(names))


# ---- the forwarder ---------------------------------------------------------------------------------------------


class RouterError(RuntimeError):
    """Some ClusterIP ports could not be listened on; the others are served."""


class ServiceRouter:
    """ClusterIP forwarding on the pod bridge; an asyncio loop in a daemon thread does the copying.

    ``sync`` (thread-safe, cheap when nothing changed) makes the addresses and listeners match the routes;
    ``stop`` closes every listener and connection and removes the addresses.
    """

    def __init__(self, bridge: str = BRIDGE, connect_timeout: float = 2.0) -> None:
        self.bridge = bridge
        self.connect_timeout = connect_timeout
        self._lock = threading.Lock()
        self._routes: dict = {}  # (cluster ip, port) -> ServiceRoute, as last applied
        self._addresses: set = set()  # ClusterIPs added to the bridge
        self._forwarders: dict = {}  # (cluster ip, port) -> _Forwarder; used in the loop thread only
        self._stopped = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="service-router", daemon=True)
        self._thread.start()

    def sync(self, routes: Iterable[ServiceRoute]) -> None:
        """Serve exactly ``routes``; raises RouterError naming the ports it could not listen on (retried next time)."""
        desired = {route.address: route for route in routes}
        with self._lock:
            if self._stopped:
                raise RouterError("the ServiceRouter is stopped; make a new one")
            if desired == self._routes:
                return
            wanted = {route.cluster_ip for route in desired.values()}
            for ip in sorted(wanted - self._addresses):
                run_ip("addr", "replace", _host_prefix(ip), "dev", self.bridge)
                self._addresses.add(ip)
            failures = self._in_loop(self._apply(desired))
            for ip in sorted(self._addresses - wanted):
                self._remove_address(ip)
            self._routes = {address: route for address, route in desired.items() if address not in failures}
        if failures:
            raise RouterError(
                "could not listen on %s: another process holds the address, or the bridge %s lacks it"
                % (
                    "; ".join("%s:%d (%s)" % (*address, error) for address, error in sorted(failures.items())),
                    self.bridge,
                )
            )

    def stop(self) -> None:
        """Close every listener and connection, remove the ClusterIP addresses, end the loop; idempotent."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            self._in_loop(self._close_all())
            for ip in sorted(self._addresses):
                self._remove_address(ip)
            self._routes = {}
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()

    def _in_loop(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=60)

    async def _close_all(self) -> None:
        """Close every forwarder and let the connections' tasks finish, so none is left pending in the loop."""
        await self._apply({})
        tasks = asyncio.all_tasks() - {asyncio.current_task()}
        if tasks:
            await asyncio.wait(tasks, timeout=10)

    async def _apply(self, desired: dict) -> dict:
        """Open, update and close forwarders to match ``desired``; returns {address: OSError} for failed listens."""
        for address in list(self._forwarders):
            route = desired.get(address)
            if route is None or not route.targets:
                self._forwarders.pop(address).close()
        failures = {}
        for address, route in desired.items():
            if not route.targets:
                continue
            if address in self._forwarders:
                self._forwarders[address].update(route.targets)
                continue
            forwarder = _Forwarder(route.targets, self.connect_timeout)
            try:
                await forwarder.listen(*address)
            except OSError as error:
                failures[address] = error
                continue
            self._forwarders[address] = forwarder
        return failures

    def _remove_address(self, ip: str) -> None:
        try:
            run_ip("addr", "del", _host_prefix(ip), "dev", self.bridge)
        except NetworkError:
            if ip in self._bridge_addresses():  # already gone (the bridge was deleted) is what we wanted
                raise
        self._addresses.discard(ip)

    def _bridge_addresses(self) -> set:
        try:
            output = run_ip("-o", "addr", "show", "dev", self.bridge)
        except NetworkError:
            return set()  # no bridge, no addresses
        return {line.split()[3].split("/")[0] for line in output.splitlines()}


def _host_prefix(ip: str) -> str:
    return "%s/%d" % (ip, ipaddress.ip_address(ip).max_prefixlen)


class _Forwarder:
    """One ClusterIP port: a listener, the ready endpoints, and the connections relayed to them."""

    def __init__(self, targets: tuple, connect_timeout: float) -> None:
        self.targets = targets
        self.connect_timeout = connect_timeout
        self.server = None
        self.turn = 0  # round robin position
        self.connections: dict = {}  # relay task -> the endpoint it is connected to (None while connecting)

    async def listen(self, ip: str, port: int) -> None:
        self.server = await asyncio.start_server(self._serve, ip, port)

    def update(self, targets: tuple) -> None:
        self.targets = targets
        for task, endpoint in list(self.connections.items()):
            if endpoint is not None and endpoint not in targets:
                task.cancel()

    def close(self) -> None:
        self.server.close()
        for task in list(self.connections):
            task.cancel()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self.connections[task] = None
        upstream_writer = None
        try:
            connected = await self._connect()
            if connected is None:
                return  # every endpoint refused: the client's connection is closed
            endpoint, upstream_reader, upstream_writer = connected
            self.connections[task] = endpoint
            if endpoint in self.targets:  # it may have been removed while we connected
                await _relay(client_reader, client_writer, upstream_reader, upstream_writer)
        except OSError:
            pass  # a reset on either side ends the connection; nothing worth a log line
        finally:
            self.connections.pop(task, None)
            for writer in (client_writer, upstream_writer):
                if writer is not None:
                    writer.close()

    async def _connect(self):
        """(endpoint, reader, writer) of the first endpoint that accepts, trying each once in round robin."""
        for _attempt in range(len(self.targets)):
            endpoint = self.targets[self.turn % len(self.targets)]
            self.turn += 1
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(*endpoint), self.connect_timeout)
            except (OSError, asyncio.TimeoutError) as error:
                LOG.debug("endpoint %s:%d failed: %s", *endpoint, error)
                continue
            return endpoint, reader, writer
        return None


async def _relay(a_reader, a_writer, b_reader, b_writer) -> None:
    """Copy both ways until both sides have finished sending, or either side fails."""
    pipes = [asyncio.ensure_future(_pipe(a_reader, b_writer)), asyncio.ensure_future(_pipe(b_reader, a_writer))]
    try:
        await asyncio.wait(pipes, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for pipe in pipes:
            pipe.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy one direction; at its end, pass the half-close on so the other side sees EOF but may still answer."""
    while True:
        data = await reader.read(COPY_CHUNK)
        if not data:
            break
        writer.write(data)
        await writer.drain()
    if writer.can_write_eof():
        with contextlib.suppress(OSError):
            writer.write_eof()
