# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""site.yml's reading of one node's look (deployment_stamp): whether it stands, and what to print. Its module_utils
are imported on first use (plugin_utils/_lazy_import.py says why)."""

from __future__ import annotations

from ansible_collections.llmops.ray_vllm.plugins.plugin_utils._lazy_import import lazy


def deployment_look(look, differing_hosts=None):
    """``{"standing", "lines"}`` of one node's look, given the nodes whose looks differ."""
    return lazy("_deployment_stamp", "summarize_look")(look, differing_hosts or ())


class FilterModule:
    def filters(self):
        return {"deployment_look": deployment_look}
