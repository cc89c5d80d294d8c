# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""ray_status main(): argument handling, the status_text source end to end, polling, and the sources' error paths."""

from __future__ import annotations

import io
import json
import socket
from pathlib import Path

import pytest
from ansible.module_utils import basic

from ansible_collections.llmops.ray_vllm.plugins.module_utils import _ray_sources
from ansible_collections.llmops.ray_vllm.plugins.module_utils._args import WAIT_ARGUMENT_SPEC
from ansible_collections.llmops.ray_vllm.plugins.modules import ray_status

RECORDED_ROOT = Path(__file__).resolve().parents[3] / "fixtures" / "ray"
V260 = RECORDED_ROOT / "2.60.0-local-head1cpu-worker1cpu1gpu"
V24 = RECORDED_ROOT / "2.4.0-local-head1cpu-worker1cpu1gpu"
V2 = RECORDED_ROOT / "2.60.0-local-autoscaler-v2-head1cpu-worker1cpu1gpu"
TOKEN_AUTH = RECORDED_ROOT / "2.60.0-local-token-auth-head1cpu1gpu"


def recorded(path):
    assert path.is_file(), f"missing recording {path} (re-run tests/fixtures/record_ray_status.py)"
    return path.read_text()


def recorded_http(folder, name):
    """``(HTTP status, body)`` of a recorded dashboard answer."""
    captures = json.loads(recorded(folder / "captures.json"))["captures"]
    return next(entry["http_status"] for entry in captures if entry["file"] == name), recorded(folder / name)


def run_main(monkeypatch, capsys, args):
    """Run the module's main() with ``args``; returns its JSON answer plus ``exit_code``."""
    monkeypatch.setattr(basic, "_ANSIBLE_ARGS", json.dumps({"ANSIBLE_MODULE_ARGS": args}).encode())
    monkeypatch.setattr(basic, "_ANSIBLE_PROFILE", "legacy")
    with pytest.raises(SystemExit) as exited:
        ray_status.main()
    answer = json.loads(capsys.readouterr().out)
    answer["exit_code"] = exited.value.code
    return answer


def test_argument_spec_has_the_shared_wait_options():
    for name, spec in WAIT_ARGUMENT_SPEC.items():
        assert ray_status.ARGUMENT_SPEC[name] == spec
    assert ray_status.ARGUMENT_SPEC["token"]["no_log"] is True


def test_status_text_gate_passes(monkeypatch, capsys):
    text = recorded(V260 / "idle-verbose.txt")
    result = run_main(monkeypatch, capsys, dict(status_text=text, expected_nodes=2, expected_gpus=1, expected_cpus=2))

    assert result["exit_code"] == 0 and not result.get("failed")
    assert result["changed"] is False and result["ready"] is True and result["problems"] == []
    assert result["nodes"] == dict(active=2, idle=0, alive=2, pending=0, failed=0)
    assert result["resources"]["GPU"] == dict(used=0.0, total=1.0)
    assert len(result["node_details"]) == 2 and result["vanished_nodes"] == []
    assert result["raw"] == text and result["source"] == "status_text" and result["source_error"] is None
    assert result["attempts"] == 1 and result["message"] is None
    assert result["msg"].startswith(
        "Ray cluster ready (the given status_text): expected >= 2 alive node(s), >= 1 GPU(s)"
    )
    assert "extra_lines" not in result and "terminal" not in result


def test_status_text_gate_fails_with_facts_and_diagnosis(monkeypatch, capsys):
    text = recorded(V260 / "pending-demand.txt")
    result = run_main(monkeypatch, capsys, dict(status_text=text, expected_nodes=3, expected_gpus=2, wait=True))

    assert result["exit_code"] == 1 and result["failed"] is True and result["ready"] is False
    assert result["attempts"] == 1  # given text cannot change, so no polling even with wait
    assert len(result["demands"]) == 2 and result["nodes"]["alive"] == 2
    msg = result["msg"]
    assert msg.startswith(
        "Ray cluster not ready (the given status_text): expected >= 3 alive node(s), >= 2 GPU(s);"
        " saw 2 alive node(s) (2 active, 0 idle), 0/1 GPU used, 0/2 CPU used, 2 pending demand(s)."
    )
    assert "2/3 nodes alive; pending demand {'CPU': 1.0, 'GPU': 2.0}; {'GPU': 1.0} * 2: a worker has not joined" in msg
    assert "1/2 GPUs in the cluster" in msg


def test_status_text_autoscaler_v2_failure_with_fail_on_failures(monkeypatch, capsys):
    text = recorded(V2 / "worker-killed-verbose.txt")
    result = run_main(monkeypatch, capsys, dict(status_text=text, expected_nodes=1, fail_on_failures=True))

    assert result["exit_code"] == 1 and result["ready"] is False
    assert result["nodes"] == dict(active=0, idle=1, alive=1, pending=0, failed=1)
    assert result["failures"][0].endswith(": NodeTerminated (instance_id: )")
    assert result["node_details"][0]["idle_ms"] > 0
    assert "1 node failure(s) and fail_on_failures=true: node_" in result["msg"]

    result = run_main(monkeypatch, capsys, dict(status_text=text, expected_nodes=1))
    assert result["exit_code"] == 0 and result["ready"] is True  # a past failure alone does not fail the gate


def test_status_text_without_a_report(monkeypatch, capsys):
    result = run_main(monkeypatch, capsys, dict(status_text=recorded(V24 / "no-cluster-status.txt"), expected_nodes=1))
    assert result["exit_code"] == 1 and result["message"] == "No cluster status."
    assert "Ray answered but has no cluster status yet" in result["msg"]

    result = run_main(monkeypatch, capsys, dict(status_text="error: unable to upgrade connection: container not found"))
    assert result["exit_code"] == 1
    assert "No `ray status` report in the output" in result["msg"]
    assert "error: unable to upgrade connection" in result["msg"]


def test_no_expectations_only_needs_a_readable_status(monkeypatch, capsys):
    result = run_main(monkeypatch, capsys, dict(status_text=recorded(V24 / "worker-killed.txt")))
    assert result["exit_code"] == 0 and result["ready"] is True
    assert "expected a readable cluster status" in result["msg"]


@pytest.mark.parametrize(
    "args, words",
    [
        (dict(expected_nodes=1), "one of the following is required: address, dashboard_url, status_text"),
        (
            dict(address="h:6379", status_text="x"),
            "parameters are mutually exclusive: address|dashboard_url|status_text",
        ),
    ],
)
def test_source_arguments(monkeypatch, capsys, args, words):
    result = run_main(monkeypatch, capsys, args)
    assert result["exit_code"] == 1 and words in result["msg"]


def test_check_mode_is_supported(monkeypatch, capsys):
    text = recorded(V260 / "idle.txt")
    result = run_main(monkeypatch, capsys, dict(status_text=text, expected_nodes=2, _ansible_check_mode=True))
    assert result["exit_code"] == 0 and result["ready"] is True


def test_token_is_not_echoed(monkeypatch, capsys):
    text = recorded(V260 / "idle.txt")
    result = run_main(monkeypatch, capsys, dict(status_text=text, token="s3cr3t-token-value"))
    assert "s3cr3t-token-value" not in json.dumps(result)


# Sources, with the CLI/HTTP layer replaced by recorded answers --------------------------------------------


class FakeModule:
    """The AnsibleModule surface the sources use, answering with recorded outputs."""

    def __init__(self, params, commands=(), urls=None, binaries=None):
        self.params = dict(
            dict(
                address=None,
                dashboard_url=None,
                status_text=None,
                ray_binary=None,
                verbose=True,
                token=None,
                validate_certs=True,
                request_timeout=30,
                expected_nodes=None,
                expected_gpus=None,
                expected_cpus=None,
                fail_on_failures=False,
                wait=False,
                timeout=300,
                interval=5,
            ),
            **params,
        )
        self.commands = list(commands)
        self.ran = []
        self.urls = urls or {}
        self.fetched = []
        self.binaries = {"ray": "/usr/bin/ray"} if binaries is None else binaries
        self.warnings = []

    def run_command(self, argv, environ_update=None):
        self.ran.append((argv, environ_update))
        return self.commands.pop(0)

    def get_bin_path(self, name, required=False, opt_dirs=None):
        return self.binaries.get(name)

    def warn(self, text):
        self.warnings.append(text)


def fake_fetch_url(module, url, headers=None, method=None, timeout=None):
    module.fetched.append((url, headers))
    status, body = module.urls[url]
    if status == 200:
        return io.BytesIO(body.encode()), dict(status=200)
    if status < 0:
        return None, dict(status=-1, msg=body)
    return None, dict(status=status, body=body.encode())


def cli_answer(folder, name):
    stdout = recorded(folder / (f"{name}.txt"))
    stderr_path = folder / (f"{name}.stderr.txt")
    captures = json.loads(recorded(folder / "captures.json"))["captures"]
    rc = next(entry["rc"] for entry in captures if entry["file"] == f"{name}.txt")
    return rc, stdout, stderr_path.read_text() if stderr_path.exists() else ""


@pytest.fixture
def gcs_port_open(monkeypatch):
    """The CLI source first tries a TCP connection to the GCS; here the recorded CLI answers stand for the GCS."""
    monkeypatch.setattr(_ray_sources, "probe_tcp", lambda address, timeout: None)


def test_cli_source_runs_verbose_status_with_the_token(gcs_port_open):
    module = FakeModule(dict(address="10.0.0.1:6379", token="tok"), commands=[cli_answer(V260, "idle-verbose")])
    result = _ray_sources.run_gate(module)

    assert module.ran == [
        (
            ["/usr/bin/ray", "status", "--address", "10.0.0.1:6379", "-v"],
            {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "tok"},
        )
    ]
    assert result["ready"] is True and result["source"] == "address" and len(result["node_details"]) == 2


def test_cli_source_retries_without_v_when_the_flag_is_unknown(gcs_port_open):
    unknown = (2, "", "Usage: ray status [OPTIONS]\nError: No such option: -v\n")
    module = FakeModule(dict(address="h:6379", verbose=True), commands=[unknown, cli_answer(V24, "idle")])
    result = _ray_sources.run_gate(module)
    assert [argv[-1] for argv, _env in module.ran] == ["-v", "h:6379"]
    assert result["ready"] is True and module.ran[0][1] == {}


@pytest.mark.parametrize("folder", sorted(path.name for path in RECORDED_ROOT.glob("*-worker1cpu1gpu")))
def test_cli_source_connection_error(gcs_port_open, folder):
    module = FakeModule(
        dict(address="127.0.0.1:1", expected_nodes=1), commands=[cli_answer(RECORDED_ROOT / folder, "connection-error")]
    )
    result = _ray_sources.run_gate(module)

    assert result["ready"] is False
    assert result["source_error"]["kind"] == "connection" and result["source_error"]["where"] == "127.0.0.1:1"
    assert result["msg"].startswith(
        "Ray cluster not ready (the GCS at 127.0.0.1:1): expected >= 1 alive node(s);"
        " saw no status (connection). Could not reach the Ray GCS at 127.0.0.1:1 ("
    )
    assert "Ray head is running" in result["msg"]
    assert result["raw"]  # what the CLI printed comes back for the play output


@pytest.mark.parametrize(
    "address, target",
    [
        ("10.0.0.1:6379", ("10.0.0.1", 6379)),
        ("[fd00::1]:6379", ("fd00::1", 6379)),
        ("ray-head", None),
        ("ray-head:port", None),
    ],
)
def test_split_address(address, target):
    assert _ray_sources.split_address(address) == target


def test_probe_tcp_on_a_port_that_does_not_listen():
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))  # bound, never listening: the kernel refuses connections to it
        port = bound.getsockname()[1]
        refused = _ray_sources.probe_tcp(f"127.0.0.1:{port}", timeout=5)
    assert refused == f"TCP connection to 127.0.0.1:{port} failed: [Errno 111] Connection refused"
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(1)
        assert _ray_sources.probe_tcp(f"127.0.0.1:{listening.getsockname()[1]}", timeout=5) is None
    assert _ray_sources.probe_tcp("ray-head", timeout=5) is None  # no port: leave it to `ray status`


def test_cli_source_reports_a_closed_port_without_running_ray():
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{bound.getsockname()[1]}"
        module = FakeModule(dict(address=address, expected_nodes=1, wait=True, timeout=0))
        result = _ray_sources.run_gate(module)
    assert module.ran == []
    assert result["source_error"]["kind"] == "connection"
    assert f"Could not reach the Ray GCS at {address} (TCP connection to {address} failed:" in result["msg"]


def test_cli_source_without_ray():
    module = FakeModule(dict(address="h:6379", expected_nodes=1), binaries={})
    result = _ray_sources.run_gate(module, interpreter_dir="/opt/venv/bin")
    assert module.ran == []
    assert result["source_error"]["kind"] == "ray_missing"
    assert "ray on PATH or in /opt/venv/bin" in result["msg"]


def test_wait_polls_until_the_worker_shows_then_passes(gcs_port_open):
    answers = [
        cli_answer(V260, "worker-killed-verbose"),
        cli_answer(V260, "worker-killed-verbose"),
        cli_answer(V260, "idle-verbose"),
    ]
    module = FakeModule(
        dict(address="h:6379", expected_nodes=2, expected_gpus=1, wait=True, timeout=60, interval=5), commands=answers
    )
    clock = iter(range(0, 1000, 5))
    slept = []
    result = _ray_sources.run_gate(module, clock=lambda: next(clock), sleep=slept.append)

    assert result["ready"] is True and result["attempts"] == 3 and slept == [0.25, 0.5]  # short, doubling pauses
    # A node that was not there before and is there now is not "vanished".
    assert result["vanished_nodes"] == []


def test_wait_times_out_naming_the_node_that_went_away(gcs_port_open):
    answers = [cli_answer(V260, "idle-verbose")] + [cli_answer(V260, "worker-killed-verbose")] * 3
    module = FakeModule(dict(address="h:6379", expected_nodes=3, wait=True, timeout=12, interval=4), commands=answers)
    clock = iter(range(0, 1000, 4))
    result = _ray_sources.run_gate(module, clock=lambda: next(clock), sleep=lambda seconds: None)

    assert result["ready"] is False and result["attempts"] == 3
    gone = result["vanished_nodes"][0]
    assert gone["resources"]["GPU"]["total"] == 1.0
    assert " after 3 reads over 12s (timeout 12s): expected >= 3 alive node(s); saw 1 alive node(s)" in result["msg"]
    assert (
        "1/3 nodes alive: node {} (1 GPU) was alive earlier in this wait and is gone".format(gone["node_id"])
        in result["msg"]
    )


def test_wait_stops_at_once_on_a_lost_node_with_fail_on_failures(gcs_port_open):
    answers = [cli_answer(V260, "idle-verbose"), cli_answer(V260, "worker-killed-verbose")]
    module = FakeModule(
        dict(address="h:6379", expected_nodes=3, wait=True, timeout=300, interval=1, fail_on_failures=True),
        commands=answers,
    )
    clock = iter(range(1000))
    result = _ray_sources.run_gate(module, clock=lambda: next(clock), sleep=lambda seconds: None)
    assert result["attempts"] == 2 and "fail_on_failures=true" in result["msg"]


def dashboard_urls(folder, step, base="http://head:8265"):
    return {
        base + _ray_sources.CLUSTER_STATUS_PATH: (
            200,
            recorded(folder / (f"{step}-dashboard-cluster-status-format1.json")),
        ),
        base + _ray_sources.STATE_API_NODES_PATH: (200, recorded(folder / (f"{step}-dashboard-v0-nodes-detail.json"))),
    }


def test_dashboard_source_with_token_and_state_api(monkeypatch):
    monkeypatch.setattr(_ray_sources, "fetch_url", fake_fetch_url)
    module = FakeModule(
        dict(dashboard_url="http://head:8265/", token="tok", expected_nodes=2),
        urls=dashboard_urls(V260, "worker-killed"),
    )
    result = _ray_sources.run_gate(module)

    assert [url for url, _headers in module.fetched] == [
        "http://head:8265/api/cluster_status?format=1",
        "http://head:8265/api/v0/nodes?detail=1&limit=10000",
    ]
    assert all(headers["Authorization"] == "Bearer tok" for _url, headers in module.fetched)
    assert result["ready"] is False and result["source"] == "dashboard_url"
    states = sorted(node["state"] for node in result["node_details"])
    assert states == ["ALIVE", "DEAD"]
    assert "the GCS lists 1 dead node(s)" in result["msg"]


def test_the_gate_passes_once_the_gcs_registered_every_node(monkeypatch):
    """Recorded right after the worker registered: the report lists the head alone, the state API both nodes."""
    monkeypatch.setattr(_ray_sources, "fetch_url", fake_fetch_url)
    lag = RECORDED_ROOT / "2.60.0-local-head1cpu-worker1cpu1gpu-registration-lag"
    params = dict(dashboard_url="http://head:8265", expected_nodes=2, expected_gpus=1, expected_cpus=2)
    result = _ray_sources.run_gate(FakeModule(params, urls=dashboard_urls(lag, "worker-registered")))
    assert result["ready"] is True and result["attempts"] == 1
    assert result["nodes"]["alive"] == 2 and result["resources"]["GPU"]["total"] == 1.0
    # The report alone (a dashboard without the state API) still waits for the worker.
    urls = dashboard_urls(lag, "worker-registered")
    urls["http://head:8265" + _ray_sources.STATE_API_NODES_PATH] = recorded_http(V260, "idle-dashboard-not-found.txt")
    result = _ray_sources.run_gate(FakeModule(params, urls=urls))
    assert result["ready"] is False and "1/2 nodes alive" in result["msg"]


def test_dashboard_source_keeps_the_status_when_the_state_api_fails(monkeypatch):
    monkeypatch.setattr(_ray_sources, "fetch_url", fake_fetch_url)
    urls = dashboard_urls(V24, "idle")
    urls["http://head:8265" + _ray_sources.STATE_API_NODES_PATH] = recorded_http(V260, "idle-dashboard-not-found.txt")
    module = FakeModule(dict(dashboard_url="http://head:8265", expected_nodes=2), urls=urls)
    result = _ray_sources.run_gate(module)
    assert result["ready"] is True and result["node_details"] == []
    assert module.warnings == [
        "no per-node facts from http://head:8265/api/v0/nodes?detail=1&limit=10000: HTTP 404: 404: Not Found"
    ]


@pytest.mark.parametrize(
    "answer, kind, words",
    [
        ((-1, "Connection refused"), "http_unreachable", "Could not reach the Ray dashboard at"),
        (
            (TOKEN_AUTH, "without-token-dashboard-cluster-status-format1.txt"),
            "http_unauthorized",
            "refused the request (HTTP 401: Unauthorized: Missing authentication token): Ray token missing (401)",
        ),
        (
            (TOKEN_AUTH, "wrong-token-dashboard-cluster-status-format1.txt"),
            "http_unauthorized",
            "(HTTP 403: Forbidden: Invalid authentication token)",
        ),
        (
            (V260, "idle-dashboard-not-found.txt"),
            "http_status",
            "answered HTTP 404: 404: Not Found: check that the URL",
        ),
        ((V24, "idle-dashboard-cluster-status-format0.json"), "http_answer", "(was format=1 ignored?)"),
        ((200, "<html>grafana</html>"), "http_answer", "did not answer like a Ray dashboard (not JSON"),
    ],
)
def test_dashboard_source_errors(monkeypatch, answer, kind, words):
    monkeypatch.setattr(_ray_sources, "fetch_url", fake_fetch_url)
    if isinstance(answer[0], Path):
        answer = recorded_http(*answer)
    module = FakeModule(
        dict(dashboard_url="http://head:8265", expected_nodes=1),
        urls={"http://head:8265" + _ray_sources.CLUSTER_STATUS_PATH: answer},
    )
    result = _ray_sources.run_gate(module)
    assert result["ready"] is False and result["source_error"]["kind"] == kind
    assert result["attempts"] == 1
    assert words in result["msg"]
