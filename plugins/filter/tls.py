# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Filters that check TLS files before a server is started with them (docs: tls_problems.yml). Their module_utils
(cryptography) are imported on first use (plugin_utils/_lazy_import.py says why)."""

from __future__ import annotations

from ansible_collections.llmops.ray_vllm.plugins.plugin_utils._lazy_import import lazy


def _tls_problems(cert_pem, key_pem, ca_pem="", cert_name="certificate", key_name="key", ca_name="CA"):
    return lazy("_tls_check", "certificate_problems")(
        cert_pem, key_pem, ca_pem or None, cert_name=cert_name, key_name=key_name, ca_name=ca_name
    )


class FilterModule:
    def filters(self):
        return {"tls_problems": _tls_problems}
