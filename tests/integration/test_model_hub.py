# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The local model hub (tests/model_hub) against the real huggingface_hub SDK, on a small model of random bytes.

Fast: no Ray, no vLLM, no model conversion. What the SDK does is what the collection's downloads do
(plugins/module_utils/_model_dir.download_with_sdk calls snapshot_download), so these tests pin the parts of the Hub
API it relies on: the commit a revision resolves to, the tree, HEAD and GET of a file with its commit, ETag and size,
Range when a connection breaks mid-file, and the Hub's 404s.
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))

from huggingface_hub import hf_hub_download, snapshot_download  # noqa: E402
from huggingface_hub.errors import (  # noqa: E402
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from model_hub import LocalHub, Repository  # noqa: E402

REPO_ID = "llmops-test/tiny-model"
MIB = 1024 * 1024
# Above huggingface_hub's 10 MiB download chunk, so a broken connection leaves whole chunks to resume after.
WEIGHTS_BYTES = 24 * MIB + 123

pytestmark = pytest.mark.integration


def write_tiny_model(directory):
    """A model directory as the hub sees one: config, tokenizer, weights, a sub-folder, and a hidden marker."""
    directory.mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps({"model_type": "llama", "num_hidden_layers": 2}))
    (directory / "tokenizer.json").write_text(json.dumps({"version": "1.0", "model": {"vocab": {"a": 0}}}))
    (directory / "model.safetensors").write_bytes(os.urandom(WEIGHTS_BYTES))
    (directory / "original").mkdir()
    (directory / "original" / "params.json").write_text('{"dim": 64}')
    (directory / ".ray_vllm_complete.json").write_text("{}")
    return directory


def visible_files(directory):
    return sorted(
        str(path.relative_to(directory))
        for path in directory.rglob("*")
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(directory).parts)
    )


def assert_same_files(source, copy):
    assert visible_files(copy) == visible_files(source)
    for name in visible_files(source):
        assert filecmp.cmp(source / name, copy / name, shallow=False), name


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return write_tiny_model(tmp_path_factory.mktemp("hub") / "tiny-model")


@pytest.fixture
def hub(tiny_model):
    with LocalHub({REPO_ID: str(tiny_model)}) as started:
        yield started


def test_snapshot_download_gets_every_file_byte_identical(hub, tiny_model, tmp_path):
    path = snapshot_download(REPO_ID, revision="main", endpoint=hub.url, local_dir=tmp_path / "out")
    assert Path(path) == tmp_path / "out"
    assert_same_files(tiny_model, tmp_path / "out")
    # Hidden files (the collection's completion marker) are not part of the repository.
    assert not (tmp_path / "out" / ".ray_vllm_complete.json").exists()
    sha = hub.commits[REPO_ID]
    seen = {(entry["method"], entry["path"], entry["status"]) for entry in hub.requests}
    assert ("GET", f"/api/models/{REPO_ID}/revision/main", 200) in seen
    assert ("GET", f"/api/models/{REPO_ID}/tree/{sha}", 200) in seen
    for name in visible_files(tiny_model):
        assert ("HEAD", f"/{REPO_ID}/resolve/{sha}/{name}", 200) in seen
        assert ("GET", f"/{REPO_ID}/resolve/{sha}/{name}", 200) in seen


def test_the_commit_comes_from_the_files_so_a_pinned_revision_keeps_working(hub, tiny_model, tmp_path):
    sha = hub.commits[REPO_ID]
    assert len(sha) == 40 and Repository(REPO_ID, str(tiny_model)).sha == sha
    copy = shutil.copytree(tiny_model, tmp_path / "copy")
    assert Repository("another/name", str(copy)).sha == sha
    (copy / "config.json").write_text(json.dumps({"model_type": "llama", "num_hidden_layers": 3}))
    assert Repository(REPO_ID, str(copy)).sha != sha

    snapshot_download(REPO_ID, revision=sha, endpoint=hub.url, local_dir=tmp_path / "pinned")
    assert_same_files(tiny_model, tmp_path / "pinned")
    # A commit sha needs no resolving: the SDK lists the tree at it straight away.
    assert not any("/revision/" in entry["path"] for entry in hub.requests)
    assert hf_hub_download(REPO_ID, "original/params.json", revision=sha, endpoint=hub.url, cache_dir=tmp_path / "c")


def test_a_missing_repo_revision_or_file_is_the_sdks_not_found_error(hub, tmp_path):
    with pytest.raises(RepositoryNotFoundError):
        snapshot_download("llmops-test/no-such-model", endpoint=hub.url, local_dir=tmp_path / "a")
    with pytest.raises(RevisionNotFoundError):
        snapshot_download(REPO_ID, revision="v9", endpoint=hub.url, local_dir=tmp_path / "b")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(REPO_ID, "config.json", revision="0" * 40, endpoint=hub.url, local_dir=tmp_path / "c")
    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download(REPO_ID, "missing.json", endpoint=hub.url, local_dir=tmp_path / "d")
    # The Hub's error format, which those errors are made from: a code and a message in headers, JSON in the body.
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(f"{hub.url}/{REPO_ID}/resolve/main/missing.json", timeout=10)
    assert (error.value.code, error.value.headers["X-Error-Code"]) == (404, "EntryNotFound")
    assert error.value.headers["X-Repo-Commit"] == hub.commits[REPO_ID]
    assert json.loads(error.value.read()) == {"error": f"Entry not found: missing.json is not in {REPO_ID}"}


def test_a_download_cut_mid_file_resumes_with_a_range_request(tiny_model, tmp_path):
    cut = 15 * MIB
    with LocalHub({REPO_ID: str(tiny_model)}, interruptions={f"{REPO_ID}/model.safetensors": cut}) as hub:
        snapshot_download(REPO_ID, endpoint=hub.url, local_dir=tmp_path / "out")
        gets = [
            entry for entry in hub.requests if entry["method"] == "GET" and entry["path"].endswith("/model.safetensors")
        ]
    assert_same_files(tiny_model, tmp_path / "out")
    assert [(entry["range"] is None, entry["status"]) for entry in gets] == [(True, 200), (False, 206)]
    # The SDK resumes after the last whole chunk it wrote (10 MiB), not from the start.
    resumed_at = int(gets[1]["range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= cut


def test_ranges_are_answered_as_the_hub_answers_them(hub, tiny_model):
    url = f"{hub.url}/{REPO_ID}/resolve/main/config.json"
    content = (tiny_model / "config.json").read_bytes()
    for wanted, body in (("bytes=0-9", content[:10]), ("bytes=5-", content[5:]), ("bytes=-4", content[-4:])):
        with urllib.request.urlopen(urllib.request.Request(url, headers={"Range": wanted}), timeout=10) as answer:
            assert (answer.status, answer.read()) == (206, body), wanted
            assert answer.headers["Content-Range"].endswith(f"/{len(content)}")
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(urllib.request.Request(url, headers={"Range": f"bytes={len(content)}-"}), timeout=10)
    assert error.value.code == 416
    head = urllib.request.Request(f"{hub.url}/{REPO_ID}/resolve/main/model.safetensors", method="HEAD")
    with urllib.request.urlopen(head, timeout=10) as answer:
        # A weight file is an LFS file on the Hub: its ETag is its sha256.
        assert answer.headers["ETag"] == '"{}"'.format(
            Repository(REPO_ID, str(tiny_model)).files["model.safetensors"].sha256
        )
        assert answer.headers["Content-Length"] == str(WEIGHTS_BYTES)
        assert answer.headers["X-Repo-Commit"] == hub.commits[REPO_ID]


def test_the_cli_serves_on_every_address_as_its_own_process(tiny_model, tmp_path):
    with LocalHub({REPO_ID: str(tiny_model)}, host="0.0.0.0", mode="process") as hub:
        assert hub.url.startswith("http://0.0.0.0:")
        assert hub.commits == {REPO_ID: Repository(REPO_ID, str(tiny_model)).sha}
        reachable = hub.url.replace("0.0.0.0", "127.0.0.1")
        with urllib.request.urlopen(reachable + "/", timeout=10) as answer:
            (listed,) = json.loads(answer.read())
        assert (listed["id"], listed["sha"], listed["files"]) == (REPO_ID, hub.commits[REPO_ID], 4)
        snapshot_download(REPO_ID, endpoint=reachable, local_dir=tmp_path / "out")
        process = hub._process
    assert process.returncode is not None
    assert_same_files(tiny_model, tmp_path / "out")


def test_the_cli_refuses_a_bad_repository_argument(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(TESTS))
    command = [sys.executable, "-m", "model_hub", "serve", "--repo"]
    missing = subprocess.run(
        [*command, f"org/m={tmp_path / 'nothing'}"], env=env, capture_output=True, text=True, check=False
    )
    assert missing.returncode == 2 and f"org/m: {tmp_path / 'nothing'} is not a directory" in missing.stderr
    malformed = subprocess.run([*command, "org/m"], env=env, capture_output=True, text=True, check=False)
    assert malformed.returncode == 2 and "'org/m' is not ORG/NAME=DIR" in malformed.stderr


def test_the_collections_download_reaches_the_hub_even_when_the_sdk_was_imported_first(hub, tiny_model, tmp_path):
    """download_with_sdk hands the endpoint to snapshot_download itself: HF_ENDPOINT, read when huggingface_hub's
    constants are first imported, would come too late here and send the download to huggingface.co."""
    script = textwrap.dedent(
        """
        import sys
        import huggingface_hub.constants  # the SDK's endpoint is fixed from here on
        sys.path.insert(0, sys.argv[1])
        from _model_dir import download_with_sdk
        download_with_sdk("huggingface", sys.argv[2], "main", sys.argv[3], endpoint=sys.argv[4] + "/")
        """
    )
    module_utils = TESTS.parent / "plugins" / "module_utils"
    target = tmp_path / "model"
    env = dict(os.environ, HF_HUB_DISABLE_PROGRESS_BARS="1", HF_HOME=str(tmp_path / "hf-home"))
    done = subprocess.run(
        [sys.executable, "-c", script, str(module_utils), REPO_ID, str(target), hub.url],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_files(tiny_model, target)


def test_modelscopes_api_is_served_beside_the_hubs(hub, tiny_model):
    """The routes modelscope 1.40.2's snapshot_download uses (test_model_downloads_faults runs the SDK itself)."""
    sha = hub.commits[REPO_ID]
    api = f"{hub.url}/api/v1/models/{REPO_ID}"
    with urllib.request.urlopen(f"{api}/repo/files?Revision=master&Recursive=True", timeout=10) as answer:
        listing = json.loads(answer.read())
    assert (listing["Code"], listing["Success"]) == (200, True)
    files = {entry["Path"]: entry for entry in listing["Data"]["Files"]}
    assert files["original"]["Type"] == "tree"
    weights = files["model.safetensors"]
    repository = Repository(REPO_ID, str(tiny_model))
    assert (weights["Type"], weights["Size"], weights["Revision"]) == ("blob", WEIGHTS_BYTES, sha)
    assert weights["Sha256"] == repository.files["model.safetensors"].sha256 and weights["IsLFS"] is True
    assert sorted(path for path, entry in files.items() if entry["Type"] == "blob") == visible_files(tiny_model)
    # A file at the commit sha, with a range, as the SDK resumes a .incomplete file.
    ranged = urllib.request.Request(f"{api}/repo?Revision={sha}&FilePath=config.json", headers={"Range": "bytes=3-"})
    with urllib.request.urlopen(ranged, timeout=10) as answer:
        assert (answer.status, answer.read()) == (206, (tiny_model / "config.json").read_bytes()[3:])
    assert hub.requests[-1]["file"] == f"{REPO_ID}/config.json" and hub.requests[-1]["api"] == "modelscope"
    # ModelScope's error body for a missing revision, repository or file.
    for url in (
        f"{api}/repo/files?Revision=v9&Recursive=True",
        f"{hub.url}/api/v1/models/llmops-test/none/repo/files?Revision=master",
        f"{api}/repo?Revision=master&FilePath=missing.json",
    ):
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(url, timeout=10)
        body = json.loads(error.value.read())
        assert (error.value.code, body["Code"], body["Success"]) == (404, 404, False), url
        assert body["Message"], url
