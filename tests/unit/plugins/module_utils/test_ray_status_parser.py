# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The ray status parser, gate and diagnosis on real recorded outputs (tests/fixtures/ray, shared/fixtures/ray)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ansible_collections.llmops.ray_vllm.plugins.module_utils._ray_status import (
    DashboardAnswerError,
    NodeTracker,
    classify_cli_failure,
    cluster_status_text_from_json,
    count_registered_nodes,
    demanded_resources,
    describe_observation,
    evaluate,
    explain_source_error,
    merge_node_details,
    nodes_from_state_api,
    parse_failure,
    parse_quantity,
    parse_status_text,
    parse_usage_line,
)
from ansible_collections.llmops.ray_vllm.tests.unit.shared_fixtures import shared_fixtures

RECORDED_ROOT = Path(__file__).resolve().parents[3] / "fixtures" / "ray"
GIB = 2**30
MIB = 2**20

# Every two-node folder recorded by tests/fixtures/record_ray_status.py, with what that release prints:
#   plain / verbose: words of its `ray status` / `ray status -v` layout (column-0 lines of idle*.txt);
#   split: (active, idle) for the two idle nodes;
#   lists_killed: whether `Recent failures:` names the killed worker; detail: the quoted line of the
#   connection error.
V1_PLAIN = ("Active:", "Pending:", "Recent failures:", "Usage:", "Demands:")
V1_VERBOSE = ("Active:", "Pending:", "Recent failures:", "Total Usage:", "Total Demands:")
GCS_TIMEOUT = "Failed to connect to GCS at address 192.0.2.2:"
NOT_FOUND = "Ray cluster is not found at 192.0.2.2:"
RELEASES = {
    "2.4.0-local-head1cpu-worker1cpu1gpu": dict(
        plain=("Healthy:", "Pending:", "Recent failures:", "Usage:", "Demands:"),
        verbose=("Healthy:", "Pending:", "Recent failures:", "Total Usage:", "Total Demands:"),
        split=(2, 0),
        lists_killed=False,
        detail=NOT_FOUND,
    ),
    "2.9.3-local-head1cpu-worker1cpu1gpu": dict(
        plain=V1_PLAIN, verbose=V1_VERBOSE, split=(2, 0), lists_killed=False, detail=NOT_FOUND
    ),
    "2.24.0-local-head1cpu-worker1cpu1gpu": dict(
        plain=V1_PLAIN,
        verbose=V1_VERBOSE,
        split=(2, 0),
        lists_killed=False,
        detail="Error: Invalid value: " + NOT_FOUND,
    ),
    "2.44.1-local-head1cpu-worker1cpu1gpu": dict(
        plain=V1_PLAIN, verbose=V1_VERBOSE, split=(2, 0), lists_killed=False, detail=GCS_TIMEOUT
    ),
    "2.49.2-local-head1cpu-worker1cpu1gpu": dict(
        plain=("Active:", "Pending:", "Recent failures:", "Total Usage:", "Total Constraints:", "Total Demands:"),
        verbose=("Active:", "Pending:", "Recent failures:", "Total Usage:", "Total Constraints:", "Total Demands:"),
        split=(2, 0),
        lists_killed=False,
        detail=GCS_TIMEOUT,
    ),
    "2.60.0-local-head1cpu-worker1cpu1gpu": dict(
        plain=(
            "Active:",
            "Pending:",
            "Recent failures:",
            "Total Usage:",
            "From request_resources:",
            "Pending Demands:",
        ),
        verbose=(
            "Active:",
            "Pending:",
            "Recent failures:",
            "Total Usage:",
            "From request_resources:",
            "Pending Demands:",
        ),
        split=(2, 0),
        lists_killed=False,
        detail=GCS_TIMEOUT,
    ),
    "2.60.0-local-autoscaler-v2-head1cpu-worker1cpu1gpu": dict(
        plain=(
            "Active:",
            "Idle:",
            "Pending:",
            "Recent failures:",
            "Total Usage:",
            "From request_resources:",
            "Pending Demands:",
        ),
        verbose=(
            "Active:",
            "Idle:",
            "Pending:",
            "Recent failures:",
            "Total Usage:",
            "From request_resources:",
            "Pending Demands:",
        ),
        split=(0, 2),
        lists_killed=True,
        detail=GCS_TIMEOUT,
    ),
}
RECORDED = sorted(RELEASES)
# The other recorded folders, each tested on its own below.
TOKEN_AUTH = "2.60.0-local-token-auth-head1cpu1gpu"
VERSION_MISMATCH = "2.60.0-local-read-by-ray-2.44.1-head1cpu"
REGISTRATION_LAG = "2.60.0-local-head1cpu-worker1cpu1gpu-registration-lag"
EVERY_FOLDER = sorted(RECORDED + [TOKEN_AUTH, VERSION_MISMATCH, REGISTRATION_LAG])


def captured(folder, step):
    """Whether the recorder kept a capture of ``step`` (``no-cluster-status`` is only kept when Ray printed it)."""
    return any(entry["step"] == step for entry in recorded_json(folder, "captures.json")["captures"])


H200 = Path(shared_fixtures()) / "ray" / "2.60-h200-head0gpu-worker1gpu"


def recorded(folder, name):
    path = RECORDED_ROOT / folder / name
    assert path.is_file(), f"missing recording {path} (re-run tests/fixtures/record_ray_status.py)"
    return path.read_text()


def recorded_json(folder, name):
    return json.loads(recorded(folder, name))


def test_every_recorded_folder_is_tested_and_documented():
    on_disk = sorted(path.name for path in RECORDED_ROOT.iterdir() if path.is_dir())
    assert on_disk == EVERY_FOLDER
    for folder in on_disk:
        readme = recorded(folder, "README.md")
        assert "record_ray_status.py" in readme and "ray start --block --head" in readme
        for entry in recorded_json(folder, "captures.json")["captures"]:
            assert entry["file"] in readme
            recorded(folder, entry["file"])  # every listed capture is there
    # Catching `No cluster status.` depends on timing; most recordings did.
    assert sum(captured(folder, "no-cluster-status") for folder in RECORDED) >= 4


# Units --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, value",
    [
        ("0B", 0.0),
        ("1.0", 1.0),
        ("20.06GiB", 20.06 * GIB),
        ("95.37MiB", 95.37 * MIB),
        ("1.50KiB", 1536.0),
        ("2.00TiB", 2.0 * 2**40),
        ("1e-05", 1e-05),
        ("0.0 GiB", 0.0),
    ],
)
def test_parse_quantity_units(text, value):
    assert parse_quantity(text) == pytest.approx(value)


def test_parse_quantity_rejects_garbage():
    with pytest.raises(ValueError):
        parse_quantity("lots")


def test_usage_line_with_placement_group_suffix_from_recorded_text():
    line = next(
        line
        for line in recorded("2.9.3-local-head1cpu-worker1cpu1gpu", "placement-group-verbose.txt").splitlines()
        if line.strip().endswith("GPU (1.0 used of 1.0 reserved in placement groups)")
    )
    name, entry = parse_usage_line(line)
    assert name == "GPU"
    assert entry == dict(used=1.0, total=1.0, placement_group_used=1.0, placement_group_reserved=1.0)


# Every recorded release -------------------------------------------------------------------------------


@pytest.mark.parametrize("folder", RECORDED)
def test_recorded_layout_words(folder):
    """The recordings really hold the layouts the parser claims to read."""
    for name, words in (("idle.txt", RELEASES[folder]["plain"]), ("idle-verbose.txt", RELEASES[folder]["verbose"])):
        titles = [line for line in recorded(folder, name).splitlines() if line.endswith(":")]
        assert set(words) <= set(titles), name


@pytest.mark.parametrize("folder", RECORDED)
@pytest.mark.parametrize("name", ["idle.txt", "idle-verbose.txt"])
def test_idle_two_node_cluster(folder, name):
    parsed = parse_status_text(recorded(folder, name))
    active, idle = RELEASES[folder]["split"]

    assert parsed["status_found"] is True
    assert parsed["status_time"].startswith("2026-")
    assert parsed["nodes"] == dict(active=active, idle=idle, alive=2, pending=0, failed=0)
    assert sorted(counts["active"] + counts["idle"] for counts in parsed["node_types"].values()) == [1, 1]
    assert all(node_type.startswith("node_") for node_type in parsed["node_types"])
    assert parsed["resources"]["CPU"] == dict(used=0.0, total=2.0)
    assert parsed["resources"]["GPU"] == dict(used=0.0, total=1.0)
    assert parsed["resources"]["object_store_memory"] == dict(used=0.0, total=200 * MIB)
    assert 1 * GIB < parsed["resources"]["memory"]["total"] < 64 * GIB
    assert parsed["resources"]["memory"]["total"].is_integer()  # whole bytes
    assert parsed["demands"] == [] and parsed["failures"] == [] and parsed["pending_nodes"] == []
    assert parsed["constraints"] == [] and parsed["extra_lines"] == []


@pytest.mark.parametrize("folder", RECORDED)
def test_verbose_per_node_blocks(folder):
    parsed = parse_status_text(recorded(folder, "idle-verbose.txt"))
    nodes = parsed["node_details"]

    assert len(nodes) == 2
    assert {len(node["node_id"]) for node in nodes} == {56}
    assert all(node["node_type"] == "node_" + node["node_id"] for node in nodes)
    assert {node["node_type"] for node in nodes} == set(parsed["node_types"])
    gpu_nodes = [node for node in nodes if "GPU" in node["resources"]]
    assert len(gpu_nodes) == 1
    assert gpu_nodes[0]["resources"]["GPU"] == dict(used=0.0, total=1.0)
    assert sum(node["resources"]["CPU"]["total"] for node in nodes) == 2.0
    assert all(node["resources"]["object_store_memory"]["total"] == 100 * MIB for node in nodes)
    if RELEASES[folder]["split"] == (0, 2):  # the v2 report says how long each node has been idle
        assert all(node["idle_ms"] > 0 for node in nodes)


@pytest.mark.parametrize("folder", RECORDED)
def test_placement_group_reservation(folder):
    parsed = parse_status_text(recorded(folder, "placement-group-verbose.txt"))
    gpu = parsed["resources"]["GPU"]
    cpu = parsed["resources"]["CPU"]

    assert gpu["total"] == 1.0 and gpu["placement_group_reserved"] == 1.0
    assert cpu["total"] == 2.0 and cpu["placement_group_reserved"] == 1.0
    assert "placement_group_reserved" not in parsed["resources"]["memory"]
    # The actor in the bundle holds the GPU: used inside the reservation, so used in the cluster too.
    assert gpu["placement_group_used"] == gpu["used"] == 1.0
    assert cpu["placement_group_used"] == cpu["used"] == 0.0
    worker = next(node for node in parsed["node_details"] if "GPU" in node["resources"])
    assert worker["resources"]["GPU"]["placement_group_reserved"] == 1.0


@pytest.mark.parametrize("folder", RECORDED)
@pytest.mark.parametrize("name", ["pending-demand.txt", "pending-demand-verbose.txt"])
def test_pending_demands(folder, name):
    parsed = parse_status_text(recorded(folder, name))

    assert parsed["demands"] == [
        "{'CPU': 1.0, 'GPU': 2.0}: 1+ pending tasks/actors",
        "{'GPU': 1.0} * 2 (PACK): 1+ pending placement groups",
    ]
    task, group = parsed["demand_details"]
    assert task["kind"] == "task_or_actor" and task["strategy"] is None and task["count"] == 1
    assert demanded_resources(task) == {"CPU": 1.0, "GPU": 2.0}
    assert group["kind"] == "placement_group" and group["strategy"] == "PACK"
    assert group["bundles"] == [dict(resources={"GPU": 1.0}, count=2)]
    assert demanded_resources(group) == {"GPU": 2.0}


@pytest.mark.parametrize("folder", RECORDED)
@pytest.mark.parametrize("name", ["request-resources.txt", "request-resources-verbose.txt"])
def test_request_resources(folder, name):
    parsed = parse_status_text(recorded(folder, name))
    layout = RELEASES[folder]["plain"]
    if "Total Constraints:" in layout or "From request_resources:" in layout:
        assert parsed["demands"] == []
        assert len(parsed["constraints"]) == 1
        assert parsed["constraints"][0].endswith("}: 2 from request_resources()")
    else:  # older releases list the request among the demands
        assert parsed["constraints"] == []
        assert parsed["demands"] == ["{'GPU': 1}: 2+ from request_resources()"]
        detail = parsed["demand_details"][0]
        assert detail["kind"] == "request_resources" and detail["count"] == 2
        assert detail["bundles"] == [dict(resources={"GPU": 1}, count=1)]


@pytest.mark.parametrize("folder", RECORDED)
def test_worker_killed(folder):
    parsed = parse_status_text(recorded(folder, "worker-killed-verbose.txt"))
    gone_id = next(
        node["node_id"]
        for node in parse_status_text(recorded(folder, "idle-verbose.txt"))["node_details"]
        if "GPU" in node["resources"]
    )

    assert parsed["nodes"]["alive"] == 1
    assert "GPU" not in parsed["resources"]
    assert parsed["resources"]["CPU"]["total"] == 1.0
    assert [node["node_id"] for node in parsed["node_details"]] != [gone_id]
    assert len(parsed["node_details"]) == 1
    if RELEASES[folder]["lists_killed"]:
        assert parsed["failures"] == [f"node_{gone_id}: NodeTerminated (instance_id: )"]
        assert parse_failure(parsed["failures"][0]) == dict(
            node_type=f"node_{gone_id}", reason="NodeTerminated", detail="instance_id: ", description=None
        )
        assert parsed["nodes"]["failed"] == 1
    else:
        assert parsed["failures"] == [] and parsed["nodes"]["failed"] == 0


@pytest.mark.parametrize(
    "folder",
    # A folder without captures.json stays in, to fail loudly as a missing recording.
    [f for f in RECORDED if not (RECORDED_ROOT / f / "captures.json").is_file() or captured(f, "no-cluster-status")],
)
def test_no_cluster_status(folder):
    parsed = parse_status_text(recorded(folder, "no-cluster-status.txt"))
    assert parsed["status_found"] is False
    assert parsed["message"].startswith("No cluster status")
    problems, terminal = evaluate(dict(parsed, raw=""), expected_nodes=1)
    assert not terminal
    assert "no cluster status yet" in problems[0] and "monitor" in problems[0]


def cli_capture(folder, step):
    stdout = recorded(folder, f"{step}.txt")
    stderr_path = RECORDED_ROOT / folder / f"{step}.stderr.txt"
    stderr = stderr_path.read_text() if stderr_path.exists() else ""
    rc = next(entry["rc"] for entry in recorded_json(folder, "captures.json")["captures"] if entry["step"] == step)
    return stdout, stderr, rc


@pytest.mark.parametrize("folder", RECORDED)
def test_connection_error_is_classified(folder):
    stdout, stderr, rc = cli_capture(folder, "connection-error")

    assert rc == 1 or rc == 2
    assert parse_status_text(stdout)["status_found"] is False
    error = classify_cli_failure(stdout, stderr, rc)
    assert error["kind"] == "connection"
    assert error["detail"].startswith(RELEASES[folder]["detail"])
    sentence = explain_source_error(dict(error, where="127.0.0.1:6379"))
    assert sentence.startswith("could not reach the Ray GCS at 127.0.0.1:6379 (" + RELEASES[folder]["detail"])
    assert "Ray head is running" in sentence and "firewall" in sentence


@pytest.mark.parametrize("step", ["without-token", "wrong-token"])
def test_cli_refused_for_its_token(step):
    stdout, stderr, rc = cli_capture(TOKEN_AUTH, step)
    error = classify_cli_failure(stdout, stderr, rc)

    assert rc == 1 and error["kind"] == "auth"
    assert error["detail"].startswith("ray.exceptions.AuthenticationError: RPC error: InvalidAuthToken:")
    problems, terminal = evaluate(dict(parse_status_text(stdout), source_error=dict(error, where="h:6379")))
    assert terminal  # polling again cannot fix a token
    assert "ray get-auth-token" in problems[0]


def test_cli_with_token():
    stdout, _stderr, rc = cli_capture(TOKEN_AUTH, "with-token")
    parsed = parse_status_text(stdout)
    assert rc == 0 and parsed["nodes"]["alive"] == 1 and parsed["resources"]["GPU"]["total"] == 1.0


def test_version_mismatch_is_classified():
    stdout, stderr, rc = cli_capture(VERSION_MISMATCH, "version-mismatch")
    error = classify_cli_failure(stdout, stderr, rc)

    assert rc != 0 and error["kind"] == "version_mismatch"
    assert "2.60.0" in stdout + stderr and "2.44.1" in stdout + stderr
    problems, terminal = evaluate(dict(parse_status_text(stdout), source_error=dict(error, where="h:6379")))
    assert terminal and "point `ray_binary` at a `ray` of the cluster's version" in problems[0]


# Dashboard answers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("folder", RECORDED)
@pytest.mark.parametrize("step", ["idle", "pending-demand", "worker-killed"])
def test_dashboard_cluster_status_format1_matches_the_cli(folder, step):
    text = cluster_status_text_from_json(recorded_json(folder, f"{step}-dashboard-cluster-status-format1.json"))
    from_http = parse_status_text(text)
    from_cli = parse_status_text(recorded(folder, f"{step}.txt"))

    assert from_http["status_found"]
    for key in ("nodes", "demands", "failures"):
        assert from_http[key] == from_cli[key]
    assert from_http["resources"]["CPU"] == from_cli["resources"]["CPU"]


@pytest.mark.parametrize("folder", RECORDED)
def test_dashboard_without_format1_is_refused(folder):
    answer = recorded_json(folder, "idle-dashboard-cluster-status-format0.json")
    with pytest.raises(DashboardAnswerError, match="no text data.clusterStatus"):
        cluster_status_text_from_json(answer)


def test_dashboard_result_false_carries_its_message():
    with pytest.raises(DashboardAnswerError, match="result=false: boom"):
        cluster_status_text_from_json({"result": False, "msg": "boom", "data": {}})
    with pytest.raises(DashboardAnswerError, match="not a Ray dashboard answer"):
        cluster_status_text_from_json(["not", "a", "dict"])


@pytest.mark.parametrize("folder", RECORDED)
@pytest.mark.parametrize(
    "name", ["worker-killed-dashboard-v0-nodes.json", "worker-killed-dashboard-v0-nodes-detail.json"]
)
def test_state_api_nodes_after_a_kill(folder, name):
    nodes = nodes_from_state_api(recorded_json(folder, name))

    assert sorted(node["state"] for node in nodes) == ["ALIVE", "DEAD"]
    dead = next(node for node in nodes if node["state"] == "DEAD")
    assert dead["resources_total"]["GPU"] == 1.0
    assert dead["node_ip"] == "192.0.2.2"
    if "detail" in name and not folder.startswith("2.4.0"):  # is_head_node came with Ray 2.9's detail view
        assert next(node for node in nodes if node["state"] == "ALIVE")["is_head_node"] is True
        assert dead["is_head_node"] is False
    if "detail" in name and folder.startswith("2.60.0"):
        assert dead["state_message"] == "Unexpected termination: health check failed due to missing too many heartbeats"


@pytest.mark.parametrize("folder", RECORDED)
def test_merge_verbose_text_with_state_api(folder):
    text_nodes = parse_status_text(recorded(folder, "worker-killed-verbose.txt"))["node_details"]
    api_nodes = nodes_from_state_api(recorded_json(folder, "worker-killed-dashboard-v0-nodes-detail.json"))
    merged = merge_node_details(text_nodes, api_nodes)

    assert len(merged) == 2
    alive = next(node for node in merged if node["state"] == "ALIVE")
    dead = next(node for node in merged if node["state"] == "DEAD")
    assert alive["resources"]["CPU"] == dict(used=0.0, total=1.0)  # usage from the text
    assert dead["resources"]["GPU"] == dict(used=None, total=1.0)  # total only, from the API
    assert not any(name.startswith("node:") for node in merged for name in node["resources"])


def test_token_protected_dashboard_answers():
    with_token = recorded_json(TOKEN_AUTH, "with-token-dashboard-cluster-status-format1.json")
    assert parse_status_text(cluster_status_text_from_json(with_token))["nodes"]["alive"] == 1
    assert recorded(TOKEN_AUTH, "without-token-dashboard-cluster-status-format1.txt") == (
        "Unauthorized: Missing authentication token"
    )
    assert recorded(TOKEN_AUTH, "wrong-token-dashboard-cluster-status-format1.txt") == (
        "Forbidden: Invalid authentication token"
    )


def test_state_api_shape_errors():
    with pytest.raises(DashboardAnswerError, match="no data.result.result"):
        nodes_from_state_api({"result": True, "data": {}})


# The shared H200 recordings (Ray 2.60 on a real GPU) ---------------------------------------------------


def test_h200_plain_status():
    parsed = parse_status_text((H200 / "ray-status-1gpu-2nodes.txt").read_text())
    assert parsed["nodes"]["alive"] == 2
    assert parsed["resources"]["GPU"] == dict(used=0.0, total=1.0)
    assert parsed["resources"]["CPU"] == dict(used=0.0, total=12.0)
    assert parsed["resources"]["memory"]["total"] == pytest.approx(174.97 * GIB)
    assert parsed["resources"]["object_store_memory"]["total"] == pytest.approx(74.99 * GIB)
    assert "accelerator_type:H200" not in parsed["resources"]  # Ray prints it with -v only
    problems, _terminal = evaluate(parsed, expected_nodes=2, expected_gpus=1, expected_cpus=12)
    assert problems == []


def test_h200_verbose_status():
    parsed = parse_status_text((H200 / "ray-status-verbose.txt").read_text())
    assert parsed["resources"]["accelerator_type:H200"] == dict(used=0.0, total=1.0)
    gpu_node = next(node for node in parsed["node_details"] if "GPU" in node["resources"])
    assert gpu_node["node_id"] == "75f377dec0b8f14985e3a1ae669ca93bfe01dfb24448f83af8ba57e6"
    assert gpu_node["resources"]["accelerator_type:H200"]["total"] == 1.0
    assert gpu_node["resources"]["CPU"]["total"] == 8.0
    head = next(node for node in parsed["node_details"] if "GPU" not in node["resources"])
    assert head["resources"]["CPU"]["total"] == 4.0


def test_h200_log_lines_and_trailing_json_around_the_report():
    text = (H200 / "placement.txt").read_text()
    assert text.startswith("2026-")  # ray.init's log lines come first
    parsed = parse_status_text(text)
    assert parsed["status_found"] and parsed["nodes"]["alive"] == 2
    assert parsed["resources"]["GPU"]["total"] == 1.0
    assert parsed["demands"] == [] and parsed["constraints"] == []


# Gate and diagnosis ------------------------------------------------------------------------------------


def test_gate_on_killed_worker_explains_the_missing_node():
    folder = "2.60.0-local-head1cpu-worker1cpu1gpu"
    before = parse_status_text(recorded(folder, "idle-verbose.txt"))
    after = parse_status_text(recorded(folder, "worker-killed-verbose.txt"))
    tracker = NodeTracker()
    tracker.update(before)
    tracker.update(after)

    problems, terminal = evaluate(after, expected_nodes=2, expected_gpus=1)
    assert not terminal
    assert problems[0].startswith("1/2 nodes alive: node ")
    gone = after["vanished_nodes"][0]
    assert gone["resources"]["GPU"]["total"] == 1.0
    assert "node {} (1 GPU) was alive earlier in this wait and is gone".format(gone["node_id"]) in problems[0]
    assert "check the worker pod/host and VLLM_HOST_IP" in problems[0]
    assert problems[1].startswith("0/1 GPUs in the cluster: the GPUs of the missing node(s) are not counted")

    problems, terminal = evaluate(after, expected_nodes=2, fail_on_failures=True)
    assert terminal and "fail_on_failures=true" in problems[-1]


def test_gate_names_pending_gpu_demand_when_a_worker_is_missing():
    folder = "2.44.1-local-head1cpu-worker1cpu1gpu"
    parsed = parse_status_text(recorded(folder, "pending-demand.txt"))
    problems, _terminal = evaluate(parsed, expected_nodes=3, expected_gpus=2)
    assert problems[0] == (
        "2/3 nodes alive; pending demand {'CPU': 1.0, 'GPU': 2.0}; {'GPU': 1.0} * 2: a worker has not joined; check"
        " the worker pod/host (is `ray start --address=<head>:<port>` running there?), that it reaches the head's"
        " GCS port, and VLLM_HOST_IP / --node-ip-address on it"
    )
    assert problems[1].startswith("1/2 GPUs in the cluster; pending demand")


def test_gate_gpu_short_with_all_nodes_up_points_at_gpu_setup():
    parsed = parse_status_text(recorded("2.24.0-local-head1cpu-worker1cpu1gpu", "idle.txt"))
    problems, _terminal = evaluate(parsed, expected_nodes=2, expected_gpus=2, expected_cpus=4)
    assert len(problems) == 2
    assert problems[0].startswith("1/2 GPUs in the cluster: every expected node is up but offers fewer GPUs")
    assert "--num-gpus" in problems[0] and "nvidia.com/gpu" in problems[0]
    assert problems[1].startswith("2/4 CPUs in the cluster: the nodes offer fewer CPUs")


def test_gate_with_dead_nodes_from_the_state_api():
    folder = "2.9.3-local-head1cpu-worker1cpu1gpu"
    parsed = parse_status_text(recorded(folder, "worker-killed.txt"))
    api_nodes = nodes_from_state_api(recorded_json(folder, "worker-killed-dashboard-v0-nodes-detail.json"))
    parsed["node_details"] = merge_node_details(parsed["node_details"], api_nodes)
    dead = next(node for node in api_nodes if node["state"] == "DEAD")

    problems, _terminal = evaluate(parsed, expected_nodes=2)
    assert "the GCS lists 1 dead node(s): {} ({}, 1 GPU)".format(dead["node_id"], dead["node_ip"]) in problems[0]
    assert "1 alive node(s) (1 active, 0 idle), no GPU, 0/1 CPU used" == describe_observation(
        dict(parsed, source_error=None)
    )


def test_gate_on_a_failure_the_v2_report_lists():
    parsed = parse_status_text(recorded("2.60.0-local-autoscaler-v2-head1cpu-worker1cpu1gpu", "worker-killed.txt"))
    failure = parsed["failures"][0]

    problems, terminal = evaluate(parsed, expected_nodes=2)
    assert not terminal
    assert problems == [
        f"1/2 nodes alive: recent failure: {failure}; a replacement worker has not joined; check the worker"
        " pod/host and VLLM_HOST_IP"
    ]
    problems, terminal = evaluate(parsed, expected_nodes=1, fail_on_failures=True)
    assert terminal and problems == [
        f"1 node failure(s) and fail_on_failures=true: {failure}; check those hosts/pods (OOM kill, preemption,"
        " lost network) and the raylet logs under /tmp/ray/session_latest/logs on them"
    ]


def test_gate_quotes_why_the_gcs_declared_a_node_dead():
    folder = "2.60.0-local-head1cpu-worker1cpu1gpu"
    parsed = parse_status_text(recorded(folder, "worker-killed-verbose.txt"))
    api_nodes = nodes_from_state_api(recorded_json(folder, "worker-killed-dashboard-v0-nodes-detail.json"))
    parsed["node_details"] = merge_node_details(parsed["node_details"], api_nodes)
    dead = next(node for node in api_nodes if node["state"] == "DEAD")

    problems, _terminal = evaluate(parsed, expected_nodes=2, expected_gpus=1)
    assert (
        f"the GCS lists 1 dead node(s): {dead['node_id']} (192.0.2.2, 1 GPU): Unexpected termination: health check"
        " failed due to missing too many heartbeats" in problems[0]
    )


def test_tracker_ignores_unreadable_polls():
    tracker = NodeTracker()
    seen = tracker.update(parse_status_text(recorded("2.4.0-local-head1cpu-worker1cpu1gpu", "idle.txt")))
    assert seen["vanished_nodes"] == []
    unreadable = tracker.update(dict(parse_status_text(""), source_error=dict(kind="connection")))
    assert unreadable["vanished_nodes"] == []
    after = tracker.update(parse_status_text(recorded("2.4.0-local-head1cpu-worker1cpu1gpu", "worker-killed.txt")))
    assert len(after["vanished_nodes"]) == 1
    assert after["vanished_nodes"][0]["node_type"].startswith("node_")


@pytest.mark.parametrize(
    "kind, words",
    [
        ("http_unreachable", ["could not reach the Ray dashboard at", "--dashboard-host=0.0.0.0", "8265"]),
        ("http_unauthorized", ["refused the request", "ray get-auth-token"]),
        ("http_status", ["answered HTTP 404", "dashboard's root"]),
        ("http_answer", ["did not answer like a Ray dashboard"]),
        ("version_mismatch", ["different Ray/Python versions", "ray_binary"]),
        ("auth", ["authentication", "token"]),
        ("ray_missing", ["no `ray` executable", "dashboard_url"]),
        ("cli", ["failed", "run it by hand"]),
    ],
)
def test_source_error_sentences(kind, words):
    sentence = explain_source_error(dict(kind=kind, where="http://head:8265", detail="HTTP 404"))
    for word in words:
        assert word in sentence
    problems, terminal = evaluate(dict(parse_status_text(""), source_error=dict(kind=kind, where="x", detail="y")))
    assert len(problems) == 1
    assert terminal is (kind in ("ray_missing", "version_mismatch", "auth", "http_unauthorized"))


def lag_observation(step):
    text = cluster_status_text_from_json(
        recorded_json(REGISTRATION_LAG, f"{step}-dashboard-cluster-status-format1.json")
    )
    observation = parse_status_text(text)
    api_nodes = nodes_from_state_api(recorded_json(REGISTRATION_LAG, f"{step}-dashboard-v0-nodes-detail.json"))
    return observation, api_nodes


def test_a_worker_the_gcs_registered_counts_before_the_report_lists_it():
    """Recorded at once after the worker's `ray start --address` returned: the report lists the head alone."""
    observation, api_nodes = lag_observation("worker-registered")
    expected = dict(expected_nodes=2, expected_gpus=1, expected_cpus=2)
    assert observation["nodes"]["alive"] == 1 and "GPU" not in observation["resources"]
    problems, _terminal = evaluate(observation, **expected)
    assert problems and problems[0].startswith("1/2 nodes alive")

    counted = count_registered_nodes(observation, api_nodes)
    assert counted is observation
    assert observation["nodes"] == dict(active=1, idle=1, pending=0, failed=0, alive=2)
    assert observation["resources"]["GPU"] == dict(used=0.0, total=1.0)
    assert observation["resources"]["CPU"] == dict(used=0.0, total=2.0)
    assert evaluate(observation, **expected) == ([], False)
    # Bytes from the GCS where the report rounds to 2 decimals of GiB: the larger sum.
    assert observation["resources"]["memory"]["total"] == sum(node["resources_total"]["memory"] for node in api_nodes)


def test_once_the_report_lists_the_worker_the_state_api_changes_nothing():
    observation, api_nodes = lag_observation("worker-reported")
    before = json.loads(json.dumps(observation))
    assert count_registered_nodes(observation, api_nodes) == before
    assert observation["nodes"]["alive"] == 2 and observation["resources"]["GPU"]["total"] == 1.0


@pytest.mark.parametrize("folder", RECORDED)
def test_a_dead_node_of_the_state_api_lowers_nothing(folder):
    """The killed worker: the GCS has it DEAD; what the report still says stays the report's (and the tracker's)."""
    observation = parse_status_text(recorded(folder, "worker-killed-verbose.txt"))
    before = json.loads(json.dumps(observation))
    api_nodes = [dict(state="DEAD", resources_total={"CPU": 1.0, "GPU": 1.0})]
    assert count_registered_nodes(observation, api_nodes) == before


def test_without_a_status_the_state_api_does_not_make_one():
    observation = parse_status_text("")
    _observation, api_nodes = lag_observation("worker-registered")
    assert count_registered_nodes(observation, api_nodes)["nodes"]["alive"] == 0
