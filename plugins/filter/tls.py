# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Filters that check TLS files before a server is started with them (docs: tls_problems.yml)."""

from __future__ import annotations

from ansible_collections.llmops.ray_vllm.plugins.module_utils._tls_check import certificate_problems


def _tls_problems(cert_pem, key_pem, ca_pem="", cert_name="certificate", key_name="key", ca_name="CA"):
    return certificate_problems(
        cert_pem, key_pem, ca_pem or None, cert_name=cert_name, key_name=key_name, ca_name=ca_name
    )


class FilterModule:
    def filters(self):
        return {"tls_problems": _tls_problems}
