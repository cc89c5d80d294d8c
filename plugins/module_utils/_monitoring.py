# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""What Prometheus is given on platform hosts (file_sd target groups and the scrape configuration that reads them),
and the queries of the collection's Grafana dashboard (roles/monitoring).

Ray writes its own file_sd file on the head (``prom_metrics_service_discovery.json`` in the head's temp dir: every
node's metrics export port, and the head's autoscaler and dashboard metrics ports); its target groups are copied
with the collection's labels added, so Prometheus may run on another host.
"""

from __future__ import annotations

import json
import re

from ansible_collections.llmops.ray_vllm.plugins.module_utils._value_rules import expected

# A file_sd label name (Prometheus: [a-zA-Z_][a-zA-Z0-9_]*; names starting with __ are reserved).
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# The scrape jobs of the written configuration, and the target file each reads.
VLLM_JOB = "ray-vllm-vllm"
RAY_JOB = "ray-vllm-ray"


class MonitoringError(ValueError):
    """A target, label or file that Prometheus would refuse or misread."""


def _checked_labels(labels, variable):
    for name, value in (labels or {}).items():
        if not LABEL_NAME.match(str(name)) or str(name).startswith("__"):
            raise MonitoringError(
                "%s: label %r is not a Prometheus label name: expected letters, digits and '_', not starting with a "
                "digit or '__'. Rename it." % (variable, name)
            )
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise MonitoringError("%s: label %s has the value %r: expected text. Quote it." % (variable, name, value))
    return {str(name): str(value) for name, value in (labels or {}).items()}


def _checked_target(target, variable):
    """``target`` as text; MonitoringError when it is not HOST:PORT (the value rule host_port, which passes empty)."""
    problem = expected("not_empty", target) or expected("host_port", target)
    if problem:
        raise MonitoringError("%s: %r is not a scrape target: expected %s" % (variable, target, problem))
    return str(target)


def vllm_target_groups(targets, labels=None):
    """file_sd groups for the vLLM servers (``host:port``, scraped at /metrics): one group, or none without targets."""
    checked = [_checked_target(target, "monitoring_vllm_targets") for target in targets or []]
    if not checked:
        return []
    return [{"targets": checked, "labels": dict(_checked_labels(labels, "monitoring_labels"), component="vllm")}]


def ray_target_groups(ray_sd_text, labels=None, source="Ray's service discovery file"):
    """file_sd groups for the Ray nodes, from the text of Ray's own file_sd file, with ``labels`` added.

    Ray's ``job`` label is dropped: the scrape job names the targets. Raises MonitoringError when the text is not a
    file_sd list of groups.
    """
    try:
        groups = json.loads(ray_sd_text)
    except ValueError as error:
        raise MonitoringError(
            "%s is not JSON (%s): the Ray head's dashboard writes it; is it running?" % (source, error)
        ) from None
    if not isinstance(groups, list) or not all(isinstance(group, dict) for group in groups):
        raise MonitoringError("%s: expected a list of file_sd target groups, seen %.200s" % (source, ray_sd_text))
    extra = dict(_checked_labels(labels, "monitoring_labels"), component="ray")
    result = []
    for group in groups:
        targets = [_checked_target(target, source) for target in group.get("targets") or []]
        if targets:
            own = {name: value for name, value in (group.get("labels") or {}).items() if name != "job"}
            result.append({"targets": sorted(targets), "labels": dict(own, **extra)})
    return result


def scrape_configs(file_sd_dir, interval_s, vllm_scheme="http"):
    """The ``scrape_configs`` entries that read the target files: one job for vLLM, one for Ray."""
    folder = file_sd_dir.rstrip("/")
    interval = "%ds" % int(interval_s)

    def job(name, scheme):
        return {
            "job_name": name,
            "scrape_interval": interval,
            "metrics_path": "/metrics",
            "scheme": scheme,
            "file_sd_configs": [{"files": ["%s/%s.json" % (folder, name)]}],
        }

    return [job(VLLM_JOB, vllm_scheme), job(RAY_JOB, "http")]


def dashboard_queries(dashboard):
    """``[(panel title, refId, expr)]`` of every query of a Grafana dashboard, rows' collapsed panels included."""
    queries = []
    for panel in _panels(dashboard.get("panels") or []):
        for target in panel.get("targets") or []:
            if target.get("expr"):
                queries.append((panel.get("title", ""), target.get("refId", ""), target["expr"]))
    return queries


def _panels(panels):
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels") or [])
