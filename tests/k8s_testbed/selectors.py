# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Label and field selectors, parsed the way the API server reads `labelSelector` / `fieldSelector`."""

from __future__ import annotations

import re


class SelectorError(ValueError):
    pass


_SET_RE = re.compile(r"^\s*(!?)\s*([A-Za-z0-9_./-]+)\s*(?:(in|notin)\s*\(([^)]*)\)|(==|=|!=)\s*([^,\s]*))?\s*$")


def _split_terms(text: str) -> list:
    """Split on commas outside parentheses ("a in (x,y),b=c" -> two terms)."""
    terms, depth, current = [], 0, []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append("".join(current))
            current = []
        else:
            current.append(char)
    if current:
        terms.append("".join(current))
    return [term for term in terms if term.strip()]


def parse_label_selector(text: str | None) -> list:
    """A list of (key, operator, values) requirements; operators: =, !=, in, notin, exists, !exists."""
    requirements = []
    for term in _split_terms(text or ""):
        match = _SET_RE.match(term)
        if not match:
            raise SelectorError(f"unable to parse requirement: {term.strip()!r}")
        negated, key, set_op, set_values, eq_op, eq_value = match.groups()
        if set_op:
            requirements.append((key, set_op, {v.strip() for v in set_values.split(",") if v.strip()}))
        elif eq_op:
            requirements.append((key, "!=" if eq_op == "!=" else "=", {eq_value}))
        else:
            requirements.append((key, "!exists" if negated else "exists", set()))
    return requirements


def labels_match(requirements: list, labels: dict | None) -> bool:
    labels = labels or {}
    for key, operator, values in requirements:
        present = key in labels
        value = labels.get(key)
        if operator == "=" and value not in values:
            return False
        if operator == "!=" and present and value in values:
            return False
        if operator == "in" and (not present or value not in values):
            return False
        if operator == "notin" and present and value in values:
            return False
        if operator == "exists" and not present:
            return False
        if operator == "!exists" and present:
            return False
    return True


def parse_field_selector(text: str | None) -> list:
    """A list of (dotted path, operator, value); the server supports =, == and != only."""
    requirements = []
    for term in _split_terms(text or ""):
        match = re.match(r"^\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*$", term)
        if not match:
            raise SelectorError(f"invalid selector: {term.strip()!r}; can't understand '{term.strip()}'")
        path, operator, value = match.groups()
        requirements.append((path, "!=" if operator == "!=" else "=", value))
    return requirements


def field_value(obj: dict, path: str) -> str:
    current = obj
    for part in path.split("."):
        if not isinstance(current, dict):
            return ""
        current = current.get(part)
    if current is None:
        return ""
    if isinstance(current, bool):
        return "true" if current else "false"
    return str(current)


def fields_match(requirements: list, obj: dict) -> bool:
    for path, operator, value in requirements:
        actual = field_value(obj, path)
        if (operator == "=") != (actual == value):
            return False
    return True
