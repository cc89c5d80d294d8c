# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""site.yml's reading of the cluster's look (cluster_stamp): whether the deployment stands, and what to print.
Its module_utils are imported on first use (plugin_utils/_lazy_import.py says why)."""

from __future__ import annotations

from ansible_collections.llmops.ray_vllm.plugins.plugin_utils._lazy_import import lazy


class FilterModule:
    def filters(self):
        # {"standing", "lines"} of the cluster's look.
        return {"cluster_look": lazy("_cluster_stamp", "summarize_look")}
