#!/usr/bin/python
# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: cluster_stamp
short_description: Record what a full site.yml run left in a Kubernetes cluster, or look once whether it still stands
version_added: 0.10.0
description:
  - The kubernetes platform's twin of M(llmops.ray_vllm.deployment_stamp). The record is a ConfigMap O(name) in
    O(namespace), without secrets.
  - With O(action=record) (at the end of a full run) writes the record. It holds the settings' digest, the cluster's
    nodes (uid and C(nvidia.com/gpu) allocatable), every object labelled C(app.kubernetes.io/part-of=ray-vllm) in
    O(namespace) and O(namespaces) (uid, generation or resourceVersion, and readiness for Deployments and
    RayClusters), the GPU operator's ClusterPolicies, the O(objects) read by name, and the Ray nodes alive.
  - With O(action=look) (at the start of a re-run) compares the cluster with the record, cheapest first, and stops at
    the first difference. It compares the digest, then the nodes, then the objects, then the model's files as a
    running pod sees them (O(model)), then the Ray nodes alive through
    the head's Service (a restarted Ray pod has a new node ID), then a chat completion from vLLM through its Service.
    RV(differences) names what differs; none means the deployment stands as the last full run left it, and site.yml
    skips the roles.
  - The record is the run's own bookkeeping, like a fact cache, so writing it is reported as unchanged (RV(written)
    says whether it was written). It is not written in check mode.
  - Jobs and pods are not compared. A finished Job does not change whether the deployment stands. A replaced pod
    shows as a Deployment that is not available, a new Ray node ID, or no answer.
author:
  - llmops.ray_vllm maintainers (@llmops)
extends_documentation_fragment:
  - llmops.ray_vllm.attributes
options:
  action:
    description: Write the record (V(record)) or compare the cluster with it (V(look)).
    type: str
    choices: [look, record]
    default: look
  name:
    description: The record's ConfigMap.
    type: str
    default: ray-vllm-record
  namespace:
    description: The deployment's namespace. The record goes there, and its labelled objects are compared.
    type: str
    required: true
  namespaces:
    description: With O(action=record), other namespaces whose labelled objects are compared (the monitoring's).
    type: list
    elements: str
    default: []
  digest:
    description:
      - The digest of the run's settings and of the collection (the P(llmops.ray_vllm.settings_digest#lookup)
        lookup). A record with another digest differs.
    type: str
    required: true
  objects:
    description:
      - With O(action=record), objects outside the namespaces that the gates checked, read by name (the KubeRay
        operator's Deployment). Only C(apps/v1) Deployments.
    type: list
    elements: dict
    default: []
    suboptions:
      api_version:
        description: The object's apiVersion.
        type: str
        default: apps/v1
      kind:
        description: The object's kind.
        type: str
        default: Deployment
      namespace:
        description: The object's namespace.
        type: str
        required: true
      name:
        description: The object's name.
        type: str
        required: true
  head:
    description:
      - With O(action=record), where the look asks Ray and vLLM. Without it, a look compares the cluster only.
    type: dict
    suboptions:
      dashboard:
        description: The Ray head's Service and dashboard port (C(namespace), C(name), C(port)).
        type: dict
        required: true
      ray_token_secret:
        description:
          - The Secret holding the Ray cluster's token (C(namespace), C(name), C(key)), read by the look; none without
            token authentication.
        type: dict
      vllm:
        description:
          - The Service in front of vLLM (C(namespace), C(name), C(port), C(scheme)). The key goes in C(X-API-Key)
            through the API server's proxy.
        type: dict
        required: true
      endpoint:
        description: The URL clients use, for the look's report.
        type: str
      model:
        description: The served model name asked for the completion.
        type: str
        required: true
      api_key_secret:
        description: The Secret holding vLLM's API key (C(namespace), C(name), C(key)), read by the look.
        type: dict
      prompt:
        description: The question of the completion.
        type: str
        default: Say hello.
      max_tokens:
        description: The completion's token limit.
        type: int
        default: 16
  model:
    description:
      - With O(action=record), the model's volume claim in O(namespace). A look then finds a running pod that mounts
        it and looks at the model's files there, as model_storage does (its completion marker, each file it lists,
        readable as the serving containers read them). Without it the model's files are not looked at.
    type: dict
    suboptions:
      claim:
        description: The PersistentVolumeClaim.
        type: str
        required: true
      path:
        description: The model's folder where the download Job mounts the claim.
        type: str
        required: true
      claim_root:
        description: Where the download Job mounts the claim.
        type: str
        required: true
  kubeconfig:
    description:
      - Path of the kubeconfig. Default is E(KUBECONFIG) or C(~/.kube/config), then the in-cluster service account.
    type: path
  context:
    description: Context of O(kubeconfig). Default is its current context.
    type: str
attributes:
  check_mode:
    support: full
    details: A look only reads; O(action=record) writes nothing in check mode.
  diff_mode:
    support: none
requirements:
  - kubernetes (Python client)
notes:
  - The deployer needs C(list) on the kinds it compares in the namespaces (docs/least-privilege.md).
"""

EXAMPLES = r"""
- name: Ask once whether the deployment stands as the last full run left it
  llmops.ray_vllm.cluster_stamp:
    namespace: llm
    digest: "{{ lookup('llmops.ray_vllm.settings_digest', '^vllm_serve_') }}"
  register: look

- name: Record what this run left
  llmops.ray_vllm.cluster_stamp:
    action: record
    namespace: llm
    digest: "{{ digest }}"
    objects:
      - {namespace: kuberay-system, name: kuberay-operator}
    head:
      dashboard: {namespace: llm, name: llm-raycluster-head-svc, port: "8265"}
      ray_token_secret: {namespace: llm, name: llm-ray-auth, key: auth_token}
      vllm: {namespace: llm, name: llm-vllm, port: "8000"}
      model: deepseek-r1-distill-llama-70b
      api_key_secret: {namespace: llm, name: llm-vllm-api-key, key: api-key}
      prompt: Who wrote Hamlet?
"""

RETURN = r"""
current:
  description: With O(action=look), whether nothing differs from the record.
  returned: always
  type: bool
  sample: true
differences:
  description: What differs from the record, one line each; empty when the deployment stands.
  returned: always
  type: list
  elements: str
  sample: ["Deployment llm/llm-vllm is not ready"]
answer:
  description: vLLM's completion when nothing else differed (text, latency).
  returned: when the look asked vLLM and it answered
  type: dict
  sample: {text: " William Shakespeare", latency_s: 0.41, finish_reason: length}
endpoint:
  description: Where the look asked vLLM, the URL clients use, the model and the question.
  returned: when the record has a head
  type: dict
  sample:
    url: Service llm/llm-vllm:8000
    endpoint: http://llm-vllm.llm.svc:8000/v1
    model: deepseek-r1-distill-llama-70b
    question: Who wrote Hamlet?
written:
  description: With O(action=record), whether the record's text was new.
  returned: always
  type: bool
  sample: false
"""

import base64
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.llmops.ray_vllm.plugins.module_utils._cluster_stamp import (
    ClusterObserver,
    ClusterStampError,
    look,
    new_stamp,
    parse_stamp,
    record_configmap,
    refusal_text,
)
from ansible_collections.llmops.ray_vllm.plugins.module_utils._deployment_stamp import (
    HeadObserver,
    head_differences,
    recorded_head,
)
from ansible_collections.llmops.ray_vllm.plugins.module_utils._kube_proxy import (
    KubeProxyError,
    Transport,
    api_endpoint,
    api_request,
    kubernetes_client,
    load_configuration,
    service_transport,
)
from ansible_collections.llmops.ray_vllm.plugins.module_utils._ray_sources import observe_dashboard
from ansible_collections.llmops.ray_vllm.plugins.module_utils._vllm_health import observe

REF_OPTIONS = dict(
    api_version=dict(type="str", default="apps/v1"),
    kind=dict(type="str", default="Deployment"),
    namespace=dict(type="str", required=True),
    name=dict(type="str", required=True),
)
HEAD_OPTIONS = dict(
    dashboard=dict(type="dict", required=True),
    ray_token_secret=dict(type="dict", no_log=False),
    vllm=dict(type="dict", required=True),
    endpoint=dict(type="str"),
    model=dict(type="str", required=True),
    api_key_secret=dict(type="dict", no_log=False),
    prompt=dict(type="str", default="Say hello."),
    max_tokens=dict(type="int", default=16, no_log=False),
)
MODEL_OPTIONS = dict(
    claim=dict(type="str", required=True),
    path=dict(type="str", required=True),
    claim_root=dict(type="str", required=True),
)
ARGUMENT_SPEC = dict(
    action=dict(type="str", choices=["look", "record"], default="look"),
    name=dict(type="str", default="ray-vllm-record"),
    namespace=dict(type="str", required=True),
    namespaces=dict(type="list", elements="str", default=[]),
    digest=dict(type="str", required=True),
    objects=dict(type="list", elements="dict", default=[], options=REF_OPTIONS),
    head=dict(type="dict", options=HEAD_OPTIONS),
    model=dict(type="dict", options=MODEL_OPTIONS),
    kubeconfig=dict(type="path"),
    context=dict(type="str"),
)
# A look answers in seconds or finds a difference: it never waits long for a server that is gone.
LOOK_TIMEOUT = 10


class Cluster:
    """The API server with the module's kubeconfig and context: requests, Secrets' values, transports to Services."""

    def __init__(self, module):
        self.module = module
        params = module.params
        self.where = dict(kubeconfig=params["kubeconfig"], context=params["context"])
        self.api = Transport(**api_endpoint(**self.where))

    def get(self, path, query=None):
        return api_request(self.api, "GET", path, query, timeout=LOOK_TIMEOUT)

    def run_in_pod(self, namespace, pod, container, argv):
        """What ``argv`` printed in the pod's container; empty where exec is refused or fails (no look, as the role's
        own look treats it)."""
        from kubernetes import client
        from kubernetes.stream import stream

        api = client.CoreV1Api(client.ApiClient(load_configuration(**self.where)))
        try:
            return stream(
                api.connect_get_namespaced_pod_exec, pod, namespace, container=container, command=argv,
                stdout=True, stderr=False, stdin=False, tty=False, _request_timeout=LOOK_TIMEOUT,
            )  # fmt: skip
        except Exception:  # the client raises ApiException, WebSocket and connection errors: all mean no look
            return ""

    def secret_value(self, ref):
        """The text under ``key`` of the Secret ``ref``; empty when there is none (the request goes without it)."""
        if not ref:
            return ""
        status, body = self.get("/api/v1/namespaces/%s/secrets/%s" % (ref["namespace"], ref["name"]))
        encoded = ((body or {}).get("data") or {}).get(ref["key"], "") if status == 200 else ""
        return base64.b64decode(encoded).decode("utf-8", errors="replace").strip()

    def service(self, service):
        return service_transport(service, **self.where)

    def head_observer(self, head):
        """A HeadObserver whose sources go through the Services' proxies with the tokens of the Secrets."""
        ray, vllm = self.service(head["dashboard"]), self.service(head["vllm"])
        ray_token, api_key = (
            self.secret_value(head.get("ray_token_secret")),
            self.secret_value(head.get("api_key_secret")),
        )
        module = self.module

        def vllm_source(**asked):
            asked.update(url=vllm.url, api_key=api_key or None, api_key_header="X-API-Key", tls=vllm.tls)
            return observe(
                request_timeout=60, headers=vllm.with_headers({}), validate_certs=vllm.validate_certs, **asked
            )

        return HeadObserver(
            dict(head, dashboard_url=ray.url, vllm_url=vllm.url),
            ray_source=lambda url, _token: observe_dashboard(
                module, url, ray_token or None, timeout=LOOK_TIMEOUT, transport=ray
            ),
            jobs_source=lambda url, token: [],
            vllm_source=vllm_source,
        )

    def record(self, name, namespace):
        """The record's ConfigMap, or None where there is none; raises ClusterStampError where it cannot be read."""
        path = "/api/v1/namespaces/%s/configmaps/%s" % (namespace, name)
        status, body = self.get(path)
        if status == 404:
            return None
        if status != 200:
            raise ClusterStampError(refusal_text(status, path, body, "get on configmaps"))
        return body

    def write_record(self, configmap, existing):
        """Creates the ConfigMap, or merges its data into the one there; raises ClusterStampError where refused."""
        meta = configmap["metadata"]
        path = "/api/v1/namespaces/%s/configmaps" % meta["namespace"]
        if existing is None:
            status, body = api_request(self.api, "POST", path, body=configmap, timeout=LOOK_TIMEOUT)
        else:
            status, body = api_request(
                self.api,
                "PATCH",
                path + "/" + meta["name"],
                body={"metadata": {"labels": meta["labels"]}, "data": configmap["data"]},
                content_type="application/merge-patch+json",
                timeout=LOOK_TIMEOUT,
            )
        if status not in (200, 201):
            raise ClusterStampError("the API server answered %s: %s" % (status, (body or {}).get("message", body)))


def endpoint_result(head):
    vllm = head["vllm"]
    return dict(
        url="Service %s/%s:%s" % (vllm["namespace"], vllm["name"], vllm.get("port") or ""),
        endpoint=head.get("endpoint") or "",
        model=head["model"],
        question=head["prompt"],
    )


def look_result(module, cluster):
    """What differs from the record, and vLLM's answer when nothing does."""
    params = module.params
    stamp = None
    try:
        stamp = parse_stamp((cluster.record(params["name"], params["namespace"]) or {}).get("data"))
        differences, answer = look(
            stamp,
            params["digest"],
            lambda: ClusterObserver(cluster.get, cluster.run_in_pod),
            cluster.head_observer,
            head_differences,
        )
    except (ClusterStampError, KubeProxyError) as error:
        differences, answer = ["the look could not finish: %s" % error], None
    result = dict(changed=False, current=not differences, differences=differences, written=False)
    if answer is not None:
        result["answer"] = answer
    if (stamp or {}).get("head"):
        result["endpoint"] = endpoint_result(stamp["head"])
    return result


def record_result(module, cluster):
    """Writes the record (not in check mode); leaves none where Ray does not answer."""
    params = module.params
    result = dict(changed=False, current=False, differences=[], written=False)
    head = params["head"]
    if head:
        head = {key: value for key, value in head.items() if value is not None}
        head, why_not = recorded_head(head, cluster.head_observer(head))
        if why_not:
            module.warn("No record was left, so the next run goes the full way: %s." % why_not)
            return result
    seen = ClusterObserver(cluster.get).cluster(
        [params["namespace"]] + params["namespaces"], [dict(ref) for ref in params["objects"]]
    )
    stamp = new_stamp(params["digest"], seen, head)
    if params["model"]:
        stamp["model"] = dict(params["model"], namespace=params["namespace"])
    configmap = record_configmap(params["name"], params["namespace"], stamp)
    existing = cluster.record(params["name"], params["namespace"])
    if module.check_mode or (existing or {}).get("data") == configmap["data"]:
        return result
    cluster.write_record(configmap, existing)
    result["written"] = True
    return result


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        kubernetes_client()
    except ImportError:
        module.fail_json(msg=missing_required_lib("kubernetes"), exception=traceback.format_exc())
    try:
        cluster = Cluster(module)
        if module.params["action"] == "look":
            module.exit_json(**look_result(module, cluster))
        module.exit_json(**record_result(module, cluster))
    except (ClusterStampError, KubeProxyError) as error:
        if module.params["action"] == "look":
            module.exit_json(
                changed=False, current=False, written=False, differences=["the look could not finish: %s" % error]
            )
        # The deployment stands either way; only the next run's look has nothing to compare with.
        module.warn(
            "No record was left, so the next run goes the full way: %s. Fix: let the deployer create and patch "
            "ConfigMaps in %s (docs/least-privilege.md)." % (error, module.params["namespace"])
        )
        module.exit_json(changed=False, current=False, written=False, differences=[])


if __name__ == "__main__":
    main()
