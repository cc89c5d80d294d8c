# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""playbooks/awx_configure.yml (roles/awx_config) applied for real, with awx.awx 24.6.1, to the AWX API double.

The double refuses what AWX refuses (tests/awx_double/README.md): a second apply must change nothing, and a bad
survey default or credential-type injector must be refused with AWX's own message.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from awx_double import runner
from playbook_runner import REPO, run_playbook

pytestmark = pytest.mark.integration

SCM_URL = "https://git.example.com/platform/llmops-ray-vllm.git"
CREDENTIALS = [
    {"name": "cluster kubeconfig", "type": "kubeconfig", "inputs": {"kubeconfig": "apiVersion: v1\nkind: Config\n"}},
    {"name": "endpoint key", "type": "vllm_api_key", "inputs": {"api_key": "sk-configure-test-key"}},
    {"name": "hub token", "type": "model_hub_token", "inputs": {"token": "hf_" + secrets.token_hex(12)}},
    {"name": "ray token", "type": "ray_cluster_token", "inputs": {"token": "ray-" + secrets.token_hex(12)}},
]
HUB_TOKEN, RAY_TOKEN = CREDENTIALS[2]["inputs"]["token"], CREDENTIALS[3]["inputs"]["token"]
# The failing applies start at the task that sends the bad object: everything before it exists from the first apply.
TEMPLATES_TASK = "Ensure the job templates"
TEMPLATES = ["plan", "deploy", "verify", "teardown", "benchmark", "support bundle"]


def apply(awx_double, tmp_path, extra_yaml="", start_at="", **overrides):
    """ansible-playbook playbooks/awx_configure.yml against the double; returns (rc, output, recap).

    ``extra_yaml`` is more extra vars as YAML text, for values that must stay !unsafe (AWX's own templates).
    """
    extra = {
        "awx_config_scm_url": SCM_URL,
        "awx_config_ee_image": "registry.example.com/llmops/ray-vllm-ee:0.1.0",
        "awx_config_credentials": CREDENTIALS,
        "awx_config_job_credentials": ["cluster kubeconfig"],
        **overrides,
    }
    extra_file = tmp_path / "extra.yml"
    extra_file.write_text(json.dumps(extra)[:-1] + (", " if extra_yaml else "") + extra_yaml + "}")
    env = {
        "CONTROLLER_HOST": awx_double.url,
        "CONTROLLER_USERNAME": awx_double.username,
        "CONTROLLER_PASSWORD": awx_double.password,
        "CONTROLLER_VERIFY_SSL": "false",
    }
    args = ["-e", "@%s" % extra_file] + (["--start-at-task", start_at] if start_at else [])
    return run_playbook("playbooks/awx_configure.yml", inventory="localhost,", extra_args=args, env=env)


@pytest.fixture(scope="module")
def applied(awx_double, tmp_path_factory):
    awx_double.reset()
    # The project's checkout is this repository: AWX would clone SCM_URL; the double lists its playbooks.
    awx_double.project_dirs[SCM_URL] = str(REPO)
    first = apply(awx_double, tmp_path_factory.mktemp("first"))
    second = apply(awx_double, tmp_path_factory.mktemp("second"))
    return first, second


def flat(output):
    """The output with its lines joined: the YAML callback folds long messages."""
    return " ".join(output.split())


def by_name(awx_double, kind):
    return {item["name"]: item for item in awx_double.objects(kind)}


def test_the_configuration_applies_then_a_second_apply_changes_nothing(applied):
    (rc, output, recap), (rc2, output2, recap2) = applied
    assert rc == 0, output[-4000:]
    assert recap["localhost"]["changed"] > 0
    assert rc2 == 0, output2[-4000:]
    assert recap2["localhost"]["changed"] == 0, output2[-6000:]


def test_every_template_runs_its_playbook_with_its_survey(applied, awx_double):
    templates = by_name(awx_double, "job_templates")
    assert sorted(templates) == sorted("llmops.ray_vllm %s" % kind for kind in TEMPLATES)
    playbooks = {name: template["playbook"] for name, template in templates.items()}
    assert playbooks["llmops.ray_vllm deploy"] == "site.yml"
    assert playbooks["llmops.ray_vllm verify"] == "playbooks/verify.yml"
    for playbook in playbooks.values():
        assert (REPO / playbook).is_file(), playbook
    plan = templates["llmops.ray_vllm plan"]
    assert (plan["playbook"], plan["job_type"], plan["diff_mode"]) == ("site.yml", "check", True)
    assert not any(t["diff_mode"] for name, t in templates.items() if name != "llmops.ray_vllm plan")
    assert all(template["survey_enabled"] for template in templates.values())


def _survey(awx_double, kind):
    spec = awx_double.survey_spec("job_templates", "llmops.ray_vllm %s" % kind)["spec"]
    return {question["variable"]: question for question in spec}


def test_verify_and_teardown_ask_what_shapes_what_they_look_at_as_the_deploy_asks_it(applied, awx_double):
    """On inventories/prod the served name and the model's folder follow the model id, and verify plans again from
    the context length, the memory share and the replicas: a standalone verify must be told them (docs/awx.md)."""
    deploy, verify, teardown = (_survey(awx_double, kind) for kind in ("deploy", "verify", "teardown"))
    assert set(verify) == {
        "model_storage_model_id",
        "vllm_serve_max_model_len",
        "vllm_serve_gpu_memory_utilization",
        "ray_vllm_replicas",
        "ray_vllm_namespace",
    }
    assert set(teardown) == {
        "ray_vllm_teardown_confirm",
        "ray_vllm_teardown_remove_model",
        "model_storage_model_id",
        "ray_vllm_namespace",
    }
    for variable, question in {**verify, **teardown}.items():
        if variable in deploy:
            assert question == deploy[variable], variable
    assert set(_survey(awx_double, "support bundle")) == {"ray_vllm_namespace"}


def test_the_benchmark_template_asks_for_a_bounded_load(applied, awx_double):
    template = by_name(awx_double, "job_templates")["llmops.ray_vllm benchmark"]
    assert (template["playbook"], template["job_type"]) == ("playbooks/benchmark.yml", "run")
    survey = awx_double.survey_spec("job_templates", "llmops.ray_vllm benchmark")
    questions = {question["variable"]: question for question in survey["spec"]}
    assert set(questions) == {"benchmark_num_prompts", "benchmark_max_concurrency", "ray_vllm_namespace"}
    bounds = {
        name: (q["type"], q["min"], q["max"], q["default"]) for name, q in questions.items() if q["type"] == "integer"
    }
    assert bounds == {
        "benchmark_num_prompts": ("integer", 1, 100000, 64),
        "benchmark_max_concurrency": ("integer", 1, 4096, 8),
    }


def test_the_kubeconfig_type_injects_a_file_the_env_and_the_extra_var(applied, awx_double):
    kubeconfig = by_name(awx_double, "credential_types")["Kubeconfig (llmops.ray_vllm)"]
    injectors = kubeconfig["injectors"]
    assert injectors["file"] == {"template.kubeconfig": "{{ kubeconfig }}"}
    assert injectors["env"] == {"K8S_AUTH_KUBECONFIG": "{{ tower.filename.kubeconfig }}"}
    assert injectors["extra_vars"] == {"ray_vllm_kubeconfig": "{{ tower.filename.kubeconfig }}"}


def test_the_workflow_plans_then_deploys_then_verifies(applied, awx_double):
    nodes = {node["identifier"]: node for node in awx_double.objects("workflow_job_template_nodes")}
    assert set(nodes) == {"plan", "deploy", "verify"}
    ids = {node["id"]: identifier for identifier, node in nodes.items()}
    assert [ids[i] for i in nodes["plan"]["success_nodes"]] == ["deploy"]
    assert [ids[i] for i in nodes["deploy"]["success_nodes"]] == ["verify"]
    assert not any(node["failure_nodes"] for node in nodes.values())


def test_teardown_on_failure_is_an_opt_in_that_can_be_taken_back(applied, awx_double, tmp_path):
    start_at = "Ensure the deploy workflow"
    rc, output, _recap = apply(awx_double, tmp_path, start_at=start_at, awx_config_workflow_teardown_on_failure=True)
    assert rc == 0, output[-4000:]
    nodes = {node["identifier"]: node for node in awx_double.objects("workflow_job_template_nodes")}
    assert nodes["deploy"]["failure_nodes"] == [nodes["teardown"]["id"]]
    assert nodes["verify"]["failure_nodes"] == [nodes["teardown"]["id"]]
    assert nodes["teardown"]["extra_data"] == {"ray_vllm_teardown_confirm": "yes"}
    rc, output, recap = apply(awx_double, tmp_path, start_at=start_at)
    assert rc == 0, output[-4000:]
    assert {node["identifier"] for node in awx_double.objects("workflow_job_template_nodes")} == {
        "plan",
        "deploy",
        "verify",
    }


def test_a_survey_default_of_the_wrong_type_is_refused_with_awxs_message(applied, awx_double, tmp_path):
    rc, output, _recap = apply(
        awx_double, tmp_path, start_at=TEMPLATES_TASK, awx_config_survey_defaults={"max_model_len": "eight thousand"}
    )
    assert rc != 0
    assert "Default value eight thousand in survey question 2 expected to be integer." in flat(output), output[-4000:]


def test_a_survey_default_out_of_bounds_is_refused_before_awx_is_asked(applied, awx_double, tmp_path):
    """AWX saves a default outside min/max and drops it at launch (so the question must be answered): refuse it."""
    rc, output, _recap = apply(
        awx_double, tmp_path, start_at=TEMPLATES_TASK, awx_config_survey_defaults={"max_model_len": 10}
    )
    assert rc != 0
    assert "awx_config_survey_defaults.max_model_len=10: expected an integer from 256 to 1048576" in flat(output), (
        output[-4000:]
    )


def test_a_credential_type_injecting_ansible_variables_is_refused_with_awxs_message(applied, awx_double, tmp_path):
    # YAML flow style inside the JSON-shaped extra vars file, so the injector's template stays !unsafe.
    types = (
        '"_awx_config_credential_types": {"ray_cluster_token": {"name": "Ray cluster token (llmops.ray_vllm)", '
        '"description": "with a bad injector", "inputs": {"fields": [{"id": "token", "type": "string", '
        '"label": "Token", "secret": true}]}, "injectors": {"env": {"ANSIBLE_RAY_TOKEN": !unsafe "{{ token }}"}}}}'
    )
    rc, output, _recap = apply(awx_double, tmp_path, extra_yaml=types, start_at="Ensure the credential types")
    assert rc != 0
    message = "Environment variable ANSIBLE_RAY_TOKEN may affect Ansible configuration so its use is not allowed"
    assert message in flat(output), output[-4000:]


# A stand-in for the support bundle template's playbook: it prints only digests of what the job was given.
PROBE_PLAYBOOK = """\
- name: What the credentials gave the job
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Digests of the injected variables
      ansible.builtin.debug:
        msg: "{{ item }}={{ lookup('ansible.builtin.vars', item) | hash('sha256') }}"
      loop: [model_storage_token, support_bundle_hub_token, ray_cluster_auth_token, vllm_serve_ray_auth_token]
"""


class _UnsafeLoader(yaml.SafeLoader):
    pass


_UnsafeLoader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))


def test_the_hub_and_ray_token_credentials_reach_a_job_only_through_their_injectors(applied, awx_double, tmp_path):
    """A job launched with the Model hub token and Ray cluster token credentials: each injector's extra vars in a
    0400 `-e @` file of env/ (as !unsafe YAML), read by ansible-playbook as written, and neither secret in the job's
    stdout, events or any other artifact. The template's playbook is a probe (a project checkout of its own): the
    injection is AWX's and the same for every template."""
    project = tmp_path / "project"
    (project / "playbooks").mkdir(parents=True)
    (project / "playbooks" / "support_bundle.yml").write_text(PROBE_PLAYBOOK)
    inventory = {"all": {"hosts": {"localhost": {"ansible_connection": "local"}}}}
    (project / "hosts.yml").write_text(json.dumps(inventory))
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    (tmp_path / "jobs").mkdir()
    name = "llmops.ray_vllm support bundle"
    job = runner.launch(
        awx_double,
        name,
        runner.survey_form(awx_double, name),
        credentials=["hub token", "ray token"],
        inventory_source="hosts.yml",
        inventory_variables={"ansible_python_interpreter": sys.executable},
        project_dir=project,
        base_dir=tmp_path / "jobs",
    )
    assert (job.status, job.rc) == ("successful", 0), job.stdout()[-4000:]

    command = json.loads((job.artifacts_dir / "command").read_text())["command"]
    # ansible-runner adds env/extravars (the survey's answers); the credentials' files are AWX's mkstemp ones.
    files = [Path(arg[1:]) for arg in command if arg.startswith("@") and Path(arg[1:]).name != "extravars"]
    injected = [yaml.load(path.read_text(), Loader=_UnsafeLoader) for path in files]
    assert sorted(injected, key=sorted) == [
        {"model_storage_token": HUB_TOKEN, "support_bundle_hub_token": HUB_TOKEN},
        {"ray_cluster_auth_token": RAY_TOKEN, "vllm_serve_ray_auth_token": RAY_TOKEN},
    ]
    assert all(path.parent == job.private_data_dir / "env" and path.stat().st_mode & 0o777 == 0o400 for path in files)
    assert all(": !unsafe " in path.read_text() for path in files)
    extravars = (job.private_data_dir / "env" / "extravars").read_text()
    envvars = (job.private_data_dir / "env" / "envvars").read_text()
    assert HUB_TOKEN not in extravars + envvars and RAY_TOKEN not in extravars + envvars

    stdout = job.stdout()
    for variable, secret in [
        ("model_storage_token", HUB_TOKEN),
        ("support_bundle_hub_token", HUB_TOKEN),
        ("ray_cluster_auth_token", RAY_TOKEN),
        ("vllm_serve_ray_auth_token", RAY_TOKEN),
    ]:
        assert "%s=%s" % (variable, hashlib.sha256(secret.encode()).hexdigest()) in stdout, stdout[-4000:]
    for path in job.artifacts_dir.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            assert HUB_TOKEN not in text and RAY_TOKEN not in text, path
