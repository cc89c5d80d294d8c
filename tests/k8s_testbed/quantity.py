# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Kubernetes resource quantities ("500m", "8Gi", "1e3") as exact numbers, and back to resource.Quantity's text.

One parser serves the scheduler's sums, KubeRay's desired resources, QoS defaulting and resourceFieldRef env
values. Fractions keep every sum and division exact, which the formatting relies on to pick a suffix.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

BINARY_SUFFIXES = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4, "Pi": 1024**5, "Ei": 1024**6}
DECIMAL_SUFFIXES = {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
FRACTION_SUFFIXES = {"m": Fraction(1, 10**3), "u": Fraction(1, 10**6), "n": Fraction(1, 10**9)}
SUFFIXES = {"": 1, **BINARY_SUFFIXES, **DECIMAL_SUFFIXES, **FRACTION_SUFFIXES}
_QUANTITY_RE = re.compile(r"^([+-]?[0-9.]+)(?:([eE][+-]?[0-9]+)|(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E))?$")
# resource.ParseQuantity's message for text it cannot read
FORMAT_ERROR = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"


def parse_quantity(value) -> Fraction:
    """A quantity as an exact number of base units; None is 0. A float is read from its text, as JSON gives it."""
    if value is None:
        return Fraction(0)
    if isinstance(value, int):
        return Fraction(value)
    match = _QUANTITY_RE.match(str(value).strip())
    if not match:
        raise ValueError(FORMAT_ERROR)
    number, exponent, suffix = match.groups()
    try:
        result = Fraction(number)
    except ValueError:
        raise ValueError(FORMAT_ERROR) from None
    if exponent:
        result *= Fraction(10) ** int(exponent[1:])
    return result * SUFFIXES[suffix or ""]


def quantity_value(value) -> int:
    """resource.Quantity.Value(): rounded up to a whole number."""
    return math.ceil(parse_quantity(value))


def is_binary(value) -> bool:
    """Whether a quantity is written with a binary suffix (Ki, Mi, ...), which a sum of it is printed with."""
    return isinstance(value, str) and value.strip().endswith("i")


def format_quantity(value: Fraction, binary: bool = False) -> str:
    """Canonical form the way resource.Quantity prints a sum: binary suffixes when asked and exact, else decimal."""
    value = Fraction(value)
    if value == 0:
        return "0"
    if value.denominator == 1:
        return _format_whole(value.numerator, binary)
    for suffix, factor in FRACTION_SUFFIXES.items():
        scaled = value / factor
        if scaled.denominator == 1:
            return f"{scaled.numerator}{suffix}"
    return f"{int(value * 10**9 + 1)}n"


def _format_whole(number: int, binary: bool) -> str:
    if binary and number >= 1024:
        for suffix, factor in reversed(BINARY_SUFFIXES.items()):
            if number % factor == 0:
                return f"{number // factor}{suffix}"
    for suffix, factor in reversed(DECIMAL_SUFFIXES.items()):
        if number % factor == 0:
            return f"{number // factor}{suffix}"
    return str(number)
