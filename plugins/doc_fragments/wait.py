# -*- coding: utf-8 -*-
# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # Mirrors WAIT_ARGUMENT_SPEC in plugins/module_utils/_args.py; a unit test keeps the two in step.
    DOCUMENTATION = r"""
options:
  wait:
    description:
      - Poll until every expectation is met or O(timeout) passes.
      - When V(false), look once and fail at once if an expectation is not met. Use V(false) inside an
        C(until:) loop to show progress in the play output during long waits.
    type: bool
    default: false
  timeout:
    description:
      - Seconds to keep polling when O(wait=true).
    type: int
    default: 300
  interval:
    description:
      - The longest pause, in seconds, between two polls when O(wait=true).
      - The first pause is a quarter of a second and each next one doubles up to O(interval), so the wait ends
        soon after the expectations are met.
    type: int
    default: 5
"""
