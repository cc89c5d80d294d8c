# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The ray_job module against a real, private Ray 2.60 head with token authentication.

The module runs as Ansible runs it: its file executed by Python with its arguments in a JSON file. Jobs are
`sleep` commands with durations unique to this run, so the test can see their processes come and go, and kill
any left over (by PID) after the head is stopped by process group. Never `ray stop`.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
import ray_local

pytestmark = pytest.mark.integration

TOKEN = f"llmops-ray-vllm-test-token-{random.getrandbits(64):016x}"
# Durations that name this run's job processes.
SLEEP_V1, SLEEP_V2, SLEEP_OTHER = (str(600000 + random.randrange(100000)) for _index in range(3))
FAILING_ENTRYPOINT = "python -c \"import sys; print('loading model'); sys.exit('model not found: /nonexistent')\""


def sleep_pids(duration):
    """PIDs of `sleep <duration>` processes."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                argv = cmdline.read().split(b"\0")
        except OSError:
            continue
        if argv[:2] == [b"sleep", duration.encode()]:
            pids.append(int(entry))
    return pids


def wait_for(condition, timeout=30, what="condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def cluster():
    # The venv first on PATH, as when it is activated: entrypoints run `python` from the raylet's PATH.
    path = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    try:
        with ray_local.local_ray_cluster(head=dict(num_cpus=2), token=TOKEN, env={"PATH": path}) as started:
            yield started
    finally:
        # Ray's own watcher kills an entrypoint within a second of its supervisor's death; make sure of it.
        time.sleep(2)
        for duration in (SLEEP_V1, SLEEP_V2, SLEEP_OTHER):
            for pid in sleep_pids(duration):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


@pytest.fixture(scope="module")
def run_module(cluster, collections_path, tmp_path_factory):
    """``run(check=False, module="ray_job", **args)`` runs the module once; returns its result dict."""
    args_dir = tmp_path_factory.mktemp("ray_job_args")
    modules_dir = os.path.join(collections_path, "ansible_collections", "llmops", "ray_vllm", "plugins", "modules")
    env = dict(os.environ, PYTHONPATH=collections_path)
    counter = [0]

    def run(check=False, module="ray_job", **args):
        counter[0] += 1
        module_args = {"dashboard_url": cluster.dashboard_url, "token": TOKEN, "interval": 1, "timeout": 60,
                       "settle_time": 1} if module == "ray_job" else {}  # fmt: skip
        module_args.update(args)
        module_args.update(_ansible_check_mode=check, _ansible_diff=True)
        args_file = args_dir / f"args-{counter[0]}.json"
        args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": module_args}))
        completed = subprocess.run(
            [sys.executable, os.path.join(modules_dir, module + ".py"), str(args_file)],
            env=env,
            capture_output=True,
            text=True,
            timeout=150,
            check=False,
        )
        try:
            result = json.loads(completed.stdout)
        except ValueError:
            raise AssertionError(
                f"ray_job printed no JSON (rc {completed.returncode}):\n{completed.stdout}\n{completed.stderr}"
            ) from None
        assert TOKEN not in completed.stdout, f"the token leaked into the {module} module output"
        assert (completed.returncode != 0) == bool(result.get("failed")), result
        return result

    return run


def warning_texts(result):
    """The module's warnings as text (ansible-core 2.19 returns each as a summary with the text in event.msg)."""
    return [warning["event"]["msg"] if isinstance(warning, dict) else warning for warning in result.get("warnings", [])]


def ray_jobs(cluster, name):
    """The cluster's submission jobs labelled with ``name``, as the REST API lists them now."""
    jobs = cluster.dashboard_json("/api/jobs/")
    assert jobs is not None, "the dashboard did not answer"
    return {
        job["submission_id"]: job for job in jobs if (job.get("metadata") or {}).get("llmops.ray_vllm/name") == name
    }


def status_of(cluster, submission_id):
    return cluster.dashboard_json(f"/api/jobs/{submission_id}")["status"]


def test_lifecycle(cluster, run_module):
    v1 = f"echo serving v1 && exec sleep {SLEEP_V1}"
    v2 = f"echo serving v2 && exec sleep {SLEEP_V2}"
    settings = dict(name="web", runtime_env={"env_vars": {"GREETING": "hi"}}, metadata={"model": "m1", "replicas": 1})

    # Check mode on an empty cluster: would submit, submits nothing.
    result = run_module(check=True, entrypoint=v1, **settings)
    assert (result["changed"], result["submission_id"], result["replaced"]) == (True, None, [])
    assert ray_jobs(cluster, "web") == {}

    result = run_module(entrypoint=v1, **settings)
    assert result["changed"] is True and result["status"] == "RUNNING", result
    first = result["submission_id"]
    assert re.match(r"^web-{}-\d+$".format(result["config_hash"][:12]), first)
    assert result["log_command"] == f"ray job logs -f {first} --address {cluster.dashboard_url}"
    assert result["diff"] == {
        "before": {},
        "after": {"submission_id": first, "entrypoint": v1, "hash": result["config_hash"], "status": "RUNNING"},
    }
    job = ray_jobs(cluster, "web")[first]
    assert job["metadata"] == {
        "llmops.ray_vllm/name": "web",
        "llmops.ray_vllm/config-hash": result["config_hash"],
        "model": "m1",
        "replicas": "1",
    }
    assert job["runtime_env"]["env_vars"] == {"GREETING": "hi"}
    wait_for(lambda: len(sleep_pids(SLEEP_V1)) == 1, what="the v1 sleep process")

    # Same settings: nothing to do, in check mode or not.
    for check in (True, False):
        again = run_module(check=check, entrypoint=v1, **settings)
        assert (again["changed"], again["submission_id"], again["replaced"]) == (False, first, []), again
        assert again["config_hash"] == result["config_hash"]
    assert list(ray_jobs(cluster, "web")) == [first]

    # A new entrypoint in check mode: reported, nothing stopped or submitted.
    preview = run_module(check=True, entrypoint=v2, **settings)
    assert (preview["changed"], preview["replaced"], preview["submission_id"]) == (True, [first], None)
    assert preview["diff"]["before"]["submission_id"] == first
    assert preview["diff"]["after"]["entrypoint"] == v2
    assert list(ray_jobs(cluster, "web")) == [first]
    assert status_of(cluster, first) == "RUNNING"

    # The new entrypoint for real: the old job is stopped, a new one runs.
    replaced = run_module(entrypoint=v2, **settings)
    second = replaced["submission_id"]
    assert (replaced["changed"], replaced["replaced"], replaced["status"]) == (True, [first], "RUNNING")
    assert second != first and replaced["config_hash"] != result["config_hash"]
    assert replaced["diff"]["before"] == {"submission_id": first, "entrypoint": v1, "hash": result["config_hash"],
                                          "status": "RUNNING"}  # fmt: skip
    assert replaced["diff"]["after"]["submission_id"] == second
    assert status_of(cluster, first) == "STOPPED"
    wait_for(lambda: sleep_pids(SLEEP_V1) == [], what="the v1 sleep process to end")
    wait_for(lambda: len(sleep_pids(SLEEP_V2)) == 1, what="the v2 sleep process")

    # A metadata change alone replaces the job too.
    relabelled = run_module(entrypoint=v2, **dict(settings, metadata={"model": "m2", "replicas": 1}))
    third = relabelled["submission_id"]
    assert (relabelled["changed"], relabelled["replaced"]) == (True, [second])
    assert status_of(cluster, second) == "STOPPED"

    # Absent: check mode stops nothing; then it stops the job; then there is nothing left to do.
    preview = run_module(check=True, state="absent", name="web")
    assert (preview["changed"], preview["replaced"]) == (True, [third])
    assert status_of(cluster, third) == "RUNNING"
    removed = run_module(state="absent", name="web")
    assert (removed["changed"], removed["replaced"], removed["submission_id"]) == (True, [third], None)
    assert removed["diff"]["before"]["submission_id"] == third and removed["diff"]["after"] == {}
    assert status_of(cluster, third) == "STOPPED"
    wait_for(lambda: sleep_pids(SLEEP_V2) == [], what="the v2 sleep process to end")
    assert run_module(state="absent", name="web")["changed"] is False
    assert {job["status"] for job in ray_jobs(cluster, "web").values()} == {"STOPPED"}


def test_failing_job_fails_with_its_log(cluster, run_module):
    # Ray reports it RUNNING for a moment before it fails: the settle time catches that.
    result = run_module(name="broken", entrypoint=FAILING_ENTRYPOINT, settle_time=10)
    assert result["failed"] is True and result["changed"] is True
    assert result["status"] == "FAILED"
    assert result["logs_tail"].splitlines()[-2:] == ["loading model", "model not found: /nonexistent"]
    assert re.search(r"ended FAILED \(JOB_ENTRYPOINT_COMMAND_ERROR, exit code 1\) instead of (staying )?RUNNING",
                     result["msg"])  # fmt: skip
    assert "model not found: /nonexistent" in result["msg"]
    assert result["log_command"] == "ray job logs -f {} --address {}".format(
        result["submission_id"], cluster.dashboard_url
    )
    # An ended job is not kept: the next run submits again (and fails again).
    again = run_module(name="broken", entrypoint=FAILING_ENTRYPOINT, wait_running=False)
    assert again["changed"] is True and again["submission_id"] != result["submission_id"]
    assert again["replaced"] == []


def test_the_vllm_gate_stops_with_the_log_of_a_server_job_that_ended(cluster, run_module):
    # A server that dies while it loads, after the job was RUNNING: vllm_serve submits without a settle time and
    # its gate watches the job.
    entrypoint = "python -c \"import sys, time; print('loading weights'); time.sleep(3); sys.exit('out of memory')\""
    submitted = run_module(name="dying", entrypoint=entrypoint, settle_time=0)
    assert not submitted.get("failed") and submitted["status"] == "RUNNING"
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    watch = {"dashboard_url": cluster.dashboard_url, "name": "dying", "token": TOKEN}
    started = time.monotonic()
    gate = run_module(module="vllm_health", url=f"http://127.0.0.1:{port}", wait=True, timeout=120, interval=1,
                      ray_job=watch)  # fmt: skip
    assert time.monotonic() - started < 60, "the gate waited on a server whose job had ended"
    assert gate["failed"] is True and gate["status"] == "server_ended"
    assert f"Ray job {submitted['submission_id']} ended FAILED" in gate["msg"]
    assert "out of memory" in gate["msg"] and "Waiting does not help" in gate["msg"]
    # While the job runs, the watch is no verdict: the gate reports the server itself.
    running = run_module(name="alive", entrypoint=f"exec sleep {SLEEP_OTHER}", settle_time=0)
    alive = run_module(module="vllm_health", url=f"http://127.0.0.1:{port}", ray_job=dict(watch, name="alive"))
    assert alive["status"] == "unreachable"
    assert running["status"] == "RUNNING"
    assert run_module(state="absent", name="alive")["changed"] is True


def test_pending_job_times_out_then_is_stopped(cluster, run_module):
    # The head has no GPU, so a job asking for one stays PENDING.
    entrypoint = f"exec sleep {SLEEP_OTHER}"
    result = run_module(name="needs-gpu", entrypoint=entrypoint, entrypoint_num_gpus=1, timeout=4)
    assert result["failed"] is True and result["status"] == "PENDING"
    assert "is still PENDING after" in result["msg"] and "entrypoint_num_gpus=1.0" in result["msg"]
    pending = result["submission_id"]
    assert status_of(cluster, pending) == "PENDING"
    # Without wait_running, a PENDING job of the same settings is fine and kept.
    kept = run_module(name="needs-gpu", entrypoint=entrypoint, entrypoint_num_gpus=1, wait_running=False)
    assert (kept["changed"], kept["submission_id"], kept["status"]) == (False, pending, "PENDING")
    # Ray 2.60 cannot stop a job pending for resources before it gets them: asked to stop, reported, not failed.
    removed = run_module(state="absent", name="needs-gpu")
    assert (removed["changed"], removed["replaced"]) == (True, [pending])
    (warning,) = warning_texts(removed)
    assert warning.startswith(f"Ray job {pending} is still PENDING after it was asked to stop")
    assert status_of(cluster, pending) == "PENDING"


def test_wrong_or_missing_token(cluster, run_module):
    wrong = run_module(name="web", entrypoint="true", token="not-the-token")
    assert wrong["failed"] is True
    assert "answered 403: Forbidden: Invalid authentication token" in wrong["msg"]
    missing = run_module(name="web", entrypoint="true", token=None)
    assert "answered 401: Unauthorized: Missing authentication token" in missing["msg"]
    assert "RAY_AUTH_MODE=token" in missing["msg"]


def test_refused_settings(run_module):
    local = run_module(name="web", entrypoint="ls", runtime_env={"working_dir": "/srv/app"})
    assert local["failed"] is True and "runtime_env has local paths (working_dir /srv/app)" in local["msg"]
    reserved = run_module(name="web", entrypoint="ls", metadata={"llmops.ray_vllm/name": "x"})
    assert "metadata must not set llmops.ray_vllm/name" in reserved["msg"]
    nowhere = run_module(name="web", entrypoint="ls", dashboard_url="http://127.0.0.1:1")
    assert nowhere["msg"].startswith("cannot reach the Ray dashboard at http://127.0.0.1:1")
