# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""Keep one long-running Ray job per logical name, through the Ray Jobs REST API of the dashboard."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import time
import urllib.error

from ansible.module_utils.urls import open_url

from ansible_collections.llmops.ray_vllm.plugins.module_utils._kube_refusal import api_server_refusal
from ansible_collections.llmops.ray_vllm.plugins.module_utils._wait import pauses, poll

NAME_KEY = "llmops.ray_vllm/name"
HASH_KEY = "llmops.ray_vllm/config-hash"
RESERVED_METADATA = (NAME_KEY, HASH_KEY)

ACTIVE = ("PENDING", "RUNNING")
TERMINAL = ("STOPPED", "SUCCEEDED", "FAILED")

LOG_TAIL_LINES = 40
# Seconds to watch a job that was PENDING when asked to stop (see stop_jobs).
PENDING_STOP_WATCH = 5
REQUEST_TIMEOUT = 30
# A job name goes into submission ids and URL paths.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class RayJobError(Exception):
    """A failure with its message and the result keys known so far."""

    def __init__(self, msg, **result):
        super().__init__(msg)
        self.msg = msg
        self.result = result


def stable_json(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def job_metadata(metadata):
    """User metadata as Ray takes it (string values). Raises ValueError on a key this module reserves."""
    clashing = sorted(set(metadata or {}) & set(RESERVED_METADATA))
    if clashing:
        raise ValueError(f"metadata must not set {', '.join(clashing)}: this module writes it")
    return {str(key): str(value) for key, value in (metadata or {}).items()}


def job_spec(
    entrypoint,
    runtime_env=None,
    entrypoint_num_cpus=None,
    entrypoint_num_gpus=None,
    entrypoint_resources=None,
    metadata=None,
):
    """What decides whether a running job is the wanted one; the config hash is taken over exactly this."""
    return {
        "entrypoint": entrypoint,
        "runtime_env": runtime_env or None,
        "entrypoint_num_cpus": None if entrypoint_num_cpus is None else float(entrypoint_num_cpus),
        "entrypoint_num_gpus": None if entrypoint_num_gpus is None else float(entrypoint_num_gpus),
        "entrypoint_resources": (
            {str(key): float(value) for key, value in entrypoint_resources.items()} if entrypoint_resources else None
        ),
        "metadata": job_metadata(metadata),
    }


def config_hash(spec):
    """sha256 (hex) of the spec as sorted, compact JSON, so equal settings give equal hashes across runs."""
    return hashlib.sha256(stable_json(spec).encode("utf-8")).hexdigest()


def make_submission_id(name, digest, now, taken=()):
    """``<name>-<hash[:12]>-<unix time>``: Ray never reuses the id of an ended job, so each submit needs a new id.

    ``taken``: the ids Ray lists (ended jobs too). The unix time is the wall clock, which an NTP step or a resumed VM
    can set back to a second an earlier job of these settings was submitted in (Ray answers 500 "already exists"),
    as can two submits within one second; such an id gets ``-2``, ``-3``... until it is free.
    """
    submission_id = base = f"{name}-{digest[:12]}-{int(now)}"
    suffix = 1
    while submission_id in taken:
        suffix += 1
        submission_id = f"{base}-{suffix}"
    return submission_id


def submit_body(spec, name, digest, submission_id):
    """The POST /api/jobs/ body: the spec, with name and hash added to the metadata and unset fields left out."""
    body = {"entrypoint": spec["entrypoint"], "submission_id": submission_id}
    for key in ("runtime_env", "entrypoint_num_cpus", "entrypoint_num_gpus", "entrypoint_resources"):
        if spec[key] is not None:
            body[key] = spec[key]
    body["metadata"] = dict(spec["metadata"], **{NAME_KEY: name, HASH_KEY: digest})
    return body


def local_runtime_env_paths(runtime_env):
    """Local paths in ``working_dir``/``py_modules``, which the REST API cannot upload (only URIs work there)."""
    found = []
    runtime_env = runtime_env or {}
    working_dir = runtime_env.get("working_dir")
    if isinstance(working_dir, str) and "://" not in working_dir:
        found.append(f"working_dir {working_dir}")
    for module in runtime_env.get("py_modules") or []:
        if isinstance(module, str) and "://" not in module:
            found.append(f"py_modules entry {module}")
    return found


def jobs_named(jobs, name):
    """Submission jobs carrying this module's name label, oldest first.

    ``start_time`` is the head's wall clock, which a clock step can put out of order. The order only picks which of
    several active jobs with the same settings is kept and which job a diff shows as before; any of them is right.
    """
    named = [
        job for job in jobs if job.get("type") == "SUBMISSION" and (job.get("metadata") or {}).get(NAME_KEY) == name
    ]
    return sorted(named, key=lambda job: (job.get("start_time") or 0, job.get("submission_id") or ""))


def plan_present(jobs, name, digest):
    """``(kept, to_stop)``: the newest active job with this hash (or None) and every other active job of the name."""
    active = active_jobs(jobs, name)
    same = [job for job in active if (job.get("metadata") or {}).get(HASH_KEY) == digest]
    kept = same[-1] if same else None
    return kept, [job for job in active if job is not kept]


FOUND_TAIL_LINES = 5
# Ray's job supervisor hands every driver the job's config in this variable, and the driver's children inherit it:
# how this host's processes of a job are known after the job is gone.
JOB_CONFIG_ENV = b"RAY_JOB_CONFIG_JSON_ENV_VAR="


def job_of_environ(environ):
    """``(name label, submission id)`` of the Ray job whose environment ``environ`` (/proc/<pid>/environ) carries,
    or None."""
    for entry in environ.split(b"\0"):
        if not entry.startswith(JOB_CONFIG_ENV):
            continue
        try:
            metadata = json.loads(entry[len(JOB_CONFIG_ENV) :]).get("metadata") or {}
        except (ValueError, AttributeError):
            return None
        return metadata.get(NAME_KEY), metadata.get("job_submission_id")
    return None


def job_of_process(pid, proc_root="/proc"):
    """``(name label, submission id)`` of the Ray job whose environment process ``pid`` carries, or None (also when
    its environment cannot be read)."""
    try:
        with open(os.path.join(proc_root, str(pid), "environ"), "rb") as environ:
            return job_of_environ(environ.read())
    except OSError:
        return None


def job_processes(name, proc_root="/proc"):
    """``{pid: submission id}`` of this host's live processes that carry the environment of a job of ``name``."""
    found = {}
    for entry in os.listdir(proc_root):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        job = job_of_process(entry, proc_root)
        if job and job[0] == name and job[1]:
            found[int(entry)] = job[1]
    return found


def orphans_of(processes, keep_ids):
    """The processes (``{pid: submission id}``) of jobs other than ``keep_ids``: left running after their job ended,
    as an engine process is when its API server is killed, or a whole server when its Ray head died."""
    return {pid: sid for pid, sid in processes.items() if sid not in keep_ids}


def orphans_message(orphans, name, check_mode):
    jobs = ", ".join(sorted(set(orphans.values())))
    pids = ", ".join(str(pid) for pid in sorted(orphans))
    verb = "A run stops them" if check_mode else "Stopped them"
    return (
        f"{len(orphans)} process(es) of ended jobs of {name} ({jobs}) were still running on this host without "
        f"their job (pids {pids}), holding memory, and a port or GPUs. {verb} (SIGTERM, then SIGKILL)."
    )


# Ray appends the log itself to a failed job's message; its last lines come from the log instead.
LOGS_IN_MESSAGE = re.compile(r",? last available logs \(truncated to [^)]*\):?\s*$")


def ray_message(job):
    """Ray's one-line message for a job, without the log text it carries after a failure."""
    return LOGS_IN_MESSAGE.sub("", first_line(job.get("message")) or "").rstrip(" .")


def failed_job_found(client, jobs, name):
    """What a submission finds when no job of ``name`` is active and the newest one FAILED (its process died or
    exited with an error): the job, Ray's message, its last log lines and how to read the whole log. None otherwise.
    """
    named = jobs_named(jobs, name)
    if not named or named[-1].get("status") != "FAILED" or active_jobs(jobs, name):
        return None
    job = named[-1]
    submission_id = job.get("submission_id")
    tail = logs_tail(client.logs(submission_id), FOUND_TAIL_LINES) if submission_id else ""
    return (
        f"The earlier Ray job {submission_id} of {name} FAILED: {ray_message(job) or 'no message'}. "
        f"Its log: {log_command(submission_id, client.base_url)}. Last lines:\n{tail or '(empty)'}"
    )


def active_jobs(jobs, name):
    """The jobs of this name that are PENDING or RUNNING, oldest first."""
    return [job for job in jobs_named(jobs, name) if job.get("status") in ACTIVE]


def plan_absent(jobs, name):
    """Active jobs of this name, all to be stopped."""
    return active_jobs(jobs, name)


def job_view(job):
    """What diff mode shows of a job; empty for none."""
    if not job:
        return {}
    return {
        "submission_id": job.get("submission_id"),
        "entrypoint": job.get("entrypoint"),
        "hash": (job.get("metadata") or {}).get(HASH_KEY),
        "status": job.get("status"),
    }


def logs_tail(logs, lines=LOG_TAIL_LINES):
    """The last ``lines`` lines of a job log, without terminal colour codes."""
    text = ANSI_ESCAPE.sub("", logs or "")
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


def error_summary(text, limit=500):
    """One line from an error body: the exception line of a Python traceback, or the text itself."""
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip() and line.strip() != "."]
    if lines and lines[0].startswith("Traceback"):
        exception_lines = [line for line in lines if re.match(r"^[A-Za-z_][\w.]*(Error|Exception)\b.*:", line)]
        if exception_lines:
            return exception_lines[-1][:limit]
    return " ".join(lines)[:limit]


def first_line(text, limit=500):
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line[:limit]


def describe_http_error(base_url, method, path, status, text):
    """A message for an HTTP error answer of the dashboard, with the likely cause."""
    seen = f"{method} {base_url}{path} answered {status}: {error_summary(text)}"
    refusal = api_server_refusal(status, text, method, base_url + path)
    if refusal:  # through the service proxy: the API server's RBAC, not the Ray token
        return refusal
    if status == 401:
        return (
            f"{seen}. Ray token missing: the Ray cluster runs with token authentication (RAY_AUTH_MODE=token); set "
            "token to the cluster's token (the ray_cluster role keeps it in ray_cluster_auth_token_file on hosts, in "
            "the Secret <release>-ray-auth on Kubernetes)"
        )
    if AGENT_NOT_READY in (text or ""):
        return (
            f"{seen}. The head's dashboard agent takes job submissions and has no HTTP service: it is still starting, "
            "or its port (ray start --dashboard-agent-listen-port, default 52365) was taken by another process; "
            "read dashboard_agent.log under the head's Ray temp dir (session_latest/logs)"
        )
    if status == 403:
        return (
            f"{seen}. Ray token wrong: token is not the cluster's RAY_AUTH_TOKEN; set the right one (the ray_cluster "
            "role keeps it in ray_cluster_auth_token_file on hosts, in the Secret <release>-ray-auth on Kubernetes)"
        )
    if status == 404 and path.startswith("/api/jobs/") and path.count("/") <= 3:
        return f"{seen}. Is {base_url} a Ray dashboard (ray start --head --include-dashboard=true)?"
    return seen


# Ray's answer (500) to a submission before the head's job agent has started, seconds after `ray start --head`.
AGENT_NOT_READY = "No available agent to submit job"


def submit_when_agent_ready(client, body, timeout, interval, sleep=time.sleep, clock=time.monotonic):
    """Submit ``body``, trying again while a just-started head has no job agent yet, for up to ``timeout`` seconds."""
    deadline = clock() + timeout
    for pause in pauses(interval):
        try:
            return client.submit(body)
        except RayJobError as error:
            if AGENT_NOT_READY not in getattr(error, "http_text", "") or clock() >= deadline:
                raise
        sleep(pause)


class RayJobsClient:
    """The Ray Jobs REST API of one dashboard (GET/POST /api/jobs/...), through open_url."""

    def __init__(self, base_url, token=None, validate_certs=True, opener=open_url, timeout=REQUEST_TIMEOUT):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.validate_certs = validate_certs
        self.opener = opener
        self.timeout = timeout

    def request(self, method, path, body=None, raw=None):
        """``(status, decoded JSON or text)``; raises RayJobError on a connection failure or unexpected status.

        ``body`` goes as JSON; ``raw`` (bytes, such as a runtime_env package) as application/octet-stream.
        """
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body)
            headers["Content-Type"] = "application/json"
        elif raw is not None:
            data = raw
            headers["Content-Type"] = "application/octet-stream"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        url = self.base_url + path
        try:
            response = self.opener(
                url,
                method=method,
                data=data,
                headers=headers,
                validate_certs=self.validate_certs,
                timeout=self.timeout,
            )
            status, raw = response.getcode(), response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read() if error.fp else b""
        except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
            reason = error.reason if isinstance(error, urllib.error.URLError) else error
            raise RayJobError(
                f"cannot reach the Ray dashboard at {self.base_url} ({method} {path}: {reason}). Is the Ray head "
                "running with its dashboard (ray start --head --include-dashboard=true), and does dashboard_url "
                "name its host and --dashboard-port?"
            ) from None
        text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw or "")
        if not 200 <= status < 300:
            error = RayJobError(describe_http_error(self.base_url, method, path, status, text))
            error.http_status, error.http_text = status, text
            raise error
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def list_jobs(self):
        _status, jobs = self.request("GET", "/api/jobs/")
        if not isinstance(jobs, list):
            raise RayJobError(f"GET {self.base_url}/api/jobs/ did not answer a JSON list: {str(jobs)[:300]}")
        return jobs

    def get_job(self, submission_id):
        _status, job = self.request("GET", f"/api/jobs/{submission_id}")
        return job

    def submit(self, body):
        _status, answer = self.request("POST", "/api/jobs/", body)
        return answer

    def stop(self, submission_id):
        _status, answer = self.request("POST", f"/api/jobs/{submission_id}/stop")
        return answer

    def logs(self, submission_id):
        """The job's log text; empty when it cannot be read (logs only help a message here)."""
        try:
            _status, answer = self.request("GET", f"/api/jobs/{submission_id}/logs")
        except RayJobError:
            return ""
        return answer.get("logs", "") if isinstance(answer, dict) else ""


def log_command(submission_id, dashboard_url):
    if not submission_id:
        return None
    return f"ray job logs -f {submission_id} --address {dashboard_url}"


def stop_jobs(client, jobs, timeout, interval, sleep=time.sleep):
    """Ask every job to stop and wait until they ended. Returns ``(submission ids, warnings)``.

    Ray 2.60 cannot stop a job still PENDING for resources: it ends only once it gets them (it then starts and
    stops at once) or when RAY_JOB_START_TIMEOUT_SECONDS passes. Such a job holds no resources, so it is only
    watched for a few seconds and then reported in a warning instead of failing.
    """
    stopped, warnings = [], []
    for job in jobs:
        client.stop(job["submission_id"])
        stopped.append(job["submission_id"])
    for job in jobs:
        submission_id = job["submission_id"]
        was_pending = job.get("status") == "PENDING"
        last, _attempts, elapsed = poll(
            lambda submission_id=submission_id: client.get_job(submission_id),
            lambda observed: observed.get("status") in TERMINAL,
            min(timeout, PENDING_STOP_WATCH) if was_pending else timeout,
            interval,
            sleep=sleep,
        )
        status = last.get("status")
        if status in TERMINAL:
            continue
        if status == "PENDING":
            warnings.append(
                f"Ray job {submission_id} is still PENDING after it was asked to stop (Ray says: "
                f"{first_line(last.get('message'))}). Ray stops a pending job only once it gets its resources "
                "(it then starts and stops at once) or fails it after RAY_JOB_START_TIMEOUT_SECONDS (default 900 s)"
            )
            continue
        raise RayJobError(
            f"Ray job {submission_id} is still {status} {elapsed:.0f}s after it was asked to stop; Ray normally "
            "kills it within seconds. Is the node running it lost? Look at `ray status` and "
            f"`ray job logs {submission_id} --address {client.base_url}`, or raise timeout",
            changed=True,
            replaced=stopped,
            warnings=warnings,
        )
    return stopped, warnings


def job_failure_message(job, tail, dashboard_url, expectation):
    """Why a job that ended is a failure: Ray's status, error type and exit code, its message and the log tail."""
    submission_id = job.get("submission_id")
    details = [job.get("error_type")] if job.get("error_type") else []
    if job.get("driver_exit_code") is not None:
        details.append(f"exit code {job['driver_exit_code']}")
    detail = f" ({', '.join(details)})" if details else ""
    message = (
        f"Ray job {submission_id} ended {job.get('status')}{detail} instead of {expectation}. "
        f"Ray says: {first_line(job.get('message')) or 'nothing'}"
    )
    if tail:
        message += f"\nLast log lines:\n{tail}"
    return message + f"\nFull log: ray job logs {submission_id} --address {dashboard_url}"


def ended_job(client, name):
    """Why no job of ``name`` runs any more: the newest one's status, Ray's message and its log tail, as one message.

    None while one is PENDING or RUNNING, or when none was ever submitted.
    """
    jobs = client.list_jobs()
    named = jobs_named(jobs, name)
    if not named or active_jobs(jobs, name):
        return None
    job = named[-1]
    tail = logs_tail(client.logs(job["submission_id"])) if job.get("submission_id") else ""
    return job_failure_message(job, tail, client.base_url, "running the server")


def ended_job_watch(dashboard_url, name, token=None, validate_certs=True, opener=open_url):
    """A ``server_ended()`` for a gate: the message of :func:`ended_job`, or None.

    A dashboard that does not answer is no verdict: the gate goes on asking the server itself.
    """
    client = RayJobsClient(dashboard_url, token=token or None, validate_certs=validate_certs, opener=opener, timeout=10)

    def server_ended():
        try:
            return ended_job(client, name)
        except RayJobError:
            return None

    return server_ended


def _job_error(msg, job, tail, dashboard_url):
    return RayJobError(
        msg,
        submission_id=job.get("submission_id"),
        status=job.get("status"),
        status_message=job.get("message"),
        logs_tail=tail,
        log_command=log_command(job.get("submission_id"), dashboard_url),
    )


def check_job(client, job, wait_running, timeout, interval, dashboard_url, spec, settle_time=0, sleep=time.sleep):
    """Look at (and with ``wait_running`` wait for) the job; returns its last state, raises RayJobError on failure.

    With ``settle_time``, a job seen RUNNING is watched that many more seconds: an entrypoint that fails at once
    (a bad argument, a missing file) is RUNNING for a moment first.
    """
    submission_id = job["submission_id"]
    failing = TERMINAL if wait_running else ("STOPPED", "FAILED")

    def done(observed):
        status = observed.get("status")
        return status in failing or (status == "RUNNING" if wait_running else True)

    def get():
        return client.get_job(submission_id)

    job, _attempts, elapsed = poll(get, done, timeout if wait_running else 0, interval, sleep=sleep)
    status = job.get("status")
    if status in failing:
        tail = logs_tail(client.logs(submission_id))
        expectation = "RUNNING" if wait_running else "PENDING or RUNNING"
        raise _job_error(job_failure_message(job, tail, dashboard_url, expectation), job, tail, dashboard_url)
    if wait_running and status != "RUNNING":
        tail = logs_tail(client.logs(submission_id))
        raise _job_error(
            f"Ray job {submission_id} is still {status} after {elapsed:.0f}s (wait_running). Ray says: "
            f"{first_line(job.get('message')) or 'nothing'} It asks for "
            f"entrypoint_num_cpus={spec['entrypoint_num_cpus']}, entrypoint_num_gpus={spec['entrypoint_num_gpus']}, "
            f"entrypoint_resources={spec['entrypoint_resources']}: check free resources with `ray status`, and the "
            f"runtime_env setup in the log. Last log lines:\n{tail or '(empty)'}",
            job,
            tail,
            dashboard_url,
        )
    if wait_running and settle_time > 0:
        job, _attempts, _elapsed = poll(
            get,
            lambda observed: observed.get("status") in TERMINAL,
            settle_time,
            min(interval, settle_time),
            sleep=sleep,
        )
        if job.get("status") != "RUNNING":
            tail = logs_tail(client.logs(submission_id))
            expectation = f"staying RUNNING for {settle_time}s (settle_time)"
            raise _job_error(job_failure_message(job, tail, dashboard_url, expectation), job, tail, dashboard_url)
    return job


class HostProcesses:
    """This host's processes of jobs of a name (``list(name)``: ``{pid: submission id}``) and how to stop them
    (``stop(pids)``): where ray_job runs on the head, the leftovers of ended jobs are its to clean up."""

    def __init__(self, list_processes=job_processes, stop=None):
        self.list = list_processes
        self.stop = stop


def stop_orphans(result, host, name, keep_ids, check_mode):
    """Stop (or, in check mode, name) this host's processes of jobs of ``name`` other than ``keep_ids``; says so in
    the result's ``orphans`` and ``found``."""
    if host is None:
        return
    orphans = orphans_of(host.list(name), keep_ids)
    result["orphans"] = sorted(orphans)
    if not orphans:
        return
    message = orphans_message(orphans, name, check_mode)
    result["found"] = f"{result['found']} {message}" if result.get("found") else message
    result["changed"] = True
    if not check_mode:
        host.stop(sorted(orphans))


def active_ids(jobs, name):
    return {job.get("submission_id") for job in active_jobs(jobs, name)}


def ensure_present(
    client,
    name,
    spec,
    check_mode,
    wait_running,
    timeout,
    interval,
    settle_time=0,
    now=time.time,
    sleep=time.sleep,
    host=None,
):
    """Keep one active job of ``name`` running ``spec``; returns the module result (with a ``diff``).

    ``settle_time`` applies to a job submitted by this call only: a kept job has been running since an earlier run.
    With ``host`` (a :class:`HostProcesses`), this host's processes of other jobs of ``name`` are stopped first.
    """
    digest = config_hash(spec)
    jobs = client.list_jobs()
    kept, to_stop = plan_present(jobs, name, digest)
    before_job = kept or (to_stop[-1] if to_stop else None)
    result = {
        "changed": bool(to_stop) or kept is None,
        "config_hash": digest,
        "replaced": [job["submission_id"] for job in to_stop],
        "diff": {"before": job_view(before_job)},
    }
    found = failed_job_found(client, jobs, name) if kept is None else None
    if found:
        result["found"] = found
    if check_mode:
        stop_orphans(result, host, name, active_ids(jobs, name), check_mode)
        result.update(
            submission_id=kept["submission_id"] if kept else None,
            status=kept.get("status") if kept else None,
            status_message=kept.get("message") if kept else None,
        )
        result["diff"]["after"] = job_view(kept) or {
            "submission_id": None,
            "entrypoint": spec["entrypoint"],
            "hash": digest,
            "status": "PENDING",
        }
        result["log_command"] = log_command(result["submission_id"], client.base_url)
        return result

    result["replaced"], result["warnings"] = stop_jobs(client, to_stop, timeout, interval, sleep=sleep)
    stop_orphans(result, host, name, {kept["submission_id"]} if kept else set(), check_mode)
    if kept is None:
        submission_id = make_submission_id(name, digest, now(), {job.get("submission_id") for job in jobs})
        answer = submit_when_agent_ready(
            client, submit_body(spec, name, digest, submission_id), timeout, interval, sleep
        )
        submission_id = answer.get("submission_id", submission_id) if isinstance(answer, dict) else submission_id
        job = {"submission_id": submission_id}
    else:
        job = kept
    result["log_command"] = log_command(job["submission_id"], client.base_url)
    try:
        job = check_job(
            client,
            job,
            wait_running,
            timeout,
            interval,
            client.base_url,
            spec,
            settle_time=settle_time if kept is None else 0,
            sleep=sleep,
        )
    except RayJobError as error:
        error.result = dict(result, **error.result)
        error.result["diff"]["after"] = {
            "submission_id": job["submission_id"],
            "entrypoint": spec["entrypoint"],
            "hash": digest,
            "status": error.result.get("status"),
        }
        raise
    result.update(submission_id=job["submission_id"], status=job.get("status"), status_message=job.get("message"))
    result["diff"]["after"] = job_view(job)
    return result


def jobs_or_none_without_a_head(client, host):
    """``(jobs, why the head was not asked)``: with ``host``, a dashboard that cannot be reached has no jobs to stop,
    while what its jobs left running on this host (a vLLM server outliving its killed head) still goes."""
    try:
        return client.list_jobs(), None
    except RayJobError as error:
        if host is None or getattr(error, "http_status", None) is not None:
            raise
        return [], error.msg


def ensure_absent(client, name, check_mode, timeout, interval, sleep=time.sleep, host=None):
    """Stop every active job of ``name`` (and, with ``host``, this host's processes of its ended jobs, also when
    the head is gone)."""
    jobs, unreachable = jobs_or_none_without_a_head(client, host)
    to_stop = plan_absent(jobs, name)
    result = {
        "changed": bool(to_stop),
        "config_hash": None,
        "submission_id": None,
        "status": None,
        "status_message": None,
        "log_command": None,
        "replaced": [job["submission_id"] for job in to_stop],
        "diff": {"before": job_view(to_stop[-1] if to_stop else None), "after": {}},
    }
    if not check_mode:
        result["replaced"], result["warnings"] = stop_jobs(client, to_stop, timeout, interval, sleep=sleep)
    if unreachable:
        result["ray_unreachable"] = unreachable
    stop_orphans(result, host, name, active_ids(jobs, name) if check_mode else set(), check_mode)
    return result
