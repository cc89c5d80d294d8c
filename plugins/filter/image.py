# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The image gate's filters (docs: image_check.yml, image_check_job_state.yml, image_check_key.yml). Their
module_utils are imported on first use (plugin_utils/_lazy_import.py says why)."""

from __future__ import annotations

from ansible_collections.llmops.ray_vllm.plugins.plugin_utils._lazy_import import lazy


def _image_check(logs, ray_version, fix=""):
    return lazy("_image_check", "check_images")(dict(logs), str(ray_version), fix)


class FilterModule:
    def filters(self):
        return {
            "image_check": _image_check,
            "image_check_job_state": lazy("_image_check", "check_job_state"),
            "image_check_key": lazy("_image_check", "images_key"),
        }
