# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The local images (tests/k8s_testbed/images): the store, the builder and the layer format, on tiny images whose
base is a directory made here (a shell and a few tools copied from this machine); then the real images."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import yaml
from k8s_testbed.images import BuildError, ImageStore, ensure_images, image_ref
from k8s_testbed.images.build import Builder, load_definitions
from k8s_testbed.images.host_pip import host_pip, parse_config_debug
from k8s_testbed.images.layer_tar import OVERLAY_OPAQUE, pack_layer, unpack_layer
from k8s_testbed.images.rootfs import processes_inside, run_in_image
from k8s_testbed.images.store import MEDIA_CONFIG, MEDIA_INDEX, MEDIA_LAYER, MEDIA_MANIFEST, REF_NAME, mount_points

TESTS_DIR = Path(__file__).resolve().parents[1]
REFERENCE = "localhost/test/tiny:1"
TOOLS = ("sh", "cat", "rm", "mkdir", "sleep")

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("mount"), reason="building images needs root: mount, overlayfs, chroot"
)


# ---- helpers --------------------------------------------------------------------------------------------------


def copy_program(rootfs: Path, program: str) -> None:
    """A program of this machine and the shared libraries it loads, at the same paths inside ``rootfs``."""
    path = shutil.which(program)
    libraries = subprocess.run(["ldd", path], capture_output=True, text=True, check=True).stdout.split()
    for file in [path, *(word for word in libraries if word.startswith("/"))]:
        target = rootfs / file.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.realpath(file), target)


def tiny_rootfs(path: Path) -> Path:
    for program in TOOLS:
        copy_program(path, program)
    (path / "bin").mkdir(exist_ok=True)
    if not (path / "bin" / "sh").exists():
        os.symlink(shutil.which("sh"), path / "bin" / "sh")
    (path / "etc").mkdir(exist_ok=True)
    (path / "etc" / "doomed").write_text("deleted by the first step\n")
    (path / "opaque").mkdir()
    (path / "opaque" / "old").write_text("hidden once the first step replaces the directory\n")
    return path


def write_definition(folder: Path, steps: list, reference: str = REFERENCE, **extra) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "rootfs").exists():
        tiny_rootfs(folder / "rootfs")
    if not (folder / "input.txt").exists():
        (folder / "input.txt").write_text("an input\n")
    document = {
        "reference": reference,
        "base": {"rootfs": "rootfs"},
        "inputs": {"input.txt": "input.txt"},
        "steps": steps,
        "config": {"Env": ["PATH=/usr/bin:/bin", "GREETING=hello"], "Cmd": ["sh"], "WorkingDir": "/"},
        **extra,
    }
    path = folder / "local.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


FIRST = {
    "name": "first",
    "run": "echo built > /hello; rm /etc/doomed; rm -r /opaque; mkdir /opaque; echo new > /opaque/new",
}
SECOND = {"name": "second", "run": "cat /src/input.txt > /copied"}


def build(store: ImageStore, definition: Path, **options) -> list:
    lines = []
    Builder(store, say=lines.append, **options).build(load_definitions([definition]))
    return lines


def tar_names(path: Path) -> set:
    with tarfile.open(path) as tar:
        return set(tar.getnames())


def store_mounts(store: ImageStore) -> list:
    return [point for point in mount_points() if point.startswith(str(store.root) + os.sep)]


def sha256_file(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def store(tmp_path):
    return ImageStore(str(tmp_path / "store"))


# ---- references ------------------------------------------------------------------------------------------------


def test_references_are_normalized_as_the_kubelet_reports_them():
    from k8s_testbed.controllers import kubelet

    assert kubelet.image_ref is image_ref  # one function for the kubelet and the store
    assert image_ref("python:3.11") == "docker.io/library/python:3.11"
    assert image_ref("busybox") == "docker.io/library/busybox:latest"
    assert image_ref("rayproject/ray:2.60.0") == "docker.io/rayproject/ray:2.60.0"
    assert (
        image_ref("localhost/llmops/ray-vllm:0.32.0-ray2.60.0-cpu") == "localhost/llmops/ray-vllm:0.32.0-ray2.60.0-cpu"
    )
    assert image_ref("registry.example.com:5000/a/b") == "registry.example.com:5000/a/b:latest"


def test_an_empty_store_resolves_nothing(store):
    assert store.resolve("localhost/llmops/ray-vllm:0.32.0-ray2.60.0-cpu") is None
    assert store.references() == []


# ---- the layer format ------------------------------------------------------------------------------------------


@needs_root
def test_overlay_whiteouts_become_oci_whiteouts_and_back(tmp_path):
    layer = tmp_path / "layer"
    (layer / "bin").mkdir(parents=True)
    (layer / "bin" / "tool").write_text("#!/bin/sh\n")
    os.chmod(layer / "bin" / "tool", 0o4755)
    os.link(layer / "bin" / "tool", layer / "bin" / "tool-again")
    os.symlink("/bin/tool", layer / "bin" / "absolute-link")
    os.setxattr(layer / "bin" / "tool", "user.origin", b"\xff binary")
    os.mknod(layer / "bin" / "gone", stat.S_IFCHR, os.makedev(0, 0))
    (layer / "fresh").mkdir()
    (layer / "fresh" / "only").write_text("the only file\n")
    os.setxattr(layer / "fresh", OVERLAY_OPAQUE, b"y")
    os.setxattr(layer / "fresh", "trusted.overlay.origin", b"bookkeeping of the mount")
    os.utime(layer / "bin", (1_000_000, 1_000_000))

    digest, size = pack_layer(layer, tmp_path / "layer.tar")

    assert (digest, size) == (sha256_file(tmp_path / "layer.tar"), (tmp_path / "layer.tar").stat().st_size)
    with tarfile.open(tmp_path / "layer.tar") as tar:
        members = {member.name: member for member in tar.getmembers()}
    assert set(members) == {
        "bin",
        "bin/.wh.gone",
        "bin/absolute-link",
        "bin/tool",
        "bin/tool-again",
        "fresh",
        "fresh/.wh..wh..opq",
        "fresh/only",
    }
    assert members["bin/.wh.gone"].isreg() and members["bin/.wh.gone"].size == 0
    assert members["bin/tool-again"].islnk() and members["bin/tool-again"].linkname == "bin/tool"
    assert (
        members["bin/tool"].pax_headers["SCHILY.xattr.user.origin"].encode("utf-8", "surrogateescape") == b"\xff binary"
    )
    assert not [key for key in members["fresh"].pax_headers if "overlay" in key]

    unpack_layer(tmp_path / "layer.tar", tmp_path / "unpacked")

    back = tmp_path / "unpacked"
    gone = os.lstat(back / "bin" / "gone")
    assert stat.S_ISCHR(gone.st_mode) and gone.st_rdev == 0
    assert not (back / "bin" / ".wh.gone").exists() and not (back / "fresh" / ".wh..wh..opq").exists()
    assert os.getxattr(back / "fresh", OVERLAY_OPAQUE) == b"y"
    assert os.getxattr(back / "bin" / "tool", "user.origin") == b"\xff binary"
    assert stat.S_IMODE(os.lstat(back / "bin" / "tool").st_mode) == 0o4755
    assert os.lstat(back / "bin" / "tool").st_ino == os.lstat(back / "bin" / "tool-again").st_ino
    assert os.readlink(back / "bin" / "absolute-link") == "/bin/tool"
    assert os.lstat(back / "bin").st_mtime == 1_000_000
    assert pack_layer(back, tmp_path / "again.tar")[0] == digest


# ---- building --------------------------------------------------------------------------------------------------


@needs_root
def test_a_build_stores_a_valid_oci_image_layout(store, tmp_path):
    definition = write_definition(tmp_path / "def", [FIRST, SECOND])
    build(store, definition)

    layout = store.oci
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((layout / "index.json").read_text())
    assert index["schemaVersion"] == 2 and index["mediaType"] == MEDIA_INDEX
    [entry] = index["manifests"]
    assert entry["mediaType"] == MEDIA_MANIFEST and entry["annotations"][REF_NAME] == REFERENCE
    assert entry["annotations"]["io.llmops.definition-hash"] == load_definitions([definition])[0].hash
    manifest = check_blob(store, entry)
    assert manifest["schemaVersion"] == 2 and manifest["mediaType"] == MEDIA_MANIFEST
    assert manifest["config"]["mediaType"] == MEDIA_CONFIG
    config = check_blob(store, manifest["config"])
    assert [layer["mediaType"] for layer in manifest["layers"]] == [MEDIA_LAYER] * 3
    for layer in manifest["layers"]:
        check_blob(store, layer)
    # Uncompressed layers: the diff_ids are the layer digests.
    assert config["rootfs"] == {"type": "layers", "diff_ids": [layer["digest"] for layer in manifest["layers"]]}
    assert [h["created_by"].split(":")[0] for h in config["history"]][1:] == ["first", "second"]
    assert config["config"]["Env"] == ["PATH=/usr/bin:/bin", "GREETING=hello"] and config["os"] == "linux"

    image = store.resolve(REFERENCE)
    assert image.manifest_digest == entry["digest"] and image.config == config["config"]
    assert image.layer_dirs == tuple(str(store.layers / d.split(":")[1]) for d in config["rootfs"]["diff_ids"])


def check_blob(store: ImageStore, descriptor: dict):
    """A descriptor's blob exists with its digest and size; returns it (parsed when JSON)."""
    path = store.blob_path(descriptor["digest"])
    assert sha256_file(path) == descriptor["digest"] and path.stat().st_size == descriptor["size"]
    return json.loads(path.read_bytes()) if descriptor["mediaType"] != MEDIA_LAYER else path


@needs_root
def test_each_step_is_one_layer_holding_only_what_the_step_changed(store, tmp_path):
    build(store, write_definition(tmp_path / "def", [FIRST, SECOND]))

    base, first, second = store.resolve(REFERENCE).layer_dirs
    assert (Path(base) / "etc" / "doomed").is_file()
    # Neither the mounts (/proc, /dev, /tmp, resolv.conf, /src, this host's pip configuration) nor their mount points
    # are in a layer: only the files the steps wrote and the whiteouts of those they removed.
    assert tar_names(store.blob_path("sha256:" + Path(first).name)) == {
        "hello",
        "etc",
        "etc/.wh.doomed",
        "opaque",
        "opaque/.wh..wh..opq",
        "opaque/new",
    }
    assert tar_names(store.blob_path("sha256:" + Path(second).name)) == {"copied"}
    assert stat.S_ISCHR(os.lstat(Path(first) / "etc" / "doomed").st_mode)
    assert os.getxattr(Path(first) / "opaque", OVERLAY_OPAQUE) == b"y"


@needs_root
def test_a_command_in_the_image_sees_the_layers_stacked(store, tmp_path):
    build(store, write_definition(tmp_path / "def", [FIRST, SECOND]))
    image = store.resolve(REFERENCE)

    seen = run_in_image(image, ["sh", "-c", 'cat /hello /copied; echo /opaque/*; echo "$GREETING"; cat /etc/doomed'])

    assert seen.stdout.split("\n")[:4] == ["built", "an input", "/opaque/new", "hello"]
    assert seen.returncode != 0 and "doomed" in seen.stderr
    assert store_mounts(store) == []


@needs_root
def test_a_build_step_sees_this_hosts_pip_configuration_and_keeps_none_of_it(store, tmp_path, monkeypatch):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "some-1.0-py3-none-any.whl").write_text("")
    config = tmp_path / "pip-config" / "pip.conf"
    config.parent.mkdir()
    config.write_text(f"[global]\nfind-links = {wheels}\nextra-index-url = file://{tmp_path}/simple-missing\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", str(config))
    step = {"name": "look", "run": 'cat "$PIP_CONFIG_FILE" > /seen; echo ' + f"{wheels}/* > /wheels-seen"}

    build(store, write_definition(tmp_path / "def", [step]))

    image = store.resolve(REFERENCE)
    assert (Path(image.layer_dirs[1]) / "seen").read_text() == config.read_text()
    assert (Path(image.layer_dirs[1]) / "wheels-seen").read_text().strip() == f"{wheels}/some-1.0-py3-none-any.whl"
    assert tar_names(store.blob_path("sha256:" + Path(image.layer_dirs[1]).name)) == {"seen", "wheels-seen"}
    assert run_in_image(image, ["cat", str(config)]).returncode != 0  # gone once the build is over


def test_host_pip_reads_the_files_and_local_paths_pip_config_debug_lists(tmp_path):
    report = f"""env_var:
  PIP_FIND_LINKS='{tmp_path}'
  PIP_DEFAULT_TIMEOUT='180'
env:
global:
  /etc/xdg/pip/pip.conf, exists: True
    global.constraint: {tmp_path}/constraints.txt
  /etc/pip.conf, exists: False
site:
  /venv/pip.conf, exists: True
    global.index-url: file:///site/only
user:
  /root/.config/pip/pip.conf, exists: True
    global.extra-index-url: file://{tmp_path}/simple https://pypi.example.com/simple
"""
    files, values = parse_config_debug(report)

    assert files == [("global", "/etc/xdg/pip/pip.conf"), ("user", "/root/.config/pip/pip.conf")]
    assert values == [
        str(tmp_path),
        "180",
        f"{tmp_path}/constraints.txt",
        f"file://{tmp_path}/simple https://pypi.example.com/simple",
    ]


def test_host_pip_shows_this_machines_configuration(monkeypatch, tmp_path):
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    pip = host_pip()
    assert pip.env["PIP_FIND_LINKS"] == str(tmp_path)
    assert (str(tmp_path), str(tmp_path)) in [(h.source, h.target) for h in pip.host_paths]


def cached_parts(lines: list) -> list:
    """Which parts of a build came from the layer cache, from its progress lines."""
    return [line.split(": ", 1)[1].split(" (")[0].split(":")[0] for line in lines if "cached layer" in line]


@needs_root
def test_a_current_image_is_not_rebuilt(store, tmp_path):
    definition = write_definition(tmp_path / "def", [FIRST, SECOND])
    build(store, definition)
    before = store.resolve(REFERENCE)

    started = time.monotonic()
    images = ensure_images([REFERENCE], store=store, definitions=[definition])

    assert time.monotonic() - started < 1
    assert images == {REFERENCE: before}
    assert build(store, definition)[0] == f"{REFERENCE}: up to date"


@needs_root
def test_a_changed_input_rebuilds_the_steps_and_a_changed_step_only_itself_and_above(store, tmp_path):
    definition = write_definition(tmp_path / "def", [FIRST, SECOND])
    build(store, definition)
    first = store.resolve(REFERENCE)

    (tmp_path / "def" / "input.txt").write_text("a changed input\n")
    lines = build(store, definition)

    second = store.resolve(REFERENCE)
    assert cached_parts(lines) == ["base"]  # every step sees /src, so an input change reruns them all
    assert second.manifest_digest != first.manifest_digest
    assert (Path(second.layer_dirs[2]) / "copied").read_text() == "a changed input\n"

    lines = build(store, write_definition(tmp_path / "def", [FIRST, {"name": "second", "run": "echo other > /copied"}]))

    third = store.resolve(REFERENCE)
    assert cached_parts(lines) == ["base", "step first"]
    assert third.layer_dirs[:2] == second.layer_dirs[:2] and third.layer_dirs[2] != second.layer_dirs[2]
    assert (Path(third.layer_dirs[2]) / "copied").read_text() == "other\n"
    # Collected: no image and no current definition uses them.
    assert not os.path.exists(first.layer_dirs[2]) and not os.path.exists(second.layer_dirs[2])


@needs_root
def test_a_failing_step_says_which_and_publishes_nothing(store, tmp_path):
    definition = write_definition(tmp_path / "def", [FIRST, SECOND])
    build(store, definition)
    before = store.resolve(REFERENCE)
    broken = write_definition(tmp_path / "def", [FIRST, {"name": "second", "run": "echo about to fail; exit 3"}])

    with pytest.raises(BuildError) as failure:
        build(store, broken)

    message = str(failure.value)
    assert f"{REFERENCE}: step second failed: exit status 3 (expected 0)" in message
    assert "about to fail" in message and str(store.logs) in message
    assert store.resolve(REFERENCE) == before  # the image stored before is still the one served
    assert store_mounts(store) == [] and list(store.tmp.iterdir()) == []


@needs_root
def test_a_killed_build_leaves_no_image_and_the_next_build_cleans_up(store, tmp_path):
    definition = write_definition(tmp_path / "def", [FIRST, {"name": "slow", "run": "echo started; sleep 600"}])
    script = (
        "import sys; from k8s_testbed.images import ImageStore; from k8s_testbed.images.build import Builder, "
        f"load_definitions; Builder(ImageStore({str(store.root)!r})).build(load_definitions([{str(definition)!r}]))"
    )
    builder = subprocess.Popen([sys.executable, "-c", script], env=dict(os.environ, PYTHONPATH=str(TESTS_DIR)))
    log = store.logs / "localhost_test_tiny_1.slow.log"
    deadline = time.monotonic() + 60
    while not (log.exists() and "started" in log.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "started" in log.read_text(), "the slow step did not start within 60 s"
    os.kill(builder.pid, signal.SIGKILL)  # no finally runs: the step's mounts and its sleep stay, as after a crash
    builder.wait()

    assert store.resolve(REFERENCE) is None
    assert store_mounts(store), "the killed build should have left its step's mounts"
    assert processes_inside(store.tmp), "the killed build should have left its step's sleep running"

    fixed = write_definition(tmp_path / "def", [FIRST, SECOND])
    lines = build(store, fixed)

    assert store.resolve(REFERENCE) is not None
    assert any("left by an interrupted build" in line for line in lines)
    assert cached_parts(lines) == ["base", "step first"]
    assert store_mounts(store) == [] and list(store.tmp.iterdir()) == [] and processes_inside(store.tmp) == []


@needs_root
def test_a_variant_is_the_image_up_to_its_last_step(store, tmp_path):
    variant = {"reference": "localhost/test/tiny:1-lite", "last_step": "first", "labels": {"tier": None}}
    definition = write_definition(tmp_path / "def", [FIRST, SECOND], variants=[variant])
    document = yaml.safe_load(definition.read_text())
    document["config"]["Labels"] = {"tier": "full", "kept": "yes"}
    definition.write_text(yaml.safe_dump(document))

    build(store, definition)

    full, lite = store.resolve(REFERENCE), store.resolve("localhost/test/tiny:1-lite")
    assert lite.layer_dirs == full.layer_dirs[:2]
    assert lite.config["Labels"] == {"kept": "yes"} and full.config["Labels"] == {"tier": "full", "kept": "yes"}
    assert store.references() == ["localhost/test/tiny:1", "localhost/test/tiny:1-lite"]


@needs_root
def test_gc_removes_the_layers_and_blobs_no_image_uses(store, tmp_path):
    variant = {"reference": "localhost/test/tiny:1-lite", "last_step": "first"}
    build(store, write_definition(tmp_path / "def", [FIRST, SECOND], variants=[variant]))
    full = store.resolve(REFERENCE)

    with store.locked("test"):
        assert store.remove(REFERENCE)
        removed = store.collect_garbage()

    assert removed["layers"] == ["sha256:" + Path(full.layer_dirs[2]).name]
    assert sorted(os.listdir(store.layers)) == sorted(Path(d).name for d in full.layer_dirs[:2])
    used, _in_use = store.referenced()
    assert {"sha256:" + name for name in os.listdir(store.blobs)} == used
    assert store.resolve("localhost/test/tiny:1-lite") is not None


@needs_root
def test_a_deleted_layer_dir_is_unpacked_again_from_its_blob(store, tmp_path):
    definition = write_definition(tmp_path / "def", [FIRST, SECOND])
    build(store, definition)
    before = store.resolve(REFERENCE)
    shutil.rmtree(before.layer_dirs[1])
    assert store.resolve(REFERENCE) is None

    lines = build(store, definition)

    assert store.resolve(REFERENCE) == before
    assert any("unpacking layer" in line for line in lines) and not any("running" in line for line in lines)
    assert stat.S_ISCHR(os.lstat(Path(before.layer_dirs[1]) / "etc" / "doomed").st_mode)


# ---- the real images -------------------------------------------------------------------------------------------

CPU_IMAGE = "localhost/llmops/ray-vllm:0.32.0-ray2.60.0-cpu"
NO_RAY_IMAGE = "localhost/llmops/ray-vllm:0.32.0-no-ray-cpu"
DOWNLOAD_IMAGE = "localhost/llmops/model-download:0.1.0"


@needs_root
@pytest.mark.integration
def test_the_local_images_carry_what_the_pods_run():
    """Builds the images when missing (minutes, once per machine: the store is outside the clone); seconds after."""
    images = ensure_images([CPU_IMAGE, NO_RAY_IMAGE, DOWNLOAD_IMAGE])

    versions = "import ray, vllm, modelscope; print(ray.__version__, vllm.__version__, modelscope.__version__)"
    cpu = run_in_image(images[CPU_IMAGE], ["python", "-c", versions])
    assert cpu.stdout.split() == ["2.60.0", "0.32.0", "1.40.2"], cpu.stderr[-2000:]
    assert images[CPU_IMAGE].config["Env"][0].startswith("PATH=/opt/venv/bin:")
    assert run_in_image(images[CPU_IMAGE], ["bash", "-lc", "ray --version"]).stdout.split()[-1] == "2.60.0"

    no_ray = run_in_image(images[NO_RAY_IMAGE], ["bash", "-c", "command -v ray; python -c 'import ray'"])
    assert no_ray.returncode == 1 and "No module named 'ray'" in no_ray.stderr and no_ray.stdout == ""
    assert images[NO_RAY_IMAGE].layer_dirs == images[CPU_IMAGE].layer_dirs[:-1]

    sdks = "import huggingface_hub, modelscope; print(modelscope.__version__, huggingface_hub.__version__)"
    download = run_in_image(images[DOWNLOAD_IMAGE], ["python", "-c", sdks])
    assert download.stdout.split() == ["1.40.2", "2.4.0"], download.stderr[-2000:]
