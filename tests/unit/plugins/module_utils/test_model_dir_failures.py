"""_model_dir's download failure messages, hash check, progress lines and stale partial files, with the SDKs' own
exception classes (huggingface_hub 2.4.0, modelscope_hub 0.5.1 as modelscope 1.40.2 ships it) where they are installed
(the project's venv; ansible-test's units venv has no hub SDK and skips those)."""

from __future__ import annotations

import errno
import hashlib
import os

import pytest

from ansible_collections.llmops.ray_vllm.plugins.module_utils._model_dir import (
    DownloadFailure,
    ProgressReporter,
    describe_download_error,
    git_blob_id,
    hash_problems,
    progress_line,
    remove_stale_partial_files,
)
from ansible_collections.llmops.ray_vllm.plugins.module_utils._model_download import failure_message

MODEL, TARGET, HUB = "org/model", "/models/model.partial", "http://hub:8088"


def hf_errors():
    return pytest.importorskip("huggingface_hub.errors")


def ms_errors():
    return pytest.importorskip("modelscope_hub.errors")


def hf_response(status=404):
    httpx = pytest.importorskip("httpx")
    return httpx.Response(status, request=httpx.Request("GET", f"{HUB}/api/models/{MODEL}/revision/v9"))


def describe(error, source="huggingface", revision="v9", free_bytes=None):
    return describe_download_error(error, source, MODEL, revision, TARGET, HUB, free_bytes)


def test_a_missing_revision_names_the_revision_and_the_model():
    failure = describe(hf_errors().RevisionNotFoundError("Invalid rev id: v9", response=hf_response()))
    assert failure.kind == "not_found"
    assert str(failure).startswith(f"revision 'v9' of {MODEL} is not on {HUB} (404)")


def test_a_missing_repository_names_the_model_and_revision_for_either_sdk():
    failure = describe(hf_errors().RepositoryNotFoundError("Repository Not Found", response=hf_response()))
    assert failure.kind == "not_found" and f"{MODEL} at revision 'v9' is not on {HUB} (404" in str(failure)
    # modelscope's snapshot_download raises requests' HTTPError from NotExistError.
    requests, NotExistError = pytest.importorskip("requests"), ms_errors().NotExistError
    try:
        try:
            raise NotExistError("[404] Repository not found", status_code=404)
        except NotExistError as cause:
            raise requests.exceptions.HTTPError(str(cause)) from cause
    except requests.exceptions.HTTPError as error:
        failure = describe(error, "modelscope", "master")
    assert failure.kind == "not_found" and f"{MODEL} at revision 'master' is not on {HUB}" in str(failure)


def test_a_full_disk_is_named_with_the_free_space_before_any_other_cause():
    FileDownloadError = ms_errors().FileDownloadError
    full = OSError(errno.ENOSPC, "No space left on device")
    failure = describe(
        FileDownloadError("1 of 3 file(s) failed", failed_files={"model.safetensors": full}), "ms", free_bytes=0
    )
    assert failure.kind == "disk_full"
    assert str(failure).startswith(f"the disk holding {TARGET} is full: No space left on device (0 bytes free")
    assert "Nothing was marked complete" in str(failure)
    # huggingface_hub raises the OSError itself, in a chain.
    try:
        try:
            raise full
        except OSError as cause:
            raise RuntimeError("download failed") from cause
    except RuntimeError as error:
        assert describe(error).kind == "disk_full"


def test_a_hash_mismatch_names_each_file_that_failed_it():
    FileDownloadError, FileIntegrityError = ms_errors().FileDownloadError, ms_errors().FileIntegrityError
    error = FileDownloadError(
        "2 of 4 file(s) failed",
        failed_files={"b.safetensors": FileIntegrityError("sha256 mismatch"), "a.json": OSError("reset")},
    )
    failure = describe(error, "modelscope")
    assert (failure.kind, failure.files) == ("hash", ["b.safetensors"])
    assert str(failure).startswith("b.safetensors failed its hash check (the bytes received differ from the hub's")


def test_other_failures_keep_the_sdks_first_line_and_the_failed_files():
    FileDownloadError = ms_errors().FileDownloadError
    error = FileDownloadError("1 of 2 file(s) failed", failed_files={"x.bin": TimeoutError("read timed out\nmore")})
    failure = describe(error, "modelscope")
    assert (failure.kind, failure.files, str(failure)) == (
        "failed",
        ["x.bin"],
        "1 file(s) failed: x.bin: read timed out",
    )
    assert str(describe(ValueError("bad\ndetail"))) == "ValueError: bad"


def test_the_modules_message_says_which_options_to_change_and_that_the_partial_download_stays():
    params = {"source": "huggingface", "model_id": MODEL, "revision": "v9"}
    message = failure_message(DownloadFailure("revision 'v9' is not there.", kind="not_found"), params, TARGET)
    assert message == (
        f"Downloading {MODEL}@v9 from huggingface failed: revision 'v9' is not there. Set model_id and revision to a "
        f"repository and revision the endpoint serves. What was fetched stays in {TARGET} and the next run resumes "
        "from it."
    )


def test_hash_problems_compare_sha256_and_git_blob_ids_and_remove_what_differs(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "w.safetensors").write_bytes(b"weights")
    (tmp_path / "config.json").write_bytes(b"{}")
    # git hash-object's id for the two bytes "{}".
    assert git_blob_id(tmp_path / "config.json") == hashlib.sha1(b"blob 2\0{}").hexdigest()
    expected = {
        "sub/w.safetensors": ("sha256", hashlib.sha256(b"weights").hexdigest()),
        "config.json": ("git-blob", hashlib.sha1(b"blob 2\0{}").hexdigest()),
    }
    assert hash_problems(tmp_path, expected) == ([], [])
    (tmp_path / "sub" / "w.safetensors").write_bytes(b"weightz")
    problems, bad = hash_problems(tmp_path, dict(expected, **{"gone.txt": ("sha256", "0" * 64)}), remove=True)
    assert bad == ["gone.txt", "sub/w.safetensors"]
    assert problems[0] == "gone.txt is missing."
    assert problems[1].startswith("sub/w.safetensors has sha256 ") and problems[1].endswith(
        ", the hub lists %s." % expected["sub/w.safetensors"][1]
    )
    assert not (tmp_path / "sub" / "w.safetensors").exists() and (tmp_path / "config.json").exists()


@pytest.mark.parametrize(
    ("done", "total", "elapsed", "previous", "line"),
    [
        (0, None, 0, None, "0.0 MiB on disk after 0 s"),
        (5 * 2**20, 20 * 2**20, 10, None, "5.0 MiB of 20.0 MiB (25%) on disk after 10 s"),
        (10 * 2**20, 20 * 2**20, 20, 5 * 2**20, "10.0 MiB of 20.0 MiB (50%) on disk after 20 s, 0.5 MiB/s"),
        (30 * 2**20, 20 * 2**20, 30, 40 * 2**20, "30.0 MiB of 20.0 MiB (100%) on disk after 30 s, 0.0 MiB/s"),
    ],
)
def test_progress_lines(done, total, elapsed, previous, line):
    assert progress_line(done, total, elapsed, previous, 10 if previous is not None else None) == line


def test_the_progress_reporter_counts_hidden_partial_files_until_stopped(tmp_path):
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "w.incomplete").write_bytes(b"x" * 2**20)
    lines = []
    with ProgressReporter(str(tmp_path), lines.append, 0.05, total_bytes=2 * 2**20):
        while len(lines) < 2:
            os.sched_yield()
    count = len(lines)
    assert lines[0].startswith("1.0 MiB of 2.0 MiB (50%) on disk after ")
    assert len(lines) == count  # stopped


def test_stale_huggingface_partial_files_are_removed_and_finished_files_kept(tmp_path):
    download = tmp_path / ".cache" / "huggingface" / "download"
    download.mkdir(parents=True)
    (download / "w.safetensors.a1b2c3d4.incomplete").write_bytes(b"x")
    (download / "w.safetensors.metadata").write_text("sha\netag\n")
    (tmp_path / "config.json").write_text("{}")
    assert remove_stale_partial_files(str(tmp_path)) == [str(download / "w.safetensors.a1b2c3d4.incomplete")]
    assert sorted(path.name for path in tmp_path.rglob("*") if path.is_file()) == [
        "config.json",
        "w.safetensors.metadata",
    ]
