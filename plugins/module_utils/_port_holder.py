# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""Who listens on a TCP port of this host, read from /proc: the listening sockets (net/tcp, net/tcp6), the
processes whose descriptors hold them, and the Ray job each one belongs to (RAY_JOB_CONFIG_JSON_ENV_VAR).

A serving port is ours to take over when it is held by our running job, by our Serve application, or by an orphan
(a process of an ended job of ours, such as a vLLM server whose Ray head was killed: ray_job's stop_orphans stops
it before it submits). Anything else is another program's, and a run must not start beside it.
"""

from __future__ import annotations

import os

from ansible_collections.llmops.ray_vllm.plugins.module_utils._ray_job import RayJobError, active_ids, job_of_process
from ansible_collections.llmops.ray_vllm.plugins.module_utils._serve_app import ServeAppError

LISTEN_STATE = "0A"
# A command line may carry another program's secrets (a --password, a token): only its program and the words that
# name what it runs are shown.
COMMAND_WORDS = 3


def listening_inodes(port, proc_root="/proc"):
    """The socket inodes listening on ``port`` (any address, IPv4 or IPv6) in this network namespace."""
    inodes = set()
    for table in ("net/tcp", "net/tcp6"):
        try:
            with open(os.path.join(proc_root, table)) as handle:
                rows = handle.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) < 10 or fields[3] != LISTEN_STATE:
                continue
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def _read(path):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return None


def socket_owners(inodes, proc_root="/proc"):
    """The pids whose open descriptors include one of the sockets ``inodes``."""
    links = {f"socket:[{inode}]" for inode in inodes}
    if not links:
        return []
    owners = []
    for entry in os.listdir(proc_root):
        if not entry.isdigit():
            continue
        fd_dir = os.path.join(proc_root, entry, "fd")
        try:
            descriptors = os.listdir(fd_dir)
        except OSError:
            continue
        if any(_link(os.path.join(fd_dir, fd)) in links for fd in descriptors):
            owners.append(int(entry))
    return sorted(owners)


def _link(path):
    try:
        return os.readlink(path)
    except OSError:
        return None


def program_words(cmdline):
    """The program and what it runs (``python3 -m http.server``), from a raw /proc cmdline: no option values."""
    words = [word.decode(errors="replace") for word in cmdline.split(b"\0") if word]
    shown = words[:1]
    for word in words[1:]:
        if len(shown) == COMMAND_WORDS or (word.startswith("-") and word != "-m"):
            break
        shown.append(word)
    return " ".join(shown)


def process_view(pid, proc_root="/proc"):
    """``{pid, command, job}`` of one process: its program (program_words) and ``[name, submission id]`` of the
    Ray job whose environment it carries, or None."""
    job = job_of_process(pid, proc_root)
    command = program_words(_read(os.path.join(proc_root, str(pid), "cmdline")) or b"")
    return {"pid": pid, "command": command, "job": list(job) if job else None}


def listeners(port, proc_root="/proc"):
    """``(listening, [process_view, ...])`` of ``port`` on this host."""
    inodes = listening_inodes(port, proc_root)
    return bool(inodes), [process_view(pid, proc_root) for pid in socket_owners(inodes, proc_root)]


class RayLookups:
    """What the Ray head says, asked only when a holder needs it: the active jobs of a name, and the port each
    Serve application's proxy serves on. ``client`` is a ServeClient (or None without a dashboard)."""

    def __init__(self, client):
        self.client = client
        self.unanswered = []

    def active_job_ids(self, name):
        try:
            return active_ids(self.client.list_jobs(), name) if self.client else set()
        except RayJobError as error:
            self.unanswered.append(str(error))
            return set()

    def serve_port(self, app):
        if not self.client or not app:
            return None
        try:
            details = self.client.details()
        except (RayJobError, ServeAppError) as error:
            self.unanswered.append(str(error))
            return None
        if app not in (details.get("applications") or {}):
            return None
        return int((details.get("http_options") or {}).get("port") or 0) or None


def classify(port, listening, processes, job_name, app, ray):
    """``(holder, submission id or None)``: ``free``, ``job``, ``serve``, ``orphan`` or ``other``. ``ray`` is a
    RayLookups."""
    if not listening:
        return "free", None
    ours = [view["job"][1] for view in processes if view["job"] and view["job"][0] == job_name]
    if ours:
        running = ray.active_job_ids(job_name)
        kept = [sid for sid in ours if sid in running]
        return ("job", kept[0]) if kept else ("orphan", ours[0])
    if ray.serve_port(app) == port:
        return "serve", None
    return "other", None


def holder_message(port, holder, submission_id, processes, names):
    """One sentence on who holds ``port``; ``names`` has ``job_name`` and ``app``."""
    pids = ", ".join(str(view["pid"]) for view in processes) or "unknown"
    where = f"Port {port}"
    if holder == "free":
        return f"{where} is free."
    if holder == "job":
        return f"{where} is held by the running Ray job {submission_id} of {names['job_name']} (pid {pids})."
    if holder == "serve":
        return f"{where} is held by the Ray Serve application {names['app']} (its proxy)."
    if holder == "orphan":
        return (
            f"{where} is held by pid {pids} of the ended Ray job {submission_id} of {names['job_name']}: a server "
            "left running without its job (its Ray head died, or the job was stopped without it). A run stops it "
            "before it starts the server again."
        )
    commands = "; ".join(f"pid {view['pid']}: {view['command'] or '?'}" for view in processes)
    return f"{where} is already in use by another process ({commands or 'its owner cannot be read'})."


def observe(port, job_name, app, ray, proc_root="/proc"):
    """The module's result: ``holder``, ``submission_id``, ``processes`` and ``msg``."""
    listening, processes = listeners(port, proc_root)
    holder, submission_id = classify(port, listening, processes, job_name, app, ray)
    names = {"job_name": job_name, "app": app}
    return {
        "changed": False,
        "holder": holder,
        "submission_id": submission_id,
        "processes": processes,
        "msg": holder_message(port, holder, submission_id, processes, names),
        "ray_unanswered": ray.unanswered,
    }
