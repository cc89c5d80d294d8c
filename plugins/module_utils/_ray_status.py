# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""Parse ``ray status`` text and dashboard JSON, judge them against expectations, and explain failures.

Pure functions only: no I/O here, so every function is unit-tested on recorded real outputs.

Layouts handled (Ray 2.4 to 2.60): ``Healthy:`` (old) or ``Active:``/``Idle:`` node lists; ``Usage:``
(plain) or ``Total Usage:`` (verbose, and every layout since the v2 report); ``Demands:``/``Total Demands:``/
``Pending Demands:``; ``Total Constraints:``/``From request_resources:``; the placement-group suffix
``(1.0 used of 1.0 reserved in placement groups)``; memory printed with B..TiB; the per-node blocks of
``ray status -v``; ``No cluster status.``; and log lines printed before the status header.
"""

from __future__ import annotations

import ast
import re

STATUS_HEADER_RE = re.compile(r"^=+ Autoscaler status: (?P<time>.*?) =+\s*$")
NO_STATUS_TEXT = "No cluster status"

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_UNIT = r"(?:B|KiB|MiB|GiB|TiB|PiB)"
_QUANTITY = rf"{_NUMBER}(?:\s?{_UNIT})?"
USAGE_LINE_RE = re.compile(
    rf"^(?P<used>{_QUANTITY})/(?P<total>{_QUANTITY})\s+(?P<name>\S+)"
    rf"(?:\s+\((?P<pg_used>{_QUANTITY}) used of (?P<pg_reserved>{_QUANTITY}) reserved in placement groups\))?\s*$"
)
QUANTITY_RE = re.compile(rf"^(?P<number>{_NUMBER})\s?(?P<unit>{_UNIT})?$")
UNIT_BYTES = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40, "PiB": 2**50}
NODE_COUNT_RE = re.compile(r"^(?P<count>\d+)\s+(?P<type>\S.*)$")
PENDING_LAUNCH_RE = re.compile(r"^(?P<type>.+), (?P<count>\d+) launching$")
FAILURE_RE = re.compile(r"^(?P<type>[^:]+): (?P<reason>\w+)(?: \((?P<detail>[^)]*)\))?(?: - (?P<description>.*))?$")
# "Node: <id> (<type>)"; the autoscaler v2 prints "Node: <instance id> (<type>)" with an empty instance id on
# manual clusters, then the Ray node ID on its own " Id: <id>" line.
NODE_BLOCK_RE = re.compile(r"^Node: (?P<id>\S*)\s*(?:\((?P<type>[^)]*)\))?\s*$")
NODE_ID_RE = re.compile(r"^Id: (?P<id>\S+)$")
IDLE_RE = re.compile(r"^Idle: (?P<ms>\d+) ms$")
DEMAND_SHAPE_RE = re.compile(
    r"^(?P<shape>\{[^}]*\}(?: \* \d+)?(?:, \{[^}]*\}(?: \* \d+)?)*)(?: \((?P<strategy>[A-Z_]+)\))?: "
)

# "[2026-11-28 10:49:23,418 W 25493 25493] rpc_client.h:153: " before the C++ core's log lines.
GLOG_PREFIX_RE = re.compile(r"^\[[^\]]*\] [\w./-]+:\d+: ")

# Reading again cannot fix these: the wait stops at once.
TERMINAL_SOURCE_ERRORS = ("ray_missing", "version_mismatch", "auth", "http_unauthorized")

# Section titles, at column 0, mapped to where their indented lines go.
SECTIONS = {
    "Healthy:": "active",
    "Active:": "active",
    "Idle:": "idle",
    "Pending:": "pending",
    "Recent failures:": "failures",
    "Usage:": "usage",
    "Total Usage:": "usage",
    "Demands:": "demands",
    "Total Demands:": "demands",
    "Pending Demands:": "demands",
    "Total Constraints:": "constraints",
    "From request_resources:": "constraints",
}
IGNORED_LINES = (
    "Node status",
    "Resources",
    "GCS request time:",
    "Node Provider non_terminated_nodes time:",
    "Autoscaler iteration time:",
)

# Ray names it prints in bytes.
MEMORY_RESOURCES = ("memory", "object_store_memory")

CONNECTION_ERROR_MARKERS = (
    "Ray cluster is not found",
    "Could not find any running Ray instance",
    "Failed to connect to GCS",
    "Failed to connect",
    "Connection refused",
    "failed to connect to all addresses",
    "StatusCode.UNAVAILABLE",
    "DEADLINE_EXCEEDED",
    "Name or service not known",
    "Temporary failure in name resolution",
    "No route to host",
    "ConnectionError",
    "timed out",
    "Timed out",
)
# Sentences Ray itself prints on a failed connection, the best one-line summary of it.
RAY_OWN_ERROR_PHRASES = (
    "Ray cluster is not found",
    "Could not find any running Ray instance",
    "Failed to connect to GCS",
    "Version mismatch",
    "version mismatch",
)
AUTH_ERROR_MARKERS = ("Authentication", "authentication token", "UNAUTHENTICATED", "Unauthorized")
VERSION_MISMATCH_MARKERS = ("Version mismatch", "version mismatch")


def _is_empty_marker(item):
    # "(no pending nodes)", "(no failures)", "(no resource demands)", "(none)", "(no idle nodes)" ...
    return item.startswith("(") and item.endswith(")") and (item.startswith("(no ") or item == "(none)")


def parse_quantity(text):
    """``"20.06GiB"`` -> 21539978608.64 (bytes), ``"1.0"`` -> 1.0, ``"0B"`` -> 0.0."""
    match = QUANTITY_RE.match(text.strip())
    if not match:
        raise ValueError(f"not a Ray quantity: {text!r}")
    return float(match.group("number")) * UNIT_BYTES.get(match.group("unit") or "B", 1)


def parse_usage_line(line):
    """``"0.0/2.0 CPU (0.0 used of 1.0 reserved in placement groups)"`` -> ``("CPU", {...})`` or None."""
    match = USAGE_LINE_RE.match(line.strip())
    if not match:
        return None
    name = match.group("name")
    # Ray prints memory with 2 decimals of its unit: whole bytes are as exact as it gets.
    value = (lambda text: float(round(parse_quantity(text)))) if name in MEMORY_RESOURCES else parse_quantity
    entry = dict(used=value(match.group("used")), total=value(match.group("total")))
    if match.group("pg_reserved") is not None:
        entry["placement_group_used"] = value(match.group("pg_used"))
        entry["placement_group_reserved"] = value(match.group("pg_reserved"))
    return name, entry


def parse_demand(line):
    """``"{'GPU': 1.0} * 2 (PACK): 1+ pending placement groups"`` -> bundles, count, kind; None if unknown."""
    match = DEMAND_SHAPE_RE.match(line)
    if not match:
        return None
    bundles = []
    for part in re.finditer(r"(\{[^}]*\})(?: \* (\d+))?", match.group("shape")):
        try:
            bundle = ast.literal_eval(part.group(1))
        except (ValueError, SyntaxError):
            return None
        if not isinstance(bundle, dict):
            return None
        bundles.append(dict(resources=bundle, count=int(part.group(2) or 1)))
    rest = line[match.end() :]
    count_match = re.match(r"(\d+)\+?", rest)
    if "placement group" in rest:
        kind = "placement_group"
    elif "request_resources" in rest:
        kind = "request_resources"
    else:
        kind = "task_or_actor"
    return dict(
        bundles=bundles,
        strategy=match.group("strategy"),
        count=int(count_match.group(1)) if count_match else 1,
        kind=kind,
    )


def demanded_resources(demand):
    """Sum of the resources one parsed demand asks for, e.g. ``{'GPU': 2.0}`` for ``{'GPU': 1.0} * 2``."""
    totals = {}
    for bundle in demand["bundles"]:
        for name, amount in bundle["resources"].items():
            totals[name] = totals.get(name, 0.0) + float(amount) * bundle["count"]
    return totals


def _empty_status():
    return dict(
        status_found=False,
        status_time=None,
        message=None,
        nodes=dict(active=0, idle=0, pending=0, failed=0, alive=0),
        node_types={},
        pending_nodes=[],
        failures=[],
        resources={},
        demands=[],
        demand_details=[],
        constraints=[],
        node_details=[],
        extra_lines=[],
    )


def parse_status_text(text):
    """Parse the text ``ray status [-v]`` prints (also the dashboard's ``clusterStatus``).

    Lines before the last ``Autoscaler status`` header (kubectl/ray.init log lines) are ignored.
    Returns a dict; ``status_found`` is False when there is no status block, with ``message`` holding
    the text Ray printed instead (``No cluster status...``, an error) when there is one.
    """
    parsed = _empty_status()
    lines = (text or "").splitlines()
    start = None
    for index, line in enumerate(lines):
        if STATUS_HEADER_RE.match(line.strip()):
            start = index
    if start is None:
        for line in lines:
            if line.strip().startswith(NO_STATUS_TEXT):
                parsed["message"] = line.strip()
                break
        return parsed

    parsed["status_found"] = True
    parsed["status_time"] = STATUS_HEADER_RE.match(lines[start].strip()).group("time")
    section = None
    node = None  # the verbose per-node block being read
    node_section = None
    for raw_line in lines[start + 1 :]:
        if not raw_line.strip() or set(raw_line.strip()) == {"-"}:
            continue
        if not raw_line.startswith(" "):
            line = raw_line.strip()
            node_match = NODE_BLOCK_RE.match(line)
            if node_match:
                node = dict(
                    node_id=node_match.group("id"),
                    node_type=node_match.group("type"),
                    idle_ms=None,
                    resources={},
                    activity=[],
                )
                parsed["node_details"].append(node)
                section, node_section = None, None
            elif line in SECTIONS:
                section, node = SECTIONS[line], None
            elif not line.startswith(IGNORED_LINES):
                # Text Ray appends after the report (the autoscaler's last error) or a later log line.
                section, node = None, None
                parsed["extra_lines"].append(line)
            continue
        item = raw_line.strip()
        if node is not None:
            _read_node_block_line(node, raw_line, item, node_section)
            if raw_line.startswith("  "):
                continue
            node_section = "usage" if item == "Usage:" else "activity" if item == "Activity:" else node_section
            continue
        if section is None or _is_empty_marker(item):
            continue
        _read_section_line(parsed, section, item)

    nodes = parsed["nodes"]
    nodes["alive"] = nodes["active"] + nodes["idle"]
    nodes["failed"] = len(parsed["failures"])
    for node in parsed["node_details"]:
        if not node["node_id"] and (node["node_type"] or "").startswith("node_"):
            node["node_id"] = node["node_type"][len("node_") :]
    return parsed


def _read_node_block_line(node, raw_line, item, node_section):
    if not raw_line.startswith("  "):
        idle = IDLE_RE.match(item)
        if idle:
            node["idle_ms"] = int(idle.group("ms"))
        node_id = NODE_ID_RE.match(item)
        if node_id:
            node["node_id"] = node_id.group("id")
        return
    if node_section == "usage":
        usage = parse_usage_line(item)
        if usage:
            node["resources"][usage[0]] = usage[1]
    elif node_section == "activity" and not _is_empty_marker(item):
        node["activity"].append(item)


def _read_section_line(parsed, section, item):
    nodes = parsed["nodes"]
    if section in ("active", "idle"):
        match = NODE_COUNT_RE.match(item)
        count, node_type = (int(match.group("count")), match.group("type")) if match else (1, item)
        nodes[section] += count
        types = parsed["node_types"].setdefault(node_type, dict(active=0, idle=0))
        types[section] += count
    elif section == "pending":
        parsed["pending_nodes"].append(item)
        launching = PENDING_LAUNCH_RE.match(item)
        nodes["pending"] += int(launching.group("count")) if launching else 1
    elif section == "failures":
        parsed["failures"].append(item)
    elif section == "usage":
        usage = parse_usage_line(item)
        if usage:
            parsed["resources"][usage[0]] = usage[1]
        else:
            parsed["extra_lines"].append(item)
    elif section == "demands":
        parsed["demands"].append(item)
        detail = parse_demand(item)
        if detail:
            parsed["demand_details"].append(detail)
    elif section == "constraints":
        parsed["constraints"].append(item)


def parse_failure(line):
    """``"node_ab12: NodeTerminated (ip: 10.0.0.2)"`` -> dict(node_type, reason, detail, description)."""
    match = FAILURE_RE.match(line)
    if not match:
        return dict(node_type=None, reason=None, detail=None, description=line)
    return dict(
        node_type=match.group("type"),
        reason=match.group("reason"),
        detail=match.group("detail"),
        description=match.group("description"),
    )


# Dashboard JSON --------------------------------------------------------------------------------------------


class DashboardAnswerError(ValueError):
    """The dashboard answered, but not with what a Ray dashboard sends."""


def _checked_answer(answer, what):
    if not isinstance(answer, dict) or "result" not in answer:
        raise DashboardAnswerError(f"not a Ray {what} answer (no 'result' key)")
    if not answer.get("result"):
        raise DashboardAnswerError(f"the {what} answered result=false: {answer.get('msg') or '(no message)'}")
    return answer.get("data") or {}


def cluster_status_text_from_json(answer):
    """The ``ray status`` text inside ``GET /api/cluster_status?format=1``'s answer.

    The answer is ``{"result": true, "msg": ..., "data": {"clusterStatus": "<text>"}}``; ``result: false``
    carries the dashboard's own error in ``msg``. Without ``format=1``, ``clusterStatus`` is a dict instead.
    """
    status = _checked_answer(answer, "dashboard").get("clusterStatus")
    if not isinstance(status, str):
        raise DashboardAnswerError("the dashboard answer has no text data.clusterStatus (was format=1 ignored?)")
    return status


def nodes_from_state_api(answer):
    """Rows of ``GET /api/v0/nodes`` as dicts with the keys this collection returns.

    Ray nests them as ``data.result.result`` (a list); each row has ``node_id``, ``state`` (ALIVE/DEAD),
    ``node_ip``, ``resources_total`` and, with ``detail=1`` since Ray 2.9, ``is_head_node``, ``labels`` and
    ``state_message``.
    """
    data = _checked_answer(answer, "state API")
    try:
        rows = data["result"]["result"]
    except (KeyError, TypeError):
        raise DashboardAnswerError("the state API answer has no data.result.result list") from None
    return [
        dict(
            node_id=row.get("node_id"),
            state=row.get("state"),
            node_ip=row.get("node_ip"),
            node_name=row.get("node_name"),
            is_head_node=row.get("is_head_node"),
            resources_total=dict(row.get("resources_total") or {}),
            labels=dict(row.get("labels") or {}),
            state_message=row.get("state_message"),
            start_time_ms=row.get("start_time_ms"),
            end_time_ms=row.get("end_time_ms"),
        )
        for row in rows
    ]


def merge_node_details(text_nodes, api_nodes):
    """Per-node facts: the verbose text's usage joined by node ID with the state API's rows.

    Each result has ``node_id``, ``state`` (ALIVE/DEAD, or ALIVE for nodes only the live text lists),
    ``node_ip``, ``is_head_node``, ``node_type``, ``idle_ms``, ``resources`` (``used``/``total`` from the
    text, else ``total`` only from the API), ``labels`` and ``state_message``.
    """
    merged = []
    by_id = {}
    for text_node in text_nodes or []:
        entry = dict(
            node_id=text_node["node_id"],
            state="ALIVE",
            node_ip=None,
            is_head_node=None,
            node_type=text_node.get("node_type"),
            idle_ms=text_node.get("idle_ms"),
            resources={name: dict(value) for name, value in text_node["resources"].items()},
            labels={},
            state_message=None,
        )
        by_id[entry["node_id"]] = entry
        merged.append(entry)
    for api_node in api_nodes or []:
        entry = by_id.get(api_node["node_id"])
        if entry is None:
            entry = dict(node_id=api_node["node_id"], node_type=None, idle_ms=None, resources={})
            merged.append(entry)
            by_id[entry["node_id"]] = entry
        entry["state"] = api_node["state"]
        entry["node_ip"] = api_node["node_ip"]
        entry["is_head_node"] = api_node["is_head_node"]
        entry["labels"] = api_node["labels"]
        entry["state_message"] = api_node["state_message"]
        for name, total in api_node["resources_total"].items():
            if name.startswith("node:"):
                continue  # Ray's per-node bookkeeping resource, not a capacity.
            entry["resources"].setdefault(name, dict(used=None, total=float(total)))
    return merged


def count_registered_nodes(observation, api_nodes):
    """Count the ALIVE nodes of the state API (``api_nodes``) that the status text does not list yet.

    The text is the autoscaler's report, which lists a node a second or two after ``ray start --address`` returned
    (measured with Ray 2.60: 1.1 to 2 s on 2 cores), while the GCS, which the state API reads, lists the node with
    its resources as soon as it registered. Each such node counts as alive and idle, and the resources of the ALIVE
    rows raise the totals that the text has lower. Nothing is lowered: a node that is gone stays the text's and the
    node tracker's to report. ``observation`` is changed in place and returned.
    """
    alive = [node for node in api_nodes if node["state"] == "ALIVE"]
    nodes = observation["nodes"]
    if not observation["status_found"] or len(alive) <= nodes["alive"]:
        return observation
    nodes["idle"] += len(alive) - nodes["alive"]
    nodes["alive"] = len(alive)
    totals = {}
    for node in alive:
        for name, total in node["resources_total"].items():
            if not name.startswith("node:"):
                totals[name] = totals.get(name, 0.0) + float(total)
    for name, total in totals.items():
        entry = observation["resources"].setdefault(name, dict(used=0.0, total=0.0))
        entry["total"] = max(entry["total"], total)
    return observation


# Gate --------------------------------------------------------------------------------------------------


def _resource_total(observation, name):
    entry = observation["resources"].get(name)
    return entry["total"] if entry else 0.0


def _fmt_number(value):
    return f"{value:.0f}" if float(value).is_integer() else f"{value:g}"


def describe_expectations(expected_nodes=None, expected_gpus=None, expected_cpus=None):
    parts = []
    if expected_nodes is not None:
        parts.append(f">= {expected_nodes} alive node(s)")
    if expected_gpus is not None:
        parts.append(f">= {_fmt_number(expected_gpus)} GPU(s)")
    if expected_cpus is not None:
        parts.append(f">= {_fmt_number(expected_cpus)} CPU(s)")
    return ", ".join(parts) if parts else "a readable cluster status"


def describe_observation(observation):
    """One line of what was seen: nodes, GPUs, CPUs, pending nodes, failures, demands."""
    if observation.get("source_error"):
        return "no status ({})".format(observation["source_error"]["kind"].replace("_", " "))
    if not observation["status_found"]:
        return "no status ({})".format(observation.get("message") or "no status block in the output")
    nodes = observation["nodes"]
    parts = [f"{nodes['alive']} alive node(s) ({nodes['active']} active, {nodes['idle']} idle)"]
    for name in ("GPU", "CPU"):
        entry = observation["resources"].get(name)
        if entry:
            parts.append(f"{_fmt_number(entry['used'])}/{_fmt_number(entry['total'])} {name} used")
        else:
            parts.append(f"no {name}")
    if nodes["pending"]:
        parts.append(f"{nodes['pending']} pending node(s)")
    if nodes["failed"]:
        parts.append(f"{nodes['failed']} recent failure(s)")
    if observation["demands"]:
        parts.append(f"{len(observation['demands'])} pending demand(s)")
    return ", ".join(parts)


def evaluate(observation, expected_nodes=None, expected_gpus=None, expected_cpus=None, fail_on_failures=False):
    """Judge one observation. Returns ``(problems, terminal)``.

    ``problems`` are sentences, each saying what was expected, what was seen and the likely cause;
    empty means ready. ``terminal`` is True when waiting cannot help (a lost node with ``fail_on_failures``,
    a missing ``ray``, a refused token).
    """
    if observation.get("source_error"):
        error = observation["source_error"]
        return [explain_source_error(error)], error["kind"] in TERMINAL_SOURCE_ERRORS
    if not observation["status_found"]:
        return [explain_missing_status(observation)], False

    problems = []
    nodes = observation["nodes"]
    gpus = _resource_total(observation, "GPU")
    cpus = _resource_total(observation, "CPU")
    demand = _demand_clause(observation)
    short_nodes = expected_nodes is not None and nodes["alive"] < expected_nodes
    if short_nodes:
        problems.append(f"{nodes['alive']}/{expected_nodes} nodes alive{demand}: {_missing_node_cause(observation)}")
    if expected_gpus is not None and gpus < expected_gpus:
        cause = _missing_gpu_cause(short_nodes)
        problems.append(f"{_fmt_number(gpus)}/{_fmt_number(expected_gpus)} GPUs in the cluster{demand}: {cause}")
    if expected_cpus is not None and cpus < expected_cpus:
        cause = (
            "a node has not joined (see the node count)"
            if short_nodes
            else "the nodes offer fewer CPUs than expected; check --num-cpus on `ray start` and the pods' CPU requests"
        )
        problems.append(f"{_fmt_number(cpus)}/{_fmt_number(expected_cpus)} CPUs in the cluster: {cause}")
    lost = observation["failures"] + [
        f"node {describe_node(node)} was alive earlier in this wait and is gone"
        for node in observation.get("vanished_nodes") or []
    ]
    terminal = bool(fail_on_failures and lost)
    if terminal:
        problems.append(
            f"{len(lost)} node failure(s) and fail_on_failures=true: {'; '.join(lost)}; check those hosts/pods"
            " (OOM kill, preemption, lost network) and the raylet logs under /tmp/ray/session_latest/logs on them"
        )
    return problems, terminal


def _demand_clause(observation):
    """``"; pending demand {'GPU': 1.0} * 2"``: what the cluster waits for, or nothing."""
    if not observation["demands"]:
        return ""
    shapes = []
    for detail in observation["demand_details"]:
        bundles = []
        for bundle in detail["bundles"]:
            bundles.append(str(bundle["resources"]) + ("" if bundle["count"] == 1 else f" * {bundle['count']}"))
        shapes.append(", ".join(bundles))
    return "; pending demand " + "; ".join(shapes or observation["demands"])


def _gone_node_sentences(observation):
    sentences = []
    for gone in observation.get("vanished_nodes") or []:
        sentences.append(f"node {describe_node(gone)} was alive earlier in this wait and is gone")
    dead = [node for node in observation.get("node_details") or [] if node.get("state") == "DEAD"]
    if dead:
        described = "; ".join(describe_node(node) for node in dead)
        sentences.append(f"the GCS lists {len(dead)} dead node(s): {described}")
    for failure in observation["failures"]:
        sentences.append(f"recent failure: {failure}")
    return sentences


def describe_node(node):
    """``"3a9c...e1 (10.0.0.2, 1 GPU): <state message>"`` from a node_details/vanished_nodes entry."""
    facts = []
    if node.get("node_ip"):
        facts.append(node["node_ip"])
    gpus = (node.get("resources") or {}).get("GPU")
    if gpus and gpus.get("total"):
        facts.append(f"{_fmt_number(gpus['total'])} GPU")
    text = node.get("node_id") or node.get("node_type") or "?"
    if facts:
        text += " ({})".format(", ".join(facts))
    if node.get("state_message"):
        text += ": " + node["state_message"]
    return text


def _missing_node_cause(observation):
    nodes = observation["nodes"]
    causes = _gone_node_sentences(observation)
    if nodes["pending"]:
        launching = "; ".join(observation["pending_nodes"])
        causes.append(
            f"{nodes['pending']} node(s) still launching ({launching}); wait, or check the autoscaler/KubeRay"
            " operator logs if they never start"
        )
    if causes:
        causes.append("a replacement worker has not joined; check the worker pod/host and VLLM_HOST_IP")
        return "; ".join(causes)
    return (
        "a worker has not joined; check the worker pod/host (is `ray start --address=<head>:<port>` running there?),"
        " that it reaches the head's GCS port, and VLLM_HOST_IP / --node-ip-address on it"
    )


def _missing_gpu_cause(short_nodes):
    if short_nodes:
        return "the GPUs of the missing node(s) are not counted (see the node count)"
    return (
        "every expected node is up but offers fewer GPUs; check `ray start --num-gpus` on the GPU workers,"
        " CUDA_VISIBLE_DEVICES/NVIDIA_VISIBLE_DEVICES, nvidia-smi on the hosts, or the pods' nvidia.com/gpu limits"
    )


def explain_missing_status(observation):
    message = observation.get("message") or ""
    if message.startswith(NO_STATUS_TEXT):
        return (
            f"Ray answered but has no cluster status yet ({message!r}): the head's autoscaler monitor publishes it"
            " a few seconds after `ray start --head`; if it stays, check monitor.log/monitor.err in the head's"
            " /tmp/ray/session_latest/logs"
        )
    return (
        "no `ray status` report in the output (no '======== Autoscaler status' header); check that the command"
        f" run is `ray status` and that it ran on the head. First lines: {_first_lines(observation.get('raw'))}"
    )


def _first_lines(text, count=3):
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return " | ".join(lines[:count]) or "(empty)"


# Source errors ----------------------------------------------------------------------------------------


def classify_cli_failure(stdout, stderr, rc):
    """Name what went wrong when ``ray status`` printed no report: connection, auth, version_mismatch, cli."""
    text = f"{stdout or ''}\n{stderr or ''}"
    if any(marker in text for marker in VERSION_MISMATCH_MARKERS):
        kind = "version_mismatch"
    elif any(marker in text for marker in AUTH_ERROR_MARKERS):
        kind = "auth"
    elif any(marker in text for marker in CONNECTION_ERROR_MARKERS):
        kind = "connection"
    else:
        kind = "cli"
    return dict(kind=kind, rc=rc, detail=_error_summary(text))


def _error_summary(text):
    """The most telling line of an error output: Ray's own sentence, else the last non-traceback line."""
    lines = [GLOG_PREFIX_RE.sub("", line.strip()) for line in (text or "").splitlines() if line.strip()]
    for line in lines:
        if any(phrase in line for phrase in RAY_OWN_ERROR_PHRASES):
            return line
    for line in lines:
        if line.startswith("details = "):
            return line
    skipped = ("Traceback", "File ", "raise ", "^", ">")
    candidates = [line for line in lines if not line.startswith(skipped)]
    return candidates[-1] if candidates else "(no output)"


def explain_source_error(error):
    """A sentence for a failed read: what was asked, what came back, what to check."""
    kind = error["kind"]
    where = error.get("where") or "the cluster"
    detail = error.get("detail") or ""
    if kind == "connection":
        return (
            f"could not reach the Ray GCS at {where} ({detail}): check that the Ray head is running there"
            " (`ray start --head`, or the head pod is Running and Ready), that the port is the GCS port"
            " (default 6379), and that no firewall/NetworkPolicy blocks it from this host"
        )
    if kind == "auth":
        return (
            f"the Ray cluster at {where} refused the request for authentication ({detail}): Ray token missing or"
            " wrong; pass the cluster's token in `token` (the ray_cluster role keeps it in"
            " ray_cluster_auth_token_file on hosts, in the Secret <release>-ray-auth on Kubernetes; `ray"
            " get-auth-token` on the head prints it)"
        )
    if kind == "version_mismatch":
        return (
            f"`ray status` here and the cluster at {where} run different Ray/Python versions ({detail}): point"
            " `ray_binary` at a `ray` of the cluster's version, or read the status from the dashboard or the head pod"
        )
    if kind == "ray_missing":
        return (
            f"no `ray` executable to run `ray status` ({detail}): install ray on this host, set `ray_binary`, or use"
            " `dashboard_url` or `status_text` instead"
        )
    if kind == "http_unreachable":
        return (
            f"could not reach the Ray dashboard at {where} ({detail}): check that the head runs the dashboard"
            " (ray[default] installed, --include-dashboard, --dashboard-host=0.0.0.0 to listen beyond localhost),"
            " the port (default 8265), any port-forward/Service/Ingress, and firewalls"
        )
    if kind == "api_refused":  # the detail is the whole message (_kube_refusal)
        return detail
    if kind == "http_unauthorized":
        return (
            f"the Ray dashboard at {where} refused the request ({detail}): Ray token missing (401) or wrong (403);"
            " the cluster uses token authentication: pass its token in `token` (the ray_cluster role keeps it in"
            " ray_cluster_auth_token_file on hosts, in the Secret <release>-ray-auth on Kubernetes; `ray"
            " get-auth-token` on the head prints it)"
        )
    if kind == "http_status":
        return (
            f"the Ray dashboard at {where} answered {detail}: check that the URL is the dashboard's root (not a path"
            " under it) and that the head's dashboard is healthy (dashboard.log on the head)"
        )
    if kind == "http_answer":
        return (
            f"{where} did not answer like a Ray dashboard ({detail}): check that the URL points at the Ray dashboard"
            " (default port 8265) and not at another service"
        )
    return f"`ray status` against {where} failed ({detail}): run it by hand on the head to see why"


# Waiting across observations -----------------------------------------------------------------------------


class NodeTracker:
    """Remembers the nodes seen alive during one wait, so a node that disappears can be named."""

    def __init__(self):
        self.seen = {}
        self.gone = {}

    def update(self, observation):
        """Add ``vanished_nodes`` to ``observation``: nodes alive in an earlier observation and not since."""
        current = self._alive_nodes(observation)
        if current is not None:
            for key in list(self.seen):
                if key not in current:
                    self.gone[key] = self.seen.pop(key)
            for key, node in current.items():
                self.seen[key] = node
                self.gone.pop(key, None)
        observation["vanished_nodes"] = list(self.gone.values())
        return observation

    @staticmethod
    def _alive_nodes(observation):
        if observation.get("source_error") or not observation.get("status_found"):
            return None  # Nothing known this time; do not call every node gone.
        alive = {}
        for node in observation.get("node_details") or []:
            if node.get("state", "ALIVE") == "ALIVE":
                alive[node["node_id"]] = node
        if alive:
            return alive
        # Without per-node facts, a manual cluster still names each node as node_<id> in its node list.
        for node_type, counts in observation["node_types"].items():
            if node_type.startswith("node_") and counts["active"] + counts["idle"] == 1:
                node_id = node_type[len("node_") :]
                alive[node_id] = dict(node_id=node_id, node_type=node_type, resources={})
        return alive
