"""Loading the collection's filter files imports none of its module_utils (ansible-core loads every filter file of a
collection in each task's worker to find any one filter: plugins/plugin_utils/_lazy_import.py), and every filter
still reaches its function and its errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.llmops.ray_vllm.plugins.filter.quantity import FilterModule as QuantityFilters
from ansible_collections.llmops.ray_vllm.plugins.module_utils._quantity import object_store_bytes
from ansible_collections.llmops.ray_vllm.plugins.plugin_utils._lazy_import import lazy

COLLECTION = "ansible_collections.llmops.ray_vllm"
FILTER_DIR = Path(__file__).resolve().parents[4] / "plugins" / "filter"
FILTER_FILES = sorted(path.stem for path in FILTER_DIR.glob("*.py"))

# A fresh interpreter loads every filter file, lists every filter, and reports which module_utils got imported.
LOAD_ALL = """
import importlib, json, sys
names = {}
for stem in json.loads(sys.argv[1]):
    module = importlib.import_module("%(collection)s.plugins.filter." + stem)
    names[stem] = sorted(module.FilterModule().filters())
loaded = sorted(name for name in sys.modules if name.startswith("%(collection)s.plugins.module_utils._"))
print(json.dumps({"filters": names, "module_utils": loaded}))
""" % {"collection": COLLECTION}


@pytest.fixture(scope="module")
def loaded_once():
    answer = subprocess.run(
        [sys.executable, "-c", LOAD_ALL, json.dumps(FILTER_FILES)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[4],
        env={"PYTHONPATH": ":".join(sys.path)},
    )
    return json.loads(answer.stdout)


def test_loading_every_filter_file_imports_no_module_utils(loaded_once):
    assert len(loaded_once["filters"]) == len(FILTER_FILES) >= 14
    assert loaded_once["module_utils"] == []


def test_every_filter_has_its_documentation(loaded_once):
    names = {name for filters in loaded_once["filters"].values() for name in filters}
    documented = {path.stem for path in FILTER_DIR.glob("*.yml")}
    assert names == documented


def test_a_filter_runs_its_module_utils_function_and_says_its_error_as_a_filter_error():
    assert QuantityFilters().filters()["object_store_bytes"]("2Gi") == object_store_bytes("2Gi")
    with pytest.raises(AnsibleFilterError, match="not-a-size"):
        QuantityFilters().filters()["object_store_bytes"]("not-a-size")


def test_an_error_not_named_is_not_turned_into_a_filter_error():
    with pytest.raises(TypeError):
        lazy("_quantity", "object_store_bytes")()
