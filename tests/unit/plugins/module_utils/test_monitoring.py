# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""What roles/monitoring gives Prometheus on hosts, on Ray 2.60's real service discovery file, and the dashboard's
queries against the metrics a real vLLM 0.32 CPU server exported (tests/fixtures/vllm/metrics-after-chat.txt).
Every query returning data from a live Prometheus is tested in tests/integration/test_site_local.py."""

from __future__ import annotations

import json
import os
import re

import pytest

from ansible_collections.llmops.ray_vllm.plugins.module_utils import _monitoring as monitoring

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "..", "..", "fixtures")
RAY_SD = os.path.join(FIXTURES, "monitoring", "ray-2.60.0-prom-sd", "prom_metrics_service_discovery.json")
VLLM_METRICS = os.path.join(FIXTURES, "vllm", "metrics-after-chat.txt")
DASHBOARD = os.path.join(HERE, "..", "..", "..", "..", "roles", "monitoring", "files", "ray-vllm-dashboard.json")


def read(path):
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def test_ray_groups_keep_every_port_of_rays_file_and_take_the_jobs_name_from_the_scrape_job():
    groups = monitoring.ray_target_groups(read(RAY_SD), {"cluster": "demo"})
    assert groups == [
        {
            "targets": ["192.0.2.2:36707", "192.0.2.2:44217", "192.0.2.2:44227", "192.0.2.2:46155"],
            "labels": {"cluster": "demo", "component": "ray"},
        }
    ]


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "is not JSON"),
        ('{"targets": []}', "expected a list of file_sd target groups"),
        ('[{"targets": ["no-port"]}]', "'no-port' is not a scrape target"),
    ],
)
def test_a_file_that_is_not_rays_target_list_is_refused_by_name(text, message):
    with pytest.raises(monitoring.MonitoringError, match=re.escape(message)) as refused:
        monitoring.ray_target_groups(text, source="/tmp/ray/prom_metrics_service_discovery.json")
    assert "/tmp/ray/prom_metrics_service_discovery.json" in str(refused.value)


def test_vllm_targets_make_one_group_and_none_without_targets():
    assert monitoring.vllm_target_groups(["10.0.0.5:8000", "[::1]:8001"]) == [
        {"targets": ["10.0.0.5:8000", "[::1]:8001"], "labels": {"component": "vllm"}}
    ]
    assert monitoring.vllm_target_groups([]) == []


@pytest.mark.parametrize(
    "targets, labels, message",
    [
        (["http://10.0.0.5:8000"], {}, "monitoring_vllm_targets: 'http://10.0.0.5:8000' is not a scrape target"),
        (["10.0.0.5:70000"], {}, "port from 1 to 65535"),
        ([""], {}, "'' is not a scrape target: expected a value that is not empty"),
        (["10.0.0.5:8000"], {"team-name": "a"}, "monitoring_labels: label 'team-name' is not a Prometheus label"),
        (["10.0.0.5:8000"], {"__address__": "a"}, "label '__address__' is not a Prometheus label"),
        (["10.0.0.5:8000"], {"ok": ["a"]}, "label ok has the value ['a']: expected text"),
    ],
)
def test_a_target_or_label_prometheus_would_refuse_is_named(targets, labels, message):
    with pytest.raises(monitoring.MonitoringError, match=re.escape(message)):
        monitoring.vllm_target_groups(targets, labels)


def test_the_scrape_jobs_read_the_files_the_role_writes():
    jobs = monitoring.scrape_configs("/etc/prometheus/file_sd/", 15, "https")
    assert [(job["job_name"], job["scheme"], job["scrape_interval"]) for job in jobs] == [
        ("ray-vllm-vllm", "https", "15s"),
        ("ray-vllm-ray", "http", "15s"),
    ]
    assert [job["file_sd_configs"][0]["files"] for job in jobs] == [
        ["/etc/prometheus/file_sd/ray-vllm-vllm.json"],
        ["/etc/prometheus/file_sd/ray-vllm-ray.json"],
    ]


def dashboard():
    return json.loads(read(DASHBOARD))


def test_every_panel_of_the_issue_is_on_the_dashboard_with_both_prefixes():
    queries = monitoring.dashboard_queries(dashboard())
    titles = {title for title, _ref, _expr in queries}
    for wanted in (
        "Requests running",
        "Requests waiting",
        "KV cache usage",
        "Time to first token (p50, p90)",
        "Inter-token latency (p50, p90)",
        "End-to-end request latency (p50, p90)",
        "Preemptions per second",
        "Prefix cache hit rate",
        "Prompt tokens per second",
        "Generation tokens per second",
    ):
        exprs = [expr for title, _ref, expr in queries if title == wanted]
        assert any("vllm:" in expr for expr in exprs) and any("ray_vllm_" in expr for expr in exprs), wanted
        assert wanted in titles
    per_replica = [expr for _t, _r, expr in queries if "by (ReplicaId)" in expr]
    assert len(per_replica) >= 6


def test_every_vllm_metric_the_dashboard_queries_is_one_the_pinned_vllm_exports():
    exported = set(re.findall(r"^(vllm:[a-z0-9_]+)", read(VLLM_METRICS), re.M))
    for title, ref, expr in monitoring.dashboard_queries(dashboard()):
        for name in re.findall(r"vllm:[a-z0-9_]+", expr):
            assert name in exported, "panel %r query %s: vLLM 0.32 exports no %s" % (title, ref, name)
        # Ray Serve LLM exports the same engine metrics with ':' made '_' under Ray's 'ray_' prefix.
        for name in re.findall(r"ray_vllm_[a-z0-9_]+", expr):
            assert "vllm:" + name[len("ray_vllm_") :] in exported, "panel %r query %s: no %s" % (title, ref, name)


def test_queries_are_read_from_rows_and_their_collapsed_panels():
    board = {
        "panels": [
            {"type": "row", "title": "r", "panels": [{"title": "inner", "targets": [{"refId": "A", "expr": "up"}]}]},
            {"title": "outer", "targets": [{"refId": "B", "expr": "vllm:x"}, {"refId": "C"}]},
        ]
    }
    assert monitoring.dashboard_queries(board) == [("inner", "A", "up"), ("outer", "B", "vllm:x")]
