"""Copies of API objects: parsed JSON, so only dicts, lists and immutable scalars."""

from __future__ import annotations


def json_copy(value):
    """A deep copy of a JSON value, about four times faster than copy.deepcopy: the controllers copy every pod's
    status on every tick, which on the 64-node seed kept the server's event loop busy for a third of each second."""
    if isinstance(value, dict):
        return {key: json_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_copy(item) for item in value]
    return value
