# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The AWX execution environment's build context (meta/ee/execution-environment.yml), made by the real tools.

No container can be built here, so this builds the collection (ansible-galaxy collection build), makes the context
(ansible-builder create) and runs the context's own dependency introspection (the step the image build runs after
installing the collections) on the collections the image would hold. Every expected value is read from the project's
files (requirements/*.txt, galaxy.yml, the bundled collections' MANIFEST.json, the roles), so drift fails here.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
EE_FILE = Path("meta/ee/execution-environment.yml")
BASE_IMAGE = "quay.io/centos/centos:stream9"
PYTHON = "/usr/bin/python3.11"
BUNDLED = Path(sys.executable).parents[1] / "lib/python3.11/site-packages/ansible_collections"
# Control-node packages of requirements/run.txt that the EE gets another way, or does not need.
NOT_PIP_IN_EE = {
    "ansible": "the collections are installed one by one (galaxy section), not the ~100 the package bundles",
    "ansible-core": "installed by ansible-builder from dependencies.ansible_core",
    "modelscope": "model downloads run on the Ray nodes or in the download Job, never on the controller",
}
# Collections the roles name that the EE leaves out.
NOT_IN_EE = {
    "ansible.builtin": "part of ansible-core",
    "llmops.ray_vllm": "the collection itself, from its tarball",
    "awx.awx": "only awx_config uses it, run from an operator's machine against AWX, not as an AWX job",
}

pytestmark = pytest.mark.timeout(120)


def _pins(path):
    """{name: version} of the exact pins in a requirements file, by block: {first comment line: {...}}."""
    blocks, title, after_pins = {}, "", True
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("#"):
            # The first comment line after some pins names the next block.
            title, after_pins = (line.lstrip("# "), False) if after_pins else (title, False)
            continue
        if not line:
            continue
        after_pins = True
        req = Requirement(line)
        spec = str(req.specifier)
        assert spec.startswith("=="), f"{path.name}: {line!r} is not pinned with =="
        blocks.setdefault(title, {})[req.name.lower()] = spec[2:]
    return blocks


def _block(blocks, prefix, path):
    found = [pins for title, pins in blocks.items() if title.startswith(prefix)]
    assert found, f"{path}: no block of requirements under a comment starting {prefix!r}"
    return found[0]


def _bundled_version(fqcn):
    namespace, name = fqcn.split(".")
    manifest = json.loads((BUNDLED / namespace / name / "MANIFEST.json").read_text())
    return manifest["collection_info"]["version"]


def _run(*argv, cwd):
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, f"{' '.join(map(str, argv))} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The collection tarball and the EE's build context, from a copy of the files the EE definition reads."""
    tmp = tmp_path_factory.mktemp("ee")
    tree = tmp / "tree"
    for folder in ("meta", "requirements"):
        shutil.copytree(ROOT / folder, tree / folder)
    # Where the documented build puts it: ansible-galaxy collection build --output-path .build/ee
    _run(BIN / "ansible-galaxy", "collection", "build", "--output-path", tree / ".build/ee", ROOT, cwd=tmp)
    context = tmp / "context"
    _run(
        BIN / "ansible-builder",
        "create",
        "-f",
        tree / EE_FILE,
        "-c",
        context,
        "--output-filename",
        "Containerfile",
        cwd=tmp,
    )
    return tree, context


@pytest.fixture(scope="module")
def galaxy():
    return yaml.safe_load((ROOT / "galaxy.yml").read_text())


def test_base_image_and_python(built):
    containerfile = (built[1] / "Containerfile").read_text()
    assert f'ARG EE_BASE_IMAGE="{BASE_IMAGE}"' in containerfile
    assert "FROM $EE_BASE_IMAGE AS base" in containerfile
    # ansible-core 2.19 needs Python >= 3.11 on the controller; the base image's python3 is 3.9.
    assert f'ARG PYCMD="{PYTHON}"' in containerfile
    assert 'ARG PYPKG="python3.11"' in containerfile
    assert 'ARG PKGMGR="/usr/bin/dnf"' in containerfile


def test_ansible_core_and_runner_pinned_as_run_txt(built):
    run = _pins(ROOT / "requirements/run.txt")
    control = _block(run, "Control node", "requirements/run.txt")
    awx = _block(_pins(ROOT / "requirements/test.txt"), "AWX", "requirements/test.txt")
    containerfile = (built[1] / "Containerfile").read_text()
    refs = re.search(r'^ARG ANSIBLE_INSTALL_REFS="(.*)"$', containerfile, re.M).group(1).split()
    expected = [f"ansible-core=={control['ansible-core']}", f"ansible-runner=={awx['ansible-runner']}"]
    assert refs == expected, f"the EE installs {refs}; requirements/run.txt and test.txt pin {expected}"


def test_python_packages_are_the_control_node_pins(built):
    """_build/requirements.txt: exactly run.txt's control-node packages the EE needs, at run.txt's and constraints.txt's
    versions."""
    control = _block(_pins(ROOT / "requirements/run.txt"), "Control node", "requirements/run.txt")
    constraints = {k: v for pins in _pins(ROOT / "requirements/constraints.txt").values() for k, v in pins.items()}
    ee = _pins(built[1] / "_build/requirements.txt")
    ee = {k: v for pins in ee.values() for k, v in pins.items()}
    expected = {name: version for name, version in control.items() if name not in NOT_PIP_IN_EE}
    assert ee == expected, (
        f"the EE's Python packages {ee} are not requirements/run.txt's control-node pins {expected} "
        f"(left out on purpose: {NOT_PIP_IN_EE}); update meta/ee/requirements.txt"
    )
    for name, version in ee.items():
        assert constraints.get(name) == version, (
            f"{name}=={version}: requirements/constraints.txt has {constraints.get(name)}"
        )


def test_build_obeys_the_project_constraints(built):
    context = built[1]
    assert (context / "_build/constraints/constraints.txt").read_text() == (
        ROOT / "requirements/constraints.txt"
    ).read_text()
    steps = (context / "Containerfile").read_text().splitlines()
    set_at = steps.index("ENV PIP_CONSTRAINT=/etc/llmops-ray-vllm/constraints.txt")
    # Before the first pip install of the base stage, and cleared in the final image.
    assert set_at < steps.index("RUN $PYCMD -m pip install --no-cache-dir $ANSIBLE_INSTALL_REFS")
    assert steps.index("ENV PIP_CONSTRAINT=") > steps.index("FROM base AS final")


def test_collections_pinned_as_bundled_and_this_collection_from_its_tarball(built, galaxy):
    context = built[1]
    entries = yaml.safe_load((context / "_build/requirements.yml").read_text())["collections"]
    by_name = {entry["name"]: entry for entry in entries}
    # Every collection the roles and playbooks name, and the callbacks ansible.cfg enables.
    text = "\n".join(p.read_text() for d in ("roles", "playbooks") for p in (ROOT / d).rglob("*.yml"))
    text += (ROOT / "ansible.cfg").read_text()
    used = set(re.findall(r"\b([a-z_0-9]+\.[a-z_0-9]+)\.[a-z_0-9]+\b", text))
    used = {fqcn for fqcn in used if (BUNDLED / fqcn.replace(".", "/")).is_dir() or fqcn in NOT_IN_EE}
    needed = used - set(NOT_IN_EE) | set(galaxy["dependencies"])
    for fqcn in sorted(needed):
        assert fqcn in by_name, f"{fqcn} is used by the roles or galaxy.yml but not installed in the EE"
        bundled = _bundled_version(fqcn)
        assert by_name[fqcn].get("version") == f"=={bundled}", (
            f"{fqcn}: the EE asks for {by_name[fqcn].get('version')}, ansible 12.3.0 bundles {bundled}"
        )
    tarball = f"{galaxy['namespace']}-{galaxy['name']}-{galaxy['version']}.tar.gz"
    own = [entry for entry in entries if entry.get("type") == "file"]
    assert own == [{"name": f"/build/collections/{tarball}", "type": "file"}], (
        f"the EE must install this collection from /build/collections/{tarball} (galaxy.yml version)"
    )
    assert (context / "_build/collections" / tarball).is_file(), f"{tarball} was not copied into the build context"


def test_system_packages(built):
    context = built[1]
    assert "openssh-clients [platform:rpm]" in (context / "_build/bindep.txt").read_text().splitlines()
    excluded = (context / "_build/exclude-bindep.txt").read_text().split()
    assert sorted(excluded) == ["kubernetes-client", "openshift-clients"]


def test_helm_is_the_test_beds_version(built):
    steps = (built[1] / "Containerfile").read_text()
    helm = re.search(r'^HELM_VERSION = "(v[0-9.]+)"', (ROOT / "tests/k8s_testbed/bin/helm").read_text(), re.M)
    assert f"RUN $PYCMD /tmp/install_helm.py {helm.group(1)} " in steps
    assert (built[1] / "_build/llmops/install_helm.py").read_bytes() == (ROOT / "meta/ee/install_helm.py").read_bytes()


def test_image_build_introspection_over_the_installed_collections(built, galaxy, tmp_path):
    """The builder stage's introspect step, run as the Containerfile runs it, over the collections the galaxy stage
    installs: kubernetes.core and ansible.posix (the bundled copies) and this collection from its tarball. It reads
    each collection's meta/execution-environment.yml; this collection's must name files that exist in it."""
    tree, context = built
    collections = tmp_path / "ansible_collections"
    for fqcn in ("kubernetes.core", "ansible.posix"):
        shutil.copytree(BUNDLED / fqcn.replace(".", "/"), collections / fqcn.replace(".", "/"))
    own = collections / galaxy["namespace"] / galaxy["name"]
    own.mkdir(parents=True)
    tarball = tree / ".build/ee" / f"{galaxy['namespace']}-{galaxy['name']}-{galaxy['version']}.tar.gz"
    with tarfile.open(tarball) as tar:
        tar.extractall(own, filter="data")
    step = next(line for line in (context / "Containerfile").read_text().splitlines() if "introspect.py" in line)
    args = step.split("introspect.py introspect", 1)[1].split()
    args = [a.replace("/tmp/src/", f"{tmp_path}/") for a in args]
    _run(
        sys.executable, context / "_build/scripts/introspect.py", "introspect", tmp_path, *args, cwd=context / "_build"
    )
    pip = (tmp_path / "requirements.txt").read_text()
    bindep = (tmp_path / "bindep.txt").read_text()
    for line in (context / "_build/requirements.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            assert f"{line}  # from collection {galaxy['namespace']}.{galaxy['name']}" in pip
    assert "kubernetes>=24.2.0  # from collection kubernetes.core" in pip
    assert "openssh-clients [platform:rpm]  # from collection llmops.ray_vllm" in bindep
    assert "kubernetes-client" not in bindep and "openshift-clients" not in bindep
