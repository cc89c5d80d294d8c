# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Filters that build what Prometheus reads on platform hosts (docs: monitoring_*.yml)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.llmops.ray_vllm.plugins.module_utils._monitoring import (
    MonitoringError,
    ray_target_groups,
    scrape_configs,
    vllm_target_groups,
)


def _vllm_targets(targets, labels=None):
    try:
        return vllm_target_groups(targets, labels)
    except MonitoringError as error:
        raise AnsibleFilterError(str(error)) from None


def _ray_targets(ray_sd_text, labels=None, source="Ray's service discovery file"):
    try:
        return ray_target_groups(ray_sd_text, labels, source)
    except MonitoringError as error:
        raise AnsibleFilterError(str(error)) from None


def _scrape_configs(file_sd_dir, interval_s, vllm_scheme="http"):
    return scrape_configs(file_sd_dir, interval_s, vllm_scheme)


class FilterModule:
    def filters(self):
        return {
            "monitoring_vllm_targets": _vllm_targets,
            "monitoring_ray_targets": _ray_targets,
            "monitoring_scrape_configs": _scrape_configs,
        }
