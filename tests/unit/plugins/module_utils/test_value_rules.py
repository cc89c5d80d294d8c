# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The value rules the roles' preflights and the modules check: what each accepts, and what a refusal says."""

from __future__ import annotations

import pytest

from ansible_collections.llmops.ray_vllm.plugins.module_utils._value_rules import (
    RuleError,
    expected,
    fail_on_bad_values,
    value_problems,
)
from ansible_collections.llmops.ray_vllm.tests.unit.failing_module import FailingModule

ACCEPTED = [
    ("port", 1),
    ("port", "65535"),
    ("node_port", 0),
    ("node_port", 30080),
    ({"int": {"min": 0}}, 0),
    ({"int": {"min": 1, "max": 3}}, "3"),
    ({"number": {"above": 0, "max": 1}}, 0.9),
    ({"number": {"min": 0}}, "0"),
    ("absolute_path", "/opt/models"),
    ("http_url", "https://hub.internal:8443/api"),
    ("host_port", "10.0.0.5:6379"),
    ("host_port", "[fd00::1]:6379"),
    ("host_port", "ray-head.llm.svc:6379"),
    ("version", "580.65.06"),
    ("quantity", "64Gi"),
    ("quantity", "500m"),
    ("dns_label", "llm-prod"),
    ({"dns_label": 48}, "a" * 48),
    ({"min_length": 32}, "x" * 32),
    ("not_empty", "x"),
]

REFUSED = [
    ("port", 0, "a whole number from 1 to 65535"),
    ("port", 70000, "a whole number from 1 to 65535"),
    ("port", True, "a whole number from 1 to 65535"),
    ("node_port", 8080, "a whole number from 30000 to 32767"),
    ({"int": {"min": 1}}, "1.5", "a whole number of at least 1"),
    ({"int": {"max": 3}}, 4, "a whole number of at most 3"),
    ({"number": {"above": 0, "max": 1}}, 0, "a number above 0 and at most 1"),
    ({"number": {"above": 0, "max": 1}}, "lots", "a number above 0 and at most 1"),
    ("absolute_path", "models/x", "an absolute path (starting with /)"),
    ("http_url", "ftp://hub", "an http:// or https:// URL with a host"),
    ("http_url", "hub:8080", "an http:// or https:// URL with a host"),
    ("host_port", "no-port", "HOST:PORT with a port from 1 to 65535"),
    ("host_port", "h:99999", "HOST:PORT with a port from 1 to 65535"),
    ("version", "latest", "dotted numbers such as 12.4 or 580.65.06"),
    ("quantity", "lots", "a Kubernetes quantity such as 64Gi, 500Mi, 4 or 500m"),
    ("dns_label", "LLM_Prod", "a DNS-1123 label"),
    ("dns_label", "-llm", "a DNS-1123 label"),
    ({"dns_label": 10}, "a" * 11, "at most 10 characters"),
    ({"min_length": 32}, "short", "text of at least 32 characters"),
    ("not_empty", "", "a value that is not empty"),
    ("not_empty", None, "a value that is not empty"),
]


@pytest.mark.parametrize(("rule", "value"), ACCEPTED)
def test_a_value_that_fits_its_rule_passes(rule, value):
    assert expected(rule, value) is None


@pytest.mark.parametrize(("rule", "value", "accepted"), REFUSED)
def test_a_value_that_breaks_its_rule_says_what_is_accepted(rule, value, accepted):
    assert accepted in expected(rule, value)


@pytest.mark.parametrize("rule", ["port", "absolute_path", {"int": {"min": 1}}, "dns_label"])
def test_unset_values_pass_every_rule_but_not_empty(rule):
    assert expected(rule, None) is None and expected(rule, "") is None


def test_problems_name_the_variable_and_the_value_in_the_rules_order_one_per_variable():
    rules = {"b_port": "port", "a_path": ["not_empty", "absolute_path"], "c": {"int": {"min": 1}}}
    problems = value_problems({"b_port": 0, "a_path": "rel", "c": 2}, rules)
    assert problems == [
        "b_port=0: expected a whole number from 1 to 65535",
        "a_path='rel': expected an absolute path (starting with /)",
    ]
    # A list stops at the first rule broken, so an empty path is not also called relative.
    assert value_problems({"a_path": ""}, {"a_path": ["not_empty", "absolute_path"]}) == [
        "a_path='': expected a value that is not empty"
    ]


def test_a_rule_table_naming_an_unknown_rule_is_a_bug_not_a_user_error():
    with pytest.raises(RuleError, match="unknown value rule 'prot'"):
        value_problems({"x": 1}, {"x": "prot"})


def test_a_module_stops_before_doing_anything_naming_every_bad_option():
    module = FailingModule({"port": 70000, "temp_dir": "tmp", "num_cpus": 2})
    with pytest.raises(SystemExit):
        fail_on_bad_values(module, {"port": "port", "temp_dir": "absolute_path", "num_cpus": {"int": {"min": 0}}})
    assert module.failed["changed"] is False
    assert module.failed["bad_values"] == [
        "port=70000: expected a whole number from 1 to 65535",
        "temp_dir='tmp': expected an absolute path (starting with /)",
    ]
    assert module.failed["msg"].startswith("Bad value(s), nothing was done: port=70000")


def test_a_module_with_good_values_goes_on():
    module = FailingModule({"port": 6379})
    fail_on_bad_values(module, {"port": "port"})
    assert module.failed is None
