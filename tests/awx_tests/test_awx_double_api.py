# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""awx.awx 24.6.1 modules run against the AWX double: create, re-apply unchanged, bad input refused."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import textwrap
import urllib.error
import urllib.parse
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
SCM_URL = "https://git.example.invalid/llmops/playbooks.git"

SURVEY = {
    "name": "",
    "description": "",
    "spec": [
        {
            "type": "integer",
            "question_name": "Replicas",
            "variable": "replicas",
            "required": True,
            "min": 1,
            "max": 8,
            "default": 2,
        },
        {
            "type": "multiplechoice",
            "question_name": "Mode",
            "variable": "mode",
            "required": False,
            "choices": ["a", "b"],
            "default": "a",
        },
    ],
}

TASKS = """
- name: Organization
  awx.awx.organization: {name: Double Org, description: org under test}
- name: Execution environment
  awx.awx.execution_environment: {name: Double EE, image: quay.io/example/ee:1, organization: Double Org}
- name: Project
  awx.awx.project:
    name: Double Project
    organization: Double Org
    scm_type: git
    scm_url: %(scm_url)s
    scm_update_on_launch: true
    default_environment: Double EE
- name: Inventory
  awx.awx.inventory: {name: Double Inventory, organization: Double Org}
- name: Inventory source
  awx.awx.inventory_source:
    name: Double Source
    inventory: Double Inventory
    organization: Double Org
    source: scm
    source_project: Double Project
    source_path: inventory/hosts.yml
- name: Credential type
  awx.awx.credential_type:
    name: Double Token
    kind: cloud
    inputs: {fields: [{id: token, label: Token, secret: true}], required: [token]}
    injectors: {env: {DOUBLE_TOKEN: "{{ '{{' }} token {{ '}}' }}"}}
- name: Credential
  awx.awx.credential:
    name: Double Cred
    organization: Double Org
    credential_type: Double Token
    inputs: {token: s3cret}
    update_secrets: false
- name: Job template
  awx.awx.job_template:
    name: Double Deploy
    organization: Double Org
    project: Double Project
    inventory: Double Inventory
    playbook: playbooks/deploy.yml
    job_type: run
    execution_environment: Double EE
    credentials: [Double Cred]
    ask_variables_on_launch: true
    survey_enabled: true
    survey_spec: %(survey)s
- name: Workflow
  awx.awx.workflow_job_template:
    name: Double Flow
    organization: Double Org
    survey_enabled: true
    survey_spec: %(survey)s
- name: Workflow node deploy
  awx.awx.workflow_job_template_node:
    identifier: deploy
    workflow_job_template: Double Flow
    organization: Double Org
    unified_job_template: Double Deploy
- name: Workflow node first
  awx.awx.workflow_job_template_node:
    identifier: first
    workflow_job_template: Double Flow
    organization: Double Org
    unified_job_template: Double Deploy
    success_nodes: [deploy]
    all_parents_must_converge: true
"""


def write_playbook(tmp_path, awx_double, tasks: str) -> str:
    defaults = {
        "controller_host": awx_double.url,
        "controller_username": awx_double.username,
        "controller_password": awx_double.password,
        "validate_certs": False,
    }
    play = (
        "- hosts: localhost\n  connection: local\n  gather_facts: false\n"
        "  module_defaults:\n    group/awx.awx.controller: %s\n  tasks:%s"
    ) % (
        json.dumps(defaults),
        textwrap.indent(tasks, "    "),
    )
    path = tmp_path / "play.yml"
    path.write_text(play)
    return str(path)


def run_playbook(path: str) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
        ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"),
        ANSIBLE_STDOUT_CALLBACK="json",
    )
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", os.path.join(ROOT, ".build", "collections"))
    return subprocess.run(
        [os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", path],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def task_results(proc: subprocess.CompletedProcess) -> dict:
    report, _end = json.JSONDecoder().raw_decode(proc.stdout[proc.stdout.index("{") :])
    return {task["task"]["name"]: task["hosts"]["localhost"] for task in report["plays"][0]["tasks"]}


@pytest.fixture()
def project_checkout(tmp_path, awx_double):
    checkout = tmp_path / "checkout"
    (checkout / "playbooks").mkdir(parents=True)
    (checkout / "playbooks" / "deploy.yml").write_text("- hosts: all\n  tasks: []\n")
    (checkout / "roles" / "r" / "tasks").mkdir(parents=True)
    (checkout / "roles" / "r" / "tasks" / "main.yml").write_text("- hosts: nope\n")
    awx_double.reset()
    awx_double.project_dirs[SCM_URL] = str(checkout)
    return checkout


def test_apply_then_reapply_is_unchanged(tmp_path, awx_double, project_checkout):
    tasks = TASKS % {"scm_url": SCM_URL, "survey": json.dumps(SURVEY)}
    path = write_playbook(tmp_path, awx_double, tasks)

    first = run_playbook(path)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    assert all(result["changed"] for result in task_results(first).values())

    second = run_playbook(path)
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-2000:]
    changed = [name for name, result in task_results(second).items() if result["changed"]]
    assert changed == []

    (template,) = awx_double.objects("job_templates")
    assert template["playbook"] == "playbooks/deploy.yml"
    assert template["summary_fields"]["organization"]["name"] == "Double Org"
    assert awx_double.survey_spec("job_templates", "Double Deploy") == SURVEY
    (credential,) = awx_double.objects("credentials")
    assert credential["inputs"] == {"token": "$encrypted$"}
    nodes = {node["identifier"]: node for node in awx_double.objects("workflow_job_template_nodes")}
    assert nodes["first"]["success_nodes"] == [nodes["deploy"]["id"]]
    assert nodes["first"]["all_parents_must_converge"] is True


def test_bad_survey_is_refused_with_awx_message(tmp_path, awx_double, project_checkout):
    survey = {**SURVEY, "spec": [{**SURVEY["spec"][0], "default": "two"}]}
    tasks = TASKS % {"scm_url": SCM_URL, "survey": json.dumps(survey)}
    proc = run_playbook(write_playbook(tmp_path, awx_double, tasks))
    assert proc.returncode != 0
    result = task_results(proc)["Job template"]
    assert result["failed"]
    assert result["msg"] == "Failed to update survey: Default value two in survey question 0 expected to be integer."


def test_missing_playbook_is_refused(tmp_path, awx_double, project_checkout):
    tasks = TASKS.replace("playbooks/deploy.yml", "roles/r/tasks/main.yml") % {
        "scm_url": SCM_URL,
        "survey": json.dumps(SURVEY),
    }
    proc = run_playbook(write_playbook(tmp_path, awx_double, tasks))
    result = task_results(proc)["Job template"]
    assert result["failed"]
    assert "'playbook': ['Playbook not found for project.']" in result["msg"]


def _get(awx_double, path):
    """GET on the double's API as the admin: (status, JSON body)."""
    token = base64.b64encode(f"{awx_double.username}:{awx_double.password}".encode()).decode()
    request = urllib.request.Request(awx_double.url + path, headers={"Authorization": "Basic " + token})
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_unknown_endpoint_is_404(awx_double):
    status, _body = _get(awx_double, "/api/v2/no_such_things/")
    assert status == 404


# AWX 24.6.1's named URL of a credential (awx/settings/defaults.py NAMED_URL_FORMATS): <name>++<credential type's
# name>+<kind>++<organization>; awx.awx quotes it with quote(name, safe="+") (controller_api.py get_one).
NAMED_CREDENTIAL = "Double Cred++Double Token+cloud++Double Org"
NAMED_TASK = """
- name: Template naming its credential by named URL
  awx.awx.job_template:
    name: Named Deploy
    organization: Double Org
    project: Double Project
    inventory: Double Inventory
    playbook: playbooks/deploy.yml
    credentials: ["%s"]
"""


def test_named_urls_resolve_through_awx_awx_and_over_http(tmp_path, awx_double, project_checkout):
    """awx.awx looks a name holding ++ up as a named URL first; the name search it would fall back to finds no
    credential named so, so only the double's named URL resolution can give the template the right credential."""
    tasks = TASKS % {"scm_url": SCM_URL, "survey": json.dumps(SURVEY)} + NAMED_TASK % NAMED_CREDENTIAL
    proc = run_playbook(write_playbook(tmp_path, awx_double, tasks))
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert task_results(proc)["Template naming its credential by named URL"]["changed"]
    (credential,) = awx_double.objects("credentials")
    template = {t["name"]: t for t in awx_double.objects("job_templates")}["Named Deploy"]
    status, body = _get(awx_double, "/api/v2/job_templates/%d/credentials/" % template["id"])
    assert status == 200 and [c["id"] for c in body["results"]] == [credential["id"]], body

    quoted = urllib.parse.quote(NAMED_CREDENTIAL, safe="+")
    status, body = _get(awx_double, f"/api/v2/credentials/{quoted}/")
    assert (status, body["id"], body["name"]) == (200, credential["id"], "Double Cred")
    (project,) = awx_double.objects("projects")
    status, body = _get(awx_double, "/api/v2/projects/%s/" % urllib.parse.quote("Double Project++Double Org", safe="+"))
    assert (status, body["id"]) == (200, project["id"])
    for wrong in ("Double Cred++Double Token+ssh++Double Org", "Double Cred++Double Token+cloud++Default"):
        status, body = _get(awx_double, "/api/v2/credentials/%s/" % urllib.parse.quote(wrong, safe="+"))
        assert (status, body) == (404, {"detail": "Not found."}), wrong

    # A wrong named URL: AWX's 404, which awx.awx reports as it does against AWX (controller_api.py make_request).
    wrong = NAMED_CREDENTIAL.replace("cloud", "ssh")
    proc = run_playbook(write_playbook(tmp_path, awx_double, NAMED_TASK.replace("Named Deploy", "Named Wrong") % wrong))
    assert proc.returncode != 0
    result = task_results(proc)["Template naming its credential by named URL"]
    quoted = urllib.parse.quote(wrong, safe="+")
    assert result["msg"] == f"The requested object could not be found at /api/v2/credentials/{quoted}/.", result
    assert "Named Wrong" not in [t["name"] for t in awx_double.objects("job_templates")]
