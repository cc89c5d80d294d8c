"""Ansible's own cost on this machine, measured in the same bench run: what a task costs with nothing of ours in it.

A generated playbook runs, on inventories/local's two nodes as site.yml does, COUNT tasks of each kind: a module
call (ansible.builtin.stat), a task on the controller only (ansible.builtin.set_fact) and a skipped task. Its task
profile gives each kind's seconds per task run, and what no task holds gives ansible-playbook's start and end.

The deploy's own task runs are sorted into the same kinds by the llmops_task_runs callback (callback_plugins/),
and priced at those costs: what Ansible alone needs for the task runs that no phase holds. That is the part of
"everything else" that only fewer tasks can cut, and the rest is the time of our modules themselves.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import phases

COUNT = 20
MODULE, CONTROLLER, SKIPPED = "module call", "task on the controller only", "skipped task"
KINDS = (MODULE, CONTROLLER, SKIPPED)
START_AND_END = "ansible-playbook's start and end"
CALLBACKS = Path(__file__).resolve().parent / "callback_plugins"
BENCH_DIR = Path(__file__).resolve().parents[2] / ".build" / "bench"
# Actions whose work is done on the controller: no module is sent to a node.
CONTROLLER_ONLY = frozenset({
    "add_host", "assert", "debug", "fail", "group_by", "import_role", "import_tasks", "include_role",
    "include_tasks", "include_vars", "meta", "set_fact", "set_stats", "validate_argument_spec",
    "llmops.ray_vllm.validate_role_arguments",
})  # fmt: skip


def playbook(count=COUNT):
    """The floor's playbook, as YAML text (JSON is YAML): the three kinds in turn, ``count`` tasks each."""
    tasks = []
    for index in range(count):
        tasks += [
            {"name": f"{MODULE} {index}", "ansible.builtin.stat": {"path": "/"}},
            {"name": f"{CONTROLLER} {index}", "ansible.builtin.set_fact": {"_floor_index": index}},
            {"name": f"{SKIPPED} {index}", "when": False, "ansible.builtin.stat": {"path": "/"}},
        ]
    return json.dumps([{"name": "Ansible's own cost per task", "hosts": "all", "gather_facts": False, "tasks": tasks}])


def costs(output, total_s):
    """``{kind: seconds per task run, START_AND_END: seconds}`` from the floor playbook's output and wall time."""
    runs = {kind: [] for kind in KINDS}
    lines = phases.profile_lines(output)
    for name, seconds in lines:
        kind = name.rsplit(" ", 1)[0]
        if kind not in runs:
            raise phases.ProfileError(f"the floor playbook ran a task it does not hold: {name!r}")
        runs[kind].append(seconds)
    missing = [kind for kind, values in runs.items() if not values]
    if missing:
        raise phases.ProfileError(f"the floor playbook's profile lacks a kind: {missing}")
    priced = {kind: sum(values) / len(values) for kind, values in runs.items()}
    priced[START_AND_END] = max(total_s - sum(seconds for _name, seconds in lines), 0.0)
    return priced


def kind_of(run):
    """The kind of one entry of llmops_task_runs' record: skipped where no host ran it."""
    if not run["ran"]:
        return SKIPPED
    action = run["action"]
    for prefix in ("ansible.builtin.", "ansible.legacy."):
        if action.startswith(prefix):
            action = action[len(prefix) :]
    return CONTROLLER if action in CONTROLLER_ONLY else MODULE


def kind_counts(runs, leave_out=()):
    """``Counter({kind: task runs})`` of a llmops_task_runs record, without the tasks named in ``leave_out``."""
    return Counter(kind_of(run) for run in runs if run["name"] not in leave_out)


def above_floor(runs, floor_costs, leave_out=(), top=8):
    """``[(task, kind, seconds, seconds above Ansible's cost for its kind)]``, the ``top`` task runs of a
    llmops_task_runs record furthest above that cost, without the tasks named in ``leave_out``: where our own work
    (a module's, a template's) costs the most."""
    rows = []
    for run in runs:
        if run["name"] not in leave_out:
            kind = kind_of(run)
            rows.append((run["name"], kind, run["seconds"], run["seconds"] - floor_costs[kind]))
    return sorted(rows, key=lambda row: -row[3])[:top]


def above_table(rows, title):
    """Markdown rows of :func:`above_floor`."""
    lines = [f"| {title} | kind | seconds | above Ansible's cost s |", "| --- | --- | --- | --- |"]
    lines += [f"| {task} | {kind} | {seconds:.2f} | {above:+.2f} |" for task, kind, seconds, above in rows]
    return "\n".join(lines)


def priced_rows(floor_costs, counts):
    """``[(row, seconds per task run or None, task runs or None, seconds)]``: each kind at Ansible's cost, then the
    start and end; their sum is Ansible's floor for those task runs."""
    rows = [(kind, floor_costs[kind], counts.get(kind, 0), floor_costs[kind] * counts.get(kind, 0)) for kind in KINDS]
    rows.append((START_AND_END, None, None, floor_costs[START_AND_END]))
    return rows


def table(rows, other_s, title):
    """Markdown rows of :func:`priced_rows`, their total, and what is left of ``other_s`` (our modules' own time)."""
    lines = [f"| {title} | per task run s | task runs | seconds |", "| --- | --- | --- | --- |"]
    for row, per_run, runs, seconds in rows:
        per = "" if per_run is None else f"{per_run:.3f}"
        lines.append(f"| {row} | {per} | {'' if runs is None else runs} | {seconds:.1f} |")
    total = sum(row[3] for row in rows)
    lines.append(f"| Ansible alone, for these task runs | | | {total:.1f} |")
    lines.append(f"| the rest: our modules' and templates' own work | | | {other_s - total:+.1f} |")
    return "\n".join(lines)


def why(rows, other_s, budget_s, phases_over_s):
    """One sentence: how much of ``other_s`` Ansible alone needs, against the ``budget_s`` the goal leaves over the
    floor for everything, how many module calls that budget pays for, and how much of it the phases' own tasks
    (``phases_over_s`` over the floor's steps) take already."""
    total = sum(row[3] for row in rows)
    module_s = rows[0][1]
    fits = int(max(budget_s, 0.0) // module_s) if module_s > 0 else 0
    return (
        f"Ansible alone, measured now with nothing of ours in the tasks, needs {total:.1f} s of those {other_s:.1f} s "
        f"for the same task runs; the goal leaves {budget_s:.1f} s over the floor for all phases together, "
        f"which is {fits} module calls at {module_s:.2f} s and no other task, and the phases' own tasks are "
        f"{phases_over_s:+.1f} s over the floor's steps already."
    )


def runs_file(what):
    """Where llmops_task_runs writes ``what``'s record."""
    return BENCH_DIR / (what.replace(" ", "-") + "-task-runs.json")


def callback_env(what):
    """The environment that has a site.yml run record its task runs (with the profile ansible.cfg enables)."""
    return {
        "ANSIBLE_CALLBACK_PLUGINS": str(CALLBACKS),
        "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks,llmops_task_runs",
        "LLMOPS_TASK_RUNS_FILE": str(runs_file(what)),
    }
