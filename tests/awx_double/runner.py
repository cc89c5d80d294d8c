# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Launch a job template of the AWX double the way AWX 24.6.1 runs a job: a private data dir, then ansible-runner.

Everything here was written from the AWX 24.6.1 source (tag 24.6.1 of github.com/ansible/awx); each function names
the file and method it follows. What AWX does that this does not, and why:

* AWX runs ansible-runner inside the execution environment's container (receptor + podman/Kubernetes), with the
  private data dir mounted at /runner. Here ansible-runner runs on this machine, without a container: the paths AWX
  gives the job as /runner/... (awx/main/utils/execution_environments.py to_container_path) are the host paths of the
  same files. The "image" is this Python's venv (its ansible-core, Python packages and bin/ on PATH), and the
  collection itself, which the EE would carry (meta/execution-environment.yml), is linked in requirements_collections,
  the first folder AWX puts in ANSIBLE_COLLECTIONS_PATH.
* The container starts from the image's environment, not the AWX process's: the variables of this process that
  would reach ansible-playbook and that the container would not have (ANSIBLE_*, KUBECONFIG, K8S_AUTH_*,
  CONTROLLER_*) are held back for the run, so a credential reaches the job only through its injectors.
* AWX's inventory comes from its database (filled by the inventory source's import); here the import is
  `ansible-inventory --list --export` of the project's source path, as the scm import runs it, and the admin's
  inventory variables are laid over `all`.
* artifacts/<ident>/stdout is kept (AWX_RUNNER_SUPPRESS_OUTPUT_FILE is True in AWX) for the tests' failure messages.

The private data dir (<base_dir>/awx_<job id>_XXXXXXXX, 0700)::

    project/                  the project's files (git tracked + new, not ignored), cwd of ansible-playbook
    requirements_collections/ ansible_collections/llmops/ray_vllm -> ../../../project (the EE's copy)
    inventory/hosts           0700 script printing the inventory JSON
    env/extravars             survey answers (+ template extra_vars) and awx_*/tower_* meta vars, !unsafe YAML
    env/tmpXXXXXXXX           one per file injector (0600), one per credential with extra_vars injectors (0400)
    env/cmdline               -u root [--check] [--diff] ... -e @env/tmpXXXXXXXX (credential extra vars)
    env/envvars               the job env: AWX's ANSIBLE_* settings, JOB_ID, ..., credential env injectors
    env/settings              ansible-runner settings (job_timeout, suppress_ansible_output)
    cp/                       ANSIBLE_SSH_CONTROL_PATH_DIR
    artifacts/<job id>/       written by ansible-runner: status, rc, stdout, command, job_events/

Usage::

    job = launch(handle, "llmops.ray_vllm deploy", answers={...}, inventory_variables={...})
    job.status, job.rc, job.artifacts_dir, job.events(), job.stats()

A launch AWX refuses raises LaunchRefused (its 400 body in .body, its messages in .messages) before any folder is
made or any process started.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from jinja2 import sandbox

from . import rules

REPO = Path(__file__).resolve().parents[2]
COLLECTION = ("llmops", "ray_vllm")
# awx/main/constants.py (24.6.1): JOB_FOLDER_PREFIX, JOB_VARIABLE_PREFIXES
JOB_FOLDER_PREFIX = "awx_%s_"
JOB_VARIABLE_PREFIXES = ("awx", "tower")
# awx/settings/defaults.py (24.6.1): the ANSIBLE_* settings BaseTask.build_env copies into every job's environment.
ANSIBLE_SETTINGS = {
    "ANSIBLE_HOST_KEY_CHECKING": "False",
    "ANSIBLE_PARAMIKO_RECORD_HOST_KEYS": "False",
    "ANSIBLE_FORCE_COLOR": "True",
    "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True",
}
MAX_EVENT_RES_DATA = 700000  # awx/settings/defaults.py (24.6.1)
TOWER_URL_BASE = "https://towerhost"  # awx/settings/defaults.py (24.6.1)
# What the AWX process's environment must not lend the job (the EE container would not have it).
HELD_BACK_PREFIXES = ("ANSIBLE_", "K8S_AUTH_", "CONTROLLER_", "TOWER_", "AWX_")
HELD_BACK_NAMES = ("KUBECONFIG",)
# awx/main/tasks/jobs.py (24.6.1) RunJob.build_env: (env key, ansible.cfg key, private data dir folder, default)
_COLLECTIONS_DEFAULT = "~/.ansible/collections:/usr/share/ansible/collections"
_ROLES_DEFAULT = "~/.ansible/roles:/usr/share/ansible/roles:/etc/ansible/roles"
PATH_VARS = (
    ("ANSIBLE_COLLECTIONS_PATHS", "collections_paths", "requirements_collections", _COLLECTIONS_DEFAULT),
    (
        "ANSIBLE_ROLES_PATH",
        "roles_path",
        "requirements_roles",
        "~/.ansible/roles:/usr/share/ansible/roles:/etc/ansible/roles",
    ),
    ("ANSIBLE_COLLECTIONS_PATH", "collections_path", "requirements_collections", _COLLECTIONS_DEFAULT),
)

_job_ids = itertools.count(1001)


class LaunchRefused(Exception):
    """AWX answered the launch with 400: ``body`` as AWX's, ``messages`` its strings. Nothing was made or run."""

    def __init__(self, body: dict[str, list[str]]):
        self.body = body
        self.messages = [message for messages in body.values() for message in messages]
        super().__init__("; ".join(self.messages))


@dataclasses.dataclass
class Job:
    """A finished job: where its private data dir is, what ansible-runner reported, and its artifacts."""

    id: int
    name: str
    private_data_dir: Path
    result: Any  # ansible_runner.Runner
    extra_vars: dict  # what AWX stored as the job's extra_vars (survey answers), for the test's own checks

    @property
    def artifacts_dir(self) -> Path:
        return self.private_data_dir / "artifacts" / str(self.id)

    @property
    def status(self) -> str:
        return (self.artifacts_dir / "status").read_text().strip()

    @property
    def rc(self) -> int:
        return int((self.artifacts_dir / "rc").read_text().strip())

    def stdout(self) -> str:
        path = self.artifacts_dir / "stdout"
        return path.read_text(errors="replace") if path.exists() else ""

    def events(self) -> list[dict]:
        """The job events ansible-runner wrote (artifacts/<ident>/job_events), in counter order."""
        found = [json.loads(p.read_text()) for p in (self.artifacts_dir / "job_events").glob("*.json")]
        return sorted(found, key=lambda event: event.get("counter", 0))

    def stats(self) -> dict:
        """The playbook_on_stats event's data (ok/changed/failures/dark per host); {} when there was none."""
        events = [e for e in self.events() if e.get("event") == "playbook_on_stats"]
        return events[-1]["event_data"] if events else {}


# ---------------------------------------------------------------------------------------------------------------------
# Reading the launch from the double, as AWX reads it from its database
# ---------------------------------------------------------------------------------------------------------------------


def _by_name(handle, kind: str, name: str) -> dict:
    found = [obj for obj in handle.objects(kind) if obj.get("name") == name]
    if not found:
        raise LaunchRefused({"detail": ["Not found."]})
    return found[0]


def _template_credential_ids(handle, template: dict) -> list[int]:
    """The job template's credentials (its many-to-many list; the double's API shows it at .../credentials/)."""
    with handle.api.store.lock:
        return list(handle.api.store.links.get(("job_templates", template["id"], "credentials"), []))


def _credential_in_clear(handle, pk: int) -> dict:
    """A credential with its inputs decrypted: AWX decrypts them at launch; the API shows secrets as $encrypted$."""
    with handle.api.store.lock:
        stored = handle.api.store.objects["credentials"][pk]
        credential_type = handle.api.store.objects["credential_types"][stored["credential_type"]]
        return {"name": stored["name"], "inputs": dict(stored["inputs"]), "credential_type": dict(credential_type)}


def _job_credentials(handle, template: dict, names: list[str] | None) -> list[dict]:
    """The job's credentials: the template's, or the launch's when it prompts for them (ask_credential_on_launch)."""
    if names is None:
        return [_credential_in_clear(handle, pk) for pk in _template_credential_ids(handle, template)]
    if not template.get("ask_credential_on_launch"):
        # awx/main/models/mixins.py (24.6.1) _accept_or_ignore_job_kwargs: a prompt the template does not ask.
        raise LaunchRefused({"credentials": ["Field is not configured to prompt on launch."]})
    return [_credential_in_clear(handle, _by_name(handle, "credentials", name)["id"]) for name in names]


def survey_form(handle, template_name: str, answers: dict | None = None) -> dict:
    """What AWX's launch form sends: every question's default filled in, then the user's answers over them.

    The API itself fills nothing: a required question left out of a launch POST is "'<variable>' value missing"
    (awx/main/models/mixins.py 24.6.1, _survey_element_validation), even when it has a default.
    """
    spec = handle.survey_spec("job_templates", template_name)
    filled = {
        item["variable"]: item["default"] for item in spec.get("spec", []) if item.get("default") not in ("", None)
    }
    return {**filled, **(answers or {})}


def _launch_errors(template: dict, spec: dict, answers: dict) -> dict[str, list[str]]:
    """AWX's 400 body for the answers (awx/main/models/mixins.py 24.6.1, SurveyJobTemplateMixin
    _accept_or_ignore_variables): survey answers judged by the survey, other variables refused unless the template
    asks for variables on launch."""
    errors: dict[str, list[str]] = {}
    if template.get("survey_enabled") and spec:
        messages = rules.survey_answer_errors(spec, answers)
        if messages:
            errors["variables_needed_to_start"] = messages
    asked = set(rules.pivot_spec(spec)) if template.get("survey_enabled") else set()
    extra = [key for key in answers if key not in asked]
    if extra and not template.get("ask_variables_on_launch"):
        errors["extra_vars"] = [
            "Variables {} are not allowed on launch. Check the Prompt on Launch setting on the Job Template to include "
            "Extra Variables.".format(", ".join(extra))
        ]
    return errors


def _template_extra_vars(template: dict) -> dict:
    text = template.get("extra_vars") or ""
    return yaml.safe_load(text) or {} if isinstance(text, str) else dict(text)


# ---------------------------------------------------------------------------------------------------------------------
# The private data dir
# ---------------------------------------------------------------------------------------------------------------------


def _write(path: Path, content: str, mode: int) -> Path:
    """One private file: created 0600 before anything is written (AWX: BaseTask.write_private_data_file)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
    os.chmod(path, mode)
    return path


def _mkstemp(env_dir: Path) -> Path:
    # tempfile.mkstemp in env/, as CredentialType.inject_credential names its files (tmpXXXXXXXX).
    fd, path = tempfile.mkstemp(dir=env_dir)
    os.close(fd)
    return Path(path)


def build_private_data_dir(job_id: int, base_dir: str | None) -> Path:
    """A 0700 folder awx_<job id>_XXXX with inventory/ and env/ (awx/main/tasks/jobs.py 24.6.1,
    BaseTask.build_private_data_dir; AWX_ISOLATION_BASE_PATH defaults to the temp dir, settings/defaults.py)."""
    path = Path(tempfile.mkdtemp(prefix=JOB_FOLDER_PREFIX % job_id, dir=base_dir or tempfile.gettempdir()))
    os.chmod(path, stat.S_IRWXU)
    for sub in ("inventory", "env"):
        (path / sub).mkdir()
    return path


def _project_files(project_dir: Path) -> list[str]:
    """The files a commit of the working tree would hold: tracked and new files, nothing git ignores."""
    listed = subprocess.run(
        ["git", "-C", str(project_dir), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [name for name in listed.split("\0") if name and (project_dir / name).is_file()]


def build_project_dir(project_dir: Path, private_data_dir: Path) -> Path:
    """project/ as a project sync leaves it for the job (awx/main/tasks/jobs.py 24.6.1, RunProjectUpdate
    make_local_copy: the checkout without .git, symlinks kept), then the collection where the EE would hold it."""
    target = private_data_dir / "project"
    for name in _project_files(project_dir):
        source, dest = project_dir / name, target / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, dest, follow_symlinks=False)
    # make_local_copy copies requirements_collections from the project cache; the EE image holds this collection.
    link = private_data_dir.joinpath("requirements_collections", "ansible_collections", *COLLECTION)
    link.parent.mkdir(parents=True)
    link.symlink_to(target)
    return target


class _UnsafeDumper(yaml.SafeDumper):
    """Every string as !unsafe (awx/main/utils/safe_yaml.py 24.6.1, SafeStringDumper)."""

    def represent_data(self, data):
        if isinstance(data, str):
            return self.represent_scalar("!unsafe", data)
        return super().represent_data(data)


def safe_dump(variables: dict, trusted: dict | None = None) -> str:
    """Extra vars as YAML, every string !unsafe unless the key's value is the trusted one (the template's own
    extra_vars): awx/main/utils/safe_yaml.py (24.6.1) safe_dump, so survey answers are never templated."""
    trusted = trusted or {}
    parts = []
    for key, value in variables.items():
        dumper = yaml.SafeDumper if key in trusted and trusted[key] == value else _UnsafeDumper
        parts.append(yaml.dump_all([{key: value}], None, Dumper=dumper, default_flow_style=False))
    return "".join(parts)


def awx_meta_vars(job_id: int, template: dict, project: dict, inventory: dict, launched_by: str) -> dict:
    """The awx_*/tower_* job variables (awx/main/models/unified_jobs.py 24.6.1 UnifiedJob.awx_meta_vars, extended
    by awx/main/models/jobs.py Job.awx_meta_vars), for a manual launch by the admin."""
    values = {
        "job_id": job_id,
        "job_launch_type": "manual",
        "user_id": 1,
        "user_name": launched_by,
        "user_email": "",
        "user_first_name": "",
        "user_last_name": "",
        "inventory_id": inventory.get("id"),
        "inventory_name": inventory.get("name", ""),
        "project_revision": project.get("scm_revision", ""),
        "project_scm_branch": project.get("scm_branch", ""),
        "job_template_id": template["id"],
        "job_template_name": template["name"],
    }
    return {f"{prefix}_{key}": value for prefix in JOB_VARIABLE_PREFIXES for key, value in values.items()}


def build_extra_vars_file(private_data_dir: Path, template: dict, job_extra_vars: dict, meta: dict) -> Path:
    """env/extravars: the job's extra_vars (template extra_vars, then the survey's), then the meta vars over them
    (awx/main/tasks/jobs.py 24.6.1 RunJob.build_extra_vars_file; ALLOW_JINJA_IN_EXTRA_VARS='template' trusts the
    template's own extra_vars only)."""
    variables = {**job_extra_vars, **meta}
    return _write(private_data_dir / "env" / "extravars", safe_dump(variables, _template_extra_vars(template)), 0o600)


def build_args(template: dict) -> list[str]:
    """ansible-playbook's options from the template (awx/main/tasks/jobs.py 24.6.1 RunJob.build_args): --check for
    job_type check, -u root without a machine credential, --diff for diff_mode, then forks, limit, verbosity, tags."""
    args = ["--check"] if template.get("job_type") == "check" else []
    args += ["-u", "root"]
    if template.get("become_enabled"):
        args.append("--become")
    if template.get("diff_mode"):
        args.append("--diff")
    if template.get("forks"):
        args.append("--forks=%d" % template["forks"])
    if template.get("force_handlers"):
        args.append("--force-handlers")
    if template.get("limit"):
        args += ["-l", template["limit"]]
    if template.get("verbosity"):
        args.append("-" + "v" * min(5, template["verbosity"]))
    if template.get("job_tags"):
        args += ["-t", template["job_tags"]]
    if template.get("skip_tags"):
        args.append("--skip-tags=%s" % template["skip_tags"])
    return args


def _ansible_cfg_values(project: Path, keys: list[str]) -> dict:
    """[defaults] values of the project's ansible.cfg (awx/main/utils/common.py 24.6.1, read_ansible_config)."""
    import configparser

    parser = configparser.ConfigParser()
    parser.read(project / "ansible.cfg")
    return {key: parser.get("defaults", key) for key in keys if parser.has_option("defaults", key)}


def build_env(job_id: int, private_data_dir: Path, inventory: dict, project: dict) -> dict:
    """The job's environment (awx/main/tasks/jobs.py 24.6.1, BaseTask.build_env then RunJob.build_env)."""
    env = dict(ANSIBLE_SETTINGS)
    env["AWX_PRIVATE_DATA_DIR"] = str(private_data_dir)
    env.update(JOB_ID=str(job_id), INVENTORY_ID=str(inventory.get("id", "")))
    env.update(PROJECT_REVISION=project.get("scm_revision", ""), ANSIBLE_RETRY_FILES_ENABLED="False")
    env.update(MAX_EVENT_RES=str(MAX_EVENT_RES_DATA), AWX_HOST=TOWER_URL_BASE)
    (private_data_dir / "cp").mkdir(mode=0o700)
    env["ANSIBLE_SSH_CONTROL_PATH_DIR"] = str(private_data_dir / "cp")  # /runner/cp in the container
    config = _ansible_cfg_values(private_data_dir / "project", [setting for _k, setting, _f, _d in PATH_VARS])
    for env_key, setting, folder, default in PATH_VARS:
        paths = default.split(":")
        if setting in config:
            paths = [config[setting]] + paths
        env[env_key] = os.pathsep.join([str(private_data_dir / folder)] + paths)
    # The EE image's PATH: this venv's bin first (its ansible-playbook and python3 run the job and the inventory).
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "/usr/bin:/bin")])
    return env


def inject_credential(credential: dict, env: dict, args: list[str], private_data_dir: Path) -> None:
    """One credential's injectors (awx/main/models/credential/__init__.py 24.6.1, CredentialType.inject_credential).

    file: each template rendered in an ImmutableSandboxedEnvironment with the inputs, written to a mkstemp file in
    env/ (0600); `tower.filename` is that file's path (template) or `tower.filename.<name>` (template.<name>).
    env: rendered into the job env, except names AWX prohibits (logged and skipped). extra_vars: rendered, written as
    !unsafe YAML to another mkstemp file in env/ (0400) and passed as `-e @file` in the command line.
    """
    injectors = credential["credential_type"].get("injectors") or {}
    namespace = _credential_namespace(credential)
    sandbox_env = sandbox.ImmutableSandboxedEnvironment()
    env_dir = private_data_dir / "env"
    for label, template in (injectors.get("file") or {}).items():
        path = _mkstemp(env_dir)
        _write(path, sandbox_env.from_string(template).render(**namespace), 0o600)
        _set_filename(namespace["tower"], label, str(path))  # the container path /runner/env/tmpXXXX in AWX
    for name, template in (injectors.get("env") or {}).items():
        if rules.env_var_error(name) is None:
            env[name] = sandbox_env.from_string(template).render(**namespace)
    extra_vars = _render_tree(sandbox_env, injectors.get("extra_vars") or {}, namespace)
    if extra_vars:
        path = _mkstemp(env_dir)
        _write(path, safe_dump(extra_vars), stat.S_IRUSR)
        args += ["-e", "@%s" % path]


class _Namespace:
    """AWX's TowerNamespace: an attribute bag for tower.filename(.<name>)."""


def _credential_namespace(credential: dict) -> dict:
    """The inputs by field id (empty strings left out, booleans default False), and `tower` (inject_credential)."""
    namespace: dict = {"tower": _Namespace()}
    for key, value in credential["inputs"].items():
        if isinstance(value, bool) or (value is not None and len(value)):
            namespace[key] = value
    for field in credential["credential_type"].get("inputs", {}).get("fields", []):
        if field.get("type") == "boolean" and field["id"] not in credential["inputs"]:
            namespace[field["id"]] = False
        if field.get("format") == "ssh_private_key" and field["id"] in namespace:
            namespace[field["id"]] = namespace[field["id"]].rstrip("\n") + "\n"
    return namespace


def _set_filename(tower: _Namespace, label: str, path: str) -> None:
    if "." not in label:
        tower.filename = path
        return
    if not hasattr(tower, "filename"):
        tower.filename = _Namespace()
    setattr(tower.filename, label.split(".")[1], path)


def _render_tree(sandbox_env, node: Any, namespace: dict) -> Any:
    if isinstance(node, dict):
        return {
            _render_tree(sandbox_env, k, namespace): _render_tree(sandbox_env, v, namespace) for k, v in node.items()
        }
    if isinstance(node, list):
        return [_render_tree(sandbox_env, item, namespace) for item in node]
    return sandbox_env.from_string(node).render(**namespace)


def build_inventory(private_data_dir: Path, source_path: str, variables: dict, inventory_id: int) -> Path:
    """inventory/hosts: the executable script AWX writes (awx/main/tasks/jobs.py 24.6.1 BaseTask.write_inventory_file
    of Inventory.get_script_data(hostvars=True, towervars=True), awx/main/models/inventory.py): all's vars, the groups
    with hosts/children/vars, and _meta.hostvars with remote_tower_enabled/remote_tower_id.

    The groups and variables are those the scm inventory import reads from the project's source path
    (`ansible-inventory --list --export`); ``variables`` are the inventory's own variables, set by the admin, over
    the imported ones of `all`.
    """
    data = _import_inventory(private_data_dir / "project", source_path)
    data.setdefault("all", {}).setdefault("vars", {}).update(variables)
    hostvars = data.setdefault("_meta", {}).setdefault("hostvars", {})
    data["_meta"].pop("profile", None)
    for number, host in enumerate(_all_hosts(data), start=1):
        hostvars.setdefault(host, {}).update(remote_tower_enabled="true", remote_tower_id=number)
    script = "#! /usr/bin/env python3\n# -*- coding: utf-8 -*-\nprint(%r)\n" % json.dumps(data)
    return _write(private_data_dir / "inventory" / "hosts", script, 0o700)


def _import_inventory(project: Path, source_path: str) -> dict:
    command = [str(Path(sys.executable).parent / "ansible-inventory"), "-i", source_path, "--list", "--export"]
    env = {k: v for k, v in os.environ.items() if not _held_back(k)}
    env["ANSIBLE_CONFIG"] = str(project / "ansible.cfg")
    done = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError("inventory import of %s failed: %s" % (source_path, done.stderr[-2000:]))
    return json.loads(done.stdout)


def _all_hosts(data: dict) -> list[str]:
    hosts = {host for group in data.values() if isinstance(group, dict) for host in group.get("hosts", [])}
    return sorted(hosts | set(data.get("_meta", {}).get("hostvars", {})))


def _held_back(name: str) -> bool:
    return name.startswith(HELD_BACK_PREFIXES) or name in HELD_BACK_NAMES


@contextlib.contextmanager
def _container_environment():
    """Hold back, for the run, what of this process's environment the EE container would not have."""
    held = {key: os.environ.pop(key) for key in list(os.environ) if _held_back(key)}
    try:
        yield
    finally:
        os.environ.update(held)


def write_runner_files(private_data_dir: Path, args: list[str], env: dict) -> None:
    """env/cmdline (BaseTask.write_args_file, ansible_runner.utils.args2cmdline), env/envvars and env/settings
    (BaseTask.run's runner_settings), all 0600. AWX 24.6.1 hands the env to ansible-runner as envvars= (with
    AWX_RUNNER_OMIT_ENV_FILES) rather than env/envvars; ansible-runner reads env/envvars into the same place."""
    env_dir = private_data_dir / "env"
    _write(env_dir / "cmdline", " ".join(shlex.quote(arg) for arg in args), 0o600)
    _write(env_dir / "envvars", json.dumps(env, indent=1), 0o600)
    settings = {"job_timeout": 0, "suppress_ansible_output": True, "suppress_output_file": False}
    _write(env_dir / "settings", json.dumps(settings), 0o600)


# ---------------------------------------------------------------------------------------------------------------------
# The launch
# ---------------------------------------------------------------------------------------------------------------------


def _project_checkout(handle, project: dict, project_dir: str | Path | None) -> Path:
    """The local checkout standing for the project: given, or the double's project_dirs (by scm_url, then name)."""
    if project_dir:
        return Path(project_dir)
    for key in (project.get("scm_url"), project.get("name")):
        if key and key in handle.project_dirs:
            return Path(handle.project_dirs[key])
    return REPO


def _inventory_source_path(handle, inventory: dict) -> str:
    """The source_path of the inventory's scm source (what AWX imported), e.g. inventories/prod/hosts.yml."""
    for source in handle.objects("inventory_sources"):
        if source.get("inventory") == inventory.get("id") and source.get("source_path"):
            return source["source_path"]
    raise LaunchRefused({"inventory": ["Job Template 'inventory' is missing or undefined."]})


def launch(
    handle,
    template_name: str,
    answers: dict | None = None,
    credentials: list[str] | None = None,
    inventory_source: str | None = None,
    inventory_variables: dict | None = None,
    project_dir: str | Path | None = None,
    base_dir: str | Path | None = None,
) -> Job:
    """Launch the job template ``template_name`` of the AWX double and wait for the job; returns the Job.

    answers: the survey answers (the launch's extra_vars). credentials: credential names replacing the template's
    (the template must ask for credentials on launch); None keeps the template's. inventory_source: the inventory's
    source path in the project, when the job should use another inventory than the template's (as a launch-time
    inventory would); inventory_variables: the inventory's own variables, set by an admin. base_dir: where the
    private data dir is made (AWX_ISOLATION_BASE_PATH).
    Raises LaunchRefused, before anything is made or run, when AWX would answer the launch with 400.
    """
    import ansible_runner

    answers = dict(answers or {})
    template = _by_name(handle, "job_templates", template_name)
    spec = handle.survey_spec("job_templates", template_name) if template.get("survey_enabled") else {}
    errors = _launch_errors(template, spec, answers)
    if errors:
        raise LaunchRefused(errors)
    job_credentials = _job_credentials(handle, template, credentials)
    project = next(p for p in handle.objects("projects") if p["id"] == template["project"])
    inventory = next(i for i in handle.objects("inventories") if i["id"] == template["inventory"])
    source_path = inventory_source or _inventory_source_path(handle, inventory)
    checkout = _project_checkout(handle, project, project_dir)

    job_id = next(_job_ids)
    job_extra_vars = {**_template_extra_vars(template), **rules.survey_extra_vars(spec, answers)}
    private_data_dir = build_private_data_dir(job_id, base_dir and str(base_dir))
    build_project_dir(checkout, private_data_dir)
    meta = awx_meta_vars(job_id, template, project, inventory, handle.username)
    build_extra_vars_file(private_data_dir, template, job_extra_vars, meta)
    args = build_args(template)
    env = build_env(job_id, private_data_dir, inventory, project)
    for credential in job_credentials:
        inject_credential(credential, env, args, private_data_dir)
    write_runner_files(private_data_dir, args, env)
    hosts = build_inventory(private_data_dir, source_path, dict(inventory_variables or {}), inventory["id"])
    with _container_environment():
        result = ansible_runner.run(
            private_data_dir=str(private_data_dir),
            playbook=template["playbook"],
            ident=str(job_id),
            inventory=str(hosts),
            quiet=True,
        )
    return Job(job_id, template_name, private_data_dir, result, job_extra_vars)
