"""make bench's per-phase table: where a deploy's seconds go, site.yml's tasks against the same steps by hand.

site.yml's side comes from the task profile that ansible.cfg enables (ansible.posix.profile_tasks, every task with
PROFILE_TASKS_TASK_OUTPUT_LIMIT=all); the floor's from timestamps around its own commands. What no phase holds
(Ansible's round trips, the plan, the preflights, the other tasks) is its own row, so a regression shows where it is.
"""

from __future__ import annotations

import re

# Every task of the profile, as ansible.posix.profile_tasks prints it: "<role> : <task> ------ 1.23s".
TASK_LINE = re.compile(r"^(?P<name>\S.*?) -+ (?P<seconds>\d+(?:\.\d+)?)s$", re.M)
ROLE = "llmops.ray_vllm."

# (phase, the floor's step, the tasks of site.yml on platform hosts that make the phase: one engine, or Serve LLM).
PHASES = (
    ("Ray head", "ray start --head", [ROLE + "ray_cluster : Start the Ray head"]),
    ("Ray workers", "ray start --address", [ROLE + "ray_cluster : Start the Ray workers"]),
    ("Ray gate", "(none: ray start returns once the node is in)", [
        ROLE + "ray_cluster : Wait until every Ray node and GPU is registered",
    ]),
    ("vLLM started", "the server started, until /v1/models lists the model", [
        ROLE + "vllm_serve : Run the vLLM server as a Ray job",
        ROLE + "vllm_serve : Deploy the Serve LLM application",
    ]),
    ("vLLM gate", "then until the first chat answer", [
        ROLE + "vllm_serve : Wait until vLLM answers a chat completion",
        ROLE + "vllm_serve : Wait until Serve runs every replica",
    ]),
)  # fmt: skip
OTHER = "everything else (Ansible, plan, preflight, other tasks)"
VLLM_PHASES = ("vLLM started", "vLLM gate")
# A re-run whose look found every node standing (README: Re-runs) runs none of the phases' tasks, only the look.
LOOK = ("The look", "(none)", ["Ask each node once whether it stands as the last full run left it"])


class ProfileError(Exception):
    pass


def profile_lines(output):
    """``[(task, seconds)]``, one per task run, from a playbook's output; the profile must be there."""
    recap = output.rsplit("TASKS RECAP", 1)
    if len(recap) != 2:
        raise ProfileError("the playbook printed no TASKS RECAP: is ansible.posix.profile_tasks enabled?")
    return [(match.group("name"), float(match.group("seconds"))) for match in TASK_LINE.finditer(recap[1])]


def task_seconds(output):
    """``{task: seconds}`` from a playbook's output, a task that ran twice summed."""
    seconds = {}
    for name, value in profile_lines(output):
        seconds[name] = seconds.get(name, 0.0) + value
    return seconds


def site_phases(output, total_s):
    """``[(phase, seconds)]`` of a site.yml run on hosts whose whole run took ``total_s``, then OTHER's share.

    A phase none of whose tasks ran is refused: the phase names below and the roles' task names have drifted apart.
    """
    seconds = task_seconds(output)
    in_phases = [task for _phase, _step, tasks in PHASES for task in tasks if task in seconds]
    if not in_phases and LOOK[2][0] in seconds:
        return [(LOOK[0], seconds[LOOK[2][0]]), (OTHER, max(total_s - seconds[LOOK[2][0]], 0.0))]
    rows = []
    for phase, _floor_step, tasks in PHASES:
        ran = [seconds[task] for task in tasks if task in seconds]
        if not ran:
            raise ProfileError(f"no task of the phase {phase!r} ran ({tasks}): have the roles' task names changed?")
        rows.append((phase, sum(ran)))
    rows.append((OTHER, max(total_s - sum(value for _phase, value in rows), 0.0)))
    return rows


PLAYBOOK_TASKS = "site.yml's own tasks (plan, preflights, checks)"
BETWEEN_TASKS = "Ansible between tasks (start-up, inventory, includes, results)"


def phase_tasks(output, total_s):
    """The names of the tasks that :func:`site_phases` counts in a phase of this run (the rest is OTHER)."""
    phase_rows = dict(site_phases(output, total_s))
    return {task for phase, _step, tasks in PHASES + (LOOK,) for task in tasks if phase in phase_rows}


def other_parts(output, total_s):
    """``[(part, tasks run, seconds)]``: what OTHER holds, largest first.

    One part per role (its tasks outside the phases), site.yml's own tasks, and what no task holds: Ansible's own
    time before, between and after tasks. A goal that is not met then shows which part holds it back.
    """
    in_phases = phase_tasks(output, total_s)
    parts = {}
    for name, seconds in profile_lines(output):
        if name in in_phases:
            continue
        part = name.split(" : ", 1)[0] if " : " in name else PLAYBOOK_TASKS
        count, total = parts.get(part, (0, 0.0))
        parts[part] = (count + 1, total + seconds)
    rows = [(part, count, total) for part, (count, total) in parts.items()]
    in_tasks = sum(seconds for _name, seconds in profile_lines(output))
    rows.append((BETWEEN_TASKS, 0, max(total_s - in_tasks, 0.0)))
    return sorted(rows, key=lambda row: -row[2])


def holding_back(site, parts, excess_s, floor=None):
    """Why a run is ``excess_s`` over its goal, in one sentence: the phase furthest over the floor's same step (or,
    with no ``floor``, the longest), and the part of OTHER that holds the most.

    ``site`` is :func:`site_phases`' rows, ``parts`` :func:`other_parts`', ``floor`` ``{phase: seconds}``.
    """
    floor = floor or {}
    over = {name: value - floor.get(name, 0.0) for name, value in site if name != OTHER}
    # Where vLLM's load ends differs (site.yml's job returns once RUNNING, the floor's step once the model is
    # listed), so the two vLLM phases compare as one.
    if all(name in over for name in VLLM_PHASES):
        over[" + ".join(VLLM_PHASES)] = sum(over.pop(name) for name in VLLM_PHASES)
    phase, over_s = max(over.items(), key=lambda row: row[1])
    part, count, part_s = parts[0]
    runs = sum(row[1] for row in parts)
    other_s = dict(site)[OTHER]
    return (
        f"{excess_s:.1f} s over the goal. The phase furthest over the floor is {phase} ({over_s:+.1f} s); "
        f"{OTHER} holds {other_s:.1f} s in {runs} task runs ({other_s / max(runs, 1):.2f} s each), "
        f"most of it in {part} ({count} task runs, {part_s:.1f} s)."
    )


def other_table(parts, title):
    """Markdown rows of :func:`other_parts`, with the mean seconds per task run."""
    lines = [f"| {title} | tasks run | seconds | per task |", "| --- | --- | --- | --- |"]
    for part, count, seconds in parts:
        mean = f"{seconds / count:.2f}" if count else ""
        lines.append(f"| {part} | {count or ''} | {seconds:.1f} | {mean} |")
    return "\n".join(lines)


def table(floor, site, title):
    """Markdown rows of the phases side by side: ``floor`` and ``site`` are ``{phase: seconds}``."""
    lines = [
        f"| {title} | the floor's step | floor s | site.yml s | site.yml - floor s |",
        "| --- | --- | --- | --- | --- |",
    ]
    steps = {phase: step for phase, step, _tasks in PHASES + (LOOK,)}
    for phase, seconds in site:
        by_hand = floor.get(phase, 0.0)
        lines.append(f"| {phase} | {steps.get(phase, '')} | {by_hand:.1f} | {seconds:.1f} | {seconds - by_hand:+.1f} |")
    total_floor, total_site = sum(floor.values()), sum(seconds for _phase, seconds in site)
    lines.append(f"| total | | {total_floor:.1f} | {total_site:.1f} | {total_site - total_floor:+.1f} |")
    return "\n".join(lines)
