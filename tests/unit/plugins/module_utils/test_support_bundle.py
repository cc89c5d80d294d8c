"""The support bundle (_support_bundle): redaction of secrets and credential shapes, member texts, the tar layout."""

from __future__ import annotations

import base64
import json
import os
import stat
import tarfile

import pytest

from ansible_collections.llmops.ray_vllm.plugins.module_utils._support_bundle import (
    REDACTED,
    SupportBundleError,
    build_members,
    bundle_name,
    item_member,
    make_bundle,
    redact_text,
    redact_value,
)

API_KEY = "Zk3vQ9mW2pL7xR4tY8uB1nC6"
RAY_TOKEN = "0123456789abcdef" * 4
NOW = 1796526900  # 2026-12-06T03:15:00Z


def test_given_secrets_go_as_written_and_base64_encoded():
    text = "key %s and token %s in a Secret %s" % (API_KEY, RAY_TOKEN, base64.b64encode(RAY_TOKEN.encode()).decode())
    redacted, count = redact_text(text, [API_KEY, RAY_TOKEN])
    assert API_KEY not in redacted and RAY_TOKEN not in redacted
    assert base64.b64encode(RAY_TOKEN.encode()).decode() not in redacted
    assert count == 3 and redacted.count(REDACTED) == 3


def test_short_and_empty_secrets_are_not_hunted_for():
    assert redact_text("the node is up", ["", None, "up", "node"]) == ("the node is up", 0)


@pytest.mark.parametrize(
    "line, kept",
    [
        ("curl -H 'Authorization: Bearer sk-abcdefgh12345' http://x", "Authorization: Bearer " + REDACTED),
        ('{"Authorization": "Bearer abcdefgh1234"}', "Bearer " + REDACTED),
        ("vllm serve /m --api-key s3cr3tvalue --port 8000", "--api-key " + REDACTED + " --port 8000"),
        ("huggingface-cli download --token=hf_abc", "--token=" + REDACTED),
        ("RAY_AUTH_TOKEN=deadbeefcafe python x.py", "RAY_AUTH_TOKEN=" + REDACTED + " python"),
        ('{"api_key": "abcd1234efgh"}', '"api_key": "' + REDACTED + '"'),
        ("HF_TOKEN: hf_" + "A" * 30, "HF_TOKEN: " + REDACTED),
        ("downloading with hf_" + "b" * 34 + " now", "with " + REDACTED + " now"),
    ],
)
def test_credential_shapes_are_redacted_whatever_their_value(line, kept):
    redacted, count = redact_text(line)
    assert kept in redacted and count >= 1


@pytest.mark.parametrize(
    "line",
    [
        "max_tokens=32 num_tokens: 12 prompt_tokens=5",
        "tokenizer: /models/smollm2 secret_name: llm-vllm-api-key",
        "Bearer",
        # A shell that reads the key from its file holds no secret, and says where the key is.
        'export VLLM_API_KEY="$(cat /etc/llmops/vllm-api-key)"',
        "INFO raylet.cc:123 -- node 0a1b started",
    ],
)
def test_ordinary_lines_stay_as_they_are(line):
    assert redact_text(line) == (line, 0)


def test_structured_values_lose_secret_keys_and_secret_env_values():
    pod = {
        "spec": {
            "containers": [
                {
                    "env": [
                        {"name": "RAY_AUTH_TOKEN", "value": RAY_TOKEN},
                        {"name": "VLLM_PORT", "value": "8000"},
                        {"name": "VLLM_API_KEY", "valueFrom": {"secretKeyRef": {"name": "llm-vllm-api-key"}}},
                    ],
                    "args": ["--api-key", API_KEY],
                }
            ]
        },
        "data": {"api-key": "c2VjcmV0"},
    }
    redacted, count = redact_value(pod, [API_KEY])
    env = redacted["spec"]["containers"][0]["env"]
    assert env[0]["value"] == REDACTED and env[1]["value"] == "8000"
    assert env[2]["valueFrom"]["secretKeyRef"]["name"] == "llm-vllm-api-key"
    assert redacted["spec"]["containers"][0]["args"] == ["--api-key", REDACTED]
    assert redacted["data"]["api-key"] == REDACTED
    assert count == 3
    assert RAY_TOKEN not in json.dumps(redacted) and API_KEY not in json.dumps(redacted)


def test_each_result_kind_gives_its_useful_text_or_its_error():
    assert item_member({"name": "a.txt", "result": {"stdout": "ok", "rc": 0}}) == ("a.txt", "ok\n", None)
    name, text, error = item_member({"name": "a.txt", "result": {"stdout": "", "stderr": "boom", "rc": 1}})
    assert "boom" in text and "exit status 1" in text and error is None
    assert item_member({"name": "l.log", "result": {"log_lines": ["x", "y"]}})[1] == "x\ny\n"
    slurped = {"content": base64.b64encode(b"line\n").decode(), "encoding": "base64"}
    assert item_member({"name": "f", "result": slurped})[1] == "line\n"
    # An HTTP answer: its parsed body.
    answer = {"json": [{"job_id": "1"}], "content": "[...]", "status": 200, "invocation": {}, "changed": False}
    assert item_member({"name": "jobs.json", "result": answer}) == ("jobs.json", [{"job_id": "1"}], None)
    # Any other result: itself, without Ansible's own keys.
    name, kept, error = item_member({"name": "facts.json", "result": {"gpus": [], "changed": False, "invocation": {}}})
    assert kept == {"gpus": []} and error is None
    # Failed, skipped, unreachable, never run: an error, never an exception.
    assert item_member({"name": "x", "result": {"failed": True, "msg": "Status code was 401"}})[2] == (
        "Status code was 401"
    )
    assert item_member({"name": "x", "result": {"skipped": True, "false_condition": "a"}})[2] == "skipped: a"
    assert item_member({"name": "x", "result": {"unreachable": True, "msg": "ssh"}})[2] == "unreachable: ssh"
    assert item_member({"name": "x", "result": None})[2].startswith("no result")
    assert item_member({"name": "x", "error": "no head"}) == ("x", None, "no head")


@pytest.mark.parametrize("name", ["", "/etc/passwd", "../x", "a/../../b", "a b"])
def test_member_names_are_plain_relative_paths(name):
    with pytest.raises(SupportBundleError):
        item_member({"name": name, "content": "x"})


def test_the_manifest_lists_members_errors_and_redactions_and_big_members_keep_their_end():
    members, total = build_members(
        [
            {"name": "gate.json", "content": {"msg": "2 of 3 nodes", "token": RAY_TOKEN}},
            {"name": "logs/head/raylet.out", "content": "a" * 50 + "END"},
            {"name": "ray/serve.json", "result": {"failed": True, "msg": "key %s refused" % API_KEY}},
            {"name": "gate.json", "content": "a second item of one name is dropped"},
        ],
        secrets=[API_KEY, RAY_TOKEN],
        max_bytes=20,
    )
    names = [member[0] for member in members]
    assert names == ["MANIFEST.json", "gate.json", "logs/head/raylet.out"]
    manifest = json.loads(members[0][1])
    assert manifest["errors"] == {"ray/serve.json": "key %s refused" % REDACTED}
    assert manifest["redactions"] == total == 1
    assert dict(members)["logs/head/raylet.out"].endswith(b"END") and len(dict(members)["logs/head/raylet.out"]) == 20
    assert [entry["truncated"] for entry in manifest["members"]] == [True, True]


def test_bundle_names_carry_the_release_and_utc_time():
    assert bundle_name("llm", NOW) == "llmops-support-llm-20261206T031500Z.tar.gz"
    assert bundle_name("a/b c", NOW) == "llmops-support-a-b-c-20261206T031500Z.tar.gz"


def test_the_tarball_is_0600_with_every_member_under_one_top_directory(tmp_path):
    dest = tmp_path / "support"
    result = make_bundle(
        str(dest),
        "llm",
        [{"name": "ray/status.txt", "content": "Active: 1 node " + API_KEY}, {"name": "plan.json", "content": {}}],
        secrets=[API_KEY],
        now=NOW,
    )
    path = result["path"]
    assert path == str(dest / "llmops-support-llm-20261206T031500Z.tar.gz")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and stat.S_IMODE(os.stat(dest).st_mode) == 0o700
    with tarfile.open(path) as archive:
        names = archive.getnames()
        top = "llmops-support-llm-20261206T031500Z"
        assert names == [top + "/MANIFEST.json", top + "/ray/status.txt", top + "/plan.json"]
        assert all(member.isfile() and member.mode == 0o600 for member in archive.getmembers())
        status = archive.extractfile(top + "/ray/status.txt").read().decode()
    assert status == "Active: 1 node " + REDACTED
    assert result["members"] == names and result["redactions"] == 1
    assert not [entry for entry in os.listdir(dest) if entry.endswith(".partial")]


def test_check_mode_reports_the_path_and_writes_nothing(tmp_path):
    result = make_bundle(str(tmp_path / "none"), "llm", [{"name": "a", "content": "x"}], now=NOW, check_mode=True)
    assert result["path"].endswith("llmops-support-llm-20261206T031500Z.tar.gz")
    assert result["members"] == ["MANIFEST.json", "a"]
    assert not (tmp_path / "none").exists()


def test_a_relative_directory_is_refused():
    with pytest.raises(SupportBundleError, match="absolute"):
        make_bundle("support", "llm", [], now=NOW)
