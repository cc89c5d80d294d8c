#!/usr/bin/python
# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: vllm_health
short_description: Gate on a vLLM OpenAI server that really serves a model
version_added: 0.1.0
description:
  - Reads C(/health), C(/v1/models), C(/version) and C(/metrics) of a vLLM OpenAI-compatible server and, by default,
    sends a small chat completion.
  - The server is V(ready) when the expected model is listed and, with O(completion=true), a real completion came
    back non-empty (and matching O(expect)). A C(/health) of 200 alone is not enough, because vLLM keeps answering
    it while its engine hangs (for example after a Ray worker died).
  - Reports one RV(status) of V(unreachable), V(loading), V(engine_dead), V(unauthorized), V(model_missing),
    V(not_answering), V(tls_error), V(server_ended) or V(ready), and a message that says what was seen and what to do.
  - V(unreachable) means nothing accepts connections at O(url). vLLM binds its port at start but only accepts
    connections once the model is loaded, so a server that is still loading looks exactly like one that is not
    running; O(wait=true) with a O(timeout) above the model's load time covers both.
  - V(loading) means an HTTP layer answers but vLLM behind it does not accept connections yet, as a proxy, ingress or
    load balancer does with 502, 503 or 504; or a connection was accepted without any HTTP answer (a port-forward
    whose backend is not listening).
  - V(engine_dead) means the vLLM API server answers but its engine process died (C(/health) 503 while C(/v1/models)
    answers, or a completion failed with C(EngineDeadError)). By default vLLM exits a few seconds later, after which
    the status is V(unreachable).
  - V(tls_error) means the server's certificate does not verify against O(ca_path) (another issuer, or a name it does
    not hold), or the URL's scheme is not the server's (http to a server started with C(--ssl-certfile), https to a
    plain one; through O(service), O(service.scheme) not matching). Waiting does not change it, so O(wait=true)
    stops at once.
  - V(server_ended) means the server is not ready and the Ray job named by O(ray_job) that runs it has ended (its
    process exited or was stopped). Waiting does not change it, so O(wait=true) stops at once, with Ray's message and
    the last lines of the job's log.
author:
  - llmops.ray_vllm maintainers (@llmops)
extends_documentation_fragment:
  - llmops.ray_vllm.attributes
  - llmops.ray_vllm.attributes.read_only
  - llmops.ray_vllm.wait
  - llmops.ray_vllm.kubernetes_service
options:
  url:
    description:
      - Base URL of the vLLM server, for example V(http://10.0.0.5:8000).
      - A trailing C(/v1), as in an OpenAI client C(base_url), is accepted and removed.
      - Exactly one of O(url) and O(service) is required.
    type: str
  api_key_header:
    description:
      - "Header that carries O(api_key). V(Authorization) sends C(Authorization: Bearer <key>); any other name sends
        the key as it is in that header."
      - Default V(X-API-Key) with O(service), because the API server removes C(Authorization) before it proxies the
        request (the collection's vLLM deployment maps C(X-API-Key) to C(Authorization) with a small middleware);
        V(Authorization) otherwise.
    type: str
  model:
    description:
      - Served model name that must be listed by C(/v1/models), as set by the server's C(--served-model-name).
      - When omitted, any listed model will do and the test completion uses the first one.
    type: str
  api_key:
    description:
      - "The key the server was started with (C(--api-key) or E(VLLM_API_KEY)), sent as C(Authorization: Bearer)."
      - vLLM only checks it on C(/v1/*); C(/health), C(/version) and C(/metrics) are open.
    type: str
  headers:
    description:
      - Extra HTTP headers sent with every request, for example what a proxy in front of vLLM needs.
      - "These values are not hidden from logs. When they hold tokens, set C(no_log: true) on the task."
    type: dict
    default: {}
  completion:
    description:
      - Send a small chat completion to C(/v1/chat/completions) and require a non-empty answer.
      - With V(false), readiness only needs the model to be listed.
    type: bool
    default: true
  prompt:
    description:
      - User message of the test completion.
    type: str
    default: Reply with one word.
  max_tokens:
    description:
      - Token limit of the test completion.
    type: int
    default: 16
  expect:
    description:
      - Python regular expression the test completion's text must match (searched anywhere in it).
    type: str
  request_timeout:
    description:
      - Seconds to wait for each HTTP answer, the test completion included.
    type: int
    default: 30
  validate_certs:
    description:
      - Verify the server's TLS certificate for C(https) URLs.
    type: bool
    default: true
  ca_path:
    description:
      - PEM file of the CA certificate(s) that the server's certificate of an C(https) O(url) must verify against
        (for example the CA that issued the certificate of a vLLM started with C(--ssl-certfile)). Default is the
        system's CA certificates.
      - The certificate must also name the host of O(url) in its subjectAltName.
      - Not with O(service). Through the service proxy the API server makes the connection to the pod and does
        not verify its certificate (set O(service.scheme=https) for a server that serves TLS).
    type: path
  ray_job:
    description:
      - The Ray job that runs the server (as the P(llmops.ray_vllm.ray_job#module) module keeps it). While the server is
        not ready, each look also asks the Ray Jobs API whether a job of this name still runs. When none does,
        RV(status) is V(server_ended) and the message carries the newest job's status and log tail.
      - A dashboard that does not answer is no verdict; the server is asked as before.
    type: dict
    suboptions:
      dashboard_url:
        description: The Ray dashboard of the job's cluster, for example V(http://127.0.0.1:8265).
        type: str
        required: true
      name:
        description: The job's name (O(llmops.ray_vllm.ray_job#module:name)).
        type: str
        required: true
      token:
        description: Ray's authentication token, when the cluster has token authentication on. Empty means none.
        type: str
      validate_certs:
        description: Verify the dashboard's TLS certificate for C(https).
        type: bool
        default: true
notes:
  - Runs its HTTP requests from the host the task runs on; delegate to a host that can reach O(url).
seealso:
  - name: vLLM OpenAI-compatible server
    description: The endpoints this module reads.
    link: https://docs.vllm.ai/en/latest/serving/openai_compatible_server.html
"""

EXAMPLES = r"""
- name: Ask vLLM in the cluster through the API server's service proxy (the key goes in X-API-Key)
  llmops.ray_vllm.vllm_health:
    service:
      namespace: llm
      name: llm-vllm
      port: http
    kubeconfig: ~/.kube/config
    model: deepseek-r1-distill-llama-70b
    api_key: "{{ vllm_api_key }}"
    wait: true
    timeout: 1800
  no_log: true

- name: Wait until vLLM serves the model and answers
  llmops.ray_vllm.vllm_health:
    url: http://127.0.0.1:8000
    model: smollm2-135m-instruct
    api_key: "{{ vllm_api_key }}"
    wait: true
    timeout: 900

- name: Look once per retry so the play shows progress while the model loads
  llmops.ray_vllm.vllm_health:
    url: "http://{{ vllm_host }}:8000/v1"
    model: smollm2-135m-instruct
    api_key: "{{ vllm_api_key }}"
  register: vllm
  until: vllm is not failed
  retries: 60
  delay: 10

- name: Verify a vLLM served over TLS with the CA that issued its certificate
  llmops.ray_vllm.vllm_health:
    url: https://vllm.example.internal:8000
    ca_path: /etc/llmops/tls/ca.crt
    model: smollm2-135m-instruct
    api_key: "{{ vllm_api_key }}"
  no_log: true

- name: Check a known answer
  llmops.ray_vllm.vllm_health:
    url: http://127.0.0.1:8000
    model: smollm2-135m-instruct
    prompt: What is the capital of France? Answer with one word.
    expect: "(?i)paris"
"""

RETURN = r"""
ready:
  description: Whether the model is listed and, with O(completion=true), the test completion answered as expected.
  returned: always
  type: bool
  sample: true
status:
  description:
    - What the server is doing.
    - V(unreachable), V(loading), V(engine_dead), V(unauthorized), V(model_missing), V(not_answering), V(tls_error),
      V(server_ended) or V(ready).
  returned: always
  type: str
  sample: ready
url:
  description: The base URL probed, without trailing C(/) or C(/v1).
  returned: always
  type: str
  sample: http://127.0.0.1:8000
models:
  description: Ids listed by C(/v1/models); empty when it could not be read.
  returned: always
  type: list
  elements: str
  sample: [smollm2-135m-instruct]
max_model_len:
  description: Context length of O(model) (or of the first listed model) as served; null when not known.
  returned: always
  type: int
  sample: 2048
version:
  description: vLLM version from C(/version); null when it could not be read.
  returned: always
  type: str
  sample: 0.32.0
metrics:
  description:
    - Engine load from C(/metrics); keys are left out when the server does not export them. Empty when unread.
  returned: always
  type: dict
  contains:
    num_requests_running:
      description: Requests being processed now, summed over engines.
      type: int
      sample: 0
    num_requests_waiting:
      description: Requests queued, summed over engines.
      type: int
      sample: 0
    kv_cache_usage_perc:
      description:
        - KV cache usage of the fullest engine, from 0 to 1 (C(vllm:kv_cache_usage_perc), or the older
          C(vllm:gpu_cache_usage_perc)).
      type: float
      sample: 0.0
completion:
  description:
    - The test completion; empty when none was sent (unreachable server, model not listed, O(completion=false)).
  returned: always
  type: dict
  contains:
    text:
      description: Text of the first choice; null when the request failed.
      type: str
      sample: Hello!
    latency_s:
      description: Seconds the request took.
      type: float
      sample: 0.41
    completion_tokens:
      description: Tokens generated, from the answer's usage; null when the request failed.
      type: int
      sample: 3
    model:
      description: Model name the completion was sent to.
      type: str
      sample: smollm2-135m-instruct
endpoints:
  description: HTTP status of each endpoint asked in the last attempt; null when no HTTP answer came.
  returned: always
  type: dict
  sample: {"/health": 200, "/v1/models": 200, "/version": 200, "/metrics": 200, "/v1/chat/completions": 200}
problems:
  description: What kept the server from being ready, with what was seen; empty when ready.
  returned: always
  type: list
  elements: str
  sample: []
attempts:
  description: Number of probes made.
  returned: always
  type: int
  sample: 1
elapsed_s:
  description: Seconds spent probing.
  returned: always
  type: float
  sample: 0.6
"""

import re

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmops.ray_vllm.plugins.module_utils._args import (
    WAIT_VALUE_RULES,
    with_kubernetes_service,
    with_wait,
)
from ansible_collections.llmops.ray_vllm.plugins.module_utils._kube_proxy import Transport, module_transport
from ansible_collections.llmops.ray_vllm.plugins.module_utils._ray_job import ended_job_watch
from ansible_collections.llmops.ray_vllm.plugins.module_utils._value_rules import fail_on_bad_values
from ansible_collections.llmops.ray_vllm.plugins.module_utils._vllm_health import observe, watching_server
from ansible_collections.llmops.ray_vllm.plugins.module_utils._wait import poll

ARGUMENT_SPEC = with_kubernetes_service(
    with_wait(
        dict(
            url=dict(type="str"),
            api_key_header=dict(type="str", no_log=False),
            model=dict(type="str"),
            api_key=dict(type="str", no_log=True),
            headers=dict(type="dict", default={}),
            completion=dict(type="bool", default=True),
            prompt=dict(type="str", default="Reply with one word."),
            max_tokens=dict(type="int", default=16, no_log=False),
            expect=dict(type="str"),
            request_timeout=dict(type="int", default=30),
            validate_certs=dict(type="bool", default=True),
            ca_path=dict(type="path"),
            ray_job=dict(
                type="dict",
                options=dict(
                    dashboard_url=dict(type="str", required=True),
                    name=dict(type="str", required=True),
                    token=dict(type="str", no_log=True),
                    validate_certs=dict(type="bool", default=True),
                ),
            ),
        )
    )
)

# What the spec cannot say (plugins/module_utils/_value_rules.py): checked before anything is asked.
VALUE_RULES = dict(
    WAIT_VALUE_RULES,
    url="http_url",
    max_tokens={"int": {"min": 1}},
    request_timeout={"int": {"min": 1}},
)


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        mutually_exclusive=[["url", "service"]],
        required_one_of=[["url", "service"]],
        supports_check_mode=True,
    )
    fail_on_bad_values(module, VALUE_RULES)
    params = module.params
    if params["service"]:
        if params["ca_path"]:
            module.fail_json(
                msg="ca_path={} cannot be used with service: through the service proxy the Kubernetes API server "
                "makes the connection to the pod and does not verify its certificate, so no CA of yours is asked. "
                "Fix: drop ca_path and set service.scheme=https for a server that serves TLS, or use url (an Ingress, "
                "a load balancer, a port-forward) to verify the certificate with ca_path.".format(params["ca_path"]),
                ready=False,
                status="tls_error",
            )
        transport = module_transport(module, ready=False, status="unreachable")
    else:
        transport = Transport(params["url"], validate_certs=params["validate_certs"], ca_path=params["ca_path"])
    headers = transport.with_headers(params["headers"])
    api_key_header = params["api_key_header"] or ("X-API-Key" if params["service"] else "Authorization")
    if params["expect"] is not None:
        try:
            re.compile(params["expect"])
        except re.error as error:
            module.fail_json(
                msg="expect {!r} is not a valid Python regular expression: {}".format(params["expect"], error)
            )

    def probe():
        return observe(
            url=transport.url,
            model=params["model"],
            api_key=params["api_key"],
            api_key_header=api_key_header,
            tls=transport.tls,
            headers=headers,
            completion_wanted=params["completion"],
            prompt=params["prompt"],
            max_tokens=params["max_tokens"],
            expect=params["expect"],
            request_timeout=params["request_timeout"],
            validate_certs=transport.validate_certs,
        )

    if params["ray_job"]:
        probe = watching_server(probe, ended_job_watch(**params["ray_job"]))
    timeout = params["timeout"] if params["wait"] else 0
    # A TLS mismatch and a server that has ended do not go away by waiting.
    result, attempts, elapsed = poll(
        probe,
        lambda observed: observed["ready"] or observed["status"] in ("tls_error", "server_ended"),
        timeout,
        params["interval"],
    )
    result.update(changed=False, attempts=attempts, elapsed_s=round(elapsed, 2))
    if not result["ready"]:
        if params["wait"]:
            result["msg"] = f"After {attempts} attempts over {elapsed:.0f}s: {result['msg']}"
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
