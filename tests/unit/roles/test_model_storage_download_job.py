"""The Kubernetes download Job's script, run from the files the model_storage role ships in its ConfigMap.

The data of the ConfigMap template is rendered with Ansible's own templating (its file lookups included), its files
are laid out as the kubelet mounts a ConfigMap (a timestamped folder behind ``..data`` links), and download_model.py
runs there with the standard library only (``python -S``) and a stand-in ModelScope SDK on PYTHONPATH. The marker it
writes is the one the hosts platform's model_download accepts: both use the one shipped _model_dir.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from ansible_collections.llmops.ray_vllm.plugins.module_utils import _model_dir
from ansible_collections.llmops.ray_vllm.plugins.module_utils._model_download import needs_fetch
from ansible_collections.llmops.ray_vllm.tests.unit.plugins.module_utils.test_model_download import write_model

# tests/unit/roles/: the controller side of ansible-test units, where all of Ansible is importable (the
# module_utils tests run where only ansible.module_utils is).
REPO = Path(__file__).resolve().parents[3]
ROLE = REPO / "roles" / "model_storage"

# Runs in its own interpreter: Ansible's plugin loader takes over the ansible_collections imports of the process.
# Only the ConfigMap's data is rendered: what the Job gets does not depend on the role's naming facts.
RENDER = textwrap.dedent(
    """
    import sys
    from ansible.plugins.loader import init_plugin_loader
    init_plugin_loader()
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar, trust_as_template
    role = sys.argv[1]
    with open(role + "/templates/configmap.yaml.j2") as template:
        text = template.read()
    data = text[text.index("\\ndata:") :]
    loader = DataLoader()
    role_vars = loader.load_from_file(role + "/vars/main.yml")
    variables = {"role_path": role, "ansible_search_path": [role]}
    variables["_model_storage_marker_module"] = trust_as_template(role_vars["_model_storage_marker_module"])
    print(Templar(loader=loader, variables=variables).template(trust_as_template(data)))
    """
)

FAKE_SNAPSHOT_DOWNLOAD = textwrap.dedent(
    """
    import os, shutil


    def snapshot_download(model_id, revision=None, local_dir=None):
        with open(os.environ["FAKE_HUB_LOG"], "a") as log:
            log.write("%s@%s\\n" % (model_id, revision))
        shutil.copytree(os.environ["FAKE_HUB_MODEL"], local_dir, dirs_exist_ok=True)
    """
)


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """The ConfigMap's files, mounted as the kubelet does: links by name into ``..data``, a timestamped folder."""
    # The child finds Ansible where this process does: ansible-test units puts it on sys.path, not in the venv.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path for path in sys.path if path))
    rendered = subprocess.run(
        [sys.executable, "-c", RENDER, str(ROLE)], capture_output=True, text=True, check=False, env=env
    )
    assert rendered.returncode == 0, rendered.stderr[-3000:]
    data = yaml.safe_load(rendered.stdout)["data"]
    mount = tmp_path_factory.mktemp("opt-llmops-ray-vllm")
    real = mount / "..2025_01_01_00_00_00.000000001"
    real.mkdir()
    for name, text in data.items():
        (real / name).write_text(text + "\n")
    (mount / "..data").symlink_to(real.name)
    for name in data:
        (mount / name).symlink_to(Path("..data") / name)
    return mount


@pytest.fixture(scope="module")
def fake_hub(tmp_path_factory):
    """A stand-in modelscope distribution (1.40.2, the pinned one) whose snapshot_download copies FAKE_HUB_MODEL."""
    root = tmp_path_factory.mktemp("fake-hub")
    package = root / "modelscope" / "hub"
    package.mkdir(parents=True)
    (root / "modelscope" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "api.py").write_text("class HubApi:\n    def login(self, token):\n        pass\n")
    (package / "snapshot_download.py").write_text(FAKE_SNAPSHOT_DOWNLOAD)
    dist_info = root / "modelscope-1.40.2.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: modelscope\nVersion: 1.40.2\n")
    return root


class Job:
    """Runs the shipped download_model.py as the Job's container does, with the Job's environment."""

    def __init__(self, shipped, fake_hub, tmp_path):
        self.shipped, self.fake_hub = shipped, fake_hub
        self.model_dir = tmp_path / "models" / "m"
        self.hub_model = tmp_path / "hub-model"
        self.hub_log = tmp_path / "hub.log"
        write_model(str(self.hub_model), shards=2)

    def run(self, revision="master"):
        env = {
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": str(self.fake_hub),
            "MODEL_SOURCE": "modelscope",
            "MODEL_ID": "org/m",
            "MODEL_REVISION": revision,
            "MODEL_DIR": str(self.model_dir),
            "MODELSCOPE_VERSION": "1.40.2",
            "FAKE_HUB_MODEL": str(self.hub_model),
            "FAKE_HUB_LOG": str(self.hub_log),
        }
        # -S: no site-packages, so the script and the marker module can only use the standard library.
        command = [sys.executable, "-S", str(self.shipped / "download_model.py")]
        return subprocess.run(command, env=env, capture_output=True, text=True, cwd="/", check=False)

    def hub_calls(self):
        return self.hub_log.read_text().split() if self.hub_log.exists() else []


@pytest.fixture
def job(shipped, fake_hub, tmp_path):
    return Job(shipped, fake_hub, tmp_path)


def test_the_configmap_ships_the_collections_marker_module_unchanged(shipped):
    marker_source = Path(_model_dir.__file__).read_text()
    assert (shipped / "_model_dir.py").read_text().rstrip("\n") == marker_source.rstrip("\n")
    assert (shipped / "download_model.py").read_text().rstrip("\n") == (
        (ROLE / "files" / "download_model.py").read_text().rstrip("\n")
    )


def test_the_job_writes_the_marker_the_hosts_accept(job):
    done = job.run()
    assert done.returncode == 0, done.stderr
    marker = json.loads((job.model_dir / _model_dir.MARKER_NAME).read_text())
    sizes = {name: os.path.getsize(job.hub_model / name) for name in os.listdir(job.hub_model)}
    assert marker["files"] == sizes and marker["total_bytes"] == sum(sizes.values())
    assert {key: marker[key] for key in _model_dir.IDENTITY_KEYS} == {
        "source": "modelscope",
        "model_id": "org/m",
        "revision": "master",
        "dtype": None,
    }
    assert "complete: 4 files" in done.stdout
    # The hosts platform takes the Job's directory as complete: same marker, same completeness check.
    assert needs_fetch(str(job.model_dir), "modelscope", "org/m", "master") == []
    assert needs_fetch(str(job.model_dir), "modelscope", "org/m", "v2") == ["revision is 'master', wanted 'v2'"]


def test_a_complete_model_is_not_fetched_again_and_another_revision_replaces_it(job):
    assert job.run().returncode == 0
    again = job.run()
    assert again.returncode == 0 and "is already complete" in again.stdout
    assert job.hub_calls() == ["org/m@master"]
    other = job.run(revision="v2")
    assert other.returncode == 0, other.stderr
    assert f"{job.model_dir} holds org/m@master (revision is 'master', wanted 'v2'); replacing it" in other.stdout
    assert job.hub_calls() == ["org/m@master", "org/m@v2"]
    assert _model_dir.read_marker(str(job.model_dir))["revision"] == "v2"


def test_a_model_damaged_after_its_marker_is_opened_up_and_fetched_again(job):
    assert job.run().returncode == 0
    os.remove(job.model_dir / "config.json")
    os.chmod(job.model_dir, 0)
    healed = job.run()
    assert healed.returncode == 0, healed.stderr
    opened = next(line for line in healed.stdout.splitlines() if "gave the owner back read access" in line)
    assert f"path(s): {job.model_dir}," in opened or opened.endswith(f"path(s): {job.model_dir}"), opened
    assert "config.json is missing (the completion marker lists it" in healed.stdout
    assert job.hub_calls() == ["org/m@master", "org/m@master"]
    assert _model_dir.marked_dir_problems(str(job.model_dir)) == []


def test_an_incomplete_download_gets_no_marker(job):
    os.remove(job.hub_model / "model-00002-of-00002.safetensors")
    failed = job.run()
    assert failed.returncode == 1
    assert "1 of the 2 weight shards listed in model.safetensors.index.json are missing or empty" in failed.stderr
    assert not (job.model_dir / _model_dir.MARKER_NAME).exists()


def test_without_an_index_any_hub_weight_format_counts(job):
    shutil.rmtree(job.hub_model)
    job.hub_model.mkdir()
    (job.hub_model / "config.json").write_text(json.dumps({"model_type": "llama"}))
    failed = job.run()
    assert failed.returncode == 1
    assert "holds no *.safetensors, *.bin, *.gguf, *.pt weights." in failed.stderr
    (job.hub_model / "pytorch_model.bin").write_bytes(b"\0" * 64)
    assert job.run().returncode == 0
    assert _model_dir.read_marker(str(job.model_dir))["files"]["pytorch_model.bin"] == 64
