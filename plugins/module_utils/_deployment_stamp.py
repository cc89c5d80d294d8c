# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The record a full site.yml run leaves on each node, and the one look a re-run takes to see whether the deployment
still stands as that run left it.

A full run ends by recording, per node: the digest of its settings and of the collection, a fingerprint of each file
the roles manage, and on the head the Ray nodes that were alive, the vLLM Ray job and where vLLM answers. A re-run
looks once: the same digest, every fingerprint the same, the same Ray nodes alive, the same job running and vLLM
answering a chat completion. Anything else is a difference, named, and the run goes the full way.

Pure functions; the module hands in what it observed (files through ``stat``/``open``, Ray and vLLM answers).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat

from ansible_collections.llmops.ray_vllm.plugins.module_utils._ray_auth import read_secret
from ansible_collections.llmops.ray_vllm.plugins.module_utils._ray_job import jobs_named
from ansible_collections.llmops.ray_vllm.plugins.module_utils._ray_node import stat_number

STAMP_VERSION = 1
# Files this small are hashed too (keys, tokens, target files): an edit that keeps size and mtime is still seen.
# Larger ones (model weights) are known by size and mtime, as rsync knows them.
HASHED_UP_TO_BYTES = 1 << 20
COLLECTION_FOLDERS = ("meta", "playbooks", "plugins", "roles")


# --- the settings' digest (controller side) ----------------------------------------------------------------------


def collection_digest(root):
    """sha256 over the collection's own files (its roles, playbooks, plugins and meta), by relative path."""
    digest = hashlib.sha256()
    for folder in COLLECTION_FOLDERS:
        for directory, subfolders, names in os.walk(os.path.join(root, folder)):
            subfolders[:] = sorted(name for name in subfolders if name != "__pycache__")
            for name in sorted(names):
                path = os.path.join(directory, name)
                digest.update(os.path.relpath(path, root).encode("utf-8") + b"\0")
                with open(path, "rb") as stream:
                    digest.update(hashlib.sha256(stream.read()).digest())
    return digest.hexdigest()


def settings_digest(values, collection):
    """sha256 of the chosen variables' values (sorted by name, as JSON; unknown types as text) and the collection's
    digest: equal only when the run would be given the same settings by the same code."""
    text = json.dumps({"variables": values, "collection": collection}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def chosen_names(names, patterns):
    """The variable names that match any of the regular expressions ``patterns``, sorted."""
    compiled = [re.compile(pattern) for pattern in patterns]
    return sorted(name for name in names if any(regex.search(name) for regex in compiled))


# --- fingerprints of the managed files (node side) --------------------------------------------------------------


def file_print(path, status, read=None):
    """A regular file's size and mtime, and its sha256 when it is small (``read`` gives its bytes)."""
    entry = {"size": status.st_size, "mtime_ns": status.st_mtime_ns}
    if read is not None and status.st_size <= HASHED_UP_TO_BYTES:
        entry["sha256"] = hashlib.sha256(read(path)).hexdigest()
    return entry


def read_bytes(path):
    with open(path, "rb") as stream:
        return stream.read()


def folder_print(root, walk=os.walk, lstat=os.lstat):
    """Every file under a folder, by relative path, with its size and mtime (weights are not read again)."""
    files = {}
    for directory, subfolders, names in walk(root):
        subfolders.sort()
        for name in sorted(names):
            path = os.path.join(directory, name)
            files[os.path.relpath(path, root)] = file_print(path, lstat(path))
    return {"folder": files}


def fingerprint(path, lstat=os.lstat, walk=os.walk, read=read_bytes):
    """What a later look compares of one managed path; ``{"missing": True}`` when there is nothing there."""
    try:
        status = lstat(path)
        if stat.S_ISLNK(status.st_mode):
            # A managed path may be a link (a model folder on another disk): it is known by what it points to.
            status = os.stat(path)
    except FileNotFoundError:
        return {"missing": True}
    if stat.S_ISDIR(status.st_mode):
        return folder_print(path, walk=walk, lstat=lstat)
    return file_print(path, status, read)


def fingerprints(paths, **observers):
    return {path: fingerprint(path, **observers) for path in sorted(set(paths))}


def folder_differences(path, recorded, seen):
    """What changed in a folder since the record: files missing, new and changed, a few of each by name."""
    missing = sorted(set(recorded) - set(seen))
    added = sorted(set(seen) - set(recorded))
    changed = sorted(name for name in set(recorded) & set(seen) if recorded[name] != seen[name])
    parts = [
        "%s %s (%s)" % (len(names), what, ", ".join(names[:3]) + (", ..." if len(names) > 3 else ""))
        for what, names in (("missing", missing), ("new", added), ("changed", changed))
        if names
    ]
    return ["the folder %s changed since the last full run: %s" % (path, "; ".join(parts))] if parts else []


def file_differences(recorded, seen):
    """One line per managed path that is not as the last full run left it."""
    lines = []
    for path in sorted(set(recorded) | set(seen)):
        before, now = recorded.get(path), seen.get(path)
        if before == now:
            continue
        if now is None or now.get("missing"):
            lines.append("%s is missing (it was there after the last full run)" % path)
        elif "folder" in before and "folder" in now:
            lines.extend(folder_differences(path, before["folder"], now["folder"]))
        else:
            lines.append("%s changed since the last full run" % path)
    return lines


# --- this node's Ray processes (every node) ------------------------------------------------------------------------


def process_start(pid, proc_root="/proc"):
    """A process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat): with the pid, who it is."""
    return stat_number(pid, 22, proc_root)


def raylet_print(temp_dir, find, start=process_start):
    """The raylet of the Ray node whose temp dir is ``temp_dir`` (``find`` gives ``(pids, raylet pid)``, as
    _ray_node.node_processes does): its pid and start time, or None when it does not run. Ray's own view of a killed
    node lags by its health checks; the process is gone at once."""
    _pids, raylet = find(temp_dir)
    if raylet is None:
        return None
    return {"temp_dir": temp_dir, "pid": raylet, "start": start(raylet)}


def raylet_differences(recorded, seen):
    if recorded is None or seen == recorded:
        return []
    if seen is None:
        return [
            "the Ray node of %s no longer runs here (its raylet, pid %s, is gone)"
            % (recorded["temp_dir"], recorded["pid"])
        ]
    return [
        "the Ray node of %s was started again since the last full run (raylet pid %s, was %s)"
        % (recorded["temp_dir"], seen["pid"], recorded["pid"])
    ]


# --- Ray nodes, the vLLM job and vLLM's answer (head side) --------------------------------------------------------


def alive_node_ids(observation):
    """The IDs of the nodes Ray reports ALIVE, sorted; None when Ray could not be asked or gave no per-node facts
    (its state API did not answer: an empty list would compare equal whatever restarted)."""
    nodes = observation.get("node_details") or []
    if observation.get("source_error") or not nodes:
        return None
    return sorted(node["node_id"] for node in nodes if node.get("state") == "ALIVE")


def ray_differences(recorded_ids, observation):
    """The Ray nodes that left or came since the record (a restarted node comes back with a new ID)."""
    seen = alive_node_ids(observation)
    if seen is None:
        error = observation.get("source_error") or {
            "where": "its state API",
            "detail": "; ".join(observation.get("warnings") or []) or "no per-node facts",
        }
        return ["Ray does not answer at %s: %s" % (error.get("where"), error.get("detail"))]
    gone, new = sorted(set(recorded_ids) - set(seen)), sorted(set(seen) - set(recorded_ids))
    lines = []
    if gone:
        lines.append("Ray nodes alive after the last full run are gone: %s" % ", ".join(gone))
    if new:
        lines.append("Ray nodes are alive that were not after the last full run: %s" % ", ".join(new))
    return lines


def running_job(jobs, name):
    """The submission ID of the newest RUNNING job of ``name`` (as ray_job names it), or None."""
    running = [job for job in jobs_named(jobs, name) if job.get("status") == "RUNNING"]
    return running[-1]["submission_id"] if running else None


def job_differences(name, recorded_id, seen_id):
    if seen_id == recorded_id:
        return []
    if seen_id is None:
        return ["the Ray job %s (%s) no longer runs" % (name, recorded_id)]
    return ["the Ray job %s is %s now, not %s as the last full run left it" % (name, seen_id, recorded_id)]


def answer_differences(result):
    """Nothing when vLLM answered the completion; else what the probe saw."""
    if result.get("ready"):
        return []
    return ["vLLM does not answer as it did: %s" % (result.get("msg") or result.get("status") or "no answer")]


# --- the record ---------------------------------------------------------------------------------------------------


def new_stamp(digest, files, head=None, controller_files=(), raylet=None):
    """The record a full run leaves: ``head`` holds ray (dashboard_url, token_file, node_ids) and vllm (url, model,
    api_key_file, ...) where this node is the head; ``raylet`` this node's Ray node (raylet_print)."""
    stamp = {"version": STAMP_VERSION, "digest": digest, "files": files, "controller_files": list(controller_files)}
    if head:
        stamp["head"] = head
    if raylet:
        stamp["raylet"] = raylet
    return stamp


def parse_stamp(text, version=STAMP_VERSION):
    """The record in ``text``, or None where it is not one of ``version`` (a full run writes it again)."""
    try:
        stamp = json.loads(text)
    except ValueError:
        return None
    if not isinstance(stamp, dict) or stamp.get("version") != version:
        return None
    return stamp


def settings_differences(stamp, digest, where="on this node"):
    if stamp is None:
        return ["no record of a full run %s" % where]
    if stamp.get("digest") != digest:
        return ["the settings or the collection changed since the last full run"]
    return []


def head_differences(head, observe):
    """What differs on the head: Ray's nodes, then the vLLM job, then vLLM's answer; the first that differs ends the
    look (a full run follows either way). ``observe`` asks Ray and vLLM (a HeadObserver)."""
    lines = ray_differences(head["node_ids"], observe.ray())
    if lines:
        return lines
    if head.get("job_name"):
        lines = job_differences(head["job_name"], head.get("job_id"), observe.job(head["job_name"]))
        if lines:
            return lines
    return answer_differences(observe.answer())


def look(stamp, digest, observe_files, observe_head, observe_raylet=lambda temp_dir: None):
    """``(differences, answer)``: nothing differs when the node stands as the last full run left it.

    Cheap reads first: the settings, the files, this node's raylet (``observe_raylet``), then the head's Ray, job and
    vLLM (``observe_head`` makes a HeadObserver for the recorded head)."""
    lines = settings_differences(stamp, digest)
    if lines:
        return lines, None
    lines = file_differences(stamp["files"], observe_files(list(stamp["files"])))
    recorded_raylet = stamp.get("raylet")
    if not lines and recorded_raylet:
        lines = raylet_differences(recorded_raylet, observe_raylet(recorded_raylet["temp_dir"]))
    if lines or "head" not in stamp:
        return lines, None
    observer = observe_head(stamp["head"])
    lines = head_differences(stamp["head"], observer)
    return lines, (None if lines else observer.answer().get("completion"))


class HeadObserver:
    """Asks the head's Ray dashboard and vLLM, each at most once. ``ray_source``(url, token), ``jobs_source``(url,
    token) and ``vllm_source``(**kwargs) are the transports (observe_dashboard, the Jobs API, _vllm_health.observe)."""

    def __init__(self, head, ray_source, jobs_source, vllm_source, read=read_secret):
        self.head = head
        self.sources = dict(ray=ray_source, jobs=jobs_source, vllm=vllm_source)
        self.read = read
        self.seen = {}

    def _once(self, what, ask):
        if what not in self.seen:
            self.seen[what] = ask()
        return self.seen[what]

    def _ray_token(self):
        return self._once("token", lambda: self.read(self.head.get("ray_token_file")))

    def ray(self):
        return self._once("ray", lambda: self.sources["ray"](self.head["dashboard_url"], self._ray_token()))

    def job(self, name):
        return self._once(
            "job", lambda: running_job(self.sources["jobs"](self.head["dashboard_url"], self._ray_token()), name)
        )

    def answer(self):
        head = self.head
        return self._once(
            "answer",
            lambda: self.sources["vllm"](
                url=head["vllm_url"],
                model=head["model"],
                api_key=self.read(head.get("api_key_file")) or None,
                prompt=head["prompt"],
                max_tokens=head["max_tokens"],
                tls={"ca_path": head["ca_path"]} if head.get("ca_path") else None,
            ),
        )


def recorded_head(head, observer):
    """``(the head's part of a record, why there is none)``: where to ask, and the Ray nodes alive and the vLLM job
    running now; None with the reason when Ray does not answer (no record is left then: the next run goes the full
    way)."""
    observation = observer.ray()
    node_ids = alive_node_ids(observation)
    if node_ids is None:
        return None, ray_differences([], observation)[0]
    recorded = dict(head, node_ids=node_ids)
    if head.get("job_name"):
        recorded["job_id"] = observer.job(head["job_name"])
    return recorded, None


def stamp_text(stamp):
    return json.dumps(stamp, indent=1, sort_keys=True) + "\n"


def look_differences(look_result, exists=os.path.exists):
    """What one node's look found different, the controller's files included; a node that did not look differs."""
    if "current" not in (look_result or {}):
        return ["no look (ray_vllm_fast_rerun is off)"]
    missing = [path for path in look_result.get("controller_files") or [] if not exists(path)]
    return list(look_result.get("differences") or []) + [
        "the controller's file %s is missing" % path for path in missing
    ]


def answer_lines(look_result):
    """The endpoint, the question and vLLM's answer, where this node's look asked vLLM."""
    endpoint, answer = look_result.get("endpoint"), look_result.get("answer")
    if not (endpoint and answer):
        return []
    return [
        "Endpoint: %s (model %s)" % (endpoint.get("endpoint") or endpoint["url"], endpoint["model"]),
        "Q: %s" % endpoint.get("question", ""),
        "A: %s (%s s)" % ((answer.get("text") or "").strip(), answer.get("latency_s")),
    ]


def summarize_look(look_result, differing_hosts=(), exists=os.path.exists):
    """``{"standing": bool, "lines": [...]}`` for one node: standing when its look found nothing different and no
    other node's did (``differing_hosts``); the lines say why, and on the head show the endpoint and its answer."""
    differences = look_differences(look_result, exists)
    if differences:
        return {
            "standing": False,
            "lines": ["A full run follows; this node differs from the last full run's record:"] + differences,
        }
    if differing_hosts:
        return {
            "standing": False,
            "lines": [
                "This node stands as the last full run left it; a full run follows for what differs on %s."
                % ", ".join(sorted(differing_hosts))
            ],
        }
    return {
        "standing": True,
        "lines": [
            "This node stands as the last full run left it: the same settings and collection, the files the roles "
            "manage unchanged%s. The other plays leave it out (ray_vllm_fast_rerun=false runs them all)."
            % (", the same Ray nodes alive and vLLM answering" if look_result.get("answer") else "")
        ]
        + answer_lines(look_result),
    }
