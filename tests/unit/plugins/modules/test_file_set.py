# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""file_set on real files: what it writes, what a second run leaves alone, check mode, diff and its refusals."""

from __future__ import annotations

import json
import os
import stat

import pytest
from ansible.module_utils import basic

from ansible_collections.llmops.ray_vllm.plugins.module_utils import _file_set
from ansible_collections.llmops.ray_vllm.plugins.modules import file_set


def run_main(monkeypatch, capsys, check=False, diff=False, **args):
    """Run the module's main() with ``args``; returns its JSON answer plus ``exit_code``."""
    args.update(_ansible_check_mode=check, _ansible_diff=diff)
    monkeypatch.setattr(basic, "_ANSIBLE_ARGS", json.dumps({"ANSIBLE_MODULE_ARGS": args}).encode())
    monkeypatch.setattr(basic, "_ANSIBLE_PROFILE", "legacy")
    with pytest.raises(SystemExit) as exited:
        file_set.main()
    answer = json.loads(capsys.readouterr().out)
    answer["exit_code"] = exited.value.code
    return answer


def mode_of(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_writes_the_files_and_their_folders_then_a_second_run_changes_nothing(monkeypatch, capsys, tmp_path):
    files = [
        {"path": str(tmp_path / "sd" / "vllm.json"), "content": '[{"targets": ["127.0.0.1:8000"]}]\n'},
        {"path": str(tmp_path / "sd" / "jobs.yml"), "content": "scrape_configs: []\n"},
        {"path": str(tmp_path / "dashboards" / "deep" / "board.json"), "content": "{}"},
    ]
    first = run_main(monkeypatch, capsys, diff=True, files=files)
    assert first["exit_code"] == 0 and first["changed"] is True
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
    again = run_main(monkeypatch, capsys, files=files)
    assert (again["changed"], again["written"], again["folders"]) == (False, [], [])
    assert not [name for name in os.listdir(tmp_path / "sd") if name.startswith(".file_set-")]


def test_check_mode_says_what_would_change_and_writes_nothing(monkeypatch, capsys, tmp_path):
    kept = tmp_path / "kept.yml"
    kept.write_text("old\n")
    os.chmod(kept, 0o600)
    files = [{"path": str(kept), "content": "new\n"}, {"path": str(tmp_path / "new" / "a.json"), "content": "{}"}]
    result = run_main(monkeypatch, capsys, check=True, diff=True, files=files)
    assert result["changed"] is True and result["written"] == [str(kept), files[1]["path"]]
    assert result["folders"] == [str(tmp_path / "new")] and not (tmp_path / "new").exists()
    assert kept.read_text() == "old\n" and mode_of(kept) == 0o600
    assert result["diff"][0]["before"] == "old\n" and result["diff"][0]["after"] == "new\n"


def test_a_mode_that_differs_alone_is_a_change(monkeypatch, capsys, tmp_path):
    kept = tmp_path / "kept.yml"
    kept.write_text("same\n")
    os.chmod(kept, 0o600)
    files = [{"path": str(kept), "content": "same\n"}]
    assert run_main(monkeypatch, capsys, check=True, files=files)["changed"] is True
    assert mode_of(kept) == 0o600
    result = run_main(monkeypatch, capsys, files=files)
    assert result["changed"] is True and result["written"] == [] and mode_of(kept) == 0o644


def test_refusals_name_the_value(monkeypatch, capsys, tmp_path):
    files = [{"path": str(tmp_path), "content": "x"}]
    folder = run_main(monkeypatch, capsys, files=files)
    assert folder["failed"] is True and folder["msg"].startswith(f"cannot read {tmp_path}: Is a directory.")
    bad = run_main(monkeypatch, capsys, files=[{"path": str(tmp_path / "a"), "content": "x"}], mode="rw-r--r--")
    assert bad["msg"] == "mode='rw-r--r--': expected octal permission digits such as '0644' or '0755'."


def test_missing_folders_are_each_named_once_outermost_first(tmp_path):
    paths = [str(tmp_path / "a" / "b" / "f1"), str(tmp_path / "a" / "b" / "f2"), str(tmp_path / "c" / "f3")]
    assert _file_set.missing_folders(paths) == [str(tmp_path / "a"), str(tmp_path / "c"), str(tmp_path / "a" / "b")]
    assert _file_set.planned([{"path": str(tmp_path / "none"), "content": ""}]) == [(str(tmp_path / "none"), None, "")]
