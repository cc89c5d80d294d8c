# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""ray_node and model_download as Ansible runs them: their main() passes the options to module_utils and reports
the result or the failure as it is (in check mode here, so nothing on this machine changes)."""

from __future__ import annotations

import os
import socket

import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from ansible_collections.llmops.ray_vllm.plugins.modules import model_download, ray_node


class ExitJson(Exception):
    pass


class FailJson(Exception):
    pass


@pytest.fixture(autouse=True)
def capture_results(monkeypatch):
    def exit_json(self, **result):
        raise ExitJson(result)

    def fail_json(self, msg, **result):
        result["msg"] = msg
        raise FailJson(result)

    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)


def run(module, args, outcome=ExitJson):
    with patch_module_args(dict(args, _ansible_check_mode=True)), pytest.raises(outcome) as raised:
        module.main()
    return raised.value.args[0]


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


def test_ray_node_check_mode_predicts_a_start_and_changes_nothing(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]  # bound, not listening: nothing accepts connections on it
        result = run(ray_node, head_args(tmp_path, free_port))
    assert result["action"] == "start" and result["changed"] is True and result["running"] is True
    assert result["command"][:3] == ["/nonexistent/ray", "start", "--head"]
    assert os.listdir(str(tmp_path)) == []


def test_ray_node_fails_on_a_busy_gcs_port_naming_its_port_option(tmp_path, listening_port):
    result = run(ray_node, head_args(tmp_path, listening_port), FailJson)
    assert result["msg"].endswith("Stop that process, or set port to a free port.")
    assert result["action"] == "start" and "port %d on 127.0.0.1" % listening_port in result["msg"]


def test_model_download_reports_an_incomplete_local_model(tmp_path):
    result = run(model_download, dict(source="local", dest=str(tmp_path)), FailJson)
    assert result["problems"][0] == "%s cannot be read (No such file or directory)." % (tmp_path / "config.json")
    assert result["msg"].startswith("The model at %s is not complete: " % tmp_path)


def test_model_download_check_mode_says_what_it_would_fetch(tmp_path):
    dest = str(tmp_path / "m")
    result = run(model_download, dict(source="huggingface", model_id="org/m", revision="abc", dest=dest))
    assert result["changed"] is True and result["path"] == dest
    assert result["reasons"] == ["no completion marker .ray_vllm_complete.json"]
    assert os.listdir(str(tmp_path)) == []
