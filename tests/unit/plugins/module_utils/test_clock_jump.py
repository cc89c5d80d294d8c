# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The wall clock jumping during a wait (an NTP step, a resumed VM, ``date -s``): issue 14's clock fault.

A wait must neither end early nor stretch, and what a gate reports (elapsed seconds, a submission id, a bundle name)
must stay right. Here the jump is injected into the process's ``time.time`` while the waits run with their default
clocks; tests/integration/test_clock_jump.py jumps the real wall clock of a module process under libfaketime.
"""

from __future__ import annotations

import inspect
import io
import json
import os
import re
import time
import urllib.error
from pathlib import Path

import pytest

from ansible_collections.llmops.ray_vllm.plugins.module_utils import _model_dir, _ray_job, _ray_node, _wait
from ansible_collections.llmops.ray_vllm.plugins.module_utils._support_bundle import make_bundle

HOURS = 3600
PLUGINS = Path(__file__).resolve().parents[4] / "plugins"
RAY_JOBS = Path(__file__).resolve().parents[3] / "fixtures" / "ray_jobs"
BASE_URL = "http://127.0.0.1:8265"
# Every wall-clock reading in plugins/, and why a jump does not hurt it. A new one fails until it is added here.
WALL_CLOCK_READS = {
    "module_utils/_model_dir.py": "completed_at records when a download ended: a label, never a duration",
    "module_utils/_ray_job.py": "a submission id's stamp; make_submission_id keeps it unique against Ray's listed ids",
    "module_utils/_support_bundle.py": "the name's stamp and the mtimes are labels; free_path keeps names unique",
    "module_utils/_tls_check.py": "a certificate's validity is defined against the wall clock, as TLS itself checks it",
}
WALL_CLOCK_CALL = re.compile(r"\btime\.time(?:_ns)?\b|\bdatetime\.(?:datetime\.)?(?:now|utcnow|today)\b|\bdate\.today")


class SteppedWallClock:
    """``time.time`` as the real wall clock plus an offset that a test changes mid-wait (the step)."""

    def __init__(self, monkeypatch):
        self.offset = 0.0
        real = time.time
        monkeypatch.setattr(time, "time", lambda: real() + self.offset)


def observer(wall, steps, done_at=None, limit=40):
    """An ``observe`` that steps the wall clock by ``steps[n]`` seconds at its n-th call (1-based)."""
    calls = []

    def observe():
        calls.append(time.time())
        if len(calls) > limit:
            raise AssertionError(f"the wait went on for {len(calls)} observations: the clock step stretched it")
        wall.offset += steps.get(len(calls), 0)
        return len(calls) == done_at

    return observe, calls


def test_waits_default_to_the_monotonic_clock():
    waits = {
        "_wait.poll": _wait.poll,
        "_ray_job.submit_when_agent_ready": _ray_job.submit_when_agent_ready,
        "_ray_node.stop_processes": _ray_node.stop_processes,
        "_model_dir.ProgressReporter": _model_dir.ProgressReporter.__init__,
    }
    for name, function in waits.items():
        default = inspect.signature(function).parameters["clock"].default
        assert default is time.monotonic, f"{name} measures its wait with {default}, expected time.monotonic"


def test_every_wall_clock_read_in_plugins_is_known():
    seen = {}
    for path in sorted(PLUGINS.rglob("*.py")):
        hits = [line.strip() for line in path.read_text().splitlines() if WALL_CLOCK_CALL.search(line)]
        if hits:
            seen[str(path.relative_to(PLUGINS))] = hits
    unknown = {name: lines for name, lines in seen.items() if name not in WALL_CLOCK_READS}
    assert not unknown, (
        f"expected wall-clock reads only in {sorted(WALL_CLOCK_READS)}, seen also {unknown}. A wait or an elapsed "
        "time must use time.monotonic (an NTP step moves time.time); a real wall-clock need goes into "
        "WALL_CLOCK_READS with why a jump does not hurt it"
    )
    assert set(seen) == set(WALL_CLOCK_READS), f"no wall-clock read left in {set(WALL_CLOCK_READS) - set(seen)}"


@pytest.mark.parametrize("steps", [{2: 3 * HOURS}, {2: -3 * HOURS}, {2: 3 * HOURS, 4: -5 * HOURS}])
def test_a_step_mid_wait_neither_ends_nor_stretches_it(monkeypatch, steps):
    wall = SteppedWallClock(monkeypatch)
    observe, calls = observer(wall, steps, done_at=6)
    started = time.monotonic()
    done, attempts, elapsed = _wait.poll(observe, bool, timeout=5, interval=0.05)
    assert (done, attempts) == (True, 6)
    assert 0.2 <= elapsed <= time.monotonic() - started < 2
    assert abs((calls[-1] - calls[0]) - sum(steps.values())) < 1, "the wall clock the wait saw did not step"


@pytest.mark.parametrize("step", [3 * HOURS, -3 * HOURS])
def test_a_timeout_fires_after_its_real_duration(monkeypatch, step):
    wall = SteppedWallClock(monkeypatch)
    observe, _calls = observer(wall, {2: step})
    started = time.monotonic()
    done, attempts, elapsed = _wait.poll(observe, bool, timeout=0.3, interval=0.05)
    assert done is False
    assert 0.25 < elapsed < 0.5 and attempts >= 5
    assert time.monotonic() - started < 1


def test_a_submission_id_stays_new_when_the_clock_returns_to_an_earlier_second():
    taken = {"vllm-aaaaaaaaaaaa-1795862911", "vllm-aaaaaaaaaaaa-1795862911-2"}
    assert _ray_job.make_submission_id("vllm", "a" * 64, 1795862911.6, taken) == "vllm-aaaaaaaaaaaa-1795862911-3"
    assert _ray_job.make_submission_id("vllm", "a" * 64, 1795862912.0, taken) == "vllm-aaaaaaaaaaaa-1795862912"


def recorded(name):
    return json.loads((RAY_JOBS / (name + ".json")).read_text())


class RayHead:
    """The Jobs API of a head that ran the recorded ``list-after``: a used submission id is refused as Ray does."""

    def __init__(self):
        self.jobs = {job["submission_id"]: job for job in recorded("list-after")["json"] if job["submission_id"]}
        self.submitted = []

    def __call__(self, url, method, data, headers, validate_certs, timeout):
        path = url[len(BASE_URL) :]
        if (method, path) == ("GET", "/api/jobs/"):
            return self.answer(list(self.jobs.values()))
        if (method, path) == ("POST", "/api/jobs/"):
            body = json.loads(data)
            if body["submission_id"] in self.jobs:
                duplicate = recorded("submit-duplicate-id")
                raise urllib.error.HTTPError(url, duplicate["status"], "", {}, io.BytesIO(duplicate["text"].encode()))
            self.submitted.append(body["submission_id"])
            self.jobs[body["submission_id"]] = dict(body, status="PENDING", type="SUBMISSION", start_time=0)
            return self.answer({"submission_id": body["submission_id"]})
        return self.answer(self.jobs[path[len("/api/jobs/") :]])

    @staticmethod
    def answer(value):
        response = io.BytesIO(json.dumps(value).encode())
        response.getcode = lambda: 200
        return response


def test_ray_job_submits_after_the_clock_went_back_to_an_earlier_jobs_second(monkeypatch):
    head = RayHead()
    earlier = "vllm-aaaaaaaaaaaa-1795862911"
    assert head.jobs[earlier]["status"] == "STOPPED"
    monkeypatch.setattr(_ray_job, "config_hash", lambda spec: "a" * 64)
    client = _ray_job.RayJobsClient(BASE_URL, opener=head)
    spec = _ray_job.job_spec("python serve.py")
    # The wall clock was stepped back by hours, into the second the earlier job of these settings was submitted in.
    result = _ray_job.ensure_present(client, "vllm", spec, False, False, 5, 0, now=lambda: 1795862911.4)
    assert head.submitted == [earlier + "-2"]
    assert (result["submission_id"], result["status"], result["changed"]) == (earlier + "-2", "PENDING", True)


def test_a_bundle_taken_in_the_same_second_as_an_earlier_one_keeps_both(tmp_path):
    now = 1796526900  # the clock set back to the second of the first bundle
    first = make_bundle(str(tmp_path), "llm", [{"name": "a.txt", "content": "first"}], now=now)
    second = make_bundle(str(tmp_path), "llm", [{"name": "a.txt", "content": "second"}], now=now)
    assert os.path.basename(second["path"]) == os.path.basename(first["path"])[: -len(".tar.gz")] + "-2.tar.gz"
    assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(r["path"]) for r in (first, second))
    assert second["members"][0].startswith(os.path.basename(second["path"])[: -len(".tar.gz")] + "/")
