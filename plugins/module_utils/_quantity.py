# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""Kubernetes quantities (``32``, ``500m``, ``16Gi``, ``268333056Ki``, ``1e3``): read, compared, written in MiB."""

from __future__ import annotations

import re

BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
DECIMAL = {"n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}
QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$")
MIB = 2**20


class QuantityError(ValueError):
    """A value that is not a Kubernetes quantity."""


def parse_quantity(value):
    """A Kubernetes quantity as a float in base units (bytes for memory, cores for CPU)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    match = QUANTITY.match(str(value).strip())
    if not match:
        raise QuantityError(f"{value!r} is not a Kubernetes quantity")
    number, suffix = match.groups()
    if suffix in BINARY:
        return float(number) * BINARY[suffix]
    if suffix in DECIMAL:
        return float(number) * DECIMAL[suffix]
    raise QuantityError(f"{value!r} has an unknown quantity suffix {suffix!r}")


def smaller_quantity(left, right):
    """The smaller of two memory quantities, as written (ties keep ``left``)."""
    return right if parse_quantity(right) < parse_quantity(left) else left


def mib(value):
    """A memory quantity in whole MiB (rounded down)."""
    return int(parse_quantity(value) // MIB)


# Ray's plasma store needs a little room beside the objects in its /dev/shm.
OBJECT_STORE_SHARE_OF_SHM = 0.8


def object_store_bytes(shm_size):
    """Bytes of Ray's object store (``ray start --object-store-memory``) that fit a /dev/shm of ``shm_size``.

    Without it Ray takes 30% of the container's memory, which in a pod whose /dev/shm is smaller makes it fall back
    to /tmp, with a warning and slower object transfers.
    """
    return int(parse_quantity(shm_size) * OBJECT_STORE_SHARE_OF_SHM)
