# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""make bench's record of each task a playbook ran: its name (as the task profile prints it), its action, the hosts
that ran or skipped it, and its seconds (from its start to the next task's, as the task profile counts them), written
as JSON to $LLMOPS_TASK_RUNS_FILE when the playbook ends.

tests/bench/ansible_floor.py sorts a deploy's task runs by kind (module call, task on the controller only, skipped)
with it, to price them at Ansible's own cost measured in the same bench run.
"""

from __future__ import annotations

DOCUMENTATION = """
name: llmops_task_runs
type: aggregate
short_description: Record each task's action and which hosts ran or skipped it (make bench only)
description:
  - Writes a JSON list, one entry per task started (name, action, hosts that ran it, hosts that skipped it, seconds
    until the next task started), to the file named by the environment variable E(LLMOPS_TASK_RUNS_FILE) when the
    playbook ends. Nothing is written when the variable is unset.
requirements:
  - enabled in callbacks_enabled
"""

import json
import os
import time

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "llmops_task_runs"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self._runs = []
        # A task's results reach the callback after its start: its latest run, by the task's uuid.
        self._by_task = {}
        self._current = None

    def _close(self):
        if self._current is not None:
            self._current["seconds"] = round(time.monotonic() - self._current.pop("_started"), 4)
            self._current = None

    def _start(self, task):
        self._close()
        self._current = {"name": task.get_name(), "action": task.action, "ran": [], "skipped": []}
        self._current["_started"] = time.monotonic()
        self._runs.append(self._current)
        self._by_task[task._uuid] = self._current

    def _result(self, result, outcome):
        run = self._by_task.get(result._task._uuid)
        if run is not None:
            run[outcome].append(result._host.get_name())

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._start(task)

    def v2_playbook_on_handler_task_start(self, task):
        self._start(task)

    def v2_runner_on_ok(self, result):
        self._result(result, "ran")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._result(result, "ran")

    def v2_runner_on_unreachable(self, result):
        self._result(result, "ran")

    def v2_runner_on_skipped(self, result):
        self._result(result, "skipped")

    def v2_playbook_on_stats(self, stats):
        self._close()
        path = os.environ.get("LLMOPS_TASK_RUNS_FILE")
        if path:
            with open(path, "w", encoding="utf-8") as handle:
                json.dump(self._runs, handle, indent=1)
