# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Filters for the model volume on Kubernetes (docs: storage_class_choice.yml, model_download_state.yml,
model_claim_reader.yml, model_look_command.yml, model_look_damage.yml)."""

from __future__ import annotations

from ansible_collections.llmops.ray_vllm.plugins.module_utils._model_volume import (
    choose_storage_class,
    claim_reader,
    download_state,
    look_command,
    seen_damage,
)


class FilterModule:
    def filters(self):
        return {
            "storage_class_choice": choose_storage_class,
            "model_download_state": download_state,
            "model_claim_reader": claim_reader,
            "model_look_command": look_command,
            "model_look_damage": seen_damage,
        }
