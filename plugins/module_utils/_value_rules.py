# -*- coding: utf-8 -*-
# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""Value rules beyond an argument spec's types and choices: ranges, ports, paths, URLs, names, versions, quantities.

One rule table per role (``vars/main.yml``, checked by its preflight through ``validate_role_arguments``) or module
(checked in ``main()`` before anything happens). A rule is a name, or a dict with one of the names and its bounds:

- ``port``: a whole number from 1 to 65535;
- ``node_port``: 0 (unset) or a whole number in Kubernetes' default NodePort range, 30000 to 32767;
- ``{int: {min: A, max: B}}``: a whole number in that range (either bound may be left out);
- ``{number: {above: A, min: A, max: B}}``: a number (``above`` excludes its bound);
- ``absolute_path``, ``http_url``, ``host_port`` (``HOST:PORT``), ``version`` (dotted numbers), ``not_empty``;
- ``{dns_label: N}``: a DNS-1123 label of at most N characters (63 by default), as Kubernetes names namespaces;
- ``quantity``: a Kubernetes quantity such as ``64Gi`` or ``500m``;
- ``{min_length: N}``: text of at least N characters.

A value that is None or empty text is not checked (unset; the argument spec says whether that is allowed) except by
``not_empty``. Each problem names the variable, the value seen and what is accepted.
"""

from __future__ import annotations

import re

from ansible_collections.llmops.ray_vllm.plugins.module_utils._quantity import QuantityError, parse_quantity

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
VERSION = re.compile(r"^[0-9]+(\.[0-9]+)*$")
HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+):([0-9]{1,5})$")


class RuleError(ValueError):
    """A rule table that names no known rule: a bug in the collection, not in the user's values."""


def _whole(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    text = str(value).strip()
    return int(text) if re.match(r"^-?[0-9]+$", text) else None


def _number(value):
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _int_problem(value, bounds):
    number = _whole(value)
    low, high = bounds.get("min"), bounds.get("max")
    if number is not None and (low is None or number >= low) and (high is None or number <= high):
        return None
    if low is not None and high is not None:
        return "a whole number from %s to %s" % (low, high)
    if low is not None:
        return "a whole number of at least %s" % low
    return "a whole number of at most %s" % high


def _number_problem(value, bounds):
    number = _number(value)
    above, low, high = bounds.get("above"), bounds.get("min"), bounds.get("max")
    fits = number is not None
    fits = fits and (above is None or number > above) and (low is None or number >= low)
    if fits and (high is None or number <= high):
        return None
    parts = []
    if above is not None:
        parts.append("above %s" % above)
    if low is not None:
        parts.append("at least %s" % low)
    if high is not None:
        parts.append("at most %s" % high)
    return "a number " + " and ".join(parts)


def _quantity_problem(value):
    try:
        parse_quantity(value)
    except QuantityError:
        return "a Kubernetes quantity such as 64Gi, 500Mi, 4 or 500m"
    return None


def _host_port_problem(value):
    match = HOST_PORT.match(str(value))
    if match and 1 <= int(match.group(2)) <= 65535:
        return None
    return "HOST:PORT with a port from 1 to 65535, for example 10.0.0.5:6379"


def _simple_problem(name, value):
    text = str(value)
    if name == "port":
        return _int_problem(value, {"min": 1, "max": 65535})
    if name == "node_port":
        return None if _whole(value) == 0 else _int_problem(value, {"min": 30000, "max": 32767})
    if name == "absolute_path":
        return None if text.startswith("/") else "an absolute path (starting with /)"
    if name == "http_url":
        return None if re.match(r"^https?://[^\s/]+", text) else "an http:// or https:// URL with a host"
    if name == "host_port":
        return _host_port_problem(value)
    if name == "version":
        return None if VERSION.match(text) else "dotted numbers such as 12.4 or 580.65.06"
    if name == "quantity":
        return _quantity_problem(value)
    if name == "dns_label":
        return _dns_label_problem(value, 63)
    raise RuleError("unknown value rule %r" % name)


def _dns_label_problem(value, length):
    text = str(value)
    if DNS_LABEL.match(text) and len(text) <= length:
        return None
    return (
        "a DNS-1123 label: lower-case letters, digits and '-', starting and ending with a letter or digit, "
        "at most %d characters" % length
    )


def _bounded_problem(name, argument, value):
    if name == "int":
        return _int_problem(value, argument)
    if name == "number":
        return _number_problem(value, argument)
    if name == "dns_label":
        return _dns_label_problem(value, int(argument))
    if name == "min_length":
        return None if len(str(value)) >= int(argument) else "text of at least %d characters" % int(argument)
    raise RuleError("unknown value rule %r" % name)


def _unset(value):
    return value is None or (isinstance(value, str) and value.strip() == "")


def expected(rule, value):
    """What ``rule`` accepts, when ``value`` breaks it; None when the value is fine or unset."""
    if rule == "not_empty":
        return "a value that is not empty" if _unset(value) else None
    if _unset(value):
        return None
    if isinstance(rule, dict) and len(rule) == 1:
        ((name, argument),) = rule.items()
        return _bounded_problem(name, argument, value)
    if isinstance(rule, str):
        return _simple_problem(rule, value)
    raise RuleError("a value rule is a name or a dict of one name, not %r" % (rule,))


def value_problems(values, rules):
    """One sentence per value in ``values`` that breaks its rule in ``rules``, in the rules' order.

    ``values`` maps names to values; a name missing from it is unset. A rule may be a list of rules, all applied.
    """
    problems = []
    for name, rule in rules.items():
        value = values.get(name)
        for single in rule if isinstance(rule, list) else [rule]:
            accepted = expected(single, value)
            if accepted:
                problems.append("%s=%s: expected %s" % (name, _shown(value), accepted))
                break
    return problems


def _shown(value):
    if isinstance(value, str):
        return "'%s'" % value
    return str(value)


def fail_on_bad_values(module, rules):
    """Stop a module before it does anything when a parameter breaks its rule, naming each one."""
    problems = value_problems(module.params, rules)
    if problems:
        module.fail_json(
            msg="Bad value(s), nothing was done: %s. Fix the option(s) named." % "; ".join(problems),
            changed=False,
            bad_values=problems,
        )
