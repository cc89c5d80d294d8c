"""site.yml on inventories/local with several replicas, for real: Ray Serve LLM on the CPU Ray cluster (head + worker
on this machine), two replicas of the demo model behind one endpoint.

The tests run in file order on one deployment: converge with ray_vllm_replicas=2, a re-run with changed=0, requests
that reach both replicas, one replica's engine killed during a bounded load, 2 -> 1 in place under load,
autoscaling between 1 and 2, teardown. What the faults cost is printed and kept in tests/output/site_local_replicas.
Ports and the Ray temp dirs differ from the inventory's defaults and from test_site_local's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request

import pytest
import ray_local
from chat_load import BackgroundLoad, run_load
from playbook_runner import REPO, run_playbook

pytestmark = pytest.mark.integration

DASHBOARD_PORT = 38500
SERVE_PORT = 38501
TEMP_PREFIX = "/tmp/ray-llmops-replicas"
TEST_VARS = [
    "-e", "ray_cluster_port=36500",
    "-e", "ray_cluster_dashboard_port=%d" % DASHBOARD_PORT,
    "-e", "vllm_serve_port=%d" % SERVE_PORT,
    "-e", "ray_cluster_temp_dir_prefix=%s" % TEMP_PREFIX,
    "-e", "ray_cluster_dashboard_agent_port=38502",
    # Two requests more on one replica than on the other send the next one to the shorter queue, so that this
    # test's four concurrent requests spread although they share the chat template's prefix.
    "-e", "ray_vllm_target_concurrency=2",
]  # fmt: skip
TWO_REPLICAS = ["-e", "ray_vllm_replicas=2"]
MODEL = "smollm2-135m-instruct"
DEPLOYMENT = "LLMServer:" + MODEL
DASHBOARD = "http://127.0.0.1:%d" % DASHBOARD_PORT
ENDPOINT = "http://127.0.0.1:%d" % SERVE_PORT
LOG_DIR = REPO / "tests" / "output" / "site_local_replicas"
API_KEY_FILE = REPO / ".build" / "local" / "vllm-api-key"


def site(name, *extra):
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    return run_playbook("site.yml", extra_args=list(TEST_VARS) + list(extra), log_path=LOG_DIR / ("%s.log" % name))


def get_json(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def serve_app():
    return get_json(DASHBOARD + "/api/serve/applications/")["applications"].get("llm")


def llm_replicas():
    """``[(replica id, state, pid)]`` of the LLM deployment, and its target count."""
    deployment = serve_app()["deployments"][DEPLOYMENT]
    replicas = [(r["replica_id"], r["state"], r.get("pid")) for r in deployment["replicas"]]
    return replicas, deployment["target_num_replicas"]


def running_ids():
    return sorted(replica for replica, state, _pid in llm_replicas()[0] if state == "RUNNING")


def requests_per_replica():
    """``{replica id: requests}`` from Ray Serve's metrics on every node (ray_serve_deployment_request_counter)."""
    counts = {}
    for node in get_json(DASHBOARD + "/nodes?view=summary")["data"]["summary"]:
        port = node.get("raylet", {}).get("metricsExportPort")
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as response:
            text = response.read().decode()
        for line in text.splitlines():
            if line.startswith("ray_serve_deployment_request_counter_total{") and f'deployment="{DEPLOYMENT}"' in line:
                replica = line.split('replica="', 1)[1].split('"', 1)[0]
                counts[replica] = counts.get(replica, 0) + float(line.rsplit(" ", 1)[1])
    return counts


def engine_pid(replica_pid):
    """The pid of vLLM's EngineCore process that a replica actor started."""
    command = ["ps", "-o", "pid=,comm=", "--ppid", str(replica_pid)]
    out = subprocess.run(command, capture_output=True, text=True, check=False)
    for line in out.stdout.splitlines():
        pid, comm = line.split(None, 1)
        if "EngineCor" in comm:
            return int(pid)
    raise AssertionError("replica %s has no EngineCore child: %s" % (replica_pid, out.stdout))


def wait_for(condition, timeout, what, interval=2):
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        value = condition()
        if value:
            return time.monotonic() - start
        time.sleep(interval)
    raise AssertionError("%s: not seen within %d s" % (what, timeout))


def keep(name, report):
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    (LOG_DIR / ("%s.json" % name)).write_text(json.dumps(report, indent=2) + "\n")
    print("%s: %s" % (name, json.dumps(report)))


def target(key, max_tokens=24):
    return (ENDPOINT, key, MODEL, max_tokens)


@pytest.fixture(scope="module", autouse=True)
def stop_everything_at_the_end():
    yield
    run_playbook("playbooks/teardown.yml", extra_args=TEST_VARS, log_path=LOG_DIR / "teardown-final.log")
    for pid in ray_local.pids_mentioning(TEMP_PREFIX + "-"):
        os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def key():
    rc, out, recap = site("converge", *TWO_REPLICAS)
    assert rc == 0, out[-8000:]
    assert "Replicas: 2 behind Ray Serve" in out, out[-4000:]
    secret = API_KEY_FILE.read_text().strip()
    assert secret not in out, "the API key leaked into the play output"
    return secret


def test_two_replicas_answer_behind_one_endpoint_and_the_key_stays_secret(key):
    replicas, wanted = llm_replicas()
    assert wanted == 2 and sum(state == "RUNNING" for _r, state, _p in replicas) == 2, replicas
    config = json.dumps(serve_app()["deployed_app_config"])
    assert key not in config, "the API key is in Serve's config"
    assert "api_key_digest" in config
    without_key = urllib.request.Request(ENDPOINT + "/v1/models")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(without_key, timeout=10)
    assert refused.value.code == 401
    report = run_load(target(key), requests=16, concurrency=4, attempts=1)
    assert report.failed == 0, report.as_dict()
    seen = {}

    def both_served():
        seen.update(requests_per_replica())
        return len([count for count in seen.values() if count > 0]) >= 2

    wait_for(both_served, 60, "requests counted on both replicas (Serve's metrics)")
    keep("requests-per-replica", seen)


def test_second_run_changes_nothing(key):
    start = time.monotonic()
    rc, out, recap = site("idempotence", *TWO_REPLICAS)
    assert rc == 0, out[-8000:]
    assert all(host["changed"] == 0 for host in recap.values()), recap
    print("idempotent re-run with two replicas took %.1f s" % (time.monotonic() - start))


def test_a_killed_engine_is_replaced_while_the_load_goes_on(key):
    before = running_ids()
    victim_id, _state, victim_pid = next(r for r in llm_replicas()[0] if r[1] == "RUNNING")
    # A client that retries for 30 s (2, 4, ... 10 s apart) rides out the seconds in which Serve still sends
    # requests to the dead replica: 3 failed health checks, 5 s apart.
    with BackgroundLoad(target(key), requests=40, concurrency=4, attempts=6) as load:
        time.sleep(3)
        os.kill(engine_pid(victim_pid), signal.SIGKILL)
        recovery = wait_for(
            lambda: len(running_ids()) == 2 and victim_id not in running_ids(), 300, "a new replica in place"
        )
    report = dict(load.report.as_dict(), killed_replica=victim_id, replicas_before=before, after=running_ids())
    report["recovery_s"] = round(recovery, 1)
    keep("engine-killed", report)
    assert load.report.failed == 0, report


def test_two_to_one_is_applied_in_place_without_a_failed_request(key):
    before = running_ids()
    with BackgroundLoad(target(key), requests=30, concurrency=3) as load:
        rc, out, recap = site("scale-down", "-e", "ray_vllm_replicas=1")
    assert rc == 0, out[-8000:]
    assert recap["ray-head-local"]["changed"] >= 1
    after = running_ids()
    keep("scale-down", dict(load.report.as_dict(), replicas_before=before, replicas_after=after))
    assert len(after) == 1 and after[0] in before, "the remaining replica was restarted, not kept"
    assert load.report.failed == 0, load.report.as_dict()


def test_autoscaling_adds_a_replica_under_load_and_removes_it_when_idle(key):
    scaling = [
        "-e", "ray_vllm_min_replicas=1", "-e", "ray_vllm_max_replicas=2",
        "-e", json.dumps({"vllm_serve_autoscaling_options": {"upscale_delay_s": 2, "downscale_delay_s": 10}}),
    ]  # fmt: skip
    rc, out, recap = site("autoscaling", *scaling)
    assert rc == 0, out[-8000:]
    seen = []

    def look():
        replicas, wanted = llm_replicas()
        seen.append((wanted, sorted(state for _r, state, _p in replicas)))
        return seen[-1]

    assert look()[0] == 1
    # Eight requests at once against a target of two per replica: Serve wants a second replica within seconds.
    with BackgroundLoad(target(key, max_tokens=48), requests=48, concurrency=8) as load:
        up = wait_for(lambda: look()[0] == 2 and len(seen[-1][1]) == 2, 120, "a second replica under load")
    down = wait_for(lambda: look() == (1, ["RUNNING"]), 180, "back to one running replica when idle")
    report = dict(load.report.as_dict(), up_s=round(up, 1), down_s=round(down, 1))
    distinct = dict.fromkeys((wanted, tuple(states)) for wanted, states in seen)
    report["seen"] = [f"{wanted} wanted: {', '.join(states)}" for wanted, states in distinct]
    keep("autoscaling", report)
    assert load.report.failed == 0, report


def test_teardown_removes_the_application_and_its_replicas(key):
    rc, out, _recap = run_playbook("playbooks/teardown.yml", extra_args=TEST_VARS, log_path=LOG_DIR / "teardown.log")
    assert rc == 0, out[-6000:]
    assert ray_local.pids_mentioning(TEMP_PREFIX + "-") == []
    assert not ray_local.port_is_open("127.0.0.1", SERVE_PORT, timeout=1)
