# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""ray_node, model_download, file_set and port_holder as Ansible runs them: their main() passes the options to
module_utils and reports the result or the failure as it is (in check mode here, so nothing on this machine
changes)."""

from __future__ import annotations

import json
import os
import socket
import stat

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.llmops.ray_vllm.plugins.module_utils import _file_set
from ansible_collections.llmops.ray_vllm.plugins.modules import file_set, model_download, port_holder, ray_node
from ansible_collections.llmops.ray_vllm.tests.unit.json_http_server import json_server


def run(module, args, capsys, check=True, diff=False):
    """The module's result as Ansible reads it (JSON on stdout), run in check mode unless ``check`` is false."""
    with patch_module_args(dict(args, _ansible_check_mode=check, _ansible_diff=diff)), pytest.raises(SystemExit):
        module.main()
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def listening_port():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        yield server.getsockname()[1]


def head_args(tmp_path, port):
    temp_dir = str(tmp_path / "ray-head")
    return dict(
        name="head", role="head", ray_path="/nonexistent/ray", temp_dir=temp_dir, node_ip="127.0.0.1", port=port
    )


def test_ray_node_check_mode_predicts_a_start_and_changes_nothing(tmp_path, capsys):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]  # bound, not listening: nothing accepts connections on it
        result = run(ray_node, head_args(tmp_path, free_port), capsys)
    assert not result.get("failed"), result
    assert result["action"] == "start" and result["changed"] is True and result["running"] is True
    assert result["command"][:3] == ["/nonexistent/ray", "start", "--head"]
    assert os.listdir(str(tmp_path)) == []


def test_ray_node_fails_on_a_busy_gcs_port_naming_its_port_option(tmp_path, listening_port, capsys):
    result = run(ray_node, head_args(tmp_path, listening_port), capsys)
    assert result["failed"] is True
    assert result["msg"].endswith("Stop that process, or set port to a free port.")
    assert result["action"] == "start" and "port %d on 127.0.0.1" % listening_port in result["msg"]


def test_model_download_reports_an_incomplete_local_model(tmp_path, capsys):
    result = run(model_download, dict(source="local", dest=str(tmp_path)), capsys)
    assert result["failed"] is True
    assert result["problems"][0] == "%s cannot be read (No such file or directory)." % (tmp_path / "config.json")
    assert result["msg"].startswith("The model at %s is not complete: " % tmp_path)


def test_model_download_check_mode_says_what_it_would_fetch(tmp_path, capsys):
    dest = str(tmp_path / "m")
    result = run(model_download, dict(source="huggingface", model_id="org/m", revision="abc", dest=dest), capsys)
    assert result["changed"] is True and result["path"] == dest
    assert result["reasons"] == ["no completion marker .ray_vllm_complete.json"]
    assert os.listdir(str(tmp_path)) == []


# --- file_set on real files: what it writes, what a second run leaves alone, check mode, diff and its refusals


def mode_of(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_file_set_writes_the_files_and_their_folders_then_a_second_run_changes_nothing(capsys, tmp_path):
    files = [
        {"path": str(tmp_path / "sd" / "vllm.json"), "content": '[{"targets": ["127.0.0.1:8000"]}]\n'},
        {"path": str(tmp_path / "sd" / "jobs.yml"), "content": "scrape_configs: []\n"},
        {"path": str(tmp_path / "dashboards" / "deep" / "board.json"), "content": "{}"},
    ]
    first = run(file_set, {"files": files}, capsys, check=False, diff=True)
    assert not first.get("failed") and first["changed"] is True
    assert first["folders"] == [
        str(tmp_path / "dashboards"),
        str(tmp_path / "sd"),
        str(tmp_path / "dashboards" / "deep"),
    ]
    assert first["written"] == [entry["path"] for entry in files]
    for entry in files:
        assert open(entry["path"], encoding="utf-8").read() == entry["content"] and mode_of(entry["path"]) == 0o644
    assert mode_of(tmp_path / "sd") == 0o755
    assert first["diff"][0] == {"before_header": files[0]["path"], "after_header": files[0]["path"], "before": "",
                                "after": files[0]["content"]}  # fmt: skip
    again = run(file_set, {"files": files}, capsys, check=False)
    assert (again["changed"], again["written"], again["folders"]) == (False, [], [])
    assert not [name for name in os.listdir(tmp_path / "sd") if name.startswith(".file_set-")]


def test_file_set_check_mode_says_what_would_change_and_writes_nothing(capsys, tmp_path):
    kept = tmp_path / "kept.yml"
    kept.write_text("old\n")
    os.chmod(kept, 0o600)
    files = [{"path": str(kept), "content": "new\n"}, {"path": str(tmp_path / "new" / "a.json"), "content": "{}"}]
    result = run(file_set, {"files": files}, capsys, diff=True)
    assert result["changed"] is True and result["written"] == [str(kept), files[1]["path"]]
    assert result["folders"] == [str(tmp_path / "new")] and not (tmp_path / "new").exists()
    assert kept.read_text() == "old\n" and mode_of(kept) == 0o600
    assert result["diff"][0]["before"] == "old\n" and result["diff"][0]["after"] == "new\n"


def test_file_set_a_mode_that_differs_alone_is_a_change(capsys, tmp_path):
    kept = tmp_path / "kept.yml"
    kept.write_text("same\n")
    os.chmod(kept, 0o600)
    files = [{"path": str(kept), "content": "same\n"}]
    assert run(file_set, {"files": files}, capsys)["changed"] is True
    assert mode_of(kept) == 0o600
    result = run(file_set, {"files": files}, capsys, check=False)
    assert result["changed"] is True and result["written"] == [] and mode_of(kept) == 0o644


def test_file_set_refusals_name_the_value(capsys, tmp_path):
    files = [{"path": str(tmp_path), "content": "x"}]
    folder = run(file_set, {"files": files}, capsys, check=False)
    assert folder["failed"] is True and folder["msg"].startswith(f"cannot read {tmp_path}: Is a directory.")
    (tmp_path / "plain").write_text("a file where a folder should be")
    under_a_file = run(file_set, {"files": [{"path": str(tmp_path / "plain" / "a.json"), "content": "{}"}]}, capsys,
                       check=False)  # fmt: skip
    assert under_a_file["failed"] is True
    assert under_a_file["msg"].startswith(f"cannot read {tmp_path / 'plain' / 'a.json'}: Not a directory.")
    bad = run(file_set, {"files": [{"path": str(tmp_path / "a"), "content": "x"}], "mode": "rw-r--r--"}, capsys)
    assert bad["msg"] == "mode='rw-r--r--': expected octal permission digits such as '0644' or '0755'."


def test_file_set_missing_folders_are_each_named_once_outermost_first(tmp_path):
    paths = [str(tmp_path / "a" / "b" / "f1"), str(tmp_path / "a" / "b" / "f2"), str(tmp_path / "c" / "f3")]
    assert _file_set.missing_folders(paths) == [str(tmp_path / "a"), str(tmp_path / "c"), str(tmp_path / "a" / "b")]
    assert _file_set.planned([{"path": str(tmp_path / "none"), "content": ""}]) == [(str(tmp_path / "none"), None, "")]


# --- port_holder: the token file is read only when Ray must be asked, and its token goes as the bearer token


@pytest.fixture
def serve_dashboard():
    """A dashboard that answers the Serve API with application ``llm`` on the port in ``state["port"]``, and keeps
    the Authorization header of each request."""
    state = {"port": 0, "authorizations": []}

    def answer(headers):
        state["authorizations"].append(headers.get("Authorization"))
        return {"applications": {"llm": {}}, "http_options": {"port": state["port"]}}

    with json_server(answer) as url:
        state["url"] = url
        yield state


def test_port_holder_sends_the_token_of_its_file_when_it_asks_ray(tmp_path, listening_port, serve_dashboard, capsys):
    token_file = tmp_path / "ray-auth-token"
    token_file.write_text("t0k3n-from-the-file\n")
    serve_dashboard["port"] = listening_port
    args = dict(port=listening_port, serve_app="llm", dashboard_url=serve_dashboard["url"], token_file=str(token_file))
    result = run(port_holder, args, capsys)
    assert result["holder"] == "serve", result
    assert serve_dashboard["authorizations"] == ["Bearer t0k3n-from-the-file"]
    assert "t0k3n-from-the-file" not in json.dumps(result)
    # A given token wins over the file; a missing file is a cluster without token authentication.
    run(port_holder, dict(args, token="given-token"), capsys)
    run(port_holder, dict(args, token_file=str(tmp_path / "none")), capsys)
    assert serve_dashboard["authorizations"][1:] == ["Bearer given-token", None]


def test_port_holder_asks_nothing_for_a_free_port(tmp_path, serve_dashboard, capsys):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]  # bound, not listening
        args = dict(port=free_port, serve_app="llm", dashboard_url=serve_dashboard["url"])
        result = run(port_holder, dict(args, token_file=str(tmp_path / "ray-auth-token")), capsys)
    assert result["holder"] == "free" and serve_dashboard["authorizations"] == []
