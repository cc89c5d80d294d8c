# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The wall clock jumping during a gate's wait (issue 14), in real module processes run by ansible-playbook.

The gate vllm_health runs through a tiny playbook on two hosts at once (both local), with the task's ``environment:``
preloading libfaketime (Debian's ``faketime``) into the module process, as a user would: its wall clock then reads
the offset in a file that this test rewrites mid-wait, forward by 3 hours and then to 5 hours back, while its
monotonic clock stays real (FAKETIME_DONT_FAKE_MONOTONIC), as after an NTP step, a resumed VM or ``date -s``.

- host ``ready``: a small HTTP server answers 503 (loading) until READY_AFTER seconds after the module's first
  request, then as vLLM does with a model listed: the gate passes then, and its elapsed_s is the real wait.
- host ``late``: such a server that never turns ready: the gate fails after its real timeout, with the real
  elapsed_s.

Each server keeps the real (monotonic) time of every request, so the module's real wait is known to the test.

A sitecustomize.py in the module process samples its wall clock against its monotonic clock, so the test knows the
module itself saw both jumps. libfaketime 0.9.10 breaks Python 3.11's time.sleep when it leaves the monotonic clock
alone (an absolute CLOCK_MONOTONIC clock_nanosleep becomes a negative one: EINVAL, wolfcw/libfaketime#426): a
10-line library preloaded before it hands those sleeps to the kernel unchanged, which is what they are under a real
step. Building it needs a C compiler (cc).

Run: .venv/bin/python -m pytest tests/integration/test_clock_jump.py -m integration
"""

from __future__ import annotations

import glob
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import time

import pytest
from playbook_runner import run_playbook

pytestmark = pytest.mark.integration

HOURS = 3600
# (seconds after the module's first request, libfaketime offset of the wall clock from the real one)
STEPS = ((1.0, "+3h"), (3.5, "-5h"))
READY_AFTER = 5.5
INTERVAL = 1
READY_TIMEOUT = 30
LATE_TIMEOUT = 8
MODEL = "clock-test"

SLEEP_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

typedef int (*sleeper)(clockid_t, int, const struct timespec *, struct timespec *);

int clock_nanosleep(clockid_t clock_id, int flags, const struct timespec *req, struct timespec *rem)
{
    static sleeper next;
    if (clock_id == CLOCK_MONOTONIC)
        return syscall(SYS_clock_nanosleep, clock_id, flags, req, rem) == 0 ? 0 : errno;
    if (next == NULL)
        next = (sleeper)dlsym(RTLD_NEXT, "clock_nanosleep");
    return next(clock_id, flags, req, rem);
}
"""

PROBE = """
import atexit, json, os, threading, time

_out, _seen = os.environ.get("CLOCK_PROBE_OUT"), []


def _sample():
    while True:
        now = time.monotonic()
        _seen.append((now, time.time() - now))
        time.sleep(0.05)


def _write():
    with open(_out, "w") as out:
        json.dump(_seen, out)


if _out:
    threading.Thread(target=_sample, daemon=True).start()
    atexit.register(_write)
"""

PLAYBOOK = """
- name: Gate on vLLM while the wall clock jumps
  hosts: all
  gather_facts: false
  tasks:
    - name: Wait for the server
      llmops.ray_vllm.vllm_health:
        url: "{{ gate_url }}"
        model: %s
        completion: false
        wait: true
        timeout: "{{ gate_timeout }}"
        interval: %d
        request_timeout: 2
      environment: "{{ faked_clock | combine({'CLOCK_PROBE_OUT': probe_out}) }}"
      register: gate
      ignore_errors: true

    - name: Hand the result to the test
      ansible.builtin.copy:
        content: "{{ gate | to_json }}"
        dest: "{{ result_out }}"
        mode: "0600"
""" % (MODEL, INTERVAL)


def libfaketime():
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    if not found:
        raise AssertionError("libfaketime.so.1 not found under /usr/lib/*/faketime/: install it (make system-packages)")
    return found[0]


def build_shim(folder):
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise AssertionError("no C compiler (cc) to build the clock_nanosleep shim; install gcc")
    (folder / "sleep_shim.c").write_text(SLEEP_SHIM)
    target = folder / "sleep_shim.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-o", str(target), str(folder / "sleep_shim.c"), "-ldl"], check=True)
    return target


def faked_clock_env(folder):
    """The environment that makes a process's wall clock read ``folder/offset`` at every call."""
    (folder / "probe").mkdir()
    (folder / "probe" / "sitecustomize.py").write_text(PROBE)
    offset = folder / "offset"
    offset.write_text("+0\n")
    env = {
        "LD_PRELOAD": f"{build_shim(folder)}:{libfaketime()}",
        "FAKETIME_TIMESTAMP_FILE": str(offset),
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "NO_FAKE_STAT": "1",
        "PYTHONPATH": str(folder / "probe"),
    }
    return env, offset


def check_the_fake(env, offset):
    """A child Python under ``env`` reads a wall clock 3 hours ahead, a real monotonic clock, and can sleep."""
    offset.write_text("+3h\n")
    code = "import time; time.sleep(0.05); print(time.time(), time.monotonic())"
    try:
        completed = subprocess.run(
            [sys.executable, "-c", code],
            env=dict(os.environ, **env),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    finally:
        offset.write_text("+0\n")
    assert completed.returncode == 0, f"python under libfaketime failed: {completed.stderr}"
    wall, monotonic = (float(value) for value in completed.stdout.split())
    print(f"under libfaketime +3h: time.time() {wall:.1f} (real {time.time():.1f}), monotonic {monotonic:.1f}")
    assert abs(wall - time.time() - 3 * HOURS) < 30, f"expected the wall clock 3 h ahead, saw {completed.stdout}"
    assert abs(monotonic - time.monotonic()) < 30, f"expected the real monotonic clock, saw {completed.stdout}"


class VllmLoading(http.server.BaseHTTPRequestHandler):
    """503 on every path (a proxy while vLLM loads) until ``server.ready_after`` seconds after the first request, then
    vLLM's answers with MODEL listed. ``server.requests`` keeps (monotonic time, path) of every request."""

    def do_GET(self):
        server, now = self.server, time.monotonic()
        with server.lock:
            server.requests.append((now, self.path))
            server.first_seen.set()
        ready = server.ready_after is not None and now >= server.requests[0][0] + server.ready_after
        answers = {"/v1/models": {"object": "list", "data": [{"id": MODEL, "max_model_len": 2048}]},
                   "/version": {"version": "0.32.0"}}  # fmt: skip
        body = json.dumps(answers[self.path]) if ready and self.path in answers else "" if ready else "loading"
        self.send_response(200 if ready else 503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *_args):
        pass


class LoadingServer(http.server.ThreadingHTTPServer):
    def __init__(self, ready_after):
        super().__init__(("127.0.0.1", 0), VllmLoading)
        self.ready_after, self.requests = ready_after, []
        self.lock, self.first_seen = threading.Lock(), threading.Event()
        self.url = "http://127.0.0.1:%d" % self.server_address[1]

    def span(self):
        """Real seconds from the first request to the last: the module's wait as this server saw it."""
        return self.requests[-1][0] - self.requests[0][0]

    def health_checks(self):
        """When each observation of the gate began (its GET /health)."""
        return [at for at, path in self.requests if path == "/health"]


@pytest.fixture
def servers():
    """``{"ready": one that turns ready READY_AFTER s after the first request, "late": one that never does}``."""
    started = {"ready": LoadingServer(READY_AFTER), "late": LoadingServer(None)}
    for server in started.values():
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield started
    for server in started.values():
        server.shutdown()
        server.server_close()


def step_the_clock(server, offset, stepped):
    """Rewrite the offset at STEPS after the module's first request; ``stepped`` gets each (monotonic time, offset)."""
    if not server.first_seen.wait(60):
        return
    for after, value in STEPS:
        time.sleep(max(0, server.requests[0][0] + after - time.monotonic()))
        offset.write_text(value + "\n")
        stepped.append((time.monotonic(), value))


def write_inventory(folder, env, servers):
    hosts = {
        name: {
            "gate_url": server.url,
            "gate_timeout": READY_TIMEOUT if name == "ready" else LATE_TIMEOUT,
            "probe_out": str(folder / f"{name}.probe.json"),
            "result_out": str(folder / f"{name}.result.json"),
        }
        for name, server in servers.items()
    }
    inventory = {
        "all": {
            "hosts": hosts,
            "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, "faked_clock": env},
        }
    }
    path = folder / "inventory.json"
    path.write_text(json.dumps(inventory))
    return path


def assert_saw_both_steps(probe, name):
    """The module process's own wall clock read 3 h ahead and 5 h back while it ran (its probe's samples)."""
    real = time.time() - time.monotonic()
    seen = sorted({round((offset - real) / HOURS) for _at, offset in probe})
    assert {3, -5} <= set(seen), f"expected the {name} module's wall clock at +3 h and -5 h, saw {seen} h"


def run_gates(folder, servers):
    """Both gates in one ansible-playbook run while the clock steps; returns {host: result}, {host: probe} and the
    real (monotonic) times of the two steps."""
    env, offset = faked_clock_env(folder)
    check_the_fake(env, offset)
    (folder / "clock_jump.yml").write_text(PLAYBOOK)
    stepped = []
    stepper = threading.Thread(target=step_the_clock, args=(servers["ready"], offset, stepped), daemon=True)
    stepper.start()
    rc, output, _recap = run_playbook(
        str(folder / "clock_jump.yml"), inventory=str(write_inventory(folder, env, servers)), timeout=60
    )
    stepper.join(5)
    assert rc == 0, output
    assert [value for _at, value in stepped] == ["+3h", "-5h"], f"the clock was not stepped: {stepped}\n{output}"
    results = {name: json.loads((folder / f"{name}.result.json").read_text()) for name in servers}
    probes = {name: json.loads((folder / f"{name}.probe.json").read_text()) for name in servers}
    return results, probes, [at for at, _value in stepped]


def test_gates_wait_their_real_time_while_the_wall_clock_jumps(tmp_path, servers):
    started = time.monotonic()
    results, probes, steps = run_gates(tmp_path, servers)
    ready, late = results["ready"], results["late"]

    # Ready once the server is, at the gate's first look after that: the forward step did not end the wait and the
    # backward one did not stretch it.
    assert ready["ready"] is True and ready["status"] == "ready", ready
    looks = servers["ready"].health_checks()
    ready_at = looks[0] + READY_AFTER
    assert len([at for at in looks if at >= ready_at]) == 1, f"looks at {[round(at - looks[0], 2) for at in looks]}s"
    assert ready["attempts"] == len(looks), f"{ready['attempts']} attempts reported, {len(looks)} seen"
    waited = servers["ready"].span()
    assert abs(ready["elapsed_s"] - waited) < 1, f"elapsed_s {ready['elapsed_s']} for a real wait of {waited:.2f}s"

    # The timeout fires after its real duration (no look begun after it), and elapsed_s says that duration.
    assert late.get("failed") is True and late["status"] == "loading", late
    looks = servers["late"].health_checks()
    assert late["attempts"] == len(looks) >= 3, f"{late['attempts']} attempts reported, {len(looks)} seen"
    assert looks[-1] - looks[0] <= LATE_TIMEOUT + 0.5, f"looks at {[round(at - looks[0], 2) for at in looks]}s"
    assert late["elapsed_s"] > LATE_TIMEOUT - INTERVAL, late["msg"]
    waited = servers["late"].span()
    assert abs(late["elapsed_s"] - waited) < 1, f"elapsed_s {late['elapsed_s']} for a real wait of {waited:.2f}s"
    # Not vacuous: each module process's own wall clock jumped while it ran, and each gate looked (and so read its
    # clock) while the wall clock was 3 h ahead and again after it went 5 h back.
    for name, probe in probes.items():
        assert_saw_both_steps(probe, name)
        looks = servers[name].health_checks()
        assert any(steps[0] < at < steps[1] for at in looks) and looks[-1] > steps[1], (
            f"expected the {name} gate to look between the steps and after them; steps at "
            f"{[round(at - looks[0], 2) for at in steps]}s, looks at {[round(at - looks[0], 2) for at in looks]}s"
        )
    print(f"{time.monotonic() - started:.1f}s; ready after {ready['elapsed_s']}s, timed out after {late['elapsed_s']}s")
