"""The token a Ray cluster's nodes share (_ray_auth.cluster_token): a given one, else the kept one, else a new one."""

from __future__ import annotations

import base64

import pytest

from ansible_collections.llmops.ray_vllm.plugins.module_utils._ray_auth import RayAuthError, cluster_token, read_secret

GIVEN = "a" * 40
KEPT = "f" * 64
FRESH = "0" * 64


def slurped(text):
    return base64.b64encode(text.encode()).decode()


def test_a_given_token_wins_then_the_kept_one_then_a_new_one():
    assert cluster_token(GIVEN, slurped(KEPT), FRESH) == GIVEN
    # A re-run keeps the cluster's token (the trailing newline an editor adds is not part of it).
    assert cluster_token("", slurped(KEPT + "\n"), FRESH) == KEPT
    assert cluster_token("", "", FRESH) == FRESH
    assert cluster_token(None, slurped("  "), FRESH) == FRESH


def test_a_weak_or_broken_given_token_is_refused_by_the_variables_name_never_the_token():
    for weak in ("short", "a" * 31, "a" * 20 + " " + "a" * 20):
        with pytest.raises(RayAuthError) as error:
            cluster_token(weak, "", FRESH)
        message = str(error.value)
        assert "ray_cluster_auth_token must be at least 32 characters" in message and weak not in message
        assert "openssl rand -hex 32" in message


def test_nothing_to_take_is_an_error():
    with pytest.raises(RayAuthError, match="No token"):
        cluster_token("", "", "")


def test_a_look_that_needs_no_token_gets_the_given_or_kept_one_else_none():
    assert cluster_token("", slurped(KEPT), required=False) == KEPT
    assert cluster_token(GIVEN, "", required=False) == GIVEN
    assert cluster_token("", slurped("  "), required=False) == ""


def test_read_secret_strips_the_file_and_is_empty_without_one(tmp_path):
    (tmp_path / "token").write_text("  ray-token\n")
    assert read_secret(str(tmp_path / "token")) == "ray-token"
    assert read_secret(str(tmp_path / "none")) == ""
    assert read_secret(None) == ""
    assert read_secret(str(tmp_path)) == ""  # a directory reads as nothing too
