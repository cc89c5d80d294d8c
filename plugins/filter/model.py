# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Filters for the model volume on Kubernetes (docs: storage_class_choice.yml, model_download_state.yml,
model_claim_reader.yml, model_look_command.yml, model_look_damage.yml). Their module_utils are imported on first use
(plugin_utils/_lazy_import.py says why)."""

from __future__ import annotations

from ansible_collections.llmops.ray_vllm.plugins.plugin_utils._lazy_import import lazy


class FilterModule:
    def filters(self):
        return {
            "storage_class_choice": lazy("_model_volume", "choose_storage_class"),
            "model_download_state": lazy("_model_volume", "download_state"),
            "model_claim_reader": lazy("_model_volume", "claim_reader"),
            "model_look_command": lazy("_model_volume", "look_command"),
            "model_look_damage": lazy("_model_volume", "seen_damage"),
        }
