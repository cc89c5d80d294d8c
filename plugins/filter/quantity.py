# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Filters over Kubernetes quantities (docs: object_store_bytes.yml)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.llmops.ray_vllm.plugins.module_utils._quantity import QuantityError, object_store_bytes


def _object_store_bytes(shm_size):
    try:
        return object_store_bytes(shm_size)
    except QuantityError as error:
        raise AnsibleFilterError(str(error)) from None


class FilterModule:
    def filters(self):
        return {"object_store_bytes": _object_store_bytes}
