"""site.yml on inventories/local, for real: Ray head + worker on this machine, vLLM on CPU, the demo model.

Order matters and is kept by the file: bad input first (nothing may start), then --check (nothing may start),
then a real run, a second run with changed=0, the fault suite (a Ray worker and the vLLM server killed, the API
key file deleted, a model file removed, the serving port taken: found by --check runs, healed by one re-run; then the
Ray head killed, its orphaned vLLM server found, healed by one re-run);
then, on the same Ray cluster,
two replicas behind one endpoint with Ray Serve LLM (the single engine replaced), a re-run with changed=0, requests
on both replicas, one replica's engine killed during a bounded load, 2 -> 1 in place under load, autoscaling between
1 and 2; and the teardown. What the faults cost is printed and kept in tests/output/site_local/*.json.
The ports and Ray temp dirs differ from the inventory's defaults, so a running `make demo` is left alone.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer

import dashboard_checks
import prometheus_server
import pytest
import ray_local
import secret_scan
import vllm_local
from chat_load import BackgroundLoad, chat, run_load
from playbook_runner import REPO, run_playbook

sys.path.insert(0, vllm_local.collections_path())
from ansible_collections.llmops.ray_vllm.plugins.module_utils._monitoring import dashboard_queries

pytestmark = pytest.mark.integration

GCS_PORT = 36400
DASHBOARD_PORT = 38400
VLLM_PORT = 38401
DASHBOARD = "http://127.0.0.1:%d" % DASHBOARD_PORT
TEMP_PREFIX = "/tmp/ray-llmops-test"
TEST_VARS = [
    "-e", "ray_cluster_port=%d" % GCS_PORT,
    "-e", "ray_cluster_dashboard_port=%d" % DASHBOARD_PORT,
    "-e", "vllm_serve_port=%d" % VLLM_PORT,
    "-e", "ray_cluster_temp_dir_prefix=%s" % TEMP_PREFIX,
    "-e", "ray_cluster_dashboard_agent_port=38402",
    "-e", "monitoring_file_sd_dir=%s/monitoring/file_sd" % (REPO / "tests" / "output" / "site_local"),
    "-e", "monitoring_dashboard_dir=%s/monitoring/dashboards" % (REPO / "tests" / "output" / "site_local"),
    "-e", "monitoring_scrape_interval=1",
]  # fmt: skip
LOG_DIR = REPO / "tests" / "output" / "site_local"
FILE_SD = LOG_DIR / "monitoring" / "file_sd"
DASHBOARD_FILE = REPO / "roles" / "monitoring" / "files" / "ray-vllm-dashboard.json"
API_KEY_FILE = REPO / ".build" / "local" / "vllm-api-key"
RAY_TOKEN_FILE = REPO / ".build" / "local" / "ray-auth-token"
MODEL_DIR = REPO / ".build" / "local" / "models" / "SmolLM2-135M-Instruct"
# A hub token the first deploy is given (the local model needs none): like the API key and the Ray token, it must
# show nowhere.
HUB_TOKEN = "hf_scan0test0token0d41d8cd98f00b204e98"


def node_pids(node):
    """PIDs of the Ray processes of one inventory node of this test (found by its Ray temp dir)."""
    return ray_local.pids_mentioning("%s-%s/session_" % (TEMP_PREFIX, node))


def port_open(port):
    return ray_local.port_is_open("127.0.0.1", port, timeout=1)


def site(name, *extra, check=False):
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    args = list(TEST_VARS) + list(extra) + (["--check", "--diff"] if check else [])
    return run_playbook("site.yml", extra_args=args, log_path=LOG_DIR / ("%s.log" % name))


def assert_nothing_started():
    assert node_pids("ray-head-local") == [] and node_pids("ray-worker-local") == [], "a Ray node was started"
    assert not port_open(VLLM_PORT), "something listens on the vLLM port"


@pytest.fixture(scope="module", autouse=True)
def stop_everything_at_the_end():
    yield
    run_playbook("playbooks/teardown.yml", extra_args=TEST_VARS, log_path=LOG_DIR / "teardown-final.log")
    for node in ("ray-head-local", "ray-worker-local"):
        for pid in node_pids(node):
            os.kill(pid, signal.SIGKILL)


def test_unknown_model_source_fails_before_anything_starts():
    rc, out, _recap = site("bad-source", "-e", "model_storage_source=s3")
    assert rc != 0
    # The role's argument spec names the variable, the accepted values and the value seen.
    out = " ".join(out.split())
    assert "value of model_storage_source must be one of: modelscope, huggingface, local, gguf, got: s3" in out
    assert_nothing_started()


def test_tensor_parallel_that_does_not_divide_the_heads_fails_before_anything_starts():
    rc, out, _recap = site("bad-tp", "-e", "ray_vllm_tensor_parallel_size=2")
    assert rc != 0
    assert "tensor_parallel_size=2" in out and "num_attention_heads=9" in out
    assert_nothing_started()


def test_more_gpus_than_found_fails_before_anything_starts():
    rc, out, _recap = site("bad-gpus", "-e", "cuda_check_allow_cpu=false", "-e", "cuda_check_min_gpus=1")
    assert rc != 0
    assert "no NVIDIA GPU found" in out
    assert "cuda_check_allow_cpu" in out
    assert_nothing_started()


class _Busy(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"not vllm")

    def log_message(self, *args):
        pass


def test_port_in_use_fails_before_anything_starts():
    server = HTTPServer(("127.0.0.1", VLLM_PORT), _Busy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        rc, out, _recap = site("port-in-use")
    finally:
        server.shutdown()
        server.server_close()
    assert rc != 0
    assert "Port %d is already in use by another process (pid %d: " % (VLLM_PORT, os.getpid()) in " ".join(out.split())
    assert node_pids("ray-head-local") == [] and node_pids("ray-worker-local") == []


def test_check_mode_shows_the_plan_and_starts_nothing():
    rc, out, recap = site("check", check=True)
    assert rc == 0, out[-6000:]
    assert "TP" in out and "PP" in out, "the plan table is not in the output"
    assert_nothing_started()


def ask(question, key):
    body = json.dumps(
        {"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": question}], "max_tokens": 16}
    ).encode()
    request = urllib.request.Request(
        "http://127.0.0.1:%d/v1/chat/completions" % VLLM_PORT,
        data=body,
        headers={"Content-Type": "application/json", "Authorization": "Bearer %s" % key},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.load(response)["choices"][0]["message"]["content"]


def test_deploy_is_real_idempotent_and_heals():
    # The first deploy at -vvv: every module's arguments and results are printed, and a secret must be in none.
    rc, out, recap = site("converge", "-vvv", "-e", "model_storage_token=%s" % HUB_TOKEN)
    assert rc == 0, out[-8000:]
    assert_no_secret_shows(out)
    assert set(recap) == {"ray-head-local", "ray-worker-local"}
    assert "Endpoint: http://127.0.0.1:%d/v1" % VLLM_PORT in out
    assert "A: " in out
    key = API_KEY_FILE.read_text().strip()
    assert len(key) >= 32
    assert key not in out, "the API key leaked into the play output"
    assert ask("Say hello.", key).strip()
    assert node_pids("ray-head-local") and node_pids("ray-worker-local")
    assert_ray_token_auth(out)

    # The same command again (the hub token is a setting: a run without it is a changed setting, a full run).
    start = time.monotonic()
    rc, out, recap = site("idempotence", "-e", "model_storage_token=%s" % HUB_TOKEN)
    assert rc == 0, out[-8000:]
    assert all(host["changed"] == 0 for host in recap.values()), recap
    print("idempotent re-run took %.1f s" % (time.monotonic() - start))
    # One look per node (deployment_stamp) found each as the first run left it; the other plays matched no host.
    assert_the_look_found_it_standing(out)

    faults_are_found_then_healed_by_a_rerun(key)
    the_head_killed_is_found_then_healed_by_a_rerun(key)
    a_changed_setting_runs_every_play(key)


def assert_the_look_found_it_standing(out):
    flat = " ".join(out.split())
    assert flat.count("This node stands as the last full run left it") == 2, out[-6000:]
    assert "PLAY [Start the Ray cluster] skipping: no hosts matched" in " ".join(
        line.strip("* ") for line in out.splitlines() if line.strip()
    ), out[-6000:]
    assert re.search(r"A: \S", flat), flat[-3000:]


HAMLET = json.dumps({"vllm_serve_sample_question": "Who wrote Hamlet?"})


def a_changed_setting_runs_every_play(key):
    """A variable given anew (the gate's question) is a difference: every play runs, none changes anything, and the
    vLLM gate asks the new question; the next run stands again."""
    rc, out, recap = site("changed-setting", "-e", HAMLET)
    assert rc == 0, out[-8000:]
    assert all(host["changed"] == 0 for host in recap.values()), recap
    flat = " ".join(out.split())
    assert "the settings or the collection changed since the last full run" in flat, flat[-6000:]
    assert "Q: Who wrote Hamlet?" in flat and "shakespeare" in flat.lower(), flat[-3000:]
    rc, out, recap = site("changed-setting-again", "-e", HAMLET)
    assert rc == 0 and all(host["changed"] == 0 for host in recap.values()), out[-8000:]
    assert_the_look_found_it_standing(out)
    assert API_KEY_FILE.read_text().strip() == key


# --- monitoring (issue 16): a real Prometheus scrapes the targets that roles/monitoring wrote (ray_vllm_monitoring
# is on in inventories/local), and every dashboard query returns data after a short bounded load.


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    server = prometheus_server.Prometheus(FILE_SD / "ray-vllm-scrape-configs.yml", tmp_path_factory.mktemp("prom"))
    rc, output = server.check_config()
    assert rc == 0, output
    server.start()
    yield server
    server.stop()


def read_targets(name):
    return json.loads((FILE_SD / name).read_text())


def all_targets_up(prometheus, jobs):
    targets = prometheus.targets()
    return all(targets.get(job) and all(health == "up" for _u, health, _e in targets[job]) for job in jobs)


def dashboard_has_data(prometheus, engine, key, timeout):
    """Every dashboard query for ``engine`` returns a number during a bounded load or within ``timeout`` s of its
    start; else the panels without data, by name. Ray exports a gauge only while it is set (during the load) and
    its metrics every few seconds; the rates need two scrapes."""
    queries = prometheus_server.queries_for(dashboard_queries(json.loads(DASHBOARD_FILE.read_text())), engine)
    pending = list(queries)
    deadline = time.monotonic() + timeout
    with BackgroundLoad(target(key), requests=24, concurrency=4, attempts=1) as load:
        while pending and time.monotonic() < deadline:
            time.sleep(2)
            pending = prometheus_server.queries_without_data(prometheus, pending)
    while pending and time.monotonic() < deadline:
        time.sleep(2)
        pending = prometheus_server.queries_without_data(prometheus, pending)
    assert load.report.failed == 0, load.report.as_dict()
    assert not pending, "panels without data:\n" + "\n".join("%s (query %s): %s" % entry for entry in pending)
    return queries


def test_prometheus_scrapes_the_role_s_targets_and_every_vllm_panel_has_data(prometheus):
    assert [group["targets"] for group in read_targets("ray-vllm-vllm.json")] == [["127.0.0.1:%d" % VLLM_PORT]]
    ray_targets = [target for group in read_targets("ray-vllm-ray.json") for target in group["targets"]]
    # Each node's metrics export port, and the head's autoscaler and dashboard metrics ports.
    assert len(ray_targets) >= 4, ray_targets
    assert (LOG_DIR / "monitoring" / "dashboards" / DASHBOARD_FILE.name).read_text() == DASHBOARD_FILE.read_text()
    wait_for(lambda: all_targets_up(prometheus, ("ray-vllm-vllm", "ray-vllm-ray")), 60, "every target up")
    queries = dashboard_has_data(prometheus, "vllm", API_KEY_FILE.read_text().strip(), timeout=90)
    keep("prometheus-vllm", {"targets": prometheus.targets(), "queries": len(queries)})


def test_a_failed_vllm_gate_writes_a_support_bundle_with_the_servers_answer(tmp_path):
    # The gate's test completion asks for more tokens than the model's context holds: the running server refuses it.
    # Nothing changes before the gate, which fails within its two tries and leaves the bundle.
    start = time.monotonic()
    too_long = ["-e", "vllm_serve_sample_max_tokens=1000000"]
    tries = ["-e", "vllm_serve_startup_timeout=2", "-e", "vllm_serve_health_interval=1"]
    members, gate = failed_gate_bundle(
        "vllm-gate-fails-bundle", [*too_long, *tries], "test completion answered 400", tmp_path
    )
    assert gate["name"].endswith("Wait until vLLM answers a chat completion"), gate
    assert gate["result"]["status"] == "not_answering" and gate["result"]["endpoints"]["/health"] == 200, gate
    assert "ray_layout" in json.loads(members["plan.json"])
    assert [name for name in members if "/job-driver-" in name], sorted(members)
    assert {"ray/status.txt", "ray/jobs.json"} <= set(members), sorted(members)
    # ray status of this test's cluster (its temp dir prefix is not the inventory's).
    assert "Active:" in members["ray/status.txt"], members["ray/status.txt"][-2000:]
    assert port_open(VLLM_PORT)
    print("failed vLLM gate with its support bundle took %.1f s" % (time.monotonic() - start))


# --- the fault suite (issue 14): faults injected for real, all at once; --check runs find each one (a single look,
# no wait), naming what died and where its log is; one re-run heals them all, with the same API key.

FAULTS = {
    # The intruder is a thread of this test's own process, named by its pid.
    "the serving port taken": "on ray-head-local, Port %d is already in use by another process (pid %d: "
    % (VLLM_PORT, os.getpid()),
    "a Ray worker killed": "The Ray worker 'ray-worker-local' ran before but is not running",
    "the vLLM process killed": "of vllm FAILED: Job entrypoint command failed with exit code",
    "the API key file deleted": "the API key file %s on ray-head-local was missing" % API_KEY_FILE,
    "a partial model": "tokenizer.json is missing (the completion marker lists it",
}
WHERE_THE_LOGS_ARE = {
    "a Ray worker killed": "%s-ray-worker-local/session_latest/logs (raylet.out)" % TEMP_PREFIX,
    "the vLLM process killed": "ray job logs -f vllm-",
    # vLLM's engine process outlives its killed API server, holding the model's memory.
    "the engine the killed server left": "were still running on this host without their job",
}


def orphan_engines():
    """vLLM engine processes whose parent died (reparented to init)."""
    engines = []
    for pid in ray_local.pids_mentioning("VLLM::EngineCore"):
        try:
            with open("/proc/%d/stat" % pid) as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        if parent == 1:
            engines.append(pid)
    return engines


def vllm_server_pids():
    servers = set(ray_local.pids_mentioning("vllm.entrypoints.openai.api_server"))
    return sorted(servers & set(ray_local.pids_mentioning("--port %d" % VLLM_PORT)))


def inject_the_faults():
    for pid in node_pids("ray-worker-local") + vllm_server_pids():
        os.kill(pid, signal.SIGKILL)
    API_KEY_FILE.unlink()
    (MODEL_DIR / "tokenizer.json").unlink()
    wait_for(lambda: not port_open(VLLM_PORT) and not node_pids("ray-worker-local"), 30, "the killed processes gone")
    intruder = HTTPServer(("127.0.0.1", VLLM_PORT), _Busy)
    threading.Thread(target=intruder.serve_forever, daemon=True).start()
    return intruder


def timed_site(name, **options):
    start = time.monotonic()
    rc, out, recap = site(name, **options)
    return rc, " ".join(out.split()), recap, round(time.monotonic() - start, 1)


def faults_are_found_then_healed_by_a_rerun(key):
    intruder = inject_the_faults()
    try:
        # The preflight refuses the taken port before anything changes (and before the other faults are looked at).
        rc, out, _recap, port_s = timed_site("faults-check-port", check=True)
    finally:
        intruder.shutdown()
        intruder.server_close()
    assert rc != 0 and FAULTS["the serving port taken"] in out, out[-4000:]
    rc, out, recap, check_s = timed_site("faults-check", check=True)
    assert rc == 0, out[-8000:]
    # The look found the faults first: each node goes the full way.
    assert out.replace("''", "'").count("A full run follows; this node differs from the last full run's record") == 2, (
        out[-8000:]
    )
    missing = [fault for fault, words in {**FAULTS, **WHERE_THE_LOGS_ARE}.items() if words not in out]
    # Only the port is free again: the intruder is gone.
    assert missing == ["the serving port taken"], (missing, out[-8000:])
    assert key not in out
    # --check changed nothing.
    assert not API_KEY_FILE.exists() and not (MODEL_DIR / "tokenizer.json").exists()
    assert node_pids("ray-worker-local") == [] and vllm_server_pids() == []
    rc, out, recap, heal_s = timed_site("faults-heal")
    assert rc == 0, out[-8000:]
    healed = {
        "a Ray worker killed": bool(node_pids("ray-worker-local")),
        "the vLLM process killed": bool(vllm_server_pids()) and orphan_engines() == [],
        "the API key file deleted": API_KEY_FILE.read_text().strip() == key,
        "a partial model": (MODEL_DIR / "tokenizer.json").is_file(),
    }
    keep(
        "faults",
        {
            "detected_s": dict({"the serving port taken": port_s}, **{fault: check_s for fault in healed}),
            "healed": dict(healed, **{"the serving port taken": True}),
            "heal_run_s": heal_s,
        },
    )
    assert all(healed.values()), healed
    assert key not in out
    # The same key still opens the endpoint.
    assert ask("Say hello again.", key).strip()


# The Ray head killed (SIGKILL of its Ray processes): the vLLM server started by its job outlives it, serving on its
# port with no Ray cluster behind it. --check names the dead head, its logs and the orphaned server; one re-run starts
# a new head, restarts the worker attached to the old one, stops the orphan and serves again with the same key.
HEAD_FAULT = {
    "the head": "The Ray head 'ray-head-local' ran before but is not running",
    "its logs": "%s-ray-head-local/session_latest/logs" % TEMP_PREFIX,
    "the orphaned server": "Port %d is held by pid" % VLLM_PORT,
    "what the run does with it": "A run stops it before it starts the server again",
}


def the_head_killed_is_found_then_healed_by_a_rerun(key):
    servers = vllm_server_pids()
    assert servers, "no vLLM server runs before the head is killed"
    for pid in node_pids("ray-head-local"):
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not node_pids("ray-head-local"), 30, "the killed head gone")
    orphans = [pid for pid in vllm_server_pids() if pid in servers]
    assert orphans and port_open(VLLM_PORT), "the vLLM server did not outlive its head"
    rc, out, _recap, check_s = timed_site("head-fault-check", check=True)
    assert rc == 0, out[-8000:]
    out = out.replace("''", "'")  # the yaml callback's single-quoted style doubles the quotes in a message
    missing = [what for what, words in HEAD_FAULT.items() if words not in out]
    assert not missing and "of the ended Ray job vllm-" in out, (missing, out[-8000:])
    # The same settings as the heal run that recorded: the look itself found the head gone.
    assert "Ray does not answer at" in out, out[-8000:]
    # --check changed nothing: the server still holds the port (the job's shell may go on its own, with the head).
    left = vllm_server_pids()
    assert node_pids("ray-head-local") == [] and left and set(left) <= set(orphans) and port_open(VLLM_PORT), left
    rc, out, recap, heal_s = timed_site("head-fault-heal")
    assert rc == 0, out[-8000:]
    healed = bool(node_pids("ray-head-local")) and bool(node_pids("ray-worker-local"))
    healed = healed and not set(vllm_server_pids()) & set(servers) and vllm_server_pids() != []
    keep("head_fault", {"detected_s": check_s, "healed": healed, "heal_run_s": heal_s})
    assert healed, (node_pids("ray-head-local"), node_pids("ray-worker-local"), servers, vllm_server_pids())
    assert orphan_engines() == [] and API_KEY_FILE.read_text().strip() == key
    assert ask("Who wrote Hamlet?", key).strip()


def assert_no_secret_shows(play_output):
    """The API key, the Ray token and the hub token are in none of: the -vvv play output, the Ray job list, the
    process list, the Ray and vLLM logs."""
    secrets = {
        "the API key": API_KEY_FILE.read_text().strip(),
        "the Ray token": RAY_TOKEN_FILE.read_text().strip(),
        "the hub token": HUB_TOKEN,
    }
    places = {"the -vvv play output": play_output, "the Ray job list": json.dumps(get_json(DASHBOARD + "/api/jobs/"))}
    places.update(secret_scan.process_list())
    places.update(secret_scan.log_files("%s-*/session_latest/logs/**" % TEMP_PREFIX))
    assert len(places) > 10, sorted(places)
    assert secret_scan.leaks(secrets, places) == []


def assert_ray_token_auth(play_output):
    """Ray's token authentication is on: the token file is the owner's alone, every Ray process has the mode and the
    file (not the token) in its environment, the Jobs API refuses a job without the token (401) or with a wrong one
    (403), and the token is nowhere in the play's output."""
    token = RAY_TOKEN_FILE.read_text().strip()
    assert len(token) >= 32 and RAY_TOKEN_FILE.stat().st_mode & 0o777 == 0o600
    assert token not in play_output, "the Ray token leaked into the play output"
    for pid in node_pids("ray-head-local") + node_pids("ray-worker-local"):
        with open("/proc/%d/environ" % pid, "rb") as handle:
            environ = handle.read().decode(errors="replace").split("\0")
        assert "RAY_AUTH_MODE=token" in environ and "RAY_AUTH_TOKEN_PATH=%s" % RAY_TOKEN_FILE in environ, pid
        assert token not in " ".join(environ)
    assert dashboard_checks.jobs_api_refusals(DASHBOARD) == (401, 403)
    assert get_json(DASHBOARD + "/api/jobs/") is not None


# --- several replicas, on the cluster the tests above left running

# Two requests more on one replica than on the other send the next one to the shorter queue, so that the four
# concurrent requests below spread although they share the chat template's prefix.
TARGET_TWO = ["-e", "ray_vllm_target_concurrency=2"]
TWO_REPLICAS = [*TARGET_TWO, "-e", "ray_vllm_replicas=2"]
# Between 1 and 2 replicas, quick to scale up and down.
AUTOSCALING = [
    "-e", "ray_vllm_min_replicas=1", "-e", "ray_vllm_max_replicas=2",
    "-e", json.dumps({"vllm_serve_autoscaling_options": {"upscale_delay_s": 2, "downscale_delay_s": 10}}),
]  # fmt: skip
MODEL = "smollm2-135m-instruct"
DEPLOYMENT = "LLMServer:" + MODEL
ENDPOINT = "http://127.0.0.1:%d" % VLLM_PORT


def get_json(url):
    """A dashboard read, with the Ray cluster's token (the cluster runs Ray's token authentication)."""
    request = urllib.request.Request(url, headers={"Authorization": "Bearer " + RAY_TOKEN_FILE.read_text().strip()})
    with urllib.request.urlopen(request, timeout=10) as response:
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
    """``{replica id: requests}`` from Ray Serve's metrics on every node of this test's cluster."""
    return dashboard_checks.requests_per_replica(
        get_json(DASHBOARD + "/nodes?view=summary")["data"]["summary"], DEPLOYMENT, host="127.0.0.1"
    )


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


@pytest.fixture(scope="module")
def replicas_key():
    rc, out, recap = site("replicas-converge", *TWO_REPLICAS)
    assert rc == 0, out[-8000:]
    assert "Replicas: 2 behind Ray Serve" in out, out[-4000:]
    secret = API_KEY_FILE.read_text().strip()
    assert secret not in out, "the API key leaked into the play output"
    assert node_pids("ray-head-local") and node_pids("ray-worker-local")
    return secret


def test_two_replicas_answer_behind_one_endpoint_and_the_key_stays_secret(replicas_key):
    replicas, wanted = llm_replicas()
    assert wanted == 2 and sum(state == "RUNNING" for _r, state, _p in replicas) == 2, replicas
    config = json.dumps(serve_app()["deployed_app_config"])
    assert replicas_key not in config, "the API key is in Serve's config"
    assert "api_key_digest" in config
    without_key = urllib.request.Request(ENDPOINT + "/v1/models")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(without_key, timeout=10)
    assert refused.value.code == 401
    # Long enough for the router's queue statistics to show one replica busier than the other.
    report = run_load(target(replicas_key), requests=32, concurrency=4, attempts=1)
    assert report.failed == 0, report.as_dict()
    seen = {}

    def both_served():
        seen.update(requests_per_replica())
        return len([count for count in seen.values() if count > 0]) >= 2

    wait_for(both_served, 60, "requests counted on both replicas (Serve's metrics)")
    keep("requests-per-replica", seen)


def test_second_run_changes_nothing(replicas_key):
    start = time.monotonic()
    rc, out, recap = site("replicas-idempotence", *TWO_REPLICAS)
    assert rc == 0, out[-8000:]
    assert all(host["changed"] == 0 for host in recap.values()), recap
    print("idempotent re-run with two replicas took %.1f s" % (time.monotonic() - start))


# Ray exports a counter only after its first increment. The dashboard's Ray Serve LLM names that this test cannot
# make Ray export, each with the event it waits for; tests/unit/plugins/module_utils/test_monitoring.py checks them
# against a recording of Ray's export and vLLM's source of the names instead. Every other ray_vllm_* name of the
# dashboard must be among the names the real Prometheus holds.
SERVE_NAMES_EXPORTED_ONLY_AFTER_AN_EVENT = {
    "ray_vllm_num_preemptions_total": "a preemption: vLLM preempts a request only when the KV cache runs out, which "
    "the demo model's short requests on two replicas do not make happen in any bounded time",
}
# Long enough to fill several KV cache blocks: the requests that share it count prefix-cache hits.
SHARED_PREFIX = "Reference notes. " + " ".join("Note %d: %d times %d is %d." % (i, i, i, i * i) for i in range(1, 90))


def serve_names(queries):
    """The ray_vllm_* metric names of ``queries`` (a histogram's as its _bucket series)."""
    return {name for _t, _r, expr in queries for name in re.findall(r"\bray_vllm_[a-z0-9_]+", expr)}


def send_prompts_sharing_a_prefix(key, count=4):
    """Requests one after the other that share SHARED_PREFIX: each replica that gets a second of them counts
    prefix-cache hits (ray_vllm_prefix_cache_hits_total, which Ray exports only once a hit was counted)."""
    for index in range(count):
        chat(ENDPOINT, key, MODEL, "%s\nQuestion %d: what is note %d?" % (SHARED_PREFIX, index, 3 + index), 4)


def record_ray_metrics(name):
    """Each live Ray node's /metrics text that carries the engines' ray_vllm_* series, kept in LOG_DIR as
    <name>-<node id>.txt (the recording under tests/fixtures/monitoring/ is one of these)."""
    kept = []
    for node in get_json(DASHBOARD + "/nodes?view=summary")["data"]["summary"]:
        raylet = node.get("raylet") or {}
        if raylet.get("state") != "ALIVE" or not raylet.get("metricsExportPort"):
            continue
        url = "http://127.0.0.1:%d/metrics" % raylet["metricsExportPort"]
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        if "\nray_vllm_" in text:
            path = LOG_DIR / ("%s-%s.txt" % (name, (raylet.get("nodeId") or str(raylet["metricsExportPort"]))[:12]))
            path.write_text(text)
            kept.append(path.name)
    return kept


def test_prometheus_sees_each_replica_and_every_serve_panel_has_data(replicas_key, prometheus):
    # The converge with two replicas rewrote the targets: no vLLM server of its own, the engines export through Ray.
    assert read_targets("ray-vllm-vllm.json") == []
    send_prompts_sharing_a_prefix(replicas_key)
    queries = dashboard_has_data(prometheus, "serve_llm", replicas_key, timeout=120)
    # One series per replica (both took requests: test_two_replicas_answer_behind_one_endpoint...), for the counters
    # and for each latency histogram (the dashboard's per-replica latency queries).
    tokens = prometheus.query("sum by (ReplicaId) (ray_vllm_generation_tokens_total)")
    assert len({labels["ReplicaId"] for labels, _value in tokens}) == 2, tokens
    for name in (
        "ray_vllm_time_to_first_token_seconds",
        "ray_vllm_inter_token_latency_seconds",
        "ray_vllm_e2e_request_latency_seconds",
    ):
        series = prometheus.query("sum by (ReplicaId) (%s_count)" % name)
        assert len({labels["ReplicaId"] for labels, _value in series}) == 2, (name, series)
    per_replica = [query for query in queries if "by (le, ReplicaId)" in query[2]]
    assert len(per_replica) == 6, per_replica
    # Every ray_vllm_* name the dashboard uses is one Ray really exported (so a misnamed one fails here, although
    # the preemption and prefix-cache queries fall back to 0 for a replica that has not counted yet), but for those
    # Ray exports only after an event this test names.
    wanted = serve_names(queries)
    assert set(SERVE_NAMES_EXPORTED_ONLY_AFTER_AN_EVENT) <= wanted, wanted
    missing = []

    def all_exported():
        exported = set(prometheus.api("label/__name__/values"))
        missing[:] = sorted(wanted - exported - set(SERVE_NAMES_EXPORTED_ONLY_AFTER_AN_EVENT))
        return not missing

    try:
        wait_for(all_exported, 60, "every ray_vllm_* name of the dashboard in Prometheus")
    except AssertionError:
        raise AssertionError("Ray exported none of: %s" % ", ".join(missing)) from None
    hits = prometheus.query("sum(ray_vllm_prefix_cache_hits_total)")
    assert prometheus_server.numbers(hits) and prometheus_server.numbers(hits)[0] > 0, hits
    recorded = record_ray_metrics("ray-metrics-serve")
    assert recorded, "no Ray node exported ray_vllm_* series"
    keep(
        "prometheus-serve",
        {"targets": prometheus.targets(), "queries": len(queries), "replicas": tokens, "recorded": recorded},
    )


def test_a_killed_engine_is_replaced_while_the_load_goes_on(replicas_key):
    before = running_ids()
    victim_id, _state, victim_pid = next(r for r in llm_replicas()[0] if r[1] == "RUNNING")
    # A client that retries for 30 s (2, 4, ... 10 s apart) rides out the seconds in which Serve still sends
    # requests to the dead replica: 3 failed health checks, 5 s apart.
    with BackgroundLoad(target(replicas_key), requests=40, concurrency=4, attempts=6) as load:
        time.sleep(3)
        os.kill(engine_pid(victim_pid), signal.SIGKILL)
        recovery = wait_for(
            lambda: len(running_ids()) == 2 and victim_id not in running_ids(), 300, "a new replica in place"
        )
    report = dict(load.report.as_dict(), killed_replica=victim_id, replicas_before=before, after=running_ids())
    report["recovery_s"] = round(recovery, 1)
    keep("engine-killed", report)
    assert load.report.failed == 0, report


def test_two_to_one_is_applied_in_place_without_a_failed_request(replicas_key):
    # The replica that replaced the killed one may still be starting, or restarting if a health check timed out on
    # a loaded machine: the scale-down starts from two running replicas, or "kept" means nothing.
    wait_for(lambda: len(running_ids()) == 2, 180, "two running replicas before the scale-down")
    before = running_ids()
    with BackgroundLoad(target(replicas_key), requests=30, concurrency=3) as load:
        rc, out, recap = site("replicas-scale-down", *TARGET_TWO, "-e", "ray_vllm_replicas=1")
    assert rc == 0, out[-8000:]
    assert recap["ray-head-local"]["changed"] >= 1
    after = running_ids()
    keep("scale-down", dict(load.report.as_dict(), replicas_before=before, replicas_after=after))
    assert len(after) == 1 and after[0] in before, "the remaining replica was restarted, not kept"
    assert load.report.failed == 0, load.report.as_dict()


def test_autoscaling_adds_a_replica_under_load_and_removes_it_when_idle(replicas_key):
    rc, out, recap = site("replicas-autoscaling", *TARGET_TWO, *AUTOSCALING)
    assert rc == 0, out[-8000:]
    seen = []

    def look():
        replicas, wanted = llm_replicas()
        seen.append((wanted, sorted(state for _r, state, _p in replicas)))
        return seen[-1]

    assert look()[0] == 1
    # Eight requests at once against a target of two per replica: Serve wants a second replica within seconds.
    with BackgroundLoad(target(replicas_key, max_tokens=48), requests=48, concurrency=8) as load:
        up = wait_for(lambda: look()[0] == 2 and len(seen[-1][1]) == 2, 120, "a second replica under load")
    down = wait_for(lambda: look() == (1, ["RUNNING"]), 180, "back to one running replica when idle")
    report = dict(load.report.as_dict(), up_s=round(up, 1), down_s=round(down, 1))
    distinct = dict.fromkeys((wanted, tuple(states)) for wanted, states in seen)
    report["seen"] = [f"{wanted} wanted: {', '.join(states)}" for wanted, states in distinct]
    keep("autoscaling", report)
    assert load.report.failed == 0, report


# --- support bundles (docs/support-bundle.md), on the cluster the tests above left running


def failed_gate_bundle(name, extra, says, directory):
    """A site run whose gate fails on the running deployment: nothing changed, the failure says ``says``, and the
    bundle in ``directory``. Returns its members and its gate.json."""
    rc, out, recap = site(name, *extra, "-e", "support_bundle_dir=%s" % directory)
    assert rc != 0
    assert all(host["changed"] == 0 for host in recap.values()), recap
    assert says in " ".join(out.split()), out[-4000:]
    members = support_bundle(out, directory)
    return members, json.loads(members["gate.json"])


def support_bundle(out, directory):
    """The members of the one bundle in directory (by their name under its top directory), checked for the secrets."""
    (path,) = directory.glob("llmops-support-llm-*.tar.gz")
    assert "Support bundle: %s" % path in " ".join(out.split()), out[-4000:]
    assert path.stat().st_mode & 0o777 == 0o600
    with tarfile.open(path) as archive:
        members = {
            member.name.split("/", 1)[1]: archive.extractfile(member).read().decode(errors="replace")
            for member in archive.getmembers()
            if member.isfile()
        }
    secrets = {"the API key": API_KEY_FILE.read_text().strip(), "the Ray token": RAY_TOKEN_FILE.read_text().strip()}
    secrets["the hub token"] = HUB_TOKEN
    leaks = [(what, name) for what, secret in secrets.items() for name, text in members.items() if secret in text]
    assert leaks == [], leaks
    return members


def test_a_support_bundle_on_demand_holds_the_cluster_without_its_secrets(tmp_path):
    start = time.monotonic()
    rc, out, recap = run_playbook(
        "playbooks/support_bundle.yml",
        extra_args=[*TEST_VARS, "-e", "support_bundle_dir=%s" % tmp_path],
        log_path=LOG_DIR / "support-bundle.log",
    )
    assert rc == 0, out[-6000:]
    assert recap["ray-head-local"]["failed"] == 0
    members = support_bundle(out, tmp_path)
    assert {
        "MANIFEST.json",
        "gate.json",
        "ray/status.txt",
        "ray/jobs.json",
        "ray/serve_applications.json",
        "nodes/ray-head-local/accelerators.json",
        "nodes/ray-worker-local/accelerators.json",
        "logs/ray-head-local/raylet.out",
        "logs/ray-head-local/gcs_server.out",
        "logs/ray-worker-local/raylet.out",
    } <= set(members), sorted(members)
    # ray status -v through the token, both nodes; the Jobs and Serve APIs answered with the token.
    assert "Active:" in members["ray/status.txt"] and members["ray/status.txt"].count("Node: ") >= 2
    assert isinstance(json.loads(members["ray/jobs.json"]), list)
    assert isinstance(json.loads(members["ray/serve_applications.json"]), dict)
    # The vLLM job's driver log (one engine) or Serve's replica logs (several replicas), whichever runs now.
    assert [name for name in members if "/job-driver-" in name or "/serve/replica_" in name], sorted(members)
    # Everything was collected but the plan, which only a run of site.yml makes.
    assert list(json.loads(members["MANIFEST.json"])["errors"]) == ["plan.json"], members["MANIFEST.json"]
    print("support bundle on demand took %.1f s" % (time.monotonic() - start))


def test_a_failed_ray_gate_writes_a_support_bundle_and_says_where(tmp_path):
    # A gate that cannot pass (5 nodes expected, 2 run) on the running cluster: nothing is changed before it.
    start = time.monotonic()
    deployed = [*TARGET_TWO, *AUTOSCALING]  # what test_autoscaling_... left running
    five_nodes = ["-e", "ray_cluster_expected_nodes=5", "-e", "ray_cluster_wait_timeout=5"]
    members, gate = failed_gate_bundle(
        "gate-fails-bundle", [*deployed, *five_nodes], "expected >= 5 alive node(s)", tmp_path
    )
    assert gate["name"].endswith("Wait until every Ray node and GPU is registered"), gate
    assert "expected >= 5 alive node(s)" in gate["result"]["msg"]
    assert "ray_layout" in json.loads(members["plan.json"])
    assert {"ray/status.txt", "logs/ray-head-local/raylet.out", "logs/ray-worker-local/raylet.out"} <= set(members)
    # The cluster still serves.
    assert node_pids("ray-head-local") and node_pids("ray-worker-local") and port_open(VLLM_PORT)
    print("failed gate with its support bundle took %.1f s" % (time.monotonic() - start))


def test_teardown_stops_everything_and_keeps_the_model():
    rc, out, recap = run_playbook("playbooks/teardown.yml", extra_args=TEST_VARS, log_path=LOG_DIR / "teardown.log")
    assert rc == 0, out[-6000:]
    assert node_pids("ray-head-local") == [] and node_pids("ray-worker-local") == []
    deadline = time.monotonic() + 30
    while port_open(VLLM_PORT) and time.monotonic() < deadline:
        time.sleep(1)
    assert not port_open(VLLM_PORT)
    assert (MODEL_DIR / "config.json").exists(), "teardown removed the model cache without being asked"
    assert ray_local.pids_mentioning(TEMP_PREFIX + "-") == []
    assert sorted(path.name for path in FILE_SD.iterdir()) == [], "the monitoring files stayed"
    # No record of the last full run: a site.yml after a teardown goes the full way from its first look.
    assert sorted((REPO / ".build" / "local" / "records").glob("deployment-*.json")) == []
