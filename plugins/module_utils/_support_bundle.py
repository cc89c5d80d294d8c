# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A support bundle: what the support_bundle role collected, redacted and written as one gzipped tarball.

Pure apart from write_bundle (which writes the file it is given): the role hands over registered results, this turns
each into one member's text (or its error), removes the secrets and lays out the archive.

Layout (every member under one top directory, so unpacking never spills files):

    llmops-support-<release>-<timestamp>/
        MANIFEST.json      what each member is, its size, and the error of every item that could not be collected
        <item name>        one member per collected item, e.g. gate.json, ray/status.txt, logs/<host>/raylet.out
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import tarfile
import time

REDACTED = "<redacted>"
# Shorter strings are too common to hunt for inside logs (they would redact innocent text, never a real secret).
MIN_SECRET_LENGTH = 8
MAX_MEMBER_BYTES = 4 * 1024 * 1024

# Generic shapes of credentials, whatever their value. Each keeps what names the secret and drops the value.
PATTERNS = (
    # Authorization: Bearer <token> / Basic <creds> in headers, curl lines and logged requests.
    re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?(?:bearer|basic|token)\s+)[^\s\"',}]+"),
    re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    # --api-key X, --token=X on command lines (vLLM's server, huggingface-cli, ray job submit).
    re.compile(r"(?i)(--(?:api[-_]key|token|hf[-_]token|password)[= ]\s*)[^\s\"',]+"),
    # KEY=value and "key": "value" where the key names a secret (RAY_AUTH_TOKEN, VLLM_API_KEY, HF_TOKEN ...).
    re.compile(
        r"(?i)([\"']?\b[A-Za-z0-9_.-]*(?:api[_-]?key|auth[_-]?token|access[_-]?token|hf[_-]?token|password|passwd"
        r"|secret[_-]?key|private[_-]?key|token)[\"']?\s*[:=]\s*[\"']?)(?!<redacted>|\$)[^\s\"',}]{4,}"
    ),
    # Hugging Face and ModelScope tokens, wherever they appear.
    re.compile(r"()\bhf_[A-Za-z0-9]{20,}"),
)
# Keys of structured values (a pod's env, a Secret's data) whose value is never kept.
SECRET_KEY = re.compile(
    r"(?i)(api[_-]?key|auth[_-]?token|access[_-]?token|hf[_-]?token|password|passwd|secret[_-]?key|private[_-]?key"
    r"|^token$|_token$|^authorization$)"
)


class SupportBundleError(Exception):
    pass


def _secret_variants(secrets):
    """Each secret as given, stripped, and base64-encoded (a Secret's data and a slurp hold it that way)."""
    found = set()
    for secret in secrets or []:
        if secret is None:
            continue
        text = str(secret).strip()
        if len(text) < MIN_SECRET_LENGTH:
            continue
        found.add(text)
        found.add(base64.b64encode(text.encode()).decode())
    # Longest first: a secret that contains another is replaced whole.
    return sorted(found, key=len, reverse=True)


def redact_text(text, secrets=()):
    """Text with every given secret and every generic credential shape replaced by <redacted>; and the count."""
    count = 0
    for secret in _secret_variants(secrets):
        hits = text.count(secret)
        if hits:
            text = text.replace(secret, REDACTED)
            count += hits
    for pattern in PATTERNS:
        text, hits = pattern.subn(lambda match: match.group(1) + REDACTED, text)
        count += hits
    return text, count


def redact_value(value, secrets=()):
    """A JSON-able value with secret-named keys' values and every secret inside strings replaced; and the count."""
    if isinstance(value, dict):
        out, count = {}, 0
        for key, entry in value.items():
            if isinstance(key, str) and SECRET_KEY.search(key) and isinstance(entry, (str, int, float)) and entry != "":
                out[key] = REDACTED
                count += 1
                continue
            # A pod's env list: {"name": "RAY_AUTH_TOKEN", "value": "..."}.
            if key == "value" and isinstance(value.get("name"), str) and SECRET_KEY.search(value["name"]):
                out[key] = REDACTED
                count += 1
                continue
            out[key], hits = redact_value(entry, secrets)
            count += hits
        return out, count
    if isinstance(value, list):
        out, count = [], 0
        for entry in value:
            redacted, hits = redact_value(entry, secrets)
            out.append(redacted)
            count += hits
        return out, count
    if isinstance(value, str):
        return redact_text(value, secrets)
    return value, 0


def _text_of(result):
    """The useful text of one registered result (a command's output, a log, a slurped file, an HTTP body)."""
    if "log_lines" in result:
        return "\n".join(result.get("log_lines") or []) + "\n"
    if "log" in result and isinstance(result["log"], str):
        return result["log"]
    if "content" in result and result.get("encoding") == "base64":
        return base64.b64decode(result["content"]).decode("utf-8", "replace")
    if "stdout" in result:
        text = result.get("stdout") or ""
        if result.get("stderr"):
            text += "\n--- stderr ---\n" + result["stderr"]
        if result.get("rc") not in (None, 0):
            text += "\n--- exit status %s ---\n" % result["rc"]
        return text + ("" if text.endswith("\n") else "\n")
    return None


# What Ansible adds to every result; it says nothing about the cluster.
NOISE_KEYS = ("invocation", "changed", "failed", "attempts", "_ansible_no_log", "warnings", "deprecations")


def item_member(item):
    """One collected item as (name, text, error): its text, or the error that kept it from being collected.

    An item is {name, result} (a registered result: failed, skipped or not, any module), {name, content} (a value
    to keep as it is) or {name, error}.
    """
    name = item.get("name") or ""
    if not re.match(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$", name) or ".." in name.split("/"):
        raise SupportBundleError("item name %r is not a relative path of plain names" % name)
    if item.get("error"):
        return name, None, str(item["error"])
    if "result" in item:
        result = item["result"]
        if not isinstance(result, dict):
            return name, None, "no result (the task did not run)"
        if result.get("skipped"):
            return name, None, "skipped: %s" % (result.get("skip_reason") or result.get("false_condition") or "?")
        if result.get("unreachable"):
            return name, None, "unreachable: %s" % result.get("msg", "?")
        error = None
        if "json" in result and not result.get("failed"):
            # An HTTP answer: its parsed body says it all (the raw content and headers repeat it).
            return name, result["json"], error
        text = _text_of(result)
        if result.get("failed"):
            error = str(result.get("msg") or "failed")
        if text is not None and (text.strip() or not error):
            return name, text, error
        kept = {key: entry for key, entry in result.items() if key not in NOISE_KEYS}
        if error and set(kept) <= {"msg"}:
            return name, None, error
        return name, kept, error
    return name, item.get("content"), None


def _encode(content):
    if content is None:
        return b""
    if isinstance(content, bytes):
        return content
    if isinstance(content, str):
        return content.encode("utf-8", "replace")
    return (json.dumps(content, indent=2, sort_keys=True, default=str) + "\n").encode("utf-8")


def bundle_name(release, now=None):
    """llmops-support-<release>-<UTC timestamp>.tar.gz (the release's unsafe characters become -)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(release or "llm")).strip("-.") or "llm"
    return "llmops-support-%s-%s.tar.gz" % (safe, stamp)


def free_path(dest_dir, name):
    """``dest_dir/name``, or with ``-2``, ``-3``... before ``.tar.gz`` when a file of that name is there already.

    The name's stamp is the wall clock, which a clock step set back (or a second bundle within one second) repeats;
    the earlier bundle must stay.
    """
    stem = name[: -len(".tar.gz")]
    path, count = os.path.join(dest_dir, name), 1
    while os.path.lexists(path):
        count += 1
        path = os.path.join(dest_dir, "%s-%d.tar.gz" % (stem, count))
    return path


def build_members(items, secrets=(), max_bytes=MAX_MEMBER_BYTES):
    """The archive's members as [(name, bytes)] with MANIFEST.json first, every one redacted; and the count.

    A member over max_bytes keeps its last max_bytes (the end of a log says most). Items of one name are kept once,
    the first.
    """
    members, manifest, errors, total = [], [], {}, 0
    seen = set()
    for item in items:
        name, content, error = item_member(item)
        if name in seen:
            continue
        seen.add(name)
        if error is not None:
            errors[name] = redact_text(error, secrets)[0]
        if content is None:
            continue
        if isinstance(content, str):
            content, hits = redact_text(content, secrets)
        else:
            content, hits = redact_value(content, secrets)
        total += hits
        data = _encode(content)
        truncated = len(data) > max_bytes
        if truncated:
            data = data[-max_bytes:]
        members.append((name, data))
        manifest.append({"name": name, "bytes": len(data), "redactions": hits, "truncated": truncated})
    head = {
        "members": manifest,
        "errors": errors,
        "redactions": total,
        "note": "Secrets (the vLLM API key, the Ray token, the hub token, no_log values) are replaced by " + REDACTED,
    }
    return [("MANIFEST.json", _encode(head))] + members, total


def write_bundle(path, members, now=None):
    """Write members under one top directory (the file's name without .tar.gz) as a gzipped tar, mode 0600.

    Written to a temporary file in the same directory first, then renamed: a reader never sees half a bundle.
    """
    top = os.path.basename(path)
    if top.endswith(".tar.gz"):
        top = top[: -len(".tar.gz")]
    mtime = int(time.time() if now is None else now)
    partial = path + ".partial"
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(descriptor, 0o600)
        with os.fdopen(descriptor, "wb") as raw:
            descriptor = None
            with tarfile.open(fileobj=raw, mode="w:gz") as archive:
                for name, data in members:
                    info = tarfile.TarInfo("%s/%s" % (top, name))
                    info.size = len(data)
                    info.mode = 0o600
                    info.mtime = mtime
                    archive.addfile(info, io.BytesIO(data))
        os.rename(partial, path)
    except BaseException:
        if descriptor is not None:
            os.close(descriptor)
        if os.path.exists(partial):
            os.unlink(partial)
        raise
    return ["%s/%s" % (top, member[0]) for member in members]


def make_bundle(dest_dir, release, items, secrets=(), now=None, check_mode=False, max_bytes=MAX_MEMBER_BYTES):
    """The whole job: {path, members, errors, redactions}; in check mode nothing is written."""
    if not os.path.isabs(dest_dir):
        raise SupportBundleError("dest_dir must be an absolute path, got %r" % dest_dir)
    members, redactions = build_members(items, secrets, max_bytes)
    path = free_path(dest_dir, bundle_name(release, now))
    manifest = json.loads(members[0][1])
    if check_mode:
        names = [member[0] for member in members]
    else:
        if not os.path.isdir(dest_dir):
            os.makedirs(dest_dir, 0o700)
        names = write_bundle(path, members, now)
    return {"path": path, "members": names, "errors": manifest["errors"], "redactions": redactions}
