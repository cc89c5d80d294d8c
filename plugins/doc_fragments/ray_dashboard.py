# -*- coding: utf-8 -*-
# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # Mirrors RAY_DASHBOARD_ARGUMENT_SPEC in plugins/module_utils/_args.py; a unit test keeps the two in step.
    DOCUMENTATION = r"""
options:
  dashboard_url:
    description:
      - Base URL of the Ray dashboard, for example V(http://127.0.0.1:8265).
      - Exactly one of O(dashboard_url) and O(service) is required.
    type: str
  token:
    description:
      - Token of a Ray cluster that runs with token authentication (E(RAY_AUTH_MODE=token)), sent as a bearer
        token in C(Authorization), or in C(X-Ray-Authorization) through O(service) (the API server keeps
        C(Authorization) for itself). A 401 means it is missing, a 403 that it is wrong.
    type: str
  validate_certs:
    description: Verify the dashboard's TLS certificate for C(https) URLs.
    type: bool
    default: true
"""
