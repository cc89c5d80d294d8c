# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``services/{name}/proxy`` subresource: target parsing, endpoint choice and HTTP forwarding.

Behaviour follows kube-apiserver: the ``{name}`` segment is ``[scheme:]name[:port]`` (``net.SplitSchemeNamePort``;
scheme ``http``/``https``/empty, anything else is ``400 invalid service request "..."``); a numeric port is mapped
to the name of the Service port of that number (``503 no service port N found for service "svc"``), and that name
(or the name given, or empty) selects the endpoint: a ready address of the Service's Endpoints object, in a subset
with a port of that name, whose ``targetRef`` is a pod of the namespace that has that IP (``endpoint_base_url``;
``503 no endpoints available for service "svc"`` for an Endpoints object without subsets, ``... "svc:port"`` when
no address qualifies). The proxy transport adds ``X-Forwarded-Uri``/``-Host``/``-Proto``, rewrites same-host
``Location`` redirects to go through the proxy path, and turns a failed dial into ``503 error trying to reach
service: dial tcp ...``. The authentication filter deletes the ``Authorization`` header from every successfully
authenticated request (bearer token *and* client certificate) before the proxy sees it, so callers emulating an
authenticating server should pass ``strip_authorization=True``. HTML link rewriting of ``text/html`` bodies is not
emulated.
"""

from __future__ import annotations

import asyncio
import errno
import posixpath
import random
import weakref
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from .pod_exec import status_response

HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Proxy-Connection",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
    )
)
VALID_SCHEMES = ("", "http", "https")


class ProxyError(ValueError):
    """A proxy request the apiserver refuses; ``code``/``reason`` give the HTTP status and Status reason."""

    def __init__(self, message: str, code: int = 503, reason: str = "ServiceUnavailable") -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.reason = reason

    def response(self) -> web.Response:
        return status_response(self.code, self.reason, self.message)


def _go_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_proxy_target(name_port: str) -> Tuple[str, str, str]:
    """``"svc"``, ``"svc:8265"``, ``"svc:dashboard"``, ``"https:svc:443"`` -> ``(scheme, name, port)``.

    Raises :class:`ProxyError` (a ValueError, code 400) for anything ``net.SplitSchemeNamePort`` rejects.
    """
    parts = name_port.split(":")
    scheme = port = ""
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        name, port = parts
    elif len(parts) == 3:
        scheme, name, port = parts
    else:
        name = ""
    if not name or scheme not in VALID_SCHEMES:
        raise ProxyError("invalid service request %s" % _go_quote(name_port), 400, "BadRequest")
    return scheme, name, port


def is_port_number(port: str) -> bool:
    """Whether the port of a proxy target is a number (as Go's ``strconv.ParseInt`` reads it) rather than a name."""
    return port.isdigit() or (port[:1] in "+-" and port[1:].isdigit())


def resolve_service_port(service: Dict[str, Any], port: str) -> Dict[str, Any]:
    """The ``spec.ports[]`` entry a proxy request for ``port`` (number, name or empty) goes to.

    A number must equal some ``port``; a name (or empty) must equal some port's ``name`` (empty matches the
    unnamed port). Otherwise :class:`ProxyError` (ValueError, 503) with the apiserver's message.
    """
    name = (service.get("metadata") or {}).get("name", "")
    ports: List[Dict[str, Any]] = list((service.get("spec") or {}).get("ports") or [])
    if is_port_number(port):
        number = int(port)
        for entry in ports:
            if int(entry.get("port", -1)) == number:
                return entry
        raise ProxyError("no service port %d found for service %s" % (number, _go_quote(name)))
    for entry in ports:
        if (entry.get("name") or "") == port:
            return entry
    raise ProxyError("no endpoints available for service %s" % _go_quote(name))


def resolve_target_port(service_port: Dict[str, Any], pod: Optional[Dict[str, Any]] = None) -> int:
    """The container port behind ``service_port``: ``targetPort`` as a number, or a named container port of ``pod``
    (defaulting to ``port``). Raises ProxyError (503) when a named target port does not exist in the pod."""
    target = service_port.get("targetPort", service_port.get("port"))
    if isinstance(target, int) or (isinstance(target, str) and target.isdigit()):
        return int(target)
    for container in ((pod or {}).get("spec") or {}).get("containers") or []:
        for entry in container.get("ports") or []:
            if entry.get("name") == target:
                return int(entry["containerPort"])
    raise ProxyError("no endpoints available for service port %s" % _go_quote(str(target)))


def endpoint_base_url(
    endpoints: Dict[str, Any], name_port: str, port_name: str, pod_named: Callable[[str], Optional[Dict[str, Any]]]
) -> str:
    """``<scheme>://<ip>:<port>`` of a ready endpoint for the proxy request ``name_port`` on the port ``port_name``.

    As kube-apiserver 1.33 chooses (read in kubernetes ``pkg/registry/core/service/storage/storage.go``,
    ``ResourceLocation`` and ``isValidAddress``): subsets from a random one on, those with ready addresses and a
    port named ``port_name``; addresses from a random one on, the first whose ``targetRef`` names a pod of the
    Endpoints' namespace (``pod_named`` looks it up) that has the address among its pod IPs. Hand-written Endpoints
    without ``targetRef`` therefore never qualify, on a real cluster as here. Raises ProxyError (503).
    """
    scheme, name, _port = parse_proxy_target(name_port)
    subsets = endpoints.get("subsets") or []
    if not subsets:
        raise ProxyError("no endpoints available for service %s" % _go_quote(name))
    namespace = endpoints["metadata"].get("namespace")
    for subset in _from_random(subsets):
        addresses = subset.get("addresses") or []
        for port in subset.get("ports") or []:
            if (port.get("name") or "") != port_name:
                continue
            for address in _from_random(addresses):
                if _is_pod_address(address, namespace, pod_named):
                    return "%s://%s" % (scheme or "http", _host_port(address["ip"], int(port["port"])))
    # The apiserver names the whole request target here, port included.
    raise ProxyError("no endpoints available for service %s" % _go_quote(name_port))


def _from_random(items: List[Any]) -> List[Any]:
    """``items`` in order, starting at a random one (the apiserver spreads proxy requests this way)."""
    if not items:
        return []
    start = random.randrange(len(items))
    return items[start:] + items[:start]


def _is_pod_address(address: Dict[str, Any], namespace: Optional[str], pod_named) -> bool:
    reference = address.get("targetRef") or {}
    if not reference.get("name") or reference.get("namespace") != namespace:
        return False
    pod = pod_named(reference["name"])
    pod_ips = {entry.get("ip") for entry in ((pod or {}).get("status") or {}).get("podIPs") or []}
    return address.get("ip") in pod_ips


def _host_port(host: str, port: int) -> str:
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


# --------------------------------------------------------------------------------------------------- forwarding

_SESSIONS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession] = weakref.WeakKeyDictionary()


def client_session() -> aiohttp.ClientSession:
    """The shared client session of the running event loop (created on first use)."""
    loop = asyncio.get_running_loop()
    session = _SESSIONS.get(loop)
    if session is None or session.closed:
        session = aiohttp.ClientSession(
            auto_decompress=False,  # bytes pass through untouched, Content-Encoding stays true
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=None),
            connector=aiohttp.TCPConnector(ssl=False, limit=0),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        _SESSIONS[loop] = session
    return session


async def close_client_session() -> None:
    """Close the running loop's shared session (call from the app's on_cleanup)."""
    session = _SESSIONS.pop(asyncio.get_running_loop(), None)
    if session is not None and not session.closed:
        await session.close()


def _connection_tokens(headers: Any) -> set:
    tokens = set()
    for value in headers.getall("Connection", []):
        tokens.update(part.strip().lower() for part in value.split(",") if part.strip())
    return tokens


def _dial_error(exc: BaseException, host: str, port: int) -> str:
    """Describe a failed connect the way Go's net package does."""
    address = _host_port(host, port)
    os_error = getattr(exc, "os_error", None) or exc
    code = getattr(os_error, "errno", None)
    if isinstance(exc, asyncio.TimeoutError) or code == errno.ETIMEDOUT:
        return "dial tcp %s: i/o timeout" % address
    if code == errno.ECONNREFUSED or isinstance(os_error, ConnectionRefusedError):
        return "dial tcp %s: connect: connection refused" % address
    if code == errno.EHOSTUNREACH:
        return "dial tcp %s: connect: no route to host" % address
    if code == errno.ENETUNREACH:
        return "dial tcp %s: connect: network is unreachable" % address
    return "dial tcp %s: %s" % (address, getattr(os_error, "strerror", None) or os_error)


def _rewrite_location(location: str, target: Any, request: web.Request, prefix: str) -> str:
    parts = urlsplit(location)
    if parts.netloc and parts.netloc not in (target.netloc, request.host):
        return location
    if not parts.path.startswith("/"):
        return location
    if parts.path.startswith(prefix):
        return location
    path = posixpath.join(prefix, parts.path.lstrip("/"))
    if parts.path.endswith("/") and not path.endswith("/"):
        path += "/"
    return urlunsplit(("", "", path, parts.query, parts.fragment))


async def proxy_request(
    request: web.Request,
    target_base_url: str,
    rest_path: str,
    *,
    strip_authorization: bool,
    proxy_prefix: Optional[str] = None,
) -> web.StreamResponse:
    """Forward ``request`` to ``target_base_url`` + ``rest_path`` and stream the answer back.

    Method, query string, body (streamed when chunked) and headers go upstream, minus hop-by-hop headers (and
    those named in ``Connection``), ``Host`` and, with ``strip_authorization``, ``Authorization``; the
    ``X-Forwarded-For/-Uri/-Host/-Proto`` headers are added. The response keeps its status, headers (minus
    hop-by-hop) and body, which is relayed chunk by chunk as it arrives (SSE, long polls). ``proxy_prefix`` is the
    path up to and including ``/proxy`` (derived from the request path when omitted); it is used for
    ``X-Forwarded-Uri`` and same-host ``Location`` rewriting. ``rest_path`` may be raw (``%XX`` kept) or decoded
    (unsafe characters get escaped); the query string is forwarded byte for byte. A backend that cannot be
    reached yields 503 with the apiserver's Status. Websocket upgrades are not proxied.
    """
    rest = rest_path if rest_path.startswith("/") else "/" + rest_path
    if proxy_prefix is None:
        path = request.path
        proxy_prefix = path[: len(path) - len(rest)] if rest != "/" and path.endswith(rest) else path.rstrip("/")
        if rest == "/" and proxy_prefix.endswith("/proxy/"):
            proxy_prefix = proxy_prefix[:-1]
    base = target_base_url.rstrip("/")
    url = base + quote(rest, safe="/:@!$&'()*+,;=-._~%")
    raw_query = request.rel_url.raw_query_string
    if raw_query:
        url += "?" + raw_query
    target = urlsplit(base)

    dropped = HOP_BY_HOP | _connection_tokens(request.headers) | {"host", "content-length"}
    if strip_authorization:
        dropped = dropped | {"authorization"}
    headers: CIMultiDict[str] = CIMultiDict()
    for key, value in request.headers.items():
        if key.lower() not in dropped:
            headers.add(key, value)
    forwarded_for = request.remote or ""
    if forwarded_for:
        prior = request.headers.get("X-Forwarded-For")
        headers["X-Forwarded-For"] = "%s, %s" % (prior, forwarded_for) if prior else forwarded_for
    forwarded_uri = posixpath.join(proxy_prefix, rest.lstrip("/")) if rest != "/" else proxy_prefix + "/"
    headers["X-Forwarded-Uri"] = forwarded_uri
    headers["X-Forwarded-Host"] = request.host
    headers["X-Forwarded-Proto"] = request.scheme

    body: Any = None
    if request.body_exists:
        if request.content_length is not None:
            body = await request.read()
        else:
            body = request.content  # chunked upload: streamed through

    session = client_session()
    host = target.hostname or ""
    port = target.port or (443 if target.scheme == "https" else 80)
    try:
        upstream = await session.request(
            request.method,
            URL(url, encoded=True),
            headers=headers,
            data=body,
            allow_redirects=False,
            skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
        )
    except (aiohttp.ClientConnectorError, aiohttp.ServerTimeoutError, asyncio.TimeoutError, OSError) as exc:
        # kube-apiserver's proxy transport (k8s.io/apimachinery pkg/util/proxy/transport.go, Transport.RoundTrip)
        # answers a failed round trip with a 503 ServiceUnavailable Status "error trying to reach service: <error>",
        # where the error is Go's dial error, e.g. "dial tcp 10.244.1.2:8080: connect: connection refused".
        return status_response(
            503, "ServiceUnavailable", "error trying to reach service: %s" % _dial_error(exc, host, port)
        )
    except aiohttp.ClientError as exc:
        return status_response(503, "ServiceUnavailable", "error trying to reach service: %s" % exc)

    try:
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        drop_back = HOP_BY_HOP | _connection_tokens(upstream.headers)
        for key, value in upstream.headers.items():
            if key.lower() in drop_back:
                continue
            if key.lower() == "location":
                value = _rewrite_location(value, target, request, proxy_prefix)
            response.headers.add(key, value)
        await response.prepare(request)
        try:
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            pass  # the client went away; drop the upstream connection
        except aiohttp.ClientPayloadError:
            pass  # the backend broke off mid-body; the client sees a truncated body as from the apiserver
        return response
    finally:
        if upstream.content.at_eof():
            upstream.release()
        else:
            upstream.close()
