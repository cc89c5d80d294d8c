# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""RFC 3339 timestamps as the API server and the kubelet write them, and reading them back."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone


def now_rfc3339() -> str:
    """Whole seconds, as metav1.Time is written (creationTimestamp, conditions, events, managedFields)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_after(seconds: float) -> str:
    """Whole seconds, ``seconds`` from now (a pod's deletionTimestamp: when its grace period ends)."""
    return (datetime.now(timezone.utc) + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_nano(moment: datetime | None = None) -> str:
    """Microseconds, for the stamps of pod log lines (``kubectl logs --timestamps``)."""
    moment = moment or datetime.now(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(text: str) -> datetime:
    """An RFC 3339 (nano) timestamp as an aware datetime (fractions beyond microseconds are dropped)."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    match = re.match(r"^(.*?T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(.*)$", value)
    if match:
        fraction = (match.group(2) or "")[:6]
        value = match.group(1) + ("." + fraction.ljust(6, "0") if fraction else "") + match.group(3)
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


def epoch_seconds(text: str | None) -> float:
    """Seconds since the epoch of a timestamp; 0.0 for a missing or unreadable one (so it counts as long ago)."""
    if not text:
        return 0.0
    try:
        return parse_timestamp(text).timestamp()
    except ValueError:
        return 0.0
