# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Filters that work out vLLM's server settings, its command line and its Serve LLM application (docs:
vllm_settings.yml, vllm_job_entrypoint.yml, serve_llm_app.yml). Their module_utils are imported on first use
(plugin_utils/_lazy_import.py says why)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.llmops.ray_vllm.plugins.plugin_utils._lazy_import import lazy, module_utils


def _vllm_settings(settings, plan=None, venv=None):
    command = module_utils("_vllm_command")
    effective = lazy("_vllm_command", "serving_settings", ["ServingSettingsError"])(dict(settings), plan)
    effective["args"] = command.server_args(effective)
    effective["command"] = command.server_command(effective, venv)
    return effective


def _vllm_job_entrypoint(settings, api_key_file):
    return lazy("_vllm_command", "job_entrypoint")(settings["command"], settings["args"], api_key_file)


def _serve_llm_app(settings, plan, api_key, name="llm", autoscaling=None):
    serve_llm = module_utils("_serve_llm")
    try:
        digest = serve_llm.api_key_digest(api_key, name)
        options = {"name": name, "autoscaling": autoscaling}
        application = serve_llm.serve_llm_application(settings, plan, digest, options)
        return {"application": application, "replicas": serve_llm.expected_replicas(settings, plan)}
    except (serve_llm.ServeLlmError, KeyError, TypeError) as error:
        raise AnsibleFilterError(f"serve_llm_app: {error}") from None


class FilterModule:
    def filters(self):
        return {
            "vllm_settings": _vllm_settings,
            "vllm_job_entrypoint": _vllm_job_entrypoint,
            "serve_llm_app": _serve_llm_app,
        }
