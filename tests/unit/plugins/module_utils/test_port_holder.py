# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""port_holder on this host's real /proc: real listening processes (IPv4 and IPv6, with and without a Ray job's
environment), classified against the Ray head's answers recorded from Ray 2.60 (tests/fixtures/ray_jobs, serve).
The whole path through a killed Ray head is tested in tests/integration/test_site_local.py."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from ansible_collections.llmops.ray_vllm.plugins.module_utils import _port_holder as port_holder
from ansible_collections.llmops.ray_vllm.plugins.module_utils._ray_job import NAME_KEY, RayJobError

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "fixtures")
RUNNING_JOBS = json.load(open(os.path.join(FIXTURES, "ray_jobs", "list-one-running.json")))["json"]
RUNNING_ID = "vllm-aaaaaaaaaaaa-1795862911"
SERVE_DETAILS = json.load(open(os.path.join(FIXTURES, "serve", "applications-running-2-replicas.json")))
LISTEN = (
    "import socket, sys, time\n"
    "family = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET\n"
    "server = socket.socket(family)\n"
    "server.bind((sys.argv[1], 0))\n"
    "server.listen()\n"
    "print(server.getsockname()[1], flush=True)\n"
    "time.sleep(60)\n"
)


class RecordedHead:
    """The Ray head's answers, from recordings; ``down`` raises as a killed head's refused connection does."""

    def __init__(self, jobs=(), details=None, down=False):
        self.jobs, self.answer, self.down = list(jobs), details or {}, down

    def list_jobs(self):
        if self.down:
            raise RayJobError("GET http://127.0.0.1:8265/api/jobs/ failed: [Errno 111] Connection refused")
        return self.jobs

    def details(self):
        return self.answer


def listener(address="127.0.0.1", job=None, extra=()):
    """A real process listening on a free port of ``address``; ``job`` is ``(name, submission id)`` for its env."""
    env = dict(os.environ)
    if job:
        metadata = {NAME_KEY: job[0], "job_submission_id": job[1]}
        env["RAY_JOB_CONFIG_JSON_ENV_VAR"] = json.dumps({"runtime_env": {}, "metadata": metadata})
    process = subprocess.Popen(
        [sys.executable, "-c", LISTEN, address, *extra], env=env, stdout=subprocess.PIPE, text=True
    )
    return process, int(process.stdout.readline())


@pytest.fixture
def processes():
    started = []

    def start(*args, **kwargs):
        process, port = listener(*args, **kwargs)
        started.append(process)
        return process, port

    yield start
    for process in started:
        process.kill()
        process.wait()


def look(port, head):
    return port_holder.observe(port, "vllm", "llm", port_holder.RayLookups(head))


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_port_nobody_listens_on_is_free_and_the_head_is_not_asked():
    result = look(free_port(), RecordedHead(down=True))
    assert (result["holder"], result["processes"], result["ray_unanswered"]) == ("free", [], [])
    assert result["msg"].endswith("is free.")


def test_another_program_is_named_by_pid_and_program_without_its_arguments(processes):
    process, port = processes(extra=["--token", "s3cret-value"])
    result = look(port, RecordedHead(RUNNING_JOBS, SERVE_DETAILS))
    assert result["holder"] == "other" and [view["pid"] for view in result["processes"]] == [process.pid]
    assert result["processes"][0]["command"] == sys.executable
    assert "pid %d: %s" % (process.pid, sys.executable) in result["msg"]
    assert "s3cret" not in json.dumps(result)


def test_an_ipv6_listener_is_found(processes):
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this host")
    process, port = processes("::1")
    assert look(port, RecordedHead())["holder"] == "other"


def test_a_process_of_the_running_job_is_ours(processes):
    process, port = processes(job=("vllm", RUNNING_ID))
    result = look(port, RecordedHead(RUNNING_JOBS))
    assert (result["holder"], result["submission_id"]) == ("job", RUNNING_ID)
    assert result["processes"][0]["job"] == ["vllm", RUNNING_ID]


def test_a_process_of_an_ended_job_is_an_orphan_whether_the_head_answers_or_is_gone(processes):
    _process, port = processes(job=("vllm", "vllm-ended-1"))
    answered = look(port, RecordedHead(RUNNING_JOBS))
    gone = look(port, RecordedHead(down=True))
    assert (answered["holder"], answered["submission_id"]) == ("orphan", "vllm-ended-1")
    assert (gone["holder"], gone["submission_id"]) == ("orphan", "vllm-ended-1")
    assert "Connection refused" in gone["ray_unanswered"][0]
    assert "A run stops it" in gone["msg"]


def test_a_process_of_another_jobs_name_is_not_ours(processes):
    _process, port = processes(job=("someone-else", "x-1"))
    assert look(port, RecordedHead(RUNNING_JOBS))["holder"] == "other"


def test_the_serve_applications_port_is_its_proxys(processes):
    _process, port = processes()
    details = dict(SERVE_DETAILS, http_options=dict(SERVE_DETAILS["http_options"], port=port))
    assert look(port, RecordedHead(details=details))["holder"] == "serve"
    # Another application's port, or ours on another port, is not.
    assert (
        port_holder.observe(port, "vllm", "other-app", port_holder.RayLookups(RecordedHead(details=details)))["holder"]
        == "other"
    )
    assert look(port, RecordedHead(details=SERVE_DETAILS))["holder"] == "other"


def test_a_listener_that_is_gone_frees_the_port(processes):
    process, port = processes()
    process.kill()
    process.wait()
    deadline = time.monotonic() + 5
    while look(port, RecordedHead())["holder"] != "free" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert look(port, RecordedHead())["holder"] == "free"


def test_program_words_keep_what_runs_and_drop_option_values():
    words = port_holder.program_words
    assert words(b"/usr/bin/python3\0-m\0http.server\0--bind\0127.0.0.1\0") == "/usr/bin/python3 -m http.server"
    assert words(b"nginx: master process\0") == "nginx: master process"
    assert words(b"/opt/app\0serve\0--password\0hunter2\0") == "/opt/app serve"
    assert words(b"") == ""
