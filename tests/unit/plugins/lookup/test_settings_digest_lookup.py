# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The settings_digest lookup with ansible-core's own Templar, as a play's variables reach it (inventory values are
trusted templates). The collection it digests is a small copy here, so edits elsewhere in the tree do not move it."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleError
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

from ansible_collections.llmops.ray_vllm.plugins.lookup import settings_digest

PATTERNS = ("^vllm_serve_", "^ansible_host$")


@pytest.fixture
def collection(tmp_path, monkeypatch):
    (tmp_path / "roles" / "vllm_serve" / "tasks").mkdir(parents=True)
    (tmp_path / "roles" / "vllm_serve" / "tasks" / "main.yml").write_text("- ansible.builtin.ping:\n")
    monkeypatch.setattr(settings_digest, "COLLECTION_ROOT", str(tmp_path))
    return tmp_path


def variables(**changes):
    values = {
        "vllm_serve_port": 8000,
        "vllm_serve_url": trust_as_template("http://{{ ansible_host }}:{{ vllm_serve_port }}"),
        "ansible_host": "10.0.0.5",
        "ray_cluster_port": 6379,
        "groups": {"all": ["head"], "ray_head": ["head"]},
    }
    return dict(values, **changes)


def digest(values, terms=PATTERNS):
    lookup = settings_digest.LookupModule(loader=DataLoader(), templar=Templar(loader=DataLoader(), variables=values))
    return lookup.run(terms, variables=values)


def expected(values, collection):
    """The digest of the given rendered values, the groups and the collection, as the module_utils computes it."""
    collection_digest = settings_digest.collection_digest(str(collection))
    return [settings_digest.settings_digest(values, collection_digest)]


def test_the_digest_is_of_the_matching_variables_rendered_and_the_groups(collection):
    rendered = {
        "ansible_host": "10.0.0.5",
        "vllm_serve_port": 8000,
        "vllm_serve_url": "http://10.0.0.5:8000",
        "groups": {"all": ["head"], "ray_head": ["head"]},
    }
    assert digest(variables()) == expected(rendered, collection)


def test_a_value_needing_what_is_not_defined_yet_is_kept_as_written(collection):
    late = "{{ vllm_serve_port_fact_set_later }}"
    values = variables(vllm_serve_model=trust_as_template(late))
    rendered = {
        "ansible_host": "10.0.0.5",
        "vllm_serve_model": late,
        "vllm_serve_port": 8000,
        "vllm_serve_url": "http://10.0.0.5:8000",
        "groups": {"all": ["head"], "ray_head": ["head"]},
    }
    assert digest(values) == expected(rendered, collection)


def test_the_digest_moves_with_a_matching_variable_a_variable_it_renders_or_the_groups(collection):
    first = digest(variables())
    assert len(first) == 1 and len(first[0]) == 64
    assert digest(variables(vllm_serve_port=8001)) != first
    assert digest(variables(ansible_host="10.0.0.6")) != first
    assert digest(variables(groups={"all": ["head", "worker"], "ray_head": ["head"]})) != first


def test_the_digest_stays_when_an_unmatched_variable_changes(collection):
    assert digest(variables(ray_cluster_port=6380, ansible_hostname="other")) == digest(variables())


def test_the_digest_moves_with_the_collection(collection):
    first = digest(variables())
    (collection / "roles" / "vllm_serve" / "tasks" / "main.yml").write_text("- ansible.builtin.ping: {}\n")
    assert digest(variables()) != first


def test_a_bad_regular_expression_is_named(collection):
    with pytest.raises(AnsibleError, match=r"settings_digest: \['\^vllm_\(serve'\]: expected regular expressions"):
        digest(variables(), ["^vllm_(serve"])
