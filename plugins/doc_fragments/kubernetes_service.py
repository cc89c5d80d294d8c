# -*- coding: utf-8 -*-
# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # Mirrors KUBERNETES_SERVICE_ARGUMENT_SPEC in plugins/module_utils/_args.py; a unit test keeps the two in step.
    DOCUMENTATION = r"""
options:
  service:
    description:
      - Reach the server through the Kubernetes API server's service proxy,
        C(<api server>/api/v1/namespaces/<namespace>/services/<name>:<port>/proxy), authenticated with the
        credentials of O(kubeconfig) and O(context) (token, client certificate or exec plugin; the cluster's CA).
      - This is how a gate reaches pods from outside the cluster without a port-forward, a NodePort or an Ingress.
      - The API server removes the C(Authorization) header of the request it authenticated before forwarding it.
    type: dict
    suboptions:
      namespace:
        description:
          - Namespace of the Service.
        type: str
        required: true
      name:
        description:
          - Name of the Service.
        type: str
        required: true
      port:
        description:
          - The Service port, by number or by name. Empty uses the Service's only, unnamed port.
        type: str
      scheme:
        description:
          - How the API server speaks to the Service's pods. V(https) proxies through
            C(services/https:<name>:<port>/proxy), for a server that serves TLS itself.
          - The API server does not verify the certificate of the pod it proxies to; it only encrypts the hop. The
            client side (this module to the API server) is verified with the kubeconfig's CA as always.
        type: str
        choices: [http, https]
        default: http
  kubeconfig:
    description:
      - Path of the kubeconfig used with O(service). Default is E(KUBECONFIG) or C(~/.kube/config), then the
        in-cluster service account.
    type: path
  context:
    description:
      - Context of O(kubeconfig) used with O(service). Default is its current context.
    type: str
requirements:
  - kubernetes (Python client) when O(service) is used
"""
