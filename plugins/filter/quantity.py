# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Filters over Kubernetes quantities (docs: object_store_bytes.yml). Their module_utils are imported on first use
(plugin_utils/_lazy_import.py says why)."""

from __future__ import annotations

from ansible_collections.llmops.ray_vllm.plugins.plugin_utils._lazy_import import lazy


class FilterModule:
    def filters(self):
        return {"object_store_bytes": lazy("_quantity", "object_store_bytes", ["QuantityError"])}
