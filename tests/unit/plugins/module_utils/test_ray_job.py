# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""ray_job's decisions and parsing, on Ray Jobs REST API answers recorded from a real Ray 2.60 head.

The recordings and how they were made: tests/fixtures/ray_jobs/README.md. The live behaviour (submit, replace,
stop, failures) is tested against a real head in tests/integration/test_ray_job_live.py.
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import urllib.error

import pytest

from ansible_collections.llmops.ray_vllm.plugins.module_utils import _ray_job as ray_job

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "fixtures", "ray_jobs")
BASE_URL = "http://127.0.0.1:8265"


def recorded(name):
    path = os.path.join(FIXTURES, name + ".json")
    if not os.path.isfile(path):
        raise AssertionError(f"recorded fixture {path} is missing; run tests/fixtures/ray_jobs/record.py")
    with open(path, encoding="utf-8") as fixture:
        return json.load(fixture)


def answer_text(record):
    return json.dumps(record["json"]) if "json" in record else record["text"]


RUNNING_JOB = recorded("get-long-running")["json"]
RECORDED_HASH = RUNNING_JOB["metadata"][ray_job.HASH_KEY]


class RecordedResponse:
    def __init__(self, record):
        self.record = record

    def getcode(self):
        return self.record["status"]

    def read(self):
        return answer_text(self.record).encode("utf-8")


class ReplayOpener:
    """Stands in for open_url: answers each (method, path) with its recording, as open_url would (HTTPError >= 400)."""

    def __init__(self, *names):
        self.records = {}
        for name in names:
            record = recorded(name)
            self.records[(record["method"], record["path"])] = record
        self.calls = []

    def __call__(self, url, method, data, headers, validate_certs, timeout):
        path = url[len(BASE_URL) :]
        self.calls.append({"method": method, "path": path, "data": data, "headers": headers})
        record = self.records[(method, path)]
        if record["status"] >= 400:
            raise urllib.error.HTTPError(
                url, record["status"], "error", {}, io.BytesIO(answer_text(record).encode("utf-8"))
            )
        return RecordedResponse(record)


class TestSelection:
    def test_only_labelled_submission_jobs_of_the_name(self):
        jobs = recorded("list-one-running")["json"]
        assert {job["type"] for job in jobs} == {"SUBMISSION", "DRIVER"}
        assert [job["submission_id"] for job in ray_job.jobs_named(jobs, "vllm")] == [RUNNING_JOB["submission_id"]]
        assert ray_job.jobs_named(jobs, "other") == []

    def test_same_hash_running_is_kept(self):
        kept, to_stop = ray_job.plan_present(recorded("list-one-running")["json"], "vllm", RECORDED_HASH)
        assert kept["submission_id"] == RUNNING_JOB["submission_id"]
        assert to_stop == []

    def test_other_hash_running_is_replaced(self):
        kept, to_stop = ray_job.plan_present(recorded("list-one-running")["json"], "vllm", "b" * 64)
        assert kept is None
        assert [job["submission_id"] for job in to_stop] == [RUNNING_JOB["submission_id"]]

    def test_pending_counts_as_active(self):
        pending = recorded("get-long-just-submitted")["json"]
        assert pending["status"] == "PENDING"
        assert ray_job.plan_present([pending], "vllm", RECORDED_HASH)[0] is pending
        assert ray_job.plan_absent([pending], "vllm") == [pending]

    def test_ended_jobs_are_neither_kept_nor_stopped(self):
        jobs = recorded("list-after")["json"]
        assert {job["status"] for job in jobs if job["type"] == "SUBMISSION"} == {"STOPPED", "FAILED"}
        for name in ("vllm", "broken", "localdir"):
            assert ray_job.jobs_named(jobs, name)
            assert ray_job.plan_present(jobs, name, RECORDED_HASH) == (None, [])
            assert ray_job.plan_absent(jobs, name) == []

    def test_absent_stops_the_running_job(self):
        to_stop = ray_job.plan_absent(recorded("list-one-running")["json"], "vllm")
        assert [job["submission_id"] for job in to_stop] == [RUNNING_JOB["submission_id"]]

    def test_diff_view(self):
        assert ray_job.job_view(RUNNING_JOB) == {
            "submission_id": RUNNING_JOB["submission_id"],
            "entrypoint": RUNNING_JOB["entrypoint"],
            "hash": RECORDED_HASH,
            "status": "RUNNING",
        }
        assert ray_job.job_view(None) == {}


class TestSubmission:
    def recorded_spec(self):
        body = recorded("submit-long")["request_body"]
        metadata = {k: v for k, v in body["metadata"].items() if k not in ray_job.RESERVED_METADATA}
        return body, ray_job.job_spec(
            body["entrypoint"],
            runtime_env=body["runtime_env"],
            entrypoint_num_cpus=body["entrypoint_num_cpus"],
            metadata=metadata,
        )

    def test_body_is_what_ray_accepted(self):
        body, spec = self.recorded_spec()
        assert recorded("submit-long")["status"] == 200
        assert ray_job.submit_body(spec, "vllm", RECORDED_HASH, body["submission_id"]) == body

    def test_submission_id_shape(self):
        submission_id = ray_job.make_submission_id("vllm", RECORDED_HASH, 1795862757.9)
        assert submission_id == "vllm-aaaaaaaaaaaa-1795862757"
        assert re.match(r"^vllm-[0-9a-f]{12}-[0-9]+$", ray_job.make_submission_id("vllm", "0123456789abcdef", 1))

    def test_hash_is_stable_and_sensitive(self):
        _body, spec = self.recorded_spec()
        digest = ray_job.config_hash(spec)
        assert re.match(r"^[0-9a-f]{64}$", digest)
        reordered = ray_job.job_spec(
            spec["entrypoint"],
            runtime_env=json.loads(json.dumps(spec["runtime_env"]), object_pairs_hook=lambda p: dict(reversed(p))),
            entrypoint_num_cpus=0.5,
            metadata={"owner": "recording"},
        )
        assert ray_job.config_hash(reordered) == digest
        for change in (
            dict(entrypoint=spec["entrypoint"] + " --port 8001"),
            dict(runtime_env={"env_vars": {"RECORDED_BY": "someone else"}}),
            dict(entrypoint_num_cpus=1),
            dict(entrypoint_num_gpus=1),
            dict(entrypoint_resources={"node:head": 0.01}),
            dict(metadata={"owner": "someone else"}),
        ):
            settings = dict(
                entrypoint=spec["entrypoint"],
                runtime_env=spec["runtime_env"],
                entrypoint_num_cpus=0.5,
                metadata={"owner": "recording"},
            )
            settings.update(change)
            assert ray_job.config_hash(ray_job.job_spec(**settings)) != digest, change

    def test_numbers_hash_the_same_whatever_their_type(self):
        as_int = ray_job.job_spec("x", entrypoint_num_gpus=1, entrypoint_resources={"a": 2}, metadata={"n": 3})
        as_float = ray_job.job_spec("x", entrypoint_num_gpus=1.0, entrypoint_resources={"a": 2.0}, metadata={"n": "3"})
        assert ray_job.config_hash(as_int) == ray_job.config_hash(as_float)

    def test_reserved_metadata_is_refused(self):
        with pytest.raises(ValueError, match="llmops.ray_vllm/name"):
            ray_job.job_spec("x", metadata={ray_job.NAME_KEY: "other"})

    def test_local_working_dir_is_refused_before_ray_fails_it(self):
        body = recorded("submit-local-working-dir")["request_body"]
        # What Ray 2.60 did with it: accepted the submit, then failed the job.
        outcome = recorded("get-local-working-dir")["json"]
        assert recorded("submit-local-working-dir")["status"] == 200
        assert outcome["status"] == "FAILED" and "is not a valid URI" in outcome["message"]
        assert ray_job.local_runtime_env_paths(body["runtime_env"]) == [
            "working_dir {}".format(body["runtime_env"]["working_dir"])
        ]
        assert ray_job.local_runtime_env_paths(recorded("submit-long")["request_body"]["runtime_env"]) == []
        assert ray_job.local_runtime_env_paths({"working_dir": "https://example.invalid/app.zip"}) == []
        assert ray_job.local_runtime_env_paths({"py_modules": ["s3://b/m.zip", "/srv/m"]}) == [
            "py_modules entry /srv/m"
        ]


class TestMessages:
    def test_log_tail_drops_colour_codes(self):
        logs = recorded("logs-long-running")["json"]["logs"]
        assert "\x1b[" in logs
        tail = ray_job.logs_tail(logs)
        assert "\x1b" not in tail
        assert tail.splitlines()[-1] == "serving"
        assert ray_job.logs_tail(logs, lines=1) == "serving"

    @pytest.mark.parametrize(
        "name, expected",
        [
            ("submit-duplicate-id", r"^ValueError: Job with submission_id vllm-a{12}-\d+ already exists"),
            ("submit-invalid", r"^TypeError: entrypoint_num_gpus must be a number, got <class 'str'>$"),
            ("get-missing", r"^Job no-such-job does not exist$"),
            ("auth-missing-token", r"^Unauthorized: Missing authentication token$"),
        ],
    )
    def test_error_summary(self, name, expected):
        assert re.match(expected, ray_job.error_summary(recorded(name)["text"]))

    def test_auth_errors_say_what_to_do(self):
        missing, wrong = recorded("auth-missing-token"), recorded("auth-wrong-token")
        message = ray_job.describe_http_error(BASE_URL, "GET", "/api/jobs/", missing["status"], missing["text"])
        assert "401" in message and "Ray token missing" in message and "set token" in message
        assert "ray_cluster_auth_token_file" in message and "<release>-ray-auth" in message
        message = ray_job.describe_http_error(BASE_URL, "GET", "/api/jobs/", wrong["status"], wrong["text"])
        assert (
            "403: Forbidden: Invalid authentication token" in message and "not the cluster's RAY_AUTH_TOKEN" in message
        )
        assert "Ray token wrong" in message

    def test_failed_job_message(self):
        job = recorded("get-failing-failed")["json"]
        tail = ray_job.logs_tail(recorded("logs-failing")["json"]["logs"])
        message = ray_job.job_failure_message(job, tail, BASE_URL, "RUNNING")
        assert message.startswith(
            "Ray job {} ended FAILED (JOB_ENTRYPOINT_COMMAND_ERROR, exit code 1) instead of RUNNING.".format(
                job["submission_id"]
            )
        )
        assert "Ray says: Job entrypoint command failed with exit code 1" in message
        assert message.splitlines()[-2] == "model not found: /nonexistent"
        assert message.endswith("Full log: ray job logs {} --address {}".format(job["submission_id"], BASE_URL))

    def test_log_command(self):
        assert ray_job.log_command("vllm-1", BASE_URL) == f"ray job logs -f vllm-1 --address {BASE_URL}"
        assert ray_job.log_command(None, BASE_URL) is None


class TestClient:
    def test_sends_the_token_and_decodes_the_list(self):
        opener = ReplayOpener("list-one-running")
        client = ray_job.RayJobsClient(BASE_URL + "/", token="s3cret", opener=opener)
        jobs = client.list_jobs()
        assert jobs == recorded("list-one-running")["json"]
        assert opener.calls[0]["headers"]["Authorization"] == "Bearer s3cret"
        assert opener.calls[0]["data"] is None

    def test_no_token_no_header(self):
        opener = ReplayOpener("list-empty")
        assert ray_job.RayJobsClient(BASE_URL, opener=opener).list_jobs() == []
        assert "Authorization" not in opener.calls[0]["headers"]

    def test_http_error_becomes_a_message(self):
        client = ray_job.RayJobsClient(BASE_URL, opener=ReplayOpener("auth-missing-token"))
        with pytest.raises(ray_job.RayJobError, match="answered 401: Unauthorized: Missing authentication token"):
            client.list_jobs()

    def test_submit_sends_json(self):
        record = recorded("submit-long")
        opener = ReplayOpener("submit-long")
        answer = ray_job.RayJobsClient(BASE_URL, opener=opener).submit(record["request_body"])
        assert answer == record["json"]
        assert json.loads(opener.calls[0]["data"]) == record["request_body"]
        assert opener.calls[0]["headers"]["Content-Type"] == "application/json"

    def test_unreadable_logs_are_empty(self):
        client = ray_job.RayJobsClient(BASE_URL, opener=ReplayOpener("logs-missing"))
        assert recorded("logs-missing")["status"] == 404
        assert client.logs("no-such-job") == ""

    def test_nothing_listening(self):
        # A real refused connection: a port that was just free.
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        client = ray_job.RayJobsClient(f"http://127.0.0.1:{port}", timeout=5)
        with pytest.raises(ray_job.RayJobError, match=f"cannot reach the Ray dashboard at http://127.0.0.1:{port}"):
            client.list_jobs()


class TestEndedJob:
    """What a gate asks while its server is not ready: does a job of the name still run?"""

    def test_a_running_job_is_no_verdict(self):
        client = ray_job.RayJobsClient(BASE_URL, opener=ReplayOpener("list-one-running"))
        assert ray_job.ended_job(client, "vllm") is None

    def test_a_name_never_submitted_is_no_verdict(self):
        client = ray_job.RayJobsClient(BASE_URL, opener=ReplayOpener("list-empty"))
        assert ray_job.ended_job(client, "vllm") is None

    def test_a_failed_job_says_why_with_its_log(self):
        opener = ReplayOpener("list-after", "logs-failing")
        message = ray_job.ended_job(ray_job.RayJobsClient(BASE_URL, opener=opener), "broken")
        assert message.startswith(
            "Ray job broken-bbbbbbbbbbbb-1795862911 ended FAILED (JOB_ENTRYPOINT_COMMAND_ERROR, exit code 1) instead "
            "of running the server."
        )
        assert "model not found: /nonexistent" in message
        assert [call["path"] for call in opener.calls] == [
            "/api/jobs/",
            "/api/jobs/broken-bbbbbbbbbbbb-1795862911/logs",
        ]

    def test_the_watch_sends_the_token_and_passes_on_an_unreachable_dashboard(self):
        opener = ReplayOpener("list-one-running")
        assert ray_job.ended_job_watch(BASE_URL, "vllm", token="s3cret", opener=opener)() is None
        assert opener.calls[0]["headers"]["Authorization"] == "Bearer s3cret"
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        assert ray_job.ended_job_watch(f"http://127.0.0.1:{port}", "vllm", token="")() is None


class TestCheckMode:
    """Check mode lists and decides, and sends nothing but the list request."""

    def spec(self, entrypoint):
        return ray_job.job_spec(entrypoint)

    def test_present_would_replace(self):
        opener = ReplayOpener("list-one-running")
        client = ray_job.RayJobsClient(BASE_URL, opener=opener)
        result = ray_job.ensure_present(client, "vllm", self.spec("sleep 600"), True, True, 10, 1)
        assert result["changed"] is True
        assert result["replaced"] == [RUNNING_JOB["submission_id"]]
        assert result["submission_id"] is None and result["log_command"] is None
        assert result["diff"]["before"] == ray_job.job_view(RUNNING_JOB)
        assert result["diff"]["after"]["entrypoint"] == "sleep 600"
        assert [call["method"] + " " + call["path"] for call in opener.calls] == ["GET /api/jobs/"]

    def test_present_would_submit_the_first_job(self):
        opener = ReplayOpener("list-after")
        result = ray_job.ensure_present(
            ray_job.RayJobsClient(BASE_URL, opener=opener), "vllm", self.spec("sleep 600"), True, True, 10, 1
        )
        assert (result["changed"], result["replaced"], result["diff"]["before"]) == (True, [], {})
        assert len(opener.calls) == 1

    def test_absent_would_stop(self):
        opener = ReplayOpener("list-one-running")
        result = ray_job.ensure_absent(ray_job.RayJobsClient(BASE_URL, opener=opener), "vllm", True, 10, 1)
        assert (result["changed"], result["replaced"]) == (True, [RUNNING_JOB["submission_id"]])
        assert len(opener.calls) == 1

    def test_absent_with_nothing_running(self):
        opener = ReplayOpener("list-after")
        result = ray_job.ensure_absent(ray_job.RayJobsClient(BASE_URL, opener=opener), "vllm", True, 10, 1)
        assert (result["changed"], result["replaced"], result["diff"]) == (False, [], {"before": {}, "after": {}})


def no_sleep(_seconds):
    pass


class TestWaiting:
    """Stopping and watching jobs, replayed from the answers Ray gave for the same job."""

    def client(self, *names):
        return ray_job.RayJobsClient(BASE_URL, opener=ReplayOpener(*names))

    def test_stop_waits_until_the_job_ended(self):
        client = self.client("stop-long", "get-long-stopped")
        stopped, warnings = ray_job.stop_jobs(client, [RUNNING_JOB], timeout=5, interval=0, sleep=no_sleep)
        assert (stopped, warnings) == ([RUNNING_JOB["submission_id"]], [])
        assert [call["method"] for call in client.opener.calls] == ["POST", "GET"]

    def test_running_job_that_does_not_end_fails(self):
        client = self.client("stop-long", "get-long-running")
        with pytest.raises(ray_job.RayJobError, match="is still RUNNING 0s after it was asked to stop") as raised:
            ray_job.stop_jobs(client, [RUNNING_JOB], timeout=0, interval=0, sleep=no_sleep)
        assert raised.value.result["replaced"] == [RUNNING_JOB["submission_id"]]

    def test_pending_job_that_does_not_end_is_a_warning(self):
        pending = recorded("get-long-just-submitted")["json"]
        client = self.client("stop-long", "get-long-just-submitted")
        stopped, warnings = ray_job.stop_jobs(client, [pending], timeout=0, interval=0, sleep=no_sleep)
        assert stopped == [pending["submission_id"]]
        (warning,) = warnings
        assert warning.startswith(
            "Ray job {} is still PENDING after it was asked to stop (Ray says: Job has not started yet.".format(
                pending["submission_id"]
            )
        )

    def test_failed_job_fails_with_its_log(self):
        job = recorded("get-failing-failed")["json"]
        client = self.client("get-failing-failed", "logs-failing")
        with pytest.raises(ray_job.RayJobError) as raised:
            ray_job.check_job(client, {"submission_id": job["submission_id"]}, True, 5, 0, BASE_URL,
                              ray_job.job_spec("x"), sleep=no_sleep)  # fmt: skip
        result = raised.value.result
        assert (result["submission_id"], result["status"]) == (job["submission_id"], "FAILED")
        assert result["logs_tail"].splitlines()[-1] == "model not found: /nonexistent"
        assert result["log_command"] == ray_job.log_command(job["submission_id"], BASE_URL)

    def test_pending_past_the_timeout_says_what_it_asks_for(self):
        pending = recorded("get-long-just-submitted")["json"]
        client = self.client("get-long-just-submitted", "logs-long-running")
        spec = ray_job.job_spec("x", entrypoint_num_gpus=1)
        with pytest.raises(ray_job.RayJobError, match=r"is still PENDING after 0s \(wait_running\)") as raised:
            ray_job.check_job(client, pending, True, 0, 0, BASE_URL, spec, sleep=no_sleep)
        assert "entrypoint_num_gpus=1.0" in raised.value.msg
        assert "Job has not started yet. It may be waiting for resources" in raised.value.msg

    def test_pending_is_fine_without_wait_running(self):
        pending = recorded("get-long-just-submitted")["json"]
        client = self.client("get-long-just-submitted")
        assert ray_job.check_job(client, pending, False, 5, 0, BASE_URL, ray_job.job_spec("x"))["status"] == "PENDING"

    def test_same_settings_change_nothing(self, monkeypatch):
        # The recorded job carries a placeholder hash; make the wanted settings hash to it.
        monkeypatch.setattr(ray_job, "config_hash", lambda spec: RECORDED_HASH)
        client = self.client("list-one-running", "get-long-running")
        result = ray_job.ensure_present(client, "vllm", ray_job.job_spec("x"), False, True, 5, 0, settle_time=30)
        assert (result["changed"], result["submission_id"], result["status"]) == (
            False,
            RUNNING_JOB["submission_id"],
            "RUNNING",
        )
        assert result["diff"]["before"] == result["diff"]["after"] == ray_job.job_view(RUNNING_JOB)
        assert [call["method"] for call in client.opener.calls] == ["GET", "GET"]


class SequenceOpener(ReplayOpener):
    """Answers POST /api/jobs/ with each recording in turn (a head whose job agent starts late)."""

    def __init__(self, *names):
        super().__init__()
        self.sequence = [recorded(name) for name in names]

    def __call__(self, url, method, data, headers, validate_certs, timeout):
        self.records[("POST", "/api/jobs/")] = self.sequence.pop(0)
        return super().__call__(url, method, data, headers, validate_certs, timeout)


class TestSubmitWhileTheAgentStarts:
    def test_submission_waits_for_the_job_agent(self):
        opener = SequenceOpener("submit-no-agent", "submit-no-agent", "submit-long")
        client = ray_job.RayJobsClient(BASE_URL, opener=opener)
        sleeps = []
        answer = ray_job.submit_when_agent_ready(
            client, {"entrypoint": "x"}, timeout=60, interval=2, sleep=sleeps.append
        )
        assert answer["submission_id"] == recorded("submit-long")["json"]["submission_id"]
        assert sleeps == [0.25, 0.5]  # the pauses start short and double (_wait.pauses)

    def test_the_agent_never_starting_fails_with_rays_answer(self):
        opener = SequenceOpener(*["submit-no-agent"] * 3)
        client = ray_job.RayJobsClient(BASE_URL, opener=opener)
        clock = iter([0, 1, 5, 11]).__next__
        with pytest.raises(ray_job.RayJobError, match="answered 500: No available agent to submit job"):
            ray_job.submit_when_agent_ready(client, {}, timeout=10, interval=5, sleep=lambda _s: None, clock=clock)

    def test_other_errors_are_not_retried(self):
        opener = SequenceOpener("submit-invalid")
        client = ray_job.RayJobsClient(BASE_URL, opener=opener)
        with pytest.raises(ray_job.RayJobError, match="answered 400"):
            ray_job.submit_when_agent_ready(client, {}, timeout=60, interval=1, sleep=lambda _s: pytest.fail("retried"))


class TestFoundFailed:
    """A submission that finds the newest job of its name FAILED says so (the fault suite's "what died, where is
    its log"), on Ray's recorded answers: the job "broken" exited 1, the job "vllm" was stopped on purpose."""

    def spec(self, entrypoint):
        return ray_job.job_spec(entrypoint)

    def test_a_failed_job_is_named_with_its_message_its_last_lines_and_its_log_command(self):
        opener = ReplayOpener("list-after", "logs-failing")
        client = ray_job.RayJobsClient(BASE_URL, opener=opener)
        result = ray_job.ensure_present(client, "broken", self.spec("python -c pass"), True, True, 10, 1)
        found = result["found"]
        assert found.startswith("The earlier Ray job broken-bbbbbbbbbbbb-1795862911 of broken FAILED: Job entrypoint")
        assert "ray job logs -f broken-bbbbbbbbbbbb-1795862911 --address %s" % BASE_URL in found
        assert "loading model" in found.split("Last lines:", 1)[1]
        assert len(found.split("Last lines:\n", 1)[1].splitlines()) <= ray_job.FOUND_TAIL_LINES

    def test_a_job_stopped_on_purpose_is_no_finding(self):
        opener = ReplayOpener("list-after")
        result = ray_job.ensure_present(
            ray_job.RayJobsClient(BASE_URL, opener=opener), "vllm", self.spec("sleep 600"), True, True, 10, 1
        )
        assert "found" not in result

    def test_a_failed_job_beside_an_active_one_is_no_finding(self):
        jobs = recorded("list-after")["json"] + recorded("list-one-running")["json"]
        failed = dict(jobs[1], metadata=dict(jobs[1]["metadata"], **{ray_job.NAME_KEY: "vllm"}), start_time=1)
        assert ray_job.failed_job_found(None, [failed, *recorded("list-one-running")["json"]], "vllm") is None
        client = ray_job.RayJobsClient(BASE_URL, opener=ReplayOpener("logs-failing"))
        assert ray_job.failed_job_found(client, [failed], "vllm").startswith("The earlier Ray job broken-")


class TestOrphans:
    """The processes of ended jobs: found on this host by the job environment Ray hands every driver (a live process
    carries it here), then stopped around the submission."""

    def environ(self, name, submission_id):
        config = {"runtime_env": {}, "metadata": {"job_submission_id": submission_id, ray_job.NAME_KEY: name}}
        return dict(os.environ, RAY_JOB_CONFIG_JSON_ENV_VAR=json.dumps(config))

    def test_a_live_process_is_known_by_the_job_environment_it_carries(self):
        import subprocess
        import sys

        mine = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], env=self.environ("vllm", "v-1"))
        other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], env=self.environ("x", "x-1"))
        try:
            found = ray_job.job_processes("vllm")
            assert found.get(mine.pid) == "v-1" and other.pid not in found
        finally:
            for process in (mine, other):
                process.kill()
                process.wait()
        assert mine.pid not in ray_job.job_processes("vllm")

    def test_an_environment_without_a_job_or_with_a_broken_one_is_none(self):
        assert ray_job.job_of_environ(b"PATH=/bin\0HOME=/root") is None
        assert ray_job.job_of_environ(b"RAY_JOB_CONFIG_JSON_ENV_VAR={not json") is None

    def test_orphans_are_stopped_before_the_submission_and_only_listed_in_check_mode(self):
        stopped = []
        host = ray_job.HostProcesses(list_processes=lambda name: {41: "vllm-old", 42: "vllm-old"}, stop=stopped.append)
        opener = ReplayOpener("list-after")
        client = ray_job.RayJobsClient(BASE_URL, opener=opener)
        result = ray_job.ensure_present(client, "vllm", ray_job.job_spec("sleep 600"), True, True, 10, 1, host=host)
        assert result["orphans"] == [41, 42] and stopped == []
        assert result["found"] == (
            "2 process(es) of ended jobs of vllm (vllm-old) were still running on this host without their job "
            "(pids 41, 42), holding memory, and a port or GPUs. A run stops them (SIGTERM, then SIGKILL)."
        )
        result = ray_job.ensure_absent(client, "vllm", False, 10, 1, host=host)
        assert stopped == [[41, 42]] and result["changed"] is True and "Stopped them" in result["found"]

    def test_absent_without_a_head_still_stops_what_its_jobs_left_on_this_host(self):
        stopped = []
        host = ray_job.HostProcesses(list_processes=lambda name: {51: "vllm-before-the-head-died"}, stop=stopped.append)
        gone = socket.socket()
        gone.bind(("127.0.0.1", 0))
        client = ray_job.RayJobsClient("http://127.0.0.1:%d" % gone.getsockname()[1])  # bound, not listening: refused
        try:
            result = ray_job.ensure_absent(client, "vllm", False, 10, 1, host=host)
        finally:
            gone.close()
        assert stopped == [[51]] and result["changed"] is True and result["orphans"] == [51]
        assert result["ray_unreachable"].startswith("cannot reach the Ray dashboard at http://127.0.0.1:")
        # Without stop_orphans the unreachable head is the task's failure, as before.
        with pytest.raises(ray_job.RayJobError, match="cannot reach the Ray dashboard"):
            ray_job.ensure_absent(client, "vllm", False, 10, 1)

    def test_the_processes_of_the_kept_job_are_not_orphans(self):
        processes = {10: "keep-me", 11: "keep-me", 12: "gone"}
        assert ray_job.orphans_of(processes, {"keep-me"}) == {12: "gone"}
