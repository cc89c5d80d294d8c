# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""ray_node and model_download as Ansible runs them: their main() passes the options to module_utils and reports
the result or the failure as it is (in check mode here, so nothing on this machine changes)."""

from __future__ import annotations

import json
import os
import socket

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.llmops.ray_vllm.plugins.modules import model_download, ray_node


def run(module, args, capsys):
    """The module's result as Ansible reads it (JSON on stdout), run in check mode."""
    with patch_module_args(dict(args, _ansible_check_mode=True)), pytest.raises(SystemExit):
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
