"""The part of AnsibleModule that module_utils functions use to stop a module: params and fail_json."""

from __future__ import annotations


class FailingModule:
    """Records what fail_json was given and stops, as AnsibleModule.fail_json does (it exits)."""

    def __init__(self, params):
        self.params = params
        self.failed = None

    def fail_json(self, **result):
        self.failed = result
        raise SystemExit(1)
