#!/usr/bin/python
# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: serve_app
short_description: Keep one Ray Serve application deployed on a Ray cluster, idempotently
version_added: 0.2.0
description:
  - Manages one application of Ray Serve through the Serve REST API of the Ray dashboard
    (C(/api/serve/applications/)), by its O(name).
  - With O(state=present), the application is deployed unless Serve already runs it with exactly this config
    (the config Serve reports as deployed is compared with the one asked for). A changed config is applied by
    Serve in place, for example a new replica count adds or stops replicas while the others keep serving.
  - The Serve REST API is declarative for the whole Serve instance; the configs of the other applications are put
    back unchanged.
  - O(working_dir) is a directory on the machine the module runs on. Its files are zipped (stable bytes, so equal
    files give an equal package), uploaded once to the cluster's GCS through the dashboard's package API, and
    named in the application's C(runtime_env.working_dir) as C(gcs://_ray_pkg_<hash>.zip).
  - With O(state=absent), the application is deleted and the module waits until Serve has stopped its replicas.
    When it was the last application, Serve is shut down, which frees its HTTP port.
  - The module does not wait for the application to be ready; the gate is M(llmops.ray_vllm.serve_status).
author:
  - llmops.ray_vllm maintainers (@llmops)
extends_documentation_fragment:
  - llmops.ray_vllm.attributes
  - llmops.ray_vllm.kubernetes_service
  - llmops.ray_vllm.ray_dashboard
attributes:
  check_mode:
    support: full
    details:
      - Reads the deployed config and reports whether the application would be deployed, changed or deleted;
        uploads, deploys and deletes nothing.
  diff_mode:
    support: full
    details:
      - Shows the application's config as deployed before and as asked for after.
options:
  state:
    description: V(present) keeps the application deployed with this config; V(absent) deletes it.
    type: str
    choices: [present, absent]
    default: present
  name:
    description: The application's name in Serve.
    type: str
    required: true
  import_path:
    description:
      - The application builder or bound deployment, C(module:attribute), for example
        V(ray.serve.llm:build_openai_app). Required with O(state=present).
    type: str
  args:
    description: Arguments of the application builder.
    type: dict
  deployments:
    description:
      - "Options of the application's deployments by C(name), over those its code sets, for example
        V([{name: LLMServer:my-model, num_replicas: 2}])."
      - Serve applies a change of C(num_replicas), C(autoscaling_config), C(max_ongoing_requests) and the health
        check and shutdown timings here in place, without restarting the other replicas; the same change in O(args)
        gives the deployment a new version and restarts all its replicas.
      - Going from C(num_replicas) to C(autoscaling_config), or back, restarts them too (Ray 2.60 counts which
        deployments autoscale in the application's code version); vllm_serve therefore gives a fixed count as an
        autoscaling range pinned to it.
    type: list
    elements: dict
  route_prefix:
    description: The HTTP path prefix the application serves under.
    type: str
    default: /
  runtime_env:
    description:
      - The application's Ray runtime environment. Local paths are refused by Serve; use O(working_dir) for local
        files.
    type: dict
  working_dir:
    description:
      - A local directory (on the machine the module runs on) uploaded and used as the application's
        C(runtime_env.working_dir), so that O(import_path) or the builder's O(args) can name modules in it.
    type: path
  http_options:
    description:
      - Host and port of Serve's HTTP proxy. Used when Serve starts; Serve cannot change them while it runs, so a
        running Serve with other values is refused with a message saying so.
    type: dict
    suboptions:
      host:
        description: The address the proxy listens on.
        type: str
      port:
        description: The port the proxy listens on.
        type: int
  proxy_location:
    description: Where Serve runs HTTP proxies. Used when Serve starts.
    type: str
    choices: [HeadOnly, EveryNode, Disabled]
    default: HeadOnly
  timeout:
    description: Seconds to wait, with O(state=absent), until the application's replicas have stopped.
    type: int
    default: 120
  interval:
    description: Seconds between two looks while waiting.
    type: int
    default: 2
"""

EXAMPLES = r"""
- name: Serve two replicas of a model behind one endpoint
  llmops.ray_vllm.serve_app:
    dashboard_url: http://127.0.0.1:8265
    name: llm
    import_path: ray.serve.llm:build_openai_app
    working_dir: /var/lib/llmops/serve
    http_options: {host: 0.0.0.0, port: 8000}
    args:
      llm_configs:
        - model_loading_config: {model_id: my-model, model_source: /models/my-model}
          deployment_config: {num_replicas: 2}

- name: Delete it
  llmops.ray_vllm.serve_app:
    dashboard_url: http://127.0.0.1:8265
    name: llm
    state: absent
"""

RETURN = r"""
config:
  description: The application's config as asked for (with O(state=present)), as Serve stores it.
  returned: state is present
  type: dict
  sample:
    name: llm
    route_prefix: /
    import_path: ray.serve.llm:build_openai_app
    runtime_env: {working_dir: "gcs://_ray_pkg_5c1c0bf4a2b33b7d70e0f8c1b7e3a1d2.zip"}
    args: {llm_configs: [{model_loading_config: {model_id: smollm2-135m-instruct}}]}
package:
  description: The URI of the uploaded O(working_dir), or null.
  returned: state is present
  type: str
  sample: gcs://_ray_pkg_5c1c0bf4a2b33b7d70e0f8c1b7e3a1d2.zip
diff:
  description: The application's config before and after.
  returned: diff mode
  type: dict
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmops.ray_vllm.plugins.module_utils._args import WAIT_VALUE_RULES, with_ray_dashboard
from ansible_collections.llmops.ray_vllm.plugins.module_utils._kube_proxy import module_transport
from ansible_collections.llmops.ray_vllm.plugins.module_utils._ray_job import RayJobError
from ansible_collections.llmops.ray_vllm.plugins.module_utils._serve_app import (
    PROXY_LOCATIONS,
    client_from_module,
    directory_files,
    ensure_absent,
    ensure_present,
    package_uri,
    package_zip,
)
from ansible_collections.llmops.ray_vllm.plugins.module_utils._value_rules import fail_on_bad_values

ARGUMENT_SPEC = with_ray_dashboard(
    dict(
        state=dict(type="str", choices=["present", "absent"], default="present"),
        name=dict(type="str", required=True),
        import_path=dict(type="str"),
        args=dict(type="dict"),
        deployments=dict(type="list", elements="dict"),
        route_prefix=dict(type="str", default="/"),
        runtime_env=dict(type="dict"),
        working_dir=dict(type="path"),
        http_options=dict(type="dict", options=dict(host=dict(type="str"), port=dict(type="int"))),
        proxy_location=dict(type="str", choices=list(PROXY_LOCATIONS), default="HeadOnly"),
        timeout=dict(type="int", default=120),
        interval=dict(type="int", default=2),
    )
)


def package_of(module):
    """``(uri, zip bytes)`` of working_dir, or None."""
    path = module.params["working_dir"]
    if not path:
        return None
    if not os.path.isdir(path):
        module.fail_json(
            msg=f"working_dir {path!r} is not a directory on {os.uname().nodename}: expected the "
            "directory whose files the application imports."
        )
    data = package_zip(directory_files(path))
    return package_uri(data), data


def present(module, client):
    params = module.params
    package = package_of(module)
    runtime_env = dict(params["runtime_env"] or {})
    if package:
        runtime_env["working_dir"] = package[0]
    spec = {key: params[key] for key in ("name", "route_prefix", "import_path", "args", "deployments")}
    spec["runtime_env"] = runtime_env
    serve_options = {"http_options": params["http_options"], "proxy_location": params["proxy_location"]}
    if serve_options["http_options"]:
        serve_options["http_options"] = {k: v for k, v in serve_options["http_options"].items() if v is not None}
    result = ensure_present(client, spec, serve_options, package, module.check_mode)
    result["package"] = package[0] if package else None
    return result


# What the spec cannot say (plugins/module_utils/_value_rules.py): checked before anything is sent.
VALUE_RULES = dict(WAIT_VALUE_RULES, dashboard_url="http_url", working_dir="absolute_path")


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        mutually_exclusive=[("dashboard_url", "service")],
        required_one_of=[("dashboard_url", "service")],
        required_if=[("state", "present", ["import_path"])],
        supports_check_mode=True,
    )
    fail_on_bad_values(module, VALUE_RULES)
    client = client_from_module(module, module_transport)
    params = module.params
    try:
        if params["state"] == "absent":
            wait = {"timeout": params["timeout"], "interval": params["interval"]}
            result = ensure_absent(client, params["name"], module.check_mode, wait)
        else:
            result = present(module, client)
    except RayJobError as error:
        module.fail_json(msg=error.msg, **error.result)
    if not module._diff:
        result.pop("diff", None)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
