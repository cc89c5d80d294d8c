# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""site.yml's reading of the cluster's look (cluster_stamp): whether the deployment stands, and what to print."""

from __future__ import annotations

from ansible_collections.llmops.ray_vllm.plugins.module_utils._cluster_stamp import summarize_look


def cluster_look(look):
    """``{"standing", "lines"}`` of the cluster's look."""
    return summarize_look(look)


class FilterModule:
    def filters(self):
        return {"cluster_look": cluster_look}
