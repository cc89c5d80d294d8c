# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pod exec (real kubernetes client, websocket-client, kubectl), service proxy and pod log rendering."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests
import websocket
from aiohttp import web
from kubernetes import client as k8s_client
from kubernetes.stream import stream

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from k8s_testbed import pod_env, pod_exec, service_proxy

NS = "default"
RESULTS = web.AppKey("results", list)
POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "mypod", "namespace": NS, "uid": "u-1", "labels": {"app": "ray"}},
    "spec": {
        "nodeName": "node-a",
        "serviceAccountName": "default",
        "containers": [
            {
                "name": "main",
                "image": "busybox",
                "ports": [{"name": "dash", "containerPort": 8265}],
                "resources": {"limits": {"cpu": "500m", "memory": "1Gi"}},
                "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}],
                "env": [
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                    {"name": "FOO", "value": "foo"},
                    {"name": "BAR", "value": "$(FOO)-bar-$(NOPE)-$$(FOO)"},
                    {"name": "SECRET_V", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "token"}}},
                    {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "x", "optional": True}}},
                    {
                        "name": "MEM_MI",
                        "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
                    },
                    {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
                    {"name": "CPU_M", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}}},
                ],
            }
        ],
    },
    "status": {"phase": "Running", "podIP": "10.1.2.3", "podIPs": [{"ip": "10.1.2.3"}, {"ip": "fd00::3"}]},
}
OBJECTS = {
    ("Secret", NS, "sec"): {"data": {"token": base64.b64encode(b"s3cret").decode()}},
    ("ConfigMap", NS, "cm"): {"data": {"MODE": "fast", "bad key": "skipped"}},
}


def lookup(kind, namespace, name):
    return OBJECTS.get((kind, namespace, name))


# ------------------------------------------------------------------------------------------------ servers


class ServerThread:
    """An aiohttp app served on 127.0.0.1:<free port> from its own event loop thread."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runner = web.AppRunner(app)
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    async def _start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]
        self.url = "http://127.0.0.1:%d" % self.port

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(20)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def backend_app() -> web.Application:
    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response(
            {
                "method": request.method,
                "path": request.path,
                "query": request.rel_url.raw_query_string,
                "raw_path": request.raw_path,
                "headers": dict(request.headers),
                "body": body.decode(),
            },
            headers={"X-Backend": "1"},
        )

    async def slow(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for i in range(3):
            await resp.write(b"data: %d\n\n" % i)
            await asyncio.sleep(0.4)
        await resp.write_eof()
        return resp

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("/landing/")

    app = web.Application()
    app.router.add_get("/slow", slow)
    app.router.add_get("/redirect", redirect)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def api_app(backend_url: str, down_port: int, workdir: str) -> web.Application:
    app = web.Application()
    app[RESULTS] = []

    async def exec_handler(request: web.Request) -> web.StreamResponse:
        command, container, stdin, stdout, stderr, tty = pod_exec.exec_query(request)
        spec = POD["spec"]["containers"][0]
        env = pod_env.container_environment(POD, spec, lookup)
        ws = await pod_exec.serve_exec(
            request,
            POD,
            container or "main",
            command,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            tty=tty,
            env=env,
            workdir=workdir,
        )
        if pod_exec.EXEC_RESULT_KEY in ws:
            app[RESULTS].append(ws[pod_exec.EXEC_RESULT_KEY])
        return ws

    async def proxy_handler(request: web.Request) -> web.StreamResponse:
        try:
            scheme, name, port = service_proxy.parse_proxy_target(request.match_info["name"])
        except service_proxy.ProxyError as exc:
            return exc.response()
        base = backend_url if name != "down" else "http://127.0.0.1:%d" % down_port
        return await service_proxy.proxy_request(
            request, base, request.match_info["tail"], strip_authorization=name != "keep"
        )

    async def get_pod(request: web.Request) -> web.Response:
        return web.json_response(POD)

    async def discovery(request: web.Request) -> web.Response:
        path = request.path.rstrip("/")
        if path == "/api":
            return web.json_response({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
        if path == "/apis":
            return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": []})
        resources = [
            {
                "name": "pods",
                "singularName": "pod",
                "namespaced": True,
                "kind": "Pod",
                "verbs": ["get", "list"],
                "shortNames": ["po"],
            },
            {
                "name": "pods/exec",
                "singularName": "",
                "namespaced": True,
                "kind": "PodExecOptions",
                "verbs": ["create", "get"],
            },
        ]
        return web.json_response({"kind": "APIResourceList", "groupVersion": "v1", "resources": resources})

    async def close_session(_app: web.Application) -> None:
        await service_proxy.close_client_session()

    app.router.add_route("*", "/api/v1/namespaces/{ns}/pods/{name}/exec", exec_handler)
    app.router.add_get("/api/v1/namespaces/{ns}/pods/{name}", get_pod)
    app.router.add_route("*", "/api/v1/namespaces/{ns}/services/{name}/proxy{tail:.*}", proxy_handler)
    for path in ("/api", "/apis", "/api/v1"):
        app.router.add_get(path, discovery)
    app.on_cleanup.append(close_session)
    return app


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    backend = ServerThread(backend_app())
    api = ServerThread(api_app(backend.url, closed_port(), str(tmp_path_factory.mktemp("exec") / "work")))
    yield api, backend
    api.stop()
    backend.stop()


@pytest.fixture()
def core(servers):
    api, dummy = servers
    config = k8s_client.Configuration(host=api.url, api_key={"authorization": "Bearer t"})
    return k8s_client.CoreV1Api(k8s_client.ApiClient(config))


def ws_url(api, command, **flags) -> str:
    query = "&".join(["command=%s" % requests.utils.quote(c, safe="") for c in command])
    for key, value in {"stdout": True, **flags}.items():
        query += "&%s=%s" % (key, "true" if value else "false")
    return "ws://127.0.0.1:%d/api/v1/namespaces/%s/pods/mypod/exec?%s" % (api.port, NS, query)


def read_frames(ws) -> tuple:
    frames, close_code = [], None
    while True:
        opcode, frame = ws.recv_data_frame(True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            close_code = int.from_bytes(frame.data[:2], "big") if len(frame.data) >= 2 else None
            break
        assert opcode == websocket.ABNF.OPCODE_BINARY
        frames.append(frame.data)
    return frames, close_code


# ------------------------------------------------------------------------------------------------ exec


def test_python_client_separates_stdout_and_stderr(core):
    resp = stream(
        core.connect_get_namespaced_pod_exec,
        "mypod",
        NS,
        command=["sh", "-c", "echo out; echo err >&2"],
        stdin=False,
        stdout=True,
        stderr=True,
        tty=False,
        _preload_content=False,
    )
    resp.run_forever(timeout=10)
    assert resp.read_stdout() == "out\n"
    assert resp.read_stderr() == "err\n"
    assert resp.returncode == 0
    assert resp.subprotocol == "v5.channel.k8s.io"


def test_python_client_preloaded_output(core):
    out = stream(
        core.connect_get_namespaced_pod_exec,
        "mypod",
        NS,
        command=["echo", "hello world"],
        stdin=False,
        stdout=True,
        stderr=True,
        tty=False,
    )
    assert out == "hello world\n"


def test_python_client_stdin_round_trip(core):
    resp = stream(
        core.connect_get_namespaced_pod_exec,
        "mypod",
        NS,
        command=["cat"],
        stdin=True,
        stdout=True,
        stderr=True,
        tty=False,
        _preload_content=False,
    )
    resp.write_stdin("hello\n")
    assert resp.readline_stdout(timeout=5) == "hello"
    resp.write_stdin(b"bytes too\n")
    assert resp.readline_stdout(timeout=5) == "bytes too"
    resp.close_channel(0)
    resp.run_forever(timeout=10)
    assert resp.returncode == 0


def test_python_client_exit_code(core):
    resp = stream(
        core.connect_get_namespaced_pod_exec,
        "mypod",
        NS,
        command=["sh", "-c", "exit 3"],
        stdin=False,
        stdout=True,
        stderr=True,
        tty=False,
        _preload_content=False,
    )
    resp.run_forever(timeout=10)
    assert resp.returncode == 3


def test_exec_env_is_visible(core):
    resp = stream(
        core.connect_get_namespaced_pod_exec,
        "mypod",
        NS,
        command=["sh", "-c", 'echo "$POD_IP|$APP|$BAR|$SECRET_V|$CM_MODE|$HOSTNAME|${OPT-unset}|$MEM_MI|$CPU|$CPU_M"'],
        stdin=False,
        stdout=True,
        stderr=True,
        tty=False,
        _preload_content=False,
    )
    resp.run_forever(timeout=10)
    assert resp.read_stdout() == "10.1.2.3|ray|foo-bar-$(NOPE)-$(FOO)|s3cret|fast|mypod|unset|1024|1|500\n"


def test_missing_command_reports_runtime_failure(core):
    resp = stream(
        core.connect_get_namespaced_pod_exec,
        "mypod",
        NS,
        command=["no-such-binary-xyz"],
        stdin=False,
        stdout=True,
        stderr=True,
        tty=False,
        _preload_content=False,
    )
    resp.run_forever(timeout=10)
    assert resp.returncode == 126
    assert 'exec: "no-such-binary-xyz": executable file not found in $PATH' in resp.read_stderr()


def test_websocket_client_v4_frames(servers):
    api, dummy = servers
    ws = websocket.create_connection(
        ws_url(api, ["sh", "-c", "echo hi; exit 2"], stderr=True), subprotocols=["v4.channel.k8s.io"]
    )
    assert ws.getsubprotocol() == "v4.channel.k8s.io"
    frames, close_code = read_frames(ws)
    assert frames[0] == b"\x01"  # connection-established marker on the lowest writable channel
    assert b"\x01hi\n" in frames
    status = json.loads(frames[-1][1:])
    assert frames[-1][0] == 3
    assert status == {
        "metadata": {},
        "status": "Failure",
        "message": "command terminated with non-zero exit code: error executing command [sh -c echo hi; exit 2], "
        "exit code 2",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": "2"}]},
    }
    assert close_code == 1000


def test_websocket_client_v5_close_signal(servers):
    api, dummy = servers
    ws = websocket.create_connection(ws_url(api, ["cat"], stdin=True), subprotocols=["v5.channel.k8s.io"])
    assert ws.getsubprotocol() == "v5.channel.k8s.io"
    ws.send_binary(b"\x00abc")
    ws.send_binary(b"\x04" + json.dumps({"Width": 80, "Height": 24}).encode())  # resize: ignored
    ws.send_binary(bytes([255, 0]))
    frames, close_code = read_frames(ws)
    assert b"".join(f[1:] for f in frames if f[0] == 1) == b"abc"
    assert frames[-1] == b'\x03{"metadata":{},"status":"Success"}'
    assert close_code == 1000


def test_websocket_protocol_negotiation(servers):
    api, dummy = servers
    ws = websocket.create_connection(
        ws_url(api, ["true"]), subprotocols=["foo", "v4.channel.k8s.io", "v5.channel.k8s.io"]
    )
    assert ws.getsubprotocol() == "v4.channel.k8s.io"  # first supported offer, in the client's order
    ws.close()
    with pytest.raises(websocket.WebSocketBadStatusException) as err:
        websocket.create_connection(ws_url(api, ["true"]), subprotocols=["v9.channel.k8s.io"])
    assert err.value.status_code == 403
    # No offer: the unnamed default protocol, whose error channel carries text and stays silent on success.
    ws = websocket.create_connection(ws_url(api, ["sh", "-c", "echo hi"]))
    frames, dummy = read_frames(ws)
    assert frames == [b"\x01", b"\x01hi\n"]
    ws = websocket.create_connection(ws_url(api, ["sh", "-c", "exit 4"]))
    frames, dummy = read_frames(ws)
    assert frames[-1].startswith(b"\x03command terminated with non-zero exit code")


def test_exec_bad_requests(servers):
    api, dummy = servers
    plain = requests.get(ws_url(api, ["true"]).replace("ws://", "http://"), timeout=5)
    assert plain.status_code == 400
    assert plain.json()["message"] == "Upgrade request required"
    assert plain.json()["kind"] == "Status"
    with pytest.raises(websocket.WebSocketBadStatusException) as err:
        websocket.create_connection(ws_url(api, ["true"], stdout=False), subprotocols=["v4.channel.k8s.io"])
    assert err.value.status_code == 400


def test_client_disconnect_kills_process(servers):
    api, dummy = servers
    results = api.app[RESULTS]
    before = len(results)
    ws = websocket.create_connection(ws_url(api, ["sleep", "30"]), subprotocols=["v4.channel.k8s.io"])
    assert ws.recv_data_frame(True)[1].data == b"\x01"
    started = time.monotonic()
    ws.close()
    while len(results) == before and time.monotonic() - started < 10:
        time.sleep(0.05)
    result = results[-1]
    assert result.client_disconnected and result.exit_code == 137
    assert time.monotonic() - started < 10


@pytest.mark.skipif(not os.path.exists("/usr/bin/kubectl"), reason="kubectl not installed")
def test_kubectl_exec(servers, tmp_path):
    api, dummy = servers
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "t", "cluster": {"server": api.url}}],
                "users": [{"name": "t", "user": {"token": "t"}}],
                "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t", "namespace": NS}}],
                "current-context": "t",
            }
        )
    )
    base = ["/usr/bin/kubectl", "--kubeconfig", str(kubeconfig), "exec"]
    env = {**os.environ, "KUBECACHEDIR": str(tmp_path / "cache")}
    done = subprocess.run(
        base + ["mypod", "--", "echo", "hi"], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert (done.returncode, done.stdout) == (0, "hi\n"), done.stderr
    done = subprocess.run(
        base + ["-i", "mypod", "--", "cat"],
        input="piped\n",
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, "piped\n"), done.stderr
    done = subprocess.run(
        base + ["mypod", "--", "sh", "-c", "echo e >&2; exit 3"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 3
    assert "e\n" in done.stderr and "command terminated with exit code 3" in done.stderr
    # The command ends while kubectl's stdin is still open: the session must still end.
    proc = subprocess.Popen(
        base + ["-i", "mypod", "--", "echo", "early"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
    )
    try:
        assert proc.wait(timeout=30) == 0
        assert proc.stdout.read() == b"early\n"
    finally:
        proc.kill()
        proc.stdin.close()
        proc.stdout.close()


# ------------------------------------------------------------------------------------------------ environment


def test_container_environment_errors():
    container = {"name": "c", "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "nope"}}}]}
    with pytest.raises(pod_env.EnvResolutionError, match="couldn't find key nope in Secret default/sec"):
        pod_env.container_environment(POD, container, lookup)
    container = {"name": "c", "envFrom": [{"secretRef": {"name": "missing"}}]}
    with pytest.raises(pod_env.EnvResolutionError, match='secret "missing" not found'):
        pod_env.container_environment(POD, container, lookup)
    container = {"name": "c", "envFrom": [{"secretRef": {"name": "missing", "optional": True}}]}
    assert pod_env.container_environment(POD, container, lookup) == {"HOSTNAME": "mypod"}
    container = {"name": "c", "env": [{"name": "IPS", "valueFrom": {"fieldRef": {"fieldPath": "status.podIPs"}}}]}
    assert pod_env.container_environment(POD, container, lookup)["IPS"] == "10.1.2.3,fd00::3"


# ------------------------------------------------------------------------------------------------ proxy


def proxy_url(api, target: str, tail: str) -> str:
    return "%s/api/v1/namespaces/%s/services/%s/proxy%s" % (api.url, NS, target, tail)


def test_proxy_get_with_query_and_header_handling(servers):
    api, dummy = servers
    resp = requests.get(
        proxy_url(api, "svc:8265", "/api/jobs/?limit=5&x=a%20b"),
        headers={"Authorization": "Bearer t", "X-Custom": "yes", "Connection": "keep-alive, X-Hop", "X-Hop": "1"},
        timeout=5,
    )
    assert resp.status_code == 200
    assert resp.headers["X-Backend"] == "1"
    echo = resp.json()
    assert (echo["method"], echo["path"], echo["query"]) == ("GET", "/api/jobs/", "limit=5&x=a%20b")
    assert "Authorization" not in echo["headers"]
    assert echo["headers"]["X-Custom"] == "yes"
    assert "X-Hop" not in echo["headers"]
    assert echo["headers"]["X-Forwarded-Uri"] == "/api/v1/namespaces/default/services/svc:8265/proxy/api/jobs/"
    assert echo["headers"]["Host"].startswith("127.0.0.1:")
    echo = requests.get(proxy_url(api, "svc", "/a%20b/c%2Fd"), timeout=5).json()
    assert echo["raw_path"] == "/a%20b/c/d"  # the apiserver proxies the decoded path: %2F is a slash again


def test_proxy_keeps_authorization_when_not_stripped(servers):
    api, dummy = servers
    echo = requests.get(proxy_url(api, "keep", "/x"), headers={"Authorization": "Basic YTpi"}, timeout=5).json()
    assert echo["headers"]["Authorization"] == "Basic YTpi"


def test_proxy_post_body(servers):
    api, dummy = servers
    payload = json.dumps({"entrypoint": "python x.py"})
    resp = requests.post(
        proxy_url(api, "http:svc:dashboard", "/api/jobs/"),
        data=payload,
        headers={"Content-Type": "application/json"},
        timeout=5,
    )
    echo = resp.json()
    assert (echo["method"], echo["body"]) == ("POST", payload)
    assert echo["headers"]["Content-Type"] == "application/json"

    def chunks():
        yield b"part1-"
        yield b"part2"

    echo = requests.put(proxy_url(api, "svc", "/up"), data=chunks(), timeout=5).json()
    assert (echo["method"], echo["body"]) == ("PUT", "part1-part2")


def test_proxy_streams_response(servers):
    api, dummy = servers
    started = time.monotonic()
    arrivals = []
    with requests.get(proxy_url(api, "svc", "/slow"), stream=True, timeout=10) as resp:
        assert resp.headers["Content-Type"] == "text/event-stream"
        for chunk in resp.iter_content(chunk_size=None):
            arrivals.append((time.monotonic() - started, chunk))
    assert b"".join(c for dummy, c in arrivals) == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
    assert len(arrivals) >= 3
    assert arrivals[0][1] == b"data: 0\n\n"
    assert arrivals[0][0] < 0.35  # the first event arrived long before the backend finished (>= 1.2 s)
    assert arrivals[-1][0] >= 0.8


def test_proxy_with_real_client_strips_bearer(core):
    data = core.connect_get_namespaced_service_proxy_with_path("svc", NS, "echo/me", _preload_content=False)
    echo = json.loads(data.data)
    assert echo["path"] == "/echo/me"
    assert "Authorization" not in echo["headers"]


def test_proxy_redirect_is_rewritten(servers):
    api, dummy = servers
    resp = requests.get(proxy_url(api, "svc", "/redirect"), allow_redirects=False, timeout=5)
    assert resp.status_code == 302
    assert resp.headers["Location"] == "/api/v1/namespaces/default/services/svc/proxy/landing/"


def test_proxy_backend_down(servers):
    api, dummy = servers
    resp = requests.get(proxy_url(api, "down", "/"), timeout=10)
    assert resp.status_code == 503
    body = resp.json()
    assert body["reason"] == "ServiceUnavailable" and body["code"] == 503 and body["kind"] == "Status"
    assert body["message"].startswith("error trying to reach service: dial tcp 127.0.0.1:")
    assert body["message"].endswith(": connect: connection refused")


def test_proxy_bad_target(servers):
    api, dummy = servers
    resp = requests.get(proxy_url(api, "ftp:svc:21", "/"), timeout=5)
    assert resp.status_code == 400
    assert resp.json()["message"] == 'invalid service request "ftp:svc:21"'


def test_parse_proxy_target():
    assert service_proxy.parse_proxy_target("svc") == ("", "svc", "")
    assert service_proxy.parse_proxy_target("svc:8265") == ("", "svc", "8265")
    assert service_proxy.parse_proxy_target("svc:dashboard") == ("", "svc", "dashboard")
    assert service_proxy.parse_proxy_target("http:svc:8265") == ("http", "svc", "8265")
    assert service_proxy.parse_proxy_target("https:svc:443") == ("https", "svc", "443")
    assert service_proxy.parse_proxy_target("https:svc:") == ("https", "svc", "")
    for bad in ("ftp:svc:1", "a:b:c:d", ":8080", "http::80"):
        with pytest.raises(ValueError, match="invalid service request"):
            service_proxy.parse_proxy_target(bad)


def test_resolve_service_port():
    svc = {
        "metadata": {"name": "head"},
        "spec": {"ports": [{"name": "dashboard", "port": 8265, "targetPort": "dash"}, {"name": "gcs", "port": 6379}]},
    }
    assert service_proxy.resolve_service_port(svc, "8265")["name"] == "dashboard"
    assert service_proxy.resolve_service_port(svc, "gcs")["port"] == 6379
    with pytest.raises(ValueError, match='no service port 9999 found for service "head"'):
        service_proxy.resolve_service_port(svc, "9999")
    with pytest.raises(ValueError, match='no endpoints available for service "head"'):
        service_proxy.resolve_service_port(svc, "")
    with pytest.raises(ValueError, match='no endpoints available for service "head"'):
        service_proxy.resolve_service_port(svc, "nope")
    single = {"metadata": {"name": "one"}, "spec": {"ports": [{"port": 80, "targetPort": 8080}]}}
    assert service_proxy.resolve_service_port(single, "")["port"] == 80
    assert service_proxy.resolve_target_port(single["spec"]["ports"][0]) == 8080
    assert service_proxy.resolve_target_port(svc["spec"]["ports"][0], POD) == 8265
    assert service_proxy.resolve_target_port(svc["spec"]["ports"][1]) == 6379


# ------------------------------------------------------------------------------------------------ logs

LOG = [
    ("2026-01-01T00:00:00.123456789Z", "first"),
    ("2026-01-01T00:00:30Z", "second"),
    ("2026-01-01T00:00:50.5Z", "third"),
    ("2026-01-01T00:00:59.999999999Z", "fourth ü"),
]
NOW = datetime(2026, 1, 1, 0, 1, 0, tzinfo=timezone.utc)


def logs(**kwargs) -> str:
    options = {"tail_lines": None, "timestamps": False, "since_seconds": None, "limit_bytes": None, "now": NOW}
    options.update(kwargs)
    return pod_exec.log_text(LOG, **options)


def test_log_text_variants():
    assert logs() == "first\nsecond\nthird\nfourth ü\n"
    assert logs(tail_lines=2) == "third\nfourth ü\n"
    assert logs(tail_lines=0) == ""
    assert logs(tail_lines=10) == logs()
    assert logs(timestamps=True, tail_lines=1) == "2026-01-01T00:00:59.999999999Z fourth ü\n"
    assert logs(since_seconds=30) == "second\nthird\nfourth ü\n"
    assert logs(since_seconds=10, tail_lines=1) == "fourth ü\n"
    assert logs(limit_bytes=8) == "first\nse"
    assert logs(limit_bytes=24) == "first\nsecond\nthird\nfourt"
    assert logs(limit_bytes=27) == "first\nsecond\nthird\nfourth "  # never half a UTF-8 character
    assert pod_exec.log_text([], tail_lines=5, timestamps=True, since_seconds=None, limit_bytes=None, now=NOW) == ""


def test_serve_log_follow():
    lines = list(LOG[:1])

    async def scenario() -> tuple:
        stop = asyncio.Event()

        async def handler(request):
            return await pod_exec.serve_log(request, lambda: lines, True, timestamps=False, stop=stop)

        app = web.Application()
        app.router.add_get("/log", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        import aiohttp

        received = []
        async with aiohttp.ClientSession() as session:
            async with session.get("http://127.0.0.1:%d/log" % port) as resp:
                received.append(await resp.content.readline())
                lines.append(("2026-01-01T00:01:01Z", "later"))
                received.append(await asyncio.wait_for(resp.content.readline(), 5))
                lines.append(("2026-01-01T00:01:02Z", "last"))
                stop.set()
                received.append(await asyncio.wait_for(resp.content.read(), 5))
        await runner.cleanup()
        return tuple(received)

    assert asyncio.run(scenario()) == (b"first\n", b"later\n", b"last\n")
