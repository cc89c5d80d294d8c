"""Kubernetes quantities (_quantity), as the API server writes them."""

from __future__ import annotations

import pytest

from ansible_collections.llmops.ray_vllm.plugins.module_utils._quantity import (
    QuantityError,
    mib,
    object_store_bytes,
    parse_quantity,
    smaller_quantity,
)


def test_binary_decimal_milli_and_plain_quantities():
    assert parse_quantity("16Gi") == 16 * 2**30
    assert parse_quantity("268333056Ki") == 268333056 * 1024
    assert parse_quantity("500m") == 0.5
    assert parse_quantity("1e3") == 1000.0 and parse_quantity(32) == 32.0
    assert mib("209635Mi") == 209635


def test_smaller_quantity_keeps_the_text_written():
    assert smaller_quantity("16Gi", "64Gi") == "16Gi"
    assert smaller_quantity("209635Mi", "64Gi") == "64Gi"


def test_the_object_store_fits_the_shm():
    assert object_store_bytes("2Gi") == int(2 * 2**30 * 0.8)


@pytest.mark.parametrize("value", ["64 GB", "two", "1Zi"])
def test_what_is_not_a_quantity_is_refused(value):
    with pytest.raises(QuantityError):
        parse_quantity(value)
