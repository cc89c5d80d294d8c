# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Filters that build what Prometheus reads on platform hosts (docs: monitoring_*.yml). Their module_utils are
imported on first use (plugin_utils/_lazy_import.py says why)."""

from __future__ import annotations

from ansible_collections.llmops.ray_vllm.plugins.plugin_utils._lazy_import import lazy


def _vllm_targets(targets, labels=None):
    return lazy("_monitoring", "vllm_target_groups", ["MonitoringError"])(targets, labels)


def _ray_targets(ray_sd_text, labels=None, source="Ray's service discovery file"):
    return lazy("_monitoring", "ray_target_groups", ["MonitoringError"])(ray_sd_text, labels, source)


def _scrape_configs(file_sd_dir, interval_s, vllm_scheme="http"):
    return lazy("_monitoring", "scrape_configs")(file_sd_dir, interval_s, vllm_scheme)


class FilterModule:
    def filters(self):
        return {
            "monitoring_vllm_targets": _vllm_targets,
            "monitoring_ray_targets": _ray_targets,
            "monitoring_scrape_configs": _scrape_configs,
        }
