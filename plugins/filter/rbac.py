# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The least-privilege manifests for an inventory's namespaces and subject (docs: one .yml per filter)."""

from __future__ import annotations

from ansible_collections.llmops.ray_vllm.plugins.module_utils._rbac_manifests import rbac_manifests


class FilterModule:
    def filters(self):
        return {"rbac_manifests": rbac_manifests}
