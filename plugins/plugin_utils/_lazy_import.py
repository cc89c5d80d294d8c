# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Filters and tests that import their module_utils only when they run.

To find any one filter (or test) of a collection, ansible-core (2.19, ``Jinja2Loader.get_with_context``) loads every
file of its plugins/filter (or plugins/test), and it does so again in each task's worker process. Filter files that
imported their module_utils at the top made each task that used one of our filters pay for all of them, about 0.2 s
(cluster_stamp, the Ray Jobs client, cryptography). Imported when a filter first runs, a task pays for its own.
"""

from __future__ import annotations

from importlib import import_module

from ansible.errors import AnsibleFilterError

PACKAGE = "ansible_collections.llmops.ray_vllm.plugins.module_utils."


def module_utils(name):
    """The collection's module_utils ``name`` (``"_waiter"``), imported now if it was not yet."""
    return import_module(PACKAGE + name)


def lazy(module, function, errors=()):
    """A filter (or test) that runs ``function`` of module_utils ``module``, imported on its first call.

    The module's exception classes named in ``errors`` are raised as AnsibleFilterError with their message, so a
    task's failure says what the value rule says, not a traceback.
    """

    def run(*args, **kwargs):
        found = module_utils(module)
        try:
            return getattr(found, function)(*args, **kwargs)
        except Exception as error:
            if isinstance(error, _exception_classes(found, errors)):
                raise AnsibleFilterError(str(error)) from None
            raise

    run.__name__ = function
    return run


def _exception_classes(module, names):
    """The exception classes ``names`` of ``module`` (an empty tuple catches nothing)."""
    return tuple(getattr(module, name) for name in names)
