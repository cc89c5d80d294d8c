# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Downloads that go wrong, through the real SDKs (huggingface_hub 2.4.0, modelscope 1.40.2) and the collection's
own code, against the local hub (tests/model_hub, both APIs on one port):

- the model_download module (what model_storage runs on hosts), run as Ansible runs a module: its file, its arguments
  in a JSON file, the collection on the path;
- the Kubernetes download Job's script (roles/model_storage/files/download_model.py beside _model_dir.py), as a
  process (no pod).

A small model (a valid safetensors file of random values, 16 MiB) keeps these cheap: a pinned revision, a download
killed mid-file and resumed without fetching finished files again (from the hub's request log), a corrupted file
caught by its hash and named, a missing model or revision named, a slow hub with progress lines, and a full disk
(a tmpfs mounted by the test, as root) that leaves nothing marked complete.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
sys.path.insert(0, str(TESTS))

from model_hub import LocalHub  # noqa: E402
from playbook_runner import run_playbook  # noqa: E402

pytestmark = pytest.mark.integration

REPO_ID = "llmops-test/faults-model"
WEIGHTS = "model.safetensors"
MARKER = ".ray_vllm_complete.json"
MIB = 1024 * 1024
# Above huggingface_hub's 10 MiB write chunk, so a killed download leaves a whole chunk on disk to resume after.
WEIGHT_ELEMENTS = 16 * MIB // 4
MODULE = REPO / "plugins" / "modules" / "model_download.py"
SOURCES = ("huggingface", "modelscope")
BRANCH = {"huggingface": "main", "modelscope": "master"}


def write_model(directory):
    """config.json, a tokenizer file and one float32 safetensors tensor of random values (valid to its last byte)."""
    directory.mkdir(parents=True)
    config = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "num_hidden_layers": 2}
    config.update(num_attention_heads=4, num_key_value_heads=2, hidden_size=64, vocab_size=128)
    (directory / "config.json").write_text(json.dumps(config))
    (directory / "tokenizer.json").write_text(json.dumps({"version": "1.0", "model": {"vocab": {"a": 0}}}))
    header = json.dumps({"w": {"dtype": "F32", "shape": [WEIGHT_ELEMENTS], "data_offsets": [0, WEIGHT_ELEMENTS * 4]}})
    header = header.encode() + b" " * (-len(header) % 8)
    (directory / WEIGHTS).write_bytes(struct.pack("<Q", len(header)) + header + os.urandom(WEIGHT_ELEMENTS * 4))
    return directory


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return write_model(tmp_path_factory.mktemp("faults") / "faults-model")


@pytest.fixture(scope="module")
def hub(model):
    with LocalHub({REPO_ID: str(model)}) as started:
        yield started


@pytest.fixture
def clean_hub(hub):
    """The shared hub at full speed with no corrupted file once the test is done."""
    yield hub
    hub.throttle = None
    hub._server.corruptions.clear()
    hub._server.interruptions.clear()


def sdk_environment(tmp_path):
    """Caches kept inside the test; progress bars off so the output stays readable."""
    return dict(
        os.environ,
        HF_HOME=str(tmp_path / "hf-home"),
        MODELSCOPE_CACHE=str(tmp_path / "modelscope-cache"),
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        PYTHONUNBUFFERED="1",
    )


def module_command(tmp_path, source, revision, dest, endpoint, model_id=REPO_ID):
    """The model_download module as Ansible runs it on a host: its file with the arguments in a JSON file."""
    arguments = {"source": source, "model_id": model_id, "revision": revision, "dest": str(dest), "endpoint": endpoint}
    args_file = tmp_path / f"args-{source}-{time.monotonic_ns()}.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": dict(arguments, _ansible_check_mode=False)}))
    return [sys.executable, str(MODULE), str(args_file)]


def run_module(tmp_path, source, revision, dest, endpoint, model_id=REPO_ID, timeout=300):
    env = dict(sdk_environment(tmp_path), PYTHONPATH=str(REPO / ".build" / "collections"))
    done = subprocess.run(
        module_command(tmp_path, source, revision, dest, endpoint, model_id),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, f"the module printed no result: {done.stdout[-2000:]} {done.stderr[-2000:]}"
    return json.loads(lines[-1])


def job_command(tmp_path):
    """The Job's ConfigMap, its two files side by side."""
    mounted = tmp_path / "opt-llmops-ray-vllm"
    if not mounted.exists():
        mounted.mkdir()
        shutil.copy(REPO / "roles" / "model_storage" / "files" / "download_model.py", mounted)
        shutil.copy(REPO / "plugins" / "module_utils" / "_model_dir.py", mounted)
    return [sys.executable, str(mounted / "download_model.py")]


def job_environment(tmp_path, source, revision, model_dir, endpoint, model_id=REPO_ID, interval=30):
    return dict(
        sdk_environment(tmp_path),
        MODEL_SOURCE=source,
        MODEL_ID=model_id,
        MODEL_REVISION=revision,
        MODEL_DIR=str(model_dir),
        MODEL_ENDPOINT=endpoint,
        MODEL_PROGRESS_INTERVAL=str(interval),
    )


def run_job(tmp_path, source, revision, model_dir, endpoint, model_id=REPO_ID, interval=30):
    return subprocess.run(
        job_command(tmp_path),
        env=job_environment(tmp_path, source, revision, model_dir, endpoint, model_id, interval),
        cwd="/",
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def file_gets(hub, since=0):
    """The files fetched (GET, either API) since request ``since``: [(file, range, status)]."""
    return [
        (entry["file"], entry["range"], entry["status"])
        for entry in hub.requests[since:]
        if entry["method"] == "GET" and entry["file"]
    ]


def hub_bytes(model):
    return sum(path.stat().st_size for path in model.iterdir())


def assert_same_model(source, copy):
    for name in ("config.json", "tokenizer.json", WEIGHTS):
        assert (copy / name).read_bytes() == (source / name).read_bytes(), name


def test_a_pinned_revision_is_what_the_module_and_the_job_fetch(hub, model, tmp_path):
    """modelscope through both paths (the Job's huggingface path is test_model_storage_hub's), huggingface through the
    module: each request names the commit, never the branch."""
    sha = hub.commits[REPO_ID]
    for source in SOURCES:
        since = len(hub.requests)
        result = run_module(tmp_path, source, sha, tmp_path / source / "model", hub.url)
        assert not result.get("failed"), result.get("msg")
        assert_same_model(model, tmp_path / source / "model")
        marker = json.loads((tmp_path / source / "model" / MARKER).read_text())
        assert (marker["source"], marker["revision"]) == (source, sha)
        asked = hub.requests[since:]
        assert asked and not any(BRANCH[source] in entry["path"] for entry in asked)
        assert {entry["api"] for entry in asked} == {source}
    since = len(hub.requests)
    job = run_job(tmp_path, "modelscope", sha, tmp_path / "volume" / "model", hub.url)
    assert job.returncode == 0, job.stderr[-3000:]
    assert_same_model(model, tmp_path / "volume" / "model")
    marker = json.loads((tmp_path / "volume" / "model" / MARKER).read_text())
    assert (marker["source"], marker["revision"], marker["total_bytes"]) == ("modelscope", sha, hub_bytes(model))
    assert {entry["api"] for entry in hub.requests[since:]} == {"modelscope"}


@pytest.mark.parametrize("source", SOURCES)
def test_a_missing_model_or_revision_is_named_with_the_variable_to_change(hub, tmp_path, source):
    missing = "llmops-test/no-such-model"
    result = run_module(tmp_path, source, BRANCH[source], tmp_path / "hosts" / "model", hub.url, model_id=missing)
    assert result["failed"] and result["failure"] == "not_found", result["msg"]
    assert f"{missing} at revision" in result["msg"] and "Set model_id and revision" in result["msg"]
    assert not (tmp_path / "hosts" / "model").exists()
    if source == "modelscope":  # modelscope imports torch here (slow); the Job maps its 404 as the module does
        return
    job = run_job(tmp_path, source, "v9.9", tmp_path / "volume" / "model", hub.url)
    assert job.returncode == 1 and "'v9.9'" in job.stderr, job.stderr
    assert "model_storage_revision (MODEL_REVISION)" in job.stderr and "No completion marker" in job.stderr
    assert not (tmp_path / "volume" / "model" / MARKER).exists()


@pytest.mark.parametrize("source", SOURCES)
def test_a_download_killed_mid_file_resumes_without_fetching_finished_files(clean_hub, model, tmp_path, source):
    hub, dest = clean_hub, tmp_path / "hosts" / "model"
    hub.throttle = 4 * MIB  # four seconds for the weights: time to kill the module after its first 10 MiB
    env = dict(sdk_environment(tmp_path), PYTHONPATH=str(REPO / ".build" / "collections"))
    since = len(hub.requests)
    process = subprocess.Popen(
        module_command(tmp_path, source, BRANCH[source], dest, hub.url),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    partial = Path(str(dest) + ".partial")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        incomplete = [path for path in partial.rglob("*.incomplete") if path.stat().st_size >= 10 * MIB]
        if incomplete:
            break
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert incomplete, "the weights never started arriving"
    weights = f"{REPO_ID}/{WEIGHTS}"
    while time.monotonic() < deadline and (weights, None, 499) not in file_gets(hub, since):
        time.sleep(0.1)  # the hub notices the closed connection at its next write
    first = file_gets(hub, since)
    finished = {entry[0] for entry in first if entry[2] == 200 and not entry[0].endswith(WEIGHTS)}
    assert finished == {f"{REPO_ID}/config.json", f"{REPO_ID}/tokenizer.json"}, first
    assert not dest.exists()

    hub.throttle = None
    since = len(hub.requests)
    result = run_module(tmp_path, source, BRANCH[source], dest, hub.url)
    assert not result.get("failed"), result.get("msg")
    assert_same_model(model, dest)
    again = file_gets(hub, since)
    # Only the weights were fetched again. modelscope resumes its .incomplete file from where the killed run stopped;
    # huggingface_hub 2.4.0 writes each download to a file of its own process (huggingface_hub PR 4228) and starts
    # the file over, and the collection removes the killed run's leftover.
    if source == "modelscope":
        assert [(entry[0], entry[2]) for entry in again] == [(weights, 206)], again
        assert int(again[0][1].removeprefix("bytes=").rstrip("-")) >= 10 * MIB
    else:
        assert again == [(weights, None, 200)], again
    assert not list(dest.rglob("*.incomplete"))
    assert json.loads((dest / MARKER).read_text())["source"] == source


@pytest.mark.parametrize("source", SOURCES)
def test_a_corrupted_file_is_caught_by_its_hash_and_named(clean_hub, tmp_path, source):
    hub = clean_hub
    hub._server.corruptions.add(f"{REPO_ID}/{WEIGHTS}")
    # modelscope's SDK checks the hash itself (three tries); the module maps its error as the Job does, so the Job's
    # path is enough there. huggingface is checked by the collection: both paths.
    job = run_job(tmp_path, source, BRANCH[source], tmp_path / "volume" / "model", hub.url)
    assert job.returncode == 1, job.stdout[-2000:]
    assert f"{WEIGHTS} failed its hash check" in job.stderr and "No completion marker" in job.stderr, job.stderr
    assert not (tmp_path / "volume" / "model" / MARKER).exists()
    # The damaged file is not kept: the next run fetches it anew.
    assert not (tmp_path / "volume" / "model" / WEIGHTS).exists()
    if source == "modelscope":
        return
    # Once the hub serves it right, the next run fetches only that file and completes.
    hub._server.corruptions.clear()
    since = len(hub.requests)
    job = run_job(tmp_path, source, BRANCH[source], tmp_path / "volume" / "model", hub.url)
    assert job.returncode == 0, job.stderr[-3000:]
    assert file_gets(hub, since) == [(f"{REPO_ID}/{WEIGHTS}", None, 200)]
    assert (tmp_path / "volume" / "model" / MARKER).exists()
    hub._server.corruptions.add(f"{REPO_ID}/{WEIGHTS}")
    result = run_module(tmp_path, source, BRANCH[source], tmp_path / "hosts" / "model", hub.url)
    assert result["failed"] and result["failure"] == "hash" and result["files"] == [WEIGHTS], result["msg"]
    assert f"{WEIGHTS} failed its hash check" in result["msg"]
    assert not (tmp_path / "hosts" / "model").exists()


def test_a_slow_hub_prints_progress_while_the_job_waits(clean_hub, model, tmp_path):
    hub = clean_hub
    hub.throttle = 4 * MIB  # about four seconds for the weights, a progress line each second
    job = run_job(tmp_path, "huggingface", "main", tmp_path / "volume" / "model", hub.url, interval=1)
    assert job.returncode == 0, job.stderr[-3000:]
    progress = [line for line in job.stdout.splitlines() if " on disk after " in line]
    assert len(progress) >= 3, job.stdout
    assert " MiB/s" in progress[-1]
    on_disk = [float(line.split("] ")[1].split(" MiB")[0]) for line in progress]
    assert on_disk == sorted(on_disk) and on_disk[0] < on_disk[-1], progress
    assert_same_model(model, tmp_path / "volume" / "model")


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MiB tmpfs: the config fits, the 16 MiB weights do not."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "small-disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.parametrize("source", SOURCES)
def test_a_full_disk_fails_clearly_with_nothing_marked_complete(hub, tmp_path, small_disk, source):
    if source == "huggingface":  # modelscope's import is slow here (torch): its module path is enough
        job = run_job(tmp_path, source, BRANCH[source], small_disk / "volume", hub.url)
        assert job.returncode == 1, job.stdout[-2000:]
        assert f"the disk holding {small_disk / 'volume'} is full" in job.stderr, job.stderr
        assert "model_storage_volume_size" in job.stderr
        assert not (small_disk / "volume" / MARKER).exists()
    result = run_module(tmp_path, source, BRANCH[source], small_disk / "hosts", hub.url)
    assert result["failed"] and result["failure"] == "disk_full", result["msg"]
    assert "No space left on device" in result["msg"] and "Nothing was marked complete" in result["msg"]
    assert not (small_disk / "hosts").exists() and not (small_disk / "hosts.partial" / MARKER).exists()


def test_model_storage_on_hosts_fetches_from_modelscope_with_progress_beats_then_names_a_missing_model(
    clean_hub, model, tmp_path
):
    """The role itself (tasks/hosts.yml: model_download in the background, async_status every
    model_storage_progress_interval seconds) against the hub's ModelScope API, slowed down."""
    hub = clean_hub
    hub.throttle = 8 * MIB
    playbook = str(Path(__file__).resolve().parent / "playbooks" / "model_storage_hub.yml")
    model_dir = tmp_path / "models" / "faults-model"
    extra = {"hub_url": hub.url, "hub_repo": REPO_ID, "hub_revision": "master", "model_dir": str(model_dir)}
    extra.update(hub_source="modelscope", hub_progress_interval=1)
    env = {"MODELSCOPE_CACHE": str(tmp_path / "modelscope-cache")}
    rc, output, recap = run_playbook(playbook, "localhost,", ["-e", json.dumps(extra)], env=env)
    assert rc == 0, output[-4000:]
    assert recap["localhost"]["failed"] == 0
    assert output.count("FAILED - RETRYING: [localhost]: Wait for the download to finish") >= 2, output[-4000:]
    assert_same_model(model, model_dir)
    assert json.loads((model_dir / MARKER).read_text())["source"] == "modelscope"

    # The role's message for a missing model (the same for either source: huggingface imports faster here).
    missing = "llmops-test/no-such-model"
    extra.update(hub_repo=missing, hub_source="huggingface", hub_revision="main", model_dir=str(tmp_path / "missing"))
    rc, output, recap = run_playbook(playbook, "localhost,", ["-e", json.dumps(extra)], env=env)
    assert rc != 0 and recap["localhost"]["failed"] == 1
    message = " ".join(output.split())
    assert f"{missing} at revision 'main' is not on {hub.url}" in message, output[-4000:]
    assert "Fix: set model_storage_model_id and model_storage_revision to a repository and revision" in message
    assert not (tmp_path / "missing").exists()
