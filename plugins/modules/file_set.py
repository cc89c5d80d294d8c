#!/usr/bin/python
# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: file_set
short_description: Keep several small text files with the given contents, in one call
version_added: 0.10.0
description:
  - Writes each file of O(files) whose content differs from the given one, atomically, makes the folders they go in,
    and sets their mode. A file that already holds its content is left as it is.
  - One module call where a folder task and a copy task per file would each be a round trip of their own; the
    monitoring role writes its target files, scrape jobs and dashboard with it.
author:
  - llmops.ray_vllm maintainers (@llmops)
extends_documentation_fragment:
  - llmops.ray_vllm.attributes
options:
  files:
    description: The files and what each must hold.
    type: list
    elements: dict
    required: true
    suboptions:
      path:
        description: Absolute path of the file.
        type: path
        required: true
      content:
        description: The whole text of the file, written as UTF-8.
        type: str
        required: true
  mode:
    description: Permissions of every file, as octal digits.
    type: str
    default: "0644"
  directory_mode:
    description: Permissions of the folders this module makes; folders that exist are left as they are.
    type: str
    default: "0755"
attributes:
  check_mode:
    support: full
    details:
      - Says which files would be written, without writing.
  diff_mode:
    support: full
    details:
      - Shows each changed file's text before and after.
"""

EXAMPLES = r"""
- name: Write the Prometheus file_sd targets and the scrape jobs
  llmops.ray_vllm.file_set:
    files:
      - path: /etc/prometheus/file_sd/vllm.json
        content: '[{"targets": ["10.0.0.5:8000"], "labels": {"job": "vllm"}}]'
      - path: /etc/prometheus/file_sd/scrape-configs.yml
        content: "{{ scrape_jobs | to_nice_yaml }}"
"""

RETURN = r"""
written:
  description: The files written (or, in check mode, that would be).
  returned: always
  type: list
  elements: str
  sample: ["/work/main/.build/local/monitoring/file_sd/ray-vllm-vllm-targets.json"]
folders:
  description: The folders made (or, in check mode, that would be).
  returned: always
  type: list
  elements: str
  sample: []
"""

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmops.ray_vllm.plugins.module_utils._file_set import diff_of, missing_folders, planned

ARGUMENT_SPEC = dict(
    files=dict(
        type="list",
        elements="dict",
        required=True,
        options=dict(path=dict(type="path", required=True), content=dict(type="str", required=True)),
    ),
    mode=dict(type="str", default="0644"),
    directory_mode=dict(type="str", default="0755"),
)


def write_atomically(module, path, content, mode):
    """The new text beside the file first, then moved over it: a reader never sees half a file.

    A file that exists keeps its owner and attributes (atomic_move). A new one takes ``mode`` before it is moved in,
    so a secret is never readable by others, not even for a moment (atomic_move would give it the umask's mode).
    """
    handle, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".file_set-")
    with os.fdopen(handle, "w", encoding="utf-8") as stream:
        stream.write(content)
    if os.path.exists(path):
        module.atomic_move(temporary, path)
    else:
        os.chmod(temporary, mode)
        os.replace(temporary, path)


def octal_mode(module, name):
    """The option ``name`` as a permission number; fails naming the value when it is not octal digits."""
    value = module.params[name]
    if not value.isdigit() or set(value) - set("01234567") or int(value, 8) > 0o7777:
        module.fail_json(msg=f"{name}={value!r}: expected octal permission digits such as '0644' or '0755'.")
    return int(value, 8)


def keep_attributes(module, files, changed):
    """Set every file's mode (in check mode: say whether it would change, for the files that exist)."""
    for wanted in files:
        if module.check_mode and not os.path.exists(wanted["path"]):
            continue
        file_args = module.load_file_common_arguments({"path": wanted["path"], "mode": module.params["mode"]})
        changed = module.set_fs_attributes_if_different(file_args, changed)
    return changed


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    files = module.params["files"]
    mode = octal_mode(module, "mode")
    directory_mode = octal_mode(module, "directory_mode")
    try:
        changes = planned(files)
    except OSError as error:
        module.fail_json(
            msg=f"cannot read {error.filename}: {error.strerror}. Each path of files must be a file this module may "
            "replace (not a folder), in a folder it may write."
        )
    folders = missing_folders([path for path, _before, _after in changes])
    if not module.check_mode:
        try:
            for folder in folders:
                os.mkdir(folder)
                os.chmod(folder, directory_mode)  # mkdir's mode is cut by the umask
            for path, _before, after in changes:
                write_atomically(module, path, after, mode)
        except OSError as error:
            module.fail_json(
                msg=f"cannot write {error.filename}: {error.strerror}. Make its folder writable by the user the task "
                "runs as (become), or choose another path.",
                written=[],
                folders=[],
            )
    changed = keep_attributes(module, files, bool(changes))
    result = {"changed": changed, "written": [path for path, _b, _a in changes], "folders": folders}
    if module._diff:
        result["diff"] = diff_of(changes)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
