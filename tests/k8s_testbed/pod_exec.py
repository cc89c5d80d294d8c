# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pod ``exec`` over the Kubernetes websocket channel protocol, and pod logs (environments: ``pod_env``).

Wire facts this module follows (kubelet ``cri/streaming/remotecommand/websocket.go``, apimachinery ``wsstream``,
apiserver's v5 stream translator):

* Sub-protocol negotiation walks the *client's* ``Sec-WebSocket-Protocol`` list in the client's order and picks
  the first the server supports. No header at all selects the unnamed default protocol (binary framing, pre-v4
  error channel). Offers that all miss are refused with ``403 Forbidden`` and an empty body (what
  ``golang.org/x/net/websocket`` answers when the handshake hook fails). A plain (non-upgrade) request gets the
  apiserver's ``400 Upgrade request required`` Status.
* Every message is a binary frame whose first byte is the channel: 0 stdin, 1 stdout, 2 stderr, 3 error/status,
  4 resize; v5 adds 255 = CLOSE signal (``[255, channel]``) sent by the client to half-close stdin. The server
  never sends CLOSE signals.
* Right after the upgrade the server writes one empty message (just the channel byte) on the lowest writable
  channel (stdout if requested, else stderr, else the error channel) to say the connection is up.
* v4/v5 report the end of the command on channel 3 as a JSON ``metav1.Status`` (``{"metadata":{},"status":
  "Success"}`` or ``NonZeroExitCode`` with the code in ``details.causes[0].message``); the pre-v4 protocols
  write nothing on success and the plain error text on failure. Then the websocket is closed normally (1000).
* kubectl (client-go's websocket executor) accepts only binary messages; the python client accepts both.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Dict, List, Optional, Tuple

from aiohttp import WSMsgType, web

from .store import api_status
from .timestamps import parse_timestamp

SUPPORTED_PROTOCOLS = (
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
)
V4_STATUS_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
V5_PROTOCOL = "v5.channel.k8s.io"

STDIN_CHANNEL = 0
STDOUT_CHANNEL = 1
STDERR_CHANNEL = 2
ERROR_CHANNEL = 3
RESIZE_CHANNEL = 4
CLOSE_SIGNAL = 255

HOST_ENV_KEYS = ("PATH", "LANG", "HOME", "TMPDIR")
READ_CHUNK = 32 * 1024

# What a runtime that cannot start the process reports. "exit-code": the docker/dockershim style (OCI message on
# stderr, exit code 126, NonZeroExitCode status). "internal-error": the containerd style (500 InternalError Status
# on the error channel, no exit code; note that kubernetes' python client cannot turn that into a returncode).
START_FAILURE_STYLES = ("exit-code", "internal-error")
START_FAILURE_EXIT_CODE = 126


# --------------------------------------------------------------------------------------------------- Status JSON


def status_response(code: int, reason: str, message: str) -> web.Response:
    return web.json_response(api_status(code, reason, message), status=code)


def exec_status(command: List[str], exit_code: int) -> Dict[str, Any]:
    """The metav1.Status the kubelet writes on the error channel when ``command`` ended with ``exit_code``."""
    if exit_code == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": "command terminated with non-zero exit code: error executing command %s, exit code %d"
        % (go_list(command), exit_code),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(exit_code)}]},
    }


def internal_error_status(message: str) -> Dict[str, Any]:
    """apierrors.NewInternalError as it appears on the error channel (json.Marshal: no kind/apiVersion)."""
    return {
        "metadata": {},
        "status": "Failure",
        "message": "Internal error occurred: %s" % message,
        "reason": "InternalError",
        "details": {"causes": [{"message": message}]},
        "code": 500,
    }


def go_list(items: List[str]) -> str:
    """Go's ``%v`` of a ``[]string``: ``[sh -c exit 3]``."""
    return "[" + " ".join(items) + "]"


# --------------------------------------------------------------------------------------------------- exec


@dataclass
class ExecResult:
    """What one exec session did; stored on the returned websocket response as ``ws[EXEC_RESULT_KEY]``."""

    exit_code: int = -1
    status: Optional[Dict[str, Any]] = None
    protocol: str = ""
    started: bool = False
    client_disconnected: bool = False
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    stdin_bytes: int = 0
    command: List[str] = field(default_factory=list)


# ``ws[EXEC_RESULT_KEY]`` on the response serve_exec returns (a plain string key on aiohttp without ResponseKey).
EXEC_RESULT_KEY: Any = web.ResponseKey("exec_result", ExecResult) if hasattr(web, "ResponseKey") else "exec_result"


def _truthy(value: Optional[str]) -> bool:
    """apimachinery's query-string bool: absent is false, ``false``/``f``/``0`` are false, anything else true."""
    if value is None:
        return False
    return value.strip().lower() not in ("false", "f", "0")


def exec_query(request: web.Request) -> Tuple[List[str], Optional[str], bool, bool, bool, bool]:
    """``(command, container, stdin, stdout, stderr, tty)`` from the exec/attach query string (GET or POST).

    Booleans follow the apiserver's query conversion: absent means false, ``false``/``f``/``0`` mean false,
    any other value (``true``, ``1``) means true.
    """
    query = request.query
    command = list(query.getall("command", []))
    container = query.get("container") or None
    flags = [_truthy(query.get(key)) for key in ("stdin", "stdout", "stderr", "tty")]
    return command, container, flags[0], flags[1], flags[2], flags[3]


def is_websocket_request(request: web.Request) -> bool:
    upgrade = request.headers.get("Upgrade", "").lower()
    connection = request.headers.get("Connection", "").lower()
    return upgrade == "websocket" and "upgrade" in [part.strip() for part in connection.split(",")]


def offered_protocols(request: web.Request) -> List[str]:
    offered: List[str] = []
    for header in request.headers.getall("Sec-WebSocket-Protocol", []):
        offered.extend(part.strip() for part in header.split(",") if part.strip())
    return offered


def negotiate_protocol(offered: List[str]) -> Optional[str]:
    """The first offer (client order) that is supported; ``""`` when nothing was offered; None on no match."""
    if not offered:
        return ""
    for candidate in offered:
        if candidate in SUPPORTED_PROTOCOLS:
            return candidate
    return None


def _oci_message(command: List[str], exc: OSError) -> str:
    argv0 = command[0] if command else ""
    if isinstance(exc, PermissionError):
        detail = 'exec: "%s": permission denied' % argv0
    elif "/" in argv0:
        detail = 'exec: "%s": stat %s: no such file or directory' % (argv0, argv0)
    else:
        detail = 'exec: "%s": executable file not found in $PATH' % argv0
    return "OCI runtime exec failed: exec failed: unable to start container process: %s: unknown" % detail


async def serve_exec(
    request: web.Request,
    pod: Dict[str, Any],
    container_name: str,
    command: List[str],
    *,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
    env: Dict[str, str],
    workdir: str,
    start_failure: str = "exit-code",
    argv: Optional[List[str]] = None,
) -> web.StreamResponse:
    """Run ``command`` locally behind a Kubernetes exec websocket.

    Answers (before any upgrade) 400 Status for a non-websocket request or when none of stdin/stdout/stderr is
    requested, 403 for sub-protocol offers that all miss. Otherwise upgrades, runs the command with
    ``asyncio.create_subprocess_exec`` (env = PATH/LANG/HOME/TMPDIR from ``os.environ`` plus ``env``; cwd =
    ``workdir``, created when missing), pumps stdout/stderr to channels 1/2 and channel 0 to the process's
    stdin, reports the outcome on channel 3 and closes with 1000. ``tty=True`` merges stderr into stdout (no real
    terminal; resize messages are ignored). The process is killed when the client goes away. ``start_failure``
    picks how an unstartable command is reported (see :data:`START_FAILURE_STYLES`). The returned response
    carries an :class:`ExecResult` under :data:`EXEC_RESULT_KEY`. ``pod``/``container_name`` are only descriptive.
    ``argv``, when given, is what actually runs (``runc exec`` into the pod's container); ``command`` is what the
    client asked for, as the status reports it.
    """
    if not is_websocket_request(request):
        return status_response(400, "BadRequest", "Upgrade request required")
    if not (stdin or stdout or stderr):
        return status_response(400, "BadRequest", "you must specify at least 1 of stdin, stdout, stderr")
    protocol = negotiate_protocol(offered_protocols(request))
    if protocol is None:
        return web.Response(status=403, body=b"")

    result = ExecResult(protocol=protocol, command=list(command))
    ws = web.WebSocketResponse(protocols=(protocol,) if protocol else (), autoclose=True, max_msg_size=0)
    ws[EXEC_RESULT_KEY] = result
    await ws.prepare(request)
    if tty:
        stderr = False  # a terminal has no separate stderr stream; the kubelet opens no stderr channel

    async def send(channel: int, data: bytes) -> bool:
        if ws.closed:
            return False
        try:
            await ws.send_bytes(bytes((channel,)) + data)
        except (ConnectionError, RuntimeError):
            return False
        return True

    # The connection-established marker on the lowest writable channel.
    await send(STDOUT_CHANNEL if stdout else STDERR_CHANNEL if stderr else ERROR_CHANNEL, b"")

    proc_env = {key: os.environ[key] for key in HOST_ENV_KEYS if key in os.environ}
    proc_env.update({str(k): str(v) for k, v in env.items()})
    proc: Optional[asyncio.subprocess.Process] = None
    start_error: Optional[OSError] = None
    try:
        if workdir:
            os.makedirs(workdir, exist_ok=True)
        if not command:
            raise FileNotFoundError("empty command")
        proc = await asyncio.create_subprocess_exec(
            *(argv or command),
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT if tty else asyncio.subprocess.PIPE,
            env=proc_env,
            cwd=workdir or None,
            start_new_session=True,
        )
    except OSError as exc:
        start_error = exc

    if proc is None:
        assert start_error is not None
        message = _oci_message(command, start_error)
        if start_failure == "internal-error":
            status = internal_error_status(
                'error executing command in container: failed to exec in container: failed to start exec "%s": %s'
                % (os.urandom(32).hex(), message)
            )
            result.exit_code = -1
        else:
            await send(STDERR_CHANNEL if stderr else STDOUT_CHANNEL, (message + "\r\n").encode())
            status = exec_status(command, START_FAILURE_EXIT_CODE)
            result.exit_code = START_FAILURE_EXIT_CODE
        await _finish(ws, protocol, status, result)
        return ws

    result.started = True

    async def pump(stream: Optional[asyncio.StreamReader], channel: int, enabled: bool) -> None:
        if stream is None:
            return
        while True:
            chunk = await stream.read(READ_CHUNK)
            if not chunk:
                return
            if channel == STDOUT_CHANNEL:
                result.stdout_bytes += len(chunk)
            else:
                result.stderr_bytes += len(chunk)
            if enabled:
                await send(channel, chunk)

    def close_stdin() -> None:
        if proc is not None and proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.close()

    async def read_client() -> None:
        async for msg in ws:
            if msg.type != WSMsgType.BINARY and msg.type != WSMsgType.TEXT:
                continue
            data = msg.data if isinstance(msg.data, bytes) else msg.data.encode()
            if not data:
                continue
            channel, payload = data[0], data[1:]
            if channel == STDIN_CHANNEL and stdin and proc is not None and proc.stdin is not None:
                if proc.stdin.is_closing() or not payload:
                    continue
                result.stdin_bytes += len(payload)
                proc.stdin.write(payload)
                with contextlib.suppress(ConnectionError):
                    await proc.stdin.drain()
            elif channel == CLOSE_SIGNAL and protocol == V5_PROTOCOL and payload[:1] == bytes((STDIN_CHANNEL,)):
                close_stdin()
            # RESIZE_CHANNEL and anything else: ignored.

    pumps = asyncio.gather(
        pump(proc.stdout, STDOUT_CHANNEL, stdout),
        pump(proc.stderr, STDERR_CHANNEL, stderr),
    )
    reader = asyncio.ensure_future(read_client())
    waiter = asyncio.ensure_future(proc.wait())
    try:
        done, dummy = await asyncio.wait({waiter, reader}, return_when=asyncio.FIRST_COMPLETED)
        if reader in done and waiter not in done:
            # The client hung up before the process ended: the kubelet tears the exec down.
            result.client_disconnected = True
            _kill(proc)
            await waiter
        await pumps
    except asyncio.CancelledError:
        _kill(proc)
        raise
    finally:
        close_stdin()
        if not waiter.done():
            _kill(proc)
        reader_running = not reader.done()

    code = proc.returncode if proc.returncode is not None else -1
    result.exit_code = 128 - code if code < 0 else code
    if not result.client_disconnected:
        await _finish(ws, protocol, exec_status(command, result.exit_code), result)
    if reader_running:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader
    return ws


def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()


async def _finish(ws: web.WebSocketResponse, protocol: str, status: Dict[str, Any], result: ExecResult) -> None:
    result.status = status
    if not ws.closed:
        try:
            if protocol in V4_STATUS_PROTOCOLS:
                await ws.send_bytes(bytes((ERROR_CHANNEL,)) + json.dumps(status, separators=(",", ":")).encode())
            elif status.get("status") != "Success":
                await ws.send_bytes(bytes((ERROR_CHANNEL,)) + str(status.get("message", "")).encode())
        except (ConnectionError, RuntimeError):
            pass
    with contextlib.suppress(ConnectionError, RuntimeError, asyncio.TimeoutError):
        await ws.close(code=1000)


# --------------------------------------------------------------------------------------------------- logs


def _render(lines: List[Tuple[str, str]], timestamps: bool) -> str:
    parts = []
    for stamp, text in lines:
        line = text if text.endswith("\n") else text + "\n"
        parts.append("%s %s" % (stamp, line) if timestamps else line)
    return "".join(parts)


def _truncate(text: str, limit_bytes: Optional[int]) -> str:
    if limit_bytes is None:
        return text
    raw = text.encode("utf-8")
    if len(raw) <= limit_bytes:
        return text
    return raw[: max(limit_bytes, 0)].decode("utf-8", "ignore")


def _select(
    log_lines: List[Tuple[str, str]],
    tail_lines: Optional[int],
    since_seconds: Optional[int],
    now: datetime,
    since_time: Optional[datetime] = None,
) -> List[Tuple[str, str]]:
    lines = list(log_lines)
    cutoff: Optional[datetime] = None
    if since_seconds is not None:
        cutoff = now - timedelta(seconds=since_seconds)
    if since_time is not None:
        cutoff = since_time if cutoff is None else max(cutoff, since_time)
    if cutoff is not None:
        cutoff = cutoff if cutoff.tzinfo else cutoff.replace(tzinfo=timezone.utc)
        lines = [entry for entry in lines if parse_timestamp(entry[0]) >= cutoff]
    if tail_lines is not None and tail_lines >= 0:
        lines = lines[len(lines) - tail_lines :] if tail_lines else []
    return lines


def log_text(
    log_lines: List[Tuple[str, str]],
    *,
    tail_lines: Optional[int],
    timestamps: bool,
    since_seconds: Optional[int],
    limit_bytes: Optional[int],
    now: datetime,
    since_time: Optional[datetime] = None,
) -> str:
    """The body of ``GET pods/<name>/log`` (text/plain) for ``log_lines`` = ``[(RFC3339Nano stamp, text)]``.

    sinceSeconds/sinceTime keep lines stamped at or after the cut-off, tailLines keeps the last N of those,
    ``timestamps`` prefixes each line with its stamp and a space, limitBytes cuts the output after N bytes (even
    mid-line, like the kubelet's limit writer). Every line ends with a newline.
    """
    selected = _select(log_lines, tail_lines, since_seconds, now, since_time)
    return _truncate(_render(selected, timestamps), limit_bytes)


@dataclass
class LogOptions:
    """The ``PodLogOptions`` query of ``GET pods/<name>/log``."""

    container: Optional[str] = None
    follow: bool = False
    previous: bool = False
    timestamps: bool = False
    tail_lines: Optional[int] = None
    since_seconds: Optional[int] = None
    since_time: Optional[datetime] = None
    limit_bytes: Optional[int] = None


def log_query(request: web.Request) -> LogOptions:
    """Parse ``container, follow, previous, timestamps, tailLines, sinceSeconds, sinceTime, limitBytes``.

    Raises ValueError with the apiserver's validation text for bad numbers.
    """
    query = request.query

    def number(key: str, minimum: int) -> Optional[int]:
        if key not in query or query[key] == "":
            return None
        try:
            value = int(query[key])
        except ValueError as exc:
            raise ValueError('%s: Invalid value: "%s": must be an integer' % (key, query[key])) from exc
        if value < minimum:
            raise ValueError(
                "%s: Invalid value: %d: must be %s"
                % (key, value, "greater than or equal to 0" if minimum == 0 else "greater than 0")
            )
        return value

    since_time = None
    if query.get("sinceTime"):
        since_time = parse_timestamp(query["sinceTime"])
    return LogOptions(
        container=query.get("container") or None,
        follow=_truthy(query.get("follow")),
        previous=_truthy(query.get("previous")),
        timestamps=_truthy(query.get("timestamps")),
        tail_lines=number("tailLines", 0),
        since_seconds=number("sinceSeconds", 1),
        since_time=since_time,
        limit_bytes=number("limitBytes", 1),
    )


async def serve_log(
    request: web.Request,
    log_lines_source: Callable[[], List[Tuple[str, str]]],
    follow: bool,
    *,
    tail_lines: Optional[int] = None,
    timestamps: bool = False,
    since_seconds: Optional[int] = None,
    since_time: Optional[datetime] = None,
    limit_bytes: Optional[int] = None,
    stop: Optional[asyncio.Event] = None,
    poll_interval: float = 0.1,
    now: Optional[Callable[[], datetime]] = None,
) -> web.StreamResponse:
    """Answer ``GET pods/<name>/log``.

    ``log_lines_source()`` returns the container's whole log so far as ``[(stamp, text)]``; it is treated as
    append-only. Without ``follow`` the filtered text is returned at once. With ``follow`` the response is a
    chunked text/plain stream: first the filtered backlog, then every line appended later (polled every
    ``poll_interval`` seconds), until ``stop`` is set (e.g. the container terminated; remaining lines are flushed
    first), ``limit_bytes`` is used up, or the client disconnects.
    """
    clock = now or (lambda: datetime.now(timezone.utc))
    lines = list(log_lines_source())
    text = log_text(
        lines,
        tail_lines=tail_lines,
        timestamps=timestamps,
        since_seconds=since_seconds,
        limit_bytes=limit_bytes,
        now=clock(),
        since_time=since_time,
    )
    if not follow:
        return web.Response(body=text.encode("utf-8"), content_type="text/plain", charset="utf-8")

    response = web.StreamResponse(status=200)
    response.content_type = "text/plain"
    response.enable_chunked_encoding()
    await response.prepare(request)
    remaining = None if limit_bytes is None else limit_bytes
    seen = len(lines)

    async def emit(chunk: str) -> bool:
        nonlocal remaining
        data = chunk.encode("utf-8")
        if remaining is not None:
            data = data[:remaining]
            remaining -= len(data)
        if data:
            await response.write(data)
        return remaining is None or remaining > 0

    try:
        going = await emit(text)
        while going:
            stopping = stop is not None and stop.is_set()
            current = log_lines_source()
            if len(current) > seen:
                going = await emit(_render(list(current[seen:]), timestamps))
                seen = len(current)
            if stopping or not going:
                break
            if stop is not None:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), poll_interval)
            else:
                await asyncio.sleep(poll_interval)
        await response.write_eof()
    except (ConnectionError, RuntimeError):
        pass  # client went away
    return response


def which(program: str, env: Dict[str, str]) -> Optional[str]:
    """``shutil.which`` with the exec environment's PATH (handy for callers wanting to pre-check commands)."""
    return shutil.which(program, path=env.get("PATH") or os.environ.get("PATH"))
