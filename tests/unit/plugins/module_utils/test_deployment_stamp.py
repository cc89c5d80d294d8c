# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""_deployment_stamp: the record a full run leaves and the one look a re-run takes, on real files here and on the
nodes and jobs a real Ray 2.60 dashboard listed (tests/fixtures/ray, tests/fixtures/ray_jobs)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ansible_collections.llmops.ray_vllm.plugins.module_utils import _deployment_stamp as stamps
from ansible_collections.llmops.ray_vllm.plugins.module_utils._ray_status import nodes_from_state_api

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures"
RAY = FIXTURES / "ray" / "2.60.0-local-head1cpu-worker1cpu1gpu"
HEAD_ID = "078b18378b03be9c4330460bca578b2d5fb103fb327a0b5cd7189ab9"
WORKER_ID = "6f370cb1a5051d4ad3cc6f8d4b17b23f0338e69efca339d7f75fede2"
RUNNING_ID = "vllm-aaaaaaaaaaaa-1795862911"
READY = {"ready": True, "status": "ready", "completion": {"text": "Hello!", "latency_s": 0.41}}


def recorded_json(path):
    assert path.is_file(), f"missing recording {path} (see the README.md beside it)"
    return json.loads(path.read_text())


def nodes_seen(step):
    """What the dashboard told of Ray's nodes at a recorded step (idle, worker-killed, ...)."""
    rows = nodes_from_state_api(recorded_json(RAY / f"{step}-dashboard-v0-nodes-detail.json"))
    return {"source_error": None, "node_details": rows}


def jobs_seen(name):
    return recorded_json(FIXTURES / "ray_jobs" / f"{name}.json")["json"]


def refuse(path):
    raise AssertionError(f"{path} was read")


def head(**changes):
    recorded = dict(
        dashboard_url="http://127.0.0.1:8265",
        ray_token_file="/etc/llmops/ray-auth-token",
        vllm_url="http://127.0.0.1:8000",
        ca_path=None,
        endpoint=None,
        model="smollm2-135m-instruct",
        api_key_file="/etc/llmops/vllm-api-key",
        prompt="Say hello.",
        max_tokens=16,
        job_name="vllm",
        node_ids=[HEAD_ID, WORKER_ID],
        job_id=RUNNING_ID,
    )
    return dict(recorded, **changes)


FILES = {"/etc/llmops/vllm-api-key": {"size": 10, "mtime_ns": 1, "sha256": "ab"}}


class Sources:
    """Ray's dashboard, the Jobs API and vLLM as a HeadObserver asks them: set answers, every ask counted."""

    def __init__(self, ray=None, jobs=None, answer=None):
        self.answers = dict(ray=ray or nodes_seen("idle"), jobs=jobs or jobs_seen("list-one-running"))
        self.answers["vllm"] = answer or READY
        self.asked = []

    def ray(self, url, token):
        self.asked.append(("ray", url, token))
        return self.answers["ray"]

    def jobs(self, url, token):
        self.asked.append(("jobs", url, token))
        return self.answers["jobs"]

    def vllm(self, **asked):
        self.asked.append(("vllm", asked))
        return self.answers["vllm"]

    def observer(self, recorded_head, read=lambda path: ""):
        return stamps.HeadObserver(recorded_head, self.ray, self.jobs, self.vllm, read=read)

    def kinds(self):
        return [entry[0] for entry in self.asked]


def same_files(paths):
    return {path: FILES[path] for path in paths}


def no_files(paths):
    raise AssertionError("the files were looked at")


def no_head(recorded_head):
    raise AssertionError("the head was asked")


# --- the settings' digest ------------------------------------------------------------------------------------------


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_collection_digest_follows_the_collections_own_files_by_path_and_content(tmp_path):
    write(tmp_path / "roles" / "r" / "tasks" / "main.yml", "- ping:\n")
    write(tmp_path / "plugins" / "modules" / "m.py", "x = 1\n")
    write(tmp_path / "plugins" / "modules" / "__pycache__" / "m.pyc", "compiled")
    write(tmp_path / "tests" / "test_m.py", "def test(): pass\n")
    first = stamps.collection_digest(str(tmp_path))
    write(tmp_path / "plugins" / "modules" / "__pycache__" / "m.pyc", "compiled again")
    write(tmp_path / "tests" / "test_m.py", "def test(): assert 1\n")
    assert stamps.collection_digest(str(tmp_path)) == first
    write(tmp_path / "roles" / "r" / "tasks" / "main.yml", "- ping: {}\n")
    edited = stamps.collection_digest(str(tmp_path))
    assert edited != first
    os.rename(tmp_path / "plugins" / "modules" / "m.py", tmp_path / "plugins" / "modules" / "n.py")
    assert stamps.collection_digest(str(tmp_path)) != edited


def test_settings_digest_changes_with_a_value_or_the_collection_not_with_the_order():
    digest = stamps.settings_digest({"a": 1, "b": [1, 2]}, "c1")
    assert stamps.settings_digest({"b": [1, 2], "a": 1}, "c1") == digest
    assert stamps.settings_digest({"a": 2, "b": [1, 2]}, "c1") != digest
    assert stamps.settings_digest({"a": 1, "b": [1, 2]}, "c2") != digest


def test_chosen_names_are_searched_by_each_pattern_and_sorted():
    names = ["vllm_serve_port", "ansible_host", "my_vllm_serve_x", "ray_cluster_port", "ansible_hostname"]
    assert stamps.chosen_names(names, ["^vllm_serve_", "ray_cluster", "^ansible_host$"]) == [
        "ansible_host",
        "ray_cluster_port",
        "vllm_serve_port",
    ]


# --- fingerprints of the managed files -----------------------------------------------------------------------------


def test_a_missing_path_is_fingerprinted_as_missing_and_named_so(tmp_path):
    path = str(tmp_path / "vllm-api-key")
    assert stamps.fingerprint(path) == {"missing": True}
    assert stamps.file_differences({path: FILES["/etc/llmops/vllm-api-key"]}, {path: {"missing": True}}) == [
        "%s is missing (it was there after the last full run)" % path
    ]


def test_a_small_file_edited_keeping_its_size_and_mtime_differs_by_its_sha256(tmp_path):
    key = tmp_path / "vllm-api-key"
    key.write_text("key-one")
    before = stamps.fingerprint(str(key))
    key.write_text("key-two")
    os.utime(key, ns=(before["mtime_ns"], before["mtime_ns"]))
    after = stamps.fingerprint(str(key))
    assert (after["size"], after["mtime_ns"]) == (before["size"], before["mtime_ns"])
    assert stamps.file_differences({str(key): before}, {str(key): after}) == [
        "%s changed since the last full run" % key
    ]


def test_a_file_over_the_hashed_size_is_known_by_size_and_mtime_without_being_read(tmp_path):
    big, edge = tmp_path / "model.safetensors", tmp_path / "edge.bin"
    with open(big, "wb") as stream:
        stream.truncate(stamps.HASHED_UP_TO_BYTES + 1)
    with open(edge, "wb") as stream:
        stream.truncate(stamps.HASHED_UP_TO_BYTES)
    assert sorted(stamps.fingerprint(str(big), read=refuse)) == ["mtime_ns", "size"]
    assert "sha256" in stamps.fingerprint(str(edge))


def test_a_folder_names_its_missing_new_and_changed_files_without_reading_them(tmp_path):
    model = tmp_path / "model"
    for name in ("a.json", "b.json", "c.safetensors", "sub/d.json"):
        write(model / name, "0123")
    before = stamps.fingerprint(str(model), read=refuse)
    (model / "a.json").unlink()
    write(model / "e.json", "new")
    write(model / "c.safetensors", "longer now")
    after = stamps.fingerprint(str(model), read=refuse)
    assert sorted(before["folder"]) == ["a.json", "b.json", "c.safetensors", os.path.join("sub", "d.json")]
    assert stamps.file_differences({str(model): before}, {str(model): after}) == [
        "the folder %s changed since the last full run: 1 missing (a.json); 1 new (e.json); 1 changed (c.safetensors)"
        % model
    ]


def test_a_managed_path_linking_to_a_folder_is_known_by_that_folder(tmp_path):
    write(tmp_path / "disk" / "model" / "config.json", "{}")
    (tmp_path / "model").symlink_to(tmp_path / "disk" / "model")
    before = stamps.fingerprint(str(tmp_path / "model"))
    assert before == stamps.fingerprint(str(tmp_path / "disk" / "model"))
    write(tmp_path / "disk" / "model" / "weights.safetensors", "w")
    assert stamps.file_differences({"/m": before}, {"/m": stamps.fingerprint(str(tmp_path / "model"))}) == [
        "the folder /m changed since the last full run: 1 new (weights.safetensors)"
    ]


def test_a_managed_link_to_nothing_is_missing(tmp_path):
    (tmp_path / "vllm-api-key").symlink_to(tmp_path / "gone")
    assert stamps.fingerprint(str(tmp_path / "vllm-api-key")) == {"missing": True}


def test_a_folder_names_three_files_of_a_kind_then_dots():
    recorded = {"f%d" % index: {"size": 1, "mtime_ns": 1} for index in range(5)}
    assert stamps.folder_differences("/m", recorded, {}) == [
        "the folder /m changed since the last full run: 5 missing (f0, f1, f2, ...)"
    ]


def test_a_file_that_became_a_folder_changed_and_an_equal_one_did_not():
    recorded = {"/x": {"size": 1, "mtime_ns": 2}, "/y": {"size": 1, "mtime_ns": 2}}
    seen = {"/x": {"folder": {}}, "/y": {"size": 1, "mtime_ns": 2}}
    assert stamps.file_differences(recorded, seen) == ["/x changed since the last full run"]


def test_fingerprints_take_each_path_once_sorted(tmp_path):
    paths = [str(tmp_path / "b"), str(tmp_path / "a"), str(tmp_path / "b")]
    assert list(stamps.fingerprints(paths)) == [str(tmp_path / "a"), str(tmp_path / "b")]


# --- Ray's nodes, the vLLM job, vLLM's answer ----------------------------------------------------------------------


def test_alive_node_ids_are_those_a_real_dashboard_listed_alive():
    assert stamps.alive_node_ids(nodes_seen("idle")) == [HEAD_ID, WORKER_ID]
    assert stamps.alive_node_ids(nodes_seen("worker-killed")) == [HEAD_ID]


def test_a_restarted_node_is_gone_under_its_old_id_and_new_under_its_new_one():
    old_worker = "0" * 56
    assert stamps.ray_differences([HEAD_ID, old_worker], nodes_seen("idle")) == [
        "Ray nodes alive after the last full run are gone: %s" % old_worker,
        "Ray nodes are alive that were not after the last full run: %s" % WORKER_ID,
    ]
    assert stamps.ray_differences([HEAD_ID, WORKER_ID], nodes_seen("idle")) == []


def test_ray_not_answering_is_named_with_where_and_why():
    error = {"kind": "http_unreachable", "where": "http://127.0.0.1:8265/api/cluster_status", "detail": "refused"}
    observation = {"source_error": error, "node_details": []}
    assert stamps.alive_node_ids(observation) is None
    assert stamps.ray_differences([HEAD_ID], observation) == [
        "Ray does not answer at http://127.0.0.1:8265/api/cluster_status: refused"
    ]


def test_ray_without_per_node_facts_differs_rather_than_comparing_no_nodes_with_none():
    # The status answered but the state API did not: an empty list would equal an empty record whatever restarted.
    observation = {"node_details": [], "warnings": ["no per-node facts from http://h:8265/api/v0/nodes: HTTP 500"]}
    assert stamps.alive_node_ids(observation) is None
    assert stamps.ray_differences([], observation) == [
        "Ray does not answer at its state API: no per-node facts from http://h:8265/api/v0/nodes: HTTP 500"
    ]


def test_running_job_is_the_running_submission_of_that_name_in_a_real_list():
    assert stamps.running_job(jobs_seen("list-one-running"), "vllm") == RUNNING_ID
    assert stamps.running_job(jobs_seen("list-one-running"), "other") is None
    assert stamps.running_job(jobs_seen("list-after"), "vllm") is None  # stopped there


def test_running_job_is_the_newest_of_two_running():
    job = jobs_seen("list-one-running")[0]
    newer = dict(job, submission_id="vllm-bbbbbbbbbbbb-1795870000", start_time=job["start_time"] + 1)
    assert stamps.running_job([newer, job], "vllm") == newer["submission_id"]


def test_a_resubmitted_or_gone_job_is_named():
    assert stamps.job_differences("vllm", RUNNING_ID, RUNNING_ID) == []
    assert stamps.job_differences("vllm", RUNNING_ID, "vllm-b-2") == [
        "the Ray job vllm is vllm-b-2 now, not %s as the last full run left it" % RUNNING_ID
    ]
    assert stamps.job_differences("vllm", RUNNING_ID, None) == ["the Ray job vllm (%s) no longer runs" % RUNNING_ID]


def test_vllm_not_ready_is_named_by_its_message_or_status():
    assert stamps.answer_differences(READY) == []
    assert stamps.answer_differences({"ready": False, "status": "no_answer", "msg": "Expected vLLM"}) == [
        "vLLM does not answer as it did: Expected vLLM"
    ]
    assert stamps.answer_differences({"ready": False, "status": "no_answer"}) == [
        "vLLM does not answer as it did: no_answer"
    ]


# --- the record ----------------------------------------------------------------------------------------------------


def test_a_record_reads_back_as_written_and_a_worker_record_has_no_head():
    record = stamps.new_stamp("d1", FILES, head(), ["/root/.cache/llmops/key"])
    assert stamps.parse_stamp(stamps.stamp_text(record)) == record
    assert "head" not in stamps.new_stamp("d1", FILES)


def test_a_record_of_another_version_or_not_a_record_is_none():
    assert stamps.parse_stamp(json.dumps(dict(stamps.new_stamp("d1", {}), version=stamps.STAMP_VERSION + 1))) is None
    assert stamps.parse_stamp("{not json") is None
    assert stamps.parse_stamp("[]") is None


def test_settings_differ_without_a_record_or_with_another_digest():
    assert stamps.settings_differences(None, "d1") == ["no record of a full run on this node"]
    assert stamps.settings_differences({"digest": "d0"}, "d1") == [
        "the settings or the collection changed since the last full run"
    ]
    assert stamps.settings_differences({"digest": "d1"}, "d1") == []


# --- the look: cheapest first, stopping at the first difference ----------------------------------------------------


def test_a_look_finding_nothing_asks_ray_the_job_and_vllm_once_each_and_returns_the_answer():
    sources = Sources()
    assert stamps.look(stamps.new_stamp("d1", FILES, head()), "d1", same_files, sources.observer) == (
        [],
        READY["completion"],
    )
    assert sources.kinds() == ["ray", "jobs", "vllm"]


def test_a_look_without_a_record_or_with_another_digest_reads_no_file():
    assert stamps.look(None, "d1", no_files, no_head) == (["no record of a full run on this node"], None)
    lines, answer = stamps.look(stamps.new_stamp("d0", FILES, head()), "d1", no_files, no_head)
    assert (lines, answer) == (["the settings or the collection changed since the last full run"], None)


def test_a_look_stops_at_a_missing_file_before_asking_ray_or_vllm(tmp_path):
    key = tmp_path / "vllm-api-key"
    key.write_text("recorded-test-key")
    record = stamps.new_stamp("d1", stamps.fingerprints([str(key)]), head())
    key.unlink()
    sources = Sources()
    lines, answer = stamps.look(record, "d1", stamps.fingerprints, sources.observer)
    assert (lines, answer) == (["%s is missing (it was there after the last full run)" % key], None)
    assert sources.asked == []


def test_a_look_stops_at_a_gone_ray_node_before_asking_the_job_or_vllm():
    sources = Sources(ray=nodes_seen("worker-killed"))
    lines, answer = stamps.look(stamps.new_stamp("d1", FILES, head()), "d1", same_files, sources.observer)
    assert (lines, answer) == (["Ray nodes alive after the last full run are gone: %s" % WORKER_ID], None)
    assert sources.kinds() == ["ray"]


def test_a_look_stops_at_a_resubmitted_job_before_asking_vllm():
    resubmitted = [dict(job, submission_id="vllm-cccccccccccc-1795870000") for job in jobs_seen("list-one-running")]
    sources = Sources(jobs=resubmitted)
    lines, _answer = stamps.look(stamps.new_stamp("d1", FILES, head()), "d1", same_files, sources.observer)
    assert lines == [
        "the Ray job vllm is vllm-cccccccccccc-1795870000 now, not %s as the last full run left it" % RUNNING_ID
    ]
    assert sources.kinds() == ["ray", "jobs"]


def test_a_look_names_vllm_not_answering_and_returns_no_answer():
    sources = Sources(answer={"ready": False, "status": "no_answer", "msg": "nothing listens", "completion": {}})
    lines, answer = stamps.look(stamps.new_stamp("d1", FILES, head()), "d1", same_files, sources.observer)
    assert (lines, answer) == (["vLLM does not answer as it did: nothing listens"], None)


def test_a_look_on_a_worker_asks_no_head_and_a_head_without_a_job_asks_no_jobs_api():
    assert stamps.look(stamps.new_stamp("d1", FILES), "d1", same_files, no_head) == ([], None)
    sources = Sources()
    stamps.look(stamps.new_stamp("d1", FILES, head(job_name=None, job_id=None)), "d1", same_files, sources.observer)
    assert sources.kinds() == ["ray", "vllm"]


def test_the_head_observer_sends_the_secrets_read_from_the_named_files():
    secrets = {"/etc/llmops/ray-auth-token": "ray-token", "/etc/llmops/vllm-api-key": "recorded-test-key"}
    sources = Sources()
    observer = sources.observer(head(ca_path="/etc/llmops/ca.crt"), read=lambda path: secrets.get(path, ""))
    observer.ray(), observer.job("vllm"), observer.answer()
    assert sources.asked[:2] == [
        ("ray", "http://127.0.0.1:8265", "ray-token"),
        ("jobs", "http://127.0.0.1:8265", "ray-token"),
    ]
    assert sources.asked[2][1] == dict(
        url="http://127.0.0.1:8000",
        model="smollm2-135m-instruct",
        api_key="recorded-test-key",
        prompt="Say hello.",
        max_tokens=16,
        tls={"ca_path": "/etc/llmops/ca.crt"},
    )
    unkeyed = Sources()
    unkeyed.observer(head()).answer()
    assert (unkeyed.asked[0][1]["api_key"], unkeyed.asked[0][1]["tls"]) == (None, None)


def test_the_recorded_head_adds_the_alive_nodes_and_the_running_job_or_is_none_without_ray():
    where = {key: value for key, value in head().items() if key not in ("node_ids", "job_id")}
    assert stamps.recorded_head(where, Sources().observer(where)) == (head(), None)
    silent = Sources(ray={"source_error": {"where": "http://127.0.0.1:8265", "detail": "refused"}})
    assert stamps.recorded_head(where, silent.observer(where)) == (
        None,
        "Ray does not answer at http://127.0.0.1:8265: refused",
    )
    assert silent.kinds() == ["ray"]


# --- what site.yml prints and decides per node ---------------------------------------------------------------------

HEAD_LOOK = {
    "current": True,
    "differences": [],
    "controller_files": [],
    "answer": {"text": " Hello! \n", "latency_s": 0.41},
    "endpoint": {"url": "http://h:8000", "endpoint": "https://h/v1", "model": "m", "question": "Who?"},
}


def test_a_skipped_look_is_a_difference():
    summary = stamps.summarize_look({"skipped": True, "changed": False})
    assert summary == {
        "standing": False,
        "lines": [
            "A full run follows; this node differs from the last full run's record:",
            "no look (ray_vllm_fast_rerun is off)",
        ],
    }


def test_a_controller_file_missing_makes_a_node_that_looked_current_differ(tmp_path):
    kept, gone = tmp_path / "kept", tmp_path / "gone"
    kept.write_text("key")
    summary = stamps.summarize_look(dict(HEAD_LOOK, controller_files=[str(kept), str(gone)]))
    assert summary["standing"] is False
    assert summary["lines"][1:] == ["the controller's file %s is missing" % gone]


def test_a_node_that_stands_does_not_while_another_node_differs():
    summary = stamps.summarize_look(HEAD_LOOK, ["worker-2", "worker-1"])
    assert summary["standing"] is False
    assert summary["lines"] == [
        "This node stands as the last full run left it; a full run follows for what differs on worker-1, worker-2."
    ]


def test_the_head_that_stands_prints_its_endpoint_question_and_answer():
    summary = stamps.summarize_look(HEAD_LOOK)
    assert summary["standing"] is True
    assert "the same Ray nodes alive and vLLM answering" in summary["lines"][0]
    assert summary["lines"][1:] == ["Endpoint: https://h/v1 (model m)", "Q: Who?", "A: Hello! (0.41 s)"]


def test_a_worker_that_stands_prints_one_line_without_vllm():
    summary = stamps.summarize_look({"current": True, "differences": [], "controller_files": []})
    assert summary["standing"] is True and len(summary["lines"]) == 1
    assert "vLLM answering" not in summary["lines"][0]


def test_a_look_that_found_a_difference_lists_it_under_the_heading():
    summary = stamps.summarize_look(dict(HEAD_LOOK, current=False, differences=["/x changed since the last full run"]))
    assert summary == {
        "standing": False,
        "lines": [
            "A full run follows; this node differs from the last full run's record:",
            "/x changed since the last full run",
        ],
    }


# --- this node's raylet ----------------------------------------------------------------------------------------------

RAYLET = {"temp_dir": "/tmp/ray-llmops-ray-worker-local", "pid": 4242, "start": 1000}


def test_a_process_start_is_read_from_its_proc_stat(tmp_path):
    # A command name with spaces and parentheses: the fields are counted after the last ")".
    (tmp_path / "77").mkdir()
    (tmp_path / "77" / "stat").write_text("77 (ray::Idle (x)) S 1 77 77 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 192494 0 0\n")
    assert stamps.process_start(77, proc_root=str(tmp_path)) == 192494
    assert stamps.process_start(78, proc_root=str(tmp_path)) is None


def test_the_raylet_of_a_temp_dir_is_its_pid_and_start_or_none_when_it_does_not_run():
    found = stamps.raylet_print(RAYLET["temp_dir"], lambda temp_dir: ([1, 4242], 4242), start=lambda pid: 1000)
    assert found == RAYLET
    assert stamps.raylet_print(RAYLET["temp_dir"], lambda temp_dir: ([], None)) is None


def test_a_raylet_gone_or_started_again_is_a_difference_named_by_its_node():
    assert stamps.raylet_differences(RAYLET, dict(RAYLET)) == []
    assert stamps.raylet_differences(RAYLET, None) == [
        "the Ray node of /tmp/ray-llmops-ray-worker-local no longer runs here (its raylet, pid 4242, is gone)"
    ]
    # The same pid again after a reboot or a wrap is another process: its start differs.
    assert stamps.raylet_differences(RAYLET, dict(RAYLET, start=2000)) == [
        "the Ray node of /tmp/ray-llmops-ray-worker-local was started again since the last full run (raylet pid "
        "4242, was 4242)"
    ]


def test_the_look_finds_a_killed_raylet_before_asking_the_head():
    # Ray's dashboard still lists a killed node ALIVE until its health checks fail; the raylet is gone at once.
    stamp = stamps.new_stamp("d", FILES, head(), raylet=RAYLET)
    differences, answer = stamps.look(stamp, "d", same_files, no_head, lambda temp_dir: None)
    assert differences == [
        "the Ray node of /tmp/ray-llmops-ray-worker-local no longer runs here (its raylet, pid 4242, is gone)"
    ]
    assert answer is None
