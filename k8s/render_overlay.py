#!/usr/bin/env python3
"""Renders a kustomize overlay the way `kubectl kustomize` would, for the subset this repository uses, when no
kustomize binary is at hand: resources (files and directories with their own kustomization), `labels` (metadata only),
`images`, and `patches` that are either a strategic-merge `$patch: delete` of one resource or inline JSON 6902 ops on a
target kind/name. Anything else is refused, so a new kustomize feature cannot slip through unrendered.

usage: render_overlay.py DIR OUT_PREFIX   (writes OUT_PREFIX-<n>.yaml, one document each)
"""
import copy
import os
import sys

import yaml

KNOWN = {"apiVersion", "kind", "resources", "labels", "images", "patches"}


def load(directory):
    kustomization = yaml.safe_load(open(os.path.join(directory, "kustomization.yaml")))
    unknown = set(kustomization) - KNOWN
    if unknown:
        sys.exit(f"render_overlay: {directory}: unsupported kustomization fields {sorted(unknown)}")
    documents = []
    for resource in kustomization.get("resources", []):
        path = os.path.normpath(os.path.join(directory, resource))
        if os.path.isdir(path):
            documents += load(path)
        else:
            documents += [d for d in yaml.safe_load_all(open(path)) if d]
    for patch in kustomization.get("patches", []):
        documents = apply(documents, patch, directory)
    for label in kustomization.get("labels", []):
        for document in documents:
            document.setdefault("metadata", {}).setdefault("labels", {}).update(label["pairs"])
    for image in kustomization.get("images", []):
        for document in documents:
            for container in containers(document):
                if container.get("image", "").split(":")[0] == image["name"]:
                    container["image"] = f"{image.get('newName', image['name'])}:{image.get('newTag', 'latest')}"
    return documents


def containers(document):
    spec = document.get("spec", {})
    template = spec.get("template", {}).get("spec", {})
    return template.get("containers", []) + template.get("initContainers", [])


def apply(documents, patch, directory):
    body = yaml.safe_load(patch["patch"]) if "patch" in patch else yaml.safe_load(open(os.path.join(directory, patch["path"])))
    if isinstance(body, dict) and body.get("$patch") == "delete":
        kind, name = body["kind"], body["metadata"]["name"]
        kept = [d for d in documents if not (d["kind"] == kind and d["metadata"]["name"] == name)]
        if len(kept) == len(documents):
            sys.exit(f"render_overlay: nothing to delete: {kind}/{name}")
        return kept
    if isinstance(body, list) and "target" in patch:
        target = patch["target"]
        matched = [d for d in documents if d["kind"] == target["kind"] and d["metadata"]["name"] == target["name"]]
        if not matched:
            sys.exit(f"render_overlay: no target {target}")
        for document in matched:
            for op in body:
                operate(document, op)
        return documents
    sys.exit(f"render_overlay: unsupported patch {patch}")


def operate(document, op):
    *parents, last = [part.replace("~1", "/").replace("~0", "~") for part in op["path"].split("/")[1:]]
    node = document
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    value = copy.deepcopy(op.get("value"))
    if op["op"] == "add" and isinstance(node, list):
        node.append(value) if last == "-" else node.insert(int(last), value)
    elif op["op"] in ("add", "replace"):
        if isinstance(node, list):
            node[int(last)] = value
        else:
            if op["op"] == "replace" and last not in node:
                sys.exit(f"render_overlay: replace of a missing {op['path']}")
            node[last] = value
    elif op["op"] == "remove":
        del node[int(last) if isinstance(node, list) else last]
    else:
        sys.exit(f"render_overlay: unsupported op {op['op']}")


def main():
    directory, prefix = sys.argv[1], sys.argv[2]
    for index, document in enumerate(load(directory)):
        with open(f"{prefix}-{index}.yaml", "w") as out:
            yaml.safe_dump(document, out, sort_keys=False)


if __name__ == "__main__":
    main()
