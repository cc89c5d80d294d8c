# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""deployment_stamp as Ansible runs it: a record written on real files, then a look, against local HTTP servers that
answer what a real Ray 2.60 dashboard and a real vLLM 0.32 answered (tests/fixtures/ray, ray_jobs, vllm), and that
refuse a request without the token or key as those did."""

from __future__ import annotations

import http.server
import json
import os
import stat
import threading
from pathlib import Path

import ansible.module_utils._internal
import pytest

from ansible_collections.llmops.ray_vllm.plugins.modules import deployment_stamp
from ansible_collections.llmops.ray_vllm.tests.unit.plugins.modules.test_thin_modules import run

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures"
RAY = FIXTURES / "ray" / "2.60.0-local-head1cpu-worker1cpu1gpu"
TOKEN_AUTH = FIXTURES / "ray" / "2.60.0-local-token-auth-head1cpu1gpu"
HEAD_ID = "078b18378b03be9c4330460bca578b2d5fb103fb327a0b5cd7189ab9"
WORKER_ID = "6f370cb1a5051d4ad3cc6f8d4b17b23f0338e69efca339d7f75fede2"
RUNNING_ID = "vllm-aaaaaaaaaaaa-1795862911"
VLLM_KEY = "recorded-test-key"  # the --api-key of the recorded vLLM (tests/fixtures/vllm/README.md)
SERVED = "smollm2-135m-instruct"


def recorded(path):
    assert path.is_file(), f"missing recording {path} (see the README.md beside it)"
    return path.read_text()


def dashboard_answer(folder, name):
    """``(status, content type, body)`` the dashboard gave, its status from the folder's captures.json."""
    captures = json.loads(recorded(folder / "captures.json"))["captures"]
    status = next(entry["http_status"] for entry in captures if entry["file"] == name)
    kind = "application/json" if name.endswith(".json") else "text/plain; charset=utf-8"
    return status, kind, recorded(folder / name).encode()


def jobs_answer(name):
    record = json.loads(recorded(FIXTURES / "ray_jobs" / f"{name}.json"))
    body = json.dumps(record["json"]) if "json" in record else record["text"]
    return record["status"], record["content_type"], body.encode()


def vllm_answer(name):
    if name.endswith(".txt"):
        return 200, "text/plain; version=0.0.4", recorded(FIXTURES / "vllm" / name).encode()
    record = json.loads(recorded(FIXTURES / "vllm" / name))
    return record["status"], record["headers"].get("content-type", "text/plain"), record["body"].encode()


class Double:
    """A local HTTP server answering recorded answers by method and path (the query left out). Where ``bearer`` is
    set, a request to a path in ``refusals`` without ``Authorization: Bearer <bearer>`` gets the recorded refusal."""

    def __init__(self, answers, refusals=None, bearer=None):
        self.answers, self.refusals, self.bearer = answers, refusals or {}, bearer
        self.asked = []
        double = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def answer(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                key = (self.command, self.path.split("?")[0])
                double.asked.append(key)
                refused = key in double.refusals and self.headers.get("Authorization") != f"Bearer {double.bearer}"
                status, kind, body = (double.refusals if refused else double.answers).get(
                    key, (404, "text/plain", b"not recorded")
                )
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = answer

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def ray_answers(step="idle", jobs="list-one-running", folder=RAY):
    return {
        ("GET", "/api/cluster_status"): dashboard_answer(folder, f"{step}-dashboard-cluster-status-format1.json"),
        ("GET", "/api/v0/nodes"): dashboard_answer(folder, f"{step}-dashboard-v0-nodes-detail.json"),
        ("GET", "/api/jobs/"): jobs_answer(jobs),
    }


@pytest.fixture
def ray():
    double = Double(ray_answers())
    yield double
    double.stop()


@pytest.fixture
def vllm():
    answers = {("GET", "/health"): vllm_answer("health-200.json"), ("GET", "/version"): vllm_answer("version.json")}
    answers[("GET", "/metrics")] = vllm_answer("metrics-idle.txt")
    answers[("GET", "/v1/models")] = vllm_answer("models-200.json")
    answers[("POST", "/v1/chat/completions")] = vllm_answer("chat-200.json")
    refusals = {
        ("GET", "/v1/models"): vllm_answer("models-401-no-key.json"),
        ("POST", "/v1/chat/completions"): vllm_answer("chat-401-wrong-key.json"),
    }
    double = Double(answers, refusals, bearer=VLLM_KEY)
    yield double
    double.stop()


@pytest.fixture
def node(tmp_path):
    """What the roles manage on a head: the API key (small, hashed) and a model folder; where the record goes."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "vllm-api-key").write_text(VLLM_KEY + "\n")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    return tmp_path


def record_args(node, ray, vllm, **head):
    return dict(
        action="record",
        path=str(node / "state" / "deployment-head.json"),
        digest="d1",
        files=[str(node / "etc" / "vllm-api-key"), str(node / "model")],
        controller_files=[str(node / "controller-key")],
        head=dict(
            dict(
                dashboard_url=ray.url,
                vllm_url=vllm.url,
                model=SERVED,
                api_key_file=str(node / "etc" / "vllm-api-key"),
                job_name="vllm",
            ),
            **head,
        ),
    )


def look(node, capsys, digest="d1"):
    return run(deployment_stamp, dict(path=str(node / "state" / "deployment-head.json"), digest=digest), capsys)


def recorded_then_reset(node, ray, vllm, capsys, **head):
    """Records the head, then forgets what the doubles were asked; returns the record."""
    result = run(deployment_stamp, record_args(node, ray, vllm, **head), capsys, check=False)
    assert not result.get("failed") and result["written"] is True, result
    ray.asked.clear(), vllm.asked.clear()
    return json.loads((node / "state" / "deployment-head.json").read_text())


def mode_of(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_record_names_the_alive_nodes_and_the_running_job_in_a_private_file(node, ray, vllm, capsys):
    record = recorded_then_reset(node, ray, vllm, capsys)
    assert (record["head"]["node_ids"], record["head"]["job_id"]) == ([HEAD_ID, WORKER_ID], RUNNING_ID)
    assert record["digest"] == "d1" and record["controller_files"] == [str(node / "controller-key")]
    assert sorted(record["files"]) == [str(node / "etc" / "vllm-api-key"), str(node / "model")]
    assert mode_of(node / "state" / "deployment-head.json") == 0o600 and mode_of(node / "state") == 0o700
    assert VLLM_KEY not in (node / "state" / "deployment-head.json").read_text()


def test_a_record_of_the_same_state_again_is_not_written_again(node, ray, vllm, capsys):
    recorded_then_reset(node, ray, vllm, capsys)
    again = run(deployment_stamp, record_args(node, ray, vllm), capsys, check=False)
    assert (again["written"], again["changed"]) == (False, False)


def test_a_record_in_check_mode_writes_nothing(node, ray, vllm, capsys):
    result = run(deployment_stamp, record_args(node, ray, vllm), capsys)
    assert (result["written"], result["changed"]) == (False, False)
    assert not (node / "state").exists()


def test_a_record_is_not_left_and_a_warning_says_so_when_ray_does_not_answer(node, ray, vllm, capsys, monkeypatch):
    # On a node a module's warnings go back in its result; with the controller's code imported in this process
    # (other tests), ansible-core would print them instead.
    monkeypatch.setattr(ansible.module_utils._internal, "is_controller", False)
    ray.stop()
    result = run(deployment_stamp, record_args(node, ray, vllm), capsys, check=False)
    assert result["written"] is False and not (node / "state").exists()
    [warning] = [warning["event"]["msg"] for warning in result["warnings"]]
    assert warning.startswith(
        "No record was left, so the next run goes the full way: Ray does not answer at %s" % ray.url
    )


def test_a_record_that_cannot_be_written_warns_naming_its_path_and_the_fix(node, capsys, monkeypatch):
    # The deployment stands either way: the run goes on; only the next look has no record.
    monkeypatch.setattr(ansible.module_utils._internal, "is_controller", False)
    (node / "plain").write_text("a file where the record's folder should be")
    path = str(node / "plain" / "deployment-head.json")
    result = run(deployment_stamp, dict(action="record", path=path, digest="d1"), capsys, check=False)
    assert not result.get("failed") and result["written"] is False
    start = "No record was left, so the next run goes the full way: cannot write %s (" % path
    [warning] = [warning["event"]["msg"] for warning in result["warnings"] if warning["event"]["msg"].startswith(start)]
    assert warning.endswith("set ray_vllm_record_dir to a folder that is.")


def test_a_look_after_a_record_stands_and_returns_vllms_answer(node, ray, vllm, capsys):
    recorded_then_reset(node, ray, vllm, capsys)
    result = look(node, capsys)
    assert (result["current"], result["differences"], result["changed"]) == (True, [], False)
    chat = json.loads(json.loads(recorded(FIXTURES / "vllm" / "chat-200.json"))["body"])
    assert result["answer"]["text"] == chat["choices"][0]["message"]["content"]
    assert result["endpoint"] == dict(url=vllm.url, endpoint=vllm.url, model=SERVED, question="Say hello.")
    assert result["controller_files"] == [str(node / "controller-key")]
    assert ("POST", "/v1/chat/completions") in vllm.asked


def test_a_look_without_a_record_differs_and_asks_nobody(node, ray, vllm, capsys):
    result = look(node, capsys)
    assert (result["current"], result["differences"]) == (False, ["no record of a full run on this node"])
    assert result["controller_files"] == [] and "endpoint" not in result


def test_a_look_with_another_digest_differs_and_asks_nobody(node, ray, vllm, capsys):
    recorded_then_reset(node, ray, vllm, capsys)
    result = look(node, capsys, digest="d2")
    assert result["differences"] == ["the settings or the collection changed since the last full run"]
    assert ray.asked == vllm.asked == []


def test_a_look_at_a_key_edited_in_place_differs_before_asking_ray_or_vllm(node, ray, vllm, capsys):
    recorded_then_reset(node, ray, vllm, capsys)
    key = node / "etc" / "vllm-api-key"
    before = os.stat(key)
    key.write_text(VLLM_KEY.upper() + "\n")
    os.utime(key, ns=(before.st_atime_ns, before.st_mtime_ns))
    result = look(node, capsys)
    assert (result["current"], result["differences"]) == (False, ["%s changed since the last full run" % key])
    assert ray.asked == vllm.asked == []


def test_a_look_after_the_worker_was_killed_names_it_and_asks_no_further(node, ray, vllm, capsys):
    recorded_then_reset(node, ray, vllm, capsys)
    ray.answers.update(ray_answers("worker-killed"))
    result = look(node, capsys)
    assert result["differences"] == ["Ray nodes alive after the last full run are gone: %s" % WORKER_ID]
    assert ("GET", "/api/jobs/") not in ray.asked and vllm.asked == []


def test_a_look_after_the_job_was_stopped_names_it_and_asks_vllm_nothing(node, ray, vllm, capsys):
    recorded_then_reset(node, ray, vllm, capsys)
    ray.answers.update(ray_answers(jobs="list-after"))
    result = look(node, capsys)
    assert result["differences"] == ["the Ray job vllm (%s) no longer runs" % RUNNING_ID]
    assert vllm.asked == []


def test_a_look_with_vllm_not_answering_differs_and_has_no_answer(node, ray, vllm, capsys):
    recorded_then_reset(node, ray, vllm, capsys)
    vllm.stop()
    result = look(node, capsys)
    assert result["current"] is False and "answer" not in result
    assert len(result["differences"]) == 1
    assert result["differences"][0].startswith("vLLM does not answer as it did: Expected vLLM at %s" % vllm.url)


def test_a_look_reads_the_ray_token_from_the_file_the_record_names(node, vllm, capsys):
    answers = ray_answers("with-token", folder=TOKEN_AUTH)
    refusals = {
        ("GET", "/api/cluster_status"): dashboard_answer(
            TOKEN_AUTH, "without-token-dashboard-cluster-status-format1.txt"
        ),
        ("GET", "/api/v0/nodes"): dashboard_answer(TOKEN_AUTH, "without-token-dashboard-v0-nodes-detail.txt"),
        ("GET", "/api/jobs/"): jobs_answer("auth-missing-token"),
    }
    ray = Double(answers, refusals, bearer="ray-token")
    try:
        token = node / "etc" / "ray-auth-token"
        token.write_text("ray-token\n")
        recorded_then_reset(node, ray, vllm, capsys, ray_token_file=str(token))
        assert look(node, capsys)["current"] is True
        token.write_text("")
        result = look(node, capsys)
    finally:
        ray.stop()
    assert result["differences"] == [
        "Ray does not answer at %s/api/cluster_status?format=1: HTTP 401: Unauthorized: Missing authentication token"
        % ray.url
    ]
