# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Filters that work out vLLM's server settings, its command line and its Serve LLM application (docs:
vllm_settings.yml, vllm_job_entrypoint.yml, serve_llm_app.yml)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.llmops.ray_vllm.plugins.module_utils._serve_llm import (
    ServeLlmError,
    api_key_digest,
    expected_replicas,
    serve_llm_application,
)
from ansible_collections.llmops.ray_vllm.plugins.module_utils._vllm_command import (
    ServingSettingsError,
    job_entrypoint,
    server_args,
    server_command,
    serving_settings,
)


def _vllm_settings(settings, plan=None, venv=None):
    try:
        effective = serving_settings(dict(settings), plan)
    except ServingSettingsError as error:
        raise AnsibleFilterError(str(error)) from None
    effective["args"] = server_args(effective)
    effective["command"] = server_command(effective, venv)
    return effective


def _vllm_job_entrypoint(settings, api_key_file):
    return job_entrypoint(settings["command"], settings["args"], api_key_file)


def _serve_llm_app(settings, plan, api_key, name="llm", autoscaling=None):
    try:
        digest = api_key_digest(api_key, name)
        application = serve_llm_application(settings, plan, digest, {"name": name, "autoscaling": autoscaling})
        return {"application": application, "replicas": expected_replicas(settings, plan)}
    except (ServeLlmError, KeyError, TypeError) as error:
        raise AnsibleFilterError(f"serve_llm_app: {error}") from None


class FilterModule:
    def filters(self):
        return {
            "vllm_settings": _vllm_settings,
            "vllm_job_entrypoint": _vllm_job_entrypoint,
            "serve_llm_app": _serve_llm_app,
        }
