# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The least-privilege manifests for an inventory's namespaces and subject (docs: one .yml per filter). Their
module_utils are imported on first use (plugin_utils/_lazy_import.py says why)."""

from __future__ import annotations

from ansible_collections.llmops.ray_vllm.plugins.plugin_utils._lazy_import import lazy


class FilterModule:
    def filters(self):
        return {"rbac_manifests": lazy("_rbac_manifests", "rbac_manifests")}
