# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""Ray's token authentication (Ray 2.60: RAY_AUTH_MODE=token): the one token a cluster's nodes share.

The ray_cluster role keeps the token in a file on every node; ``cluster_token`` chooses which token that is, so a
re-run keeps the cluster's token and a given one replaces it. Messages never hold a token.
"""

from __future__ import annotations

import base64
import binascii

# Ray makes its own tokens of 64 hex digits (secrets.token_hex(32)); shorter ones are easier to guess.
MIN_TOKEN_LENGTH = 32


class RayAuthError(ValueError):
    """A token that cannot serve; the message names the variable, never the token."""


def cluster_token(given, stored_b64="", fresh="", name="ray_cluster_auth_token", required=True):
    """The cluster's token: ``given`` when set, else the one the head keeps (``stored_b64``: its file as slurp reads
    it, base64), else ``fresh`` (a new random one). With none of them, an error, or "" when not ``required`` (a
    read-only look asks without a token, and the cluster's refusal says why)."""
    given = given or ""
    if given:
        if len(given) < MIN_TOKEN_LENGTH or any(character.isspace() for character in given):
            raise RayAuthError(
                f"{name} must be at least {MIN_TOKEN_LENGTH} characters without spaces or line breaks (it has "
                f"{len(given)}); Ray compares it byte for byte. Set a longer one (`openssl rand -hex 32`), or leave "
                f"{name} empty to have one made and kept."
            )
        return given
    stored = _decoded(stored_b64)
    if stored:
        return stored
    if not fresh and not required:
        return ""
    if not fresh:
        raise RayAuthError(f"No token: {name} is empty, the head keeps none and no new one was made.")
    return fresh


def _decoded(stored_b64):
    try:
        return base64.b64decode(stored_b64 or "").decode("utf-8").strip()
    except (binascii.Error, UnicodeDecodeError):
        return ""


def read_secret(path):
    """The text of a key or token file, stripped; empty when there is none (the request then goes without it)."""
    if not path:
        return ""
    try:
        with open(path, encoding="utf-8") as stream:
            return stream.read().strip()
    except OSError:
        return ""
