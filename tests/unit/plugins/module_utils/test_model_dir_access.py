"""_model_dir's look at a directory marked complete (run in a pod by model_storage: _model_volume.look_command), and
the Job's restore_access, for real: a reader without CAP_DAC_OVERRIDE, as the serving containers are, is root with
those capabilities dropped from its bounding set (setpriv)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess

import pytest

from ansible_collections.llmops.ray_vllm.plugins.module_utils._model_dir import (
    build_marker,
    marked_dir_problems,
    model_files,
    restore_access,
    write_marker,
)
from ansible_collections.llmops.ray_vllm.plugins.module_utils._model_volume import look_command, seen_damage

WITHOUT_DAC = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-all"]


@pytest.fixture
def marked(tmp_path):
    directory = tmp_path / "model"
    directory.mkdir()
    (directory / "config.json").write_text('{"model_type": "llama"}')
    (directory / "tokenizer.json").write_text("{}" * 50)
    (directory / "model.safetensors").write_bytes(b"\0" * 128)
    write_marker(str(directory), build_marker("huggingface", "org/m", "main", None, files=model_files(str(directory))))
    yield directory
    restore_access(str(directory))


def look_without_dac(directory):
    """The look as the pod runs it (the command model_storage sends), without CAP_DAC_OVERRIDE."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to drop CAP_DAC_OVERRIDE")
    command = [*WITHOUT_DAC, *shlex.split(look_command(str(directory)))]
    return seen_damage(subprocess.run(command, capture_output=True, text=True, check=True).stdout, str(directory))


def test_a_complete_directory_has_no_problem(marked):
    assert marked_dir_problems(str(marked)) == []
    assert look_without_dac(marked) == []


def test_a_removed_or_truncated_file_and_a_missing_marker_are_named(marked, tmp_path):
    (marked / "tokenizer.json").unlink()
    (marked / "model.safetensors").write_bytes(b"\0" * 10)
    assert marked_dir_problems(str(marked)) == [
        "model.safetensors has 10 bytes where the completion marker says 128",
        "tokenizer.json is missing (the completion marker lists it, 100 bytes)",
    ]
    assert marked_dir_problems(str(tmp_path)) == [f"{tmp_path} has no completion marker .ray_vllm_complete.json."]


def test_an_unreadable_directory_or_file_is_named_to_a_reader_without_dac_override(marked):
    os.chmod(marked / "config.json", 0)
    assert look_without_dac(marked) == ["config.json cannot be read (Permission denied)"]
    os.chmod(marked, 0)
    assert look_without_dac(marked) == [f"{marked}/.ray_vllm_complete.json cannot be read (Permission denied)."]


def test_restore_access_opens_up_what_a_chmod_locked_and_only_that(marked):
    os.chmod(marked / "config.json", 0)
    os.chmod(marked, 0)
    os.symlink("config.json", marked / "link")
    restored = restore_access(str(marked))
    assert sorted(restored) == [str(marked), str(marked / "config.json")]
    assert os.stat(marked).st_mode & 0o777 == 0o755
    assert os.stat(marked / "config.json").st_mode & 0o777 == 0o644
    assert look_without_dac(marked) == []
    assert restore_access(str(marked)) == []
