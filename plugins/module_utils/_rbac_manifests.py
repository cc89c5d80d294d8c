# -*- coding: utf-8 -*-
# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""The shipped least-privilege manifests (docs/rbac/least-privilege.yaml) for other namespaces and another subject."""

from __future__ import annotations

import copy


class RbacManifestError(ValueError):
    pass


def rbac_manifests(documents, namespaces, subject):
    """``documents`` with each ``metadata.namespace`` mapped through ``namespaces`` (shipped name -> wanted name),
    every binding's subjects replaced by ``subject``, and the ServiceAccount kept only when ``subject`` is one (then
    named as it)."""
    out = []
    for document in documents or []:
        if not document:
            continue
        document = copy.deepcopy(document)
        metadata = document.setdefault("metadata", {})
        if "namespace" in metadata:
            if metadata["namespace"] not in namespaces:
                raise RbacManifestError(
                    "{} {} is in namespace {!r}, which the namespace map {} does not name".format(
                        document.get("kind"), metadata.get("name"), metadata["namespace"], sorted(namespaces)
                    )
                )
            metadata["namespace"] = namespaces[metadata["namespace"]]
        if document.get("kind") == "ServiceAccount":
            if subject.get("kind") != "ServiceAccount":
                continue
            metadata["name"], metadata["namespace"] = subject["name"], subject["namespace"]
        if "subjects" in document:
            entry = {"kind": subject["kind"], "name": subject["name"]}
            if subject["kind"] == "ServiceAccount":
                entry["namespace"] = subject["namespace"]
            else:
                entry["apiGroup"] = "rbac.authorization.k8s.io"
            document["subjects"] = [entry]
        out.append(document)
    return out
