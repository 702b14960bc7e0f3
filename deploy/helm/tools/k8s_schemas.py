"""Offline JSON schemas for kubeconform: Kubernetes' OpenAPI spec and CRDs -> one directory.

kubeconform downloads its schemas from the internet by default; this writes the same kind of
files from local sources instead, named the way kubeconform's ``-schema-location
'DIR/{{ .ResourceKind }}{{ .KindSuffix }}.json'`` template looks them up:
``deployment-apps-v1.json``, ``service-v1.json``, ``servicemonitor-monitoring-v1.json``.

Usage:
    python k8s_schemas.py OUT_DIR --openapi swagger.json [--crd FILE.yaml ...]

- ``--openapi``: Kubernetes' OpenAPI v2 document (``api/openapi-spec/swagger.json`` of the
  ``k8s.io/kubernetes`` Go module, e.g. from ``go mod download -json k8s.io/kubernetes@v1.34.4``).
  Every definition with ``x-kubernetes-group-version-kind`` becomes one file holding that
  definition plus every definition it references (local ``#/definitions/...`` refs).
- ``--crd``: CustomResourceDefinition YAML files; each served version's
  ``openAPIV3Schema`` becomes one file.

Schemas are strict, as kubeconform's published ``-strict`` ones: an object with declared
properties rejects unknown ones (a typo in a field name is an error), except where Kubernetes
says unknown fields are kept (``x-kubernetes-preserve-unknown-fields``). ``int-or-string``
and quantities accept both strings and integers; ``nullable`` fields accept null.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from pathlib import Path
from typing import Any

INT_OR_STRING = {"oneOf": [{"type": "string"}, {"type": "integer"}]}
NUMBER_OR_STRING = {"oneOf": [{"type": "string"}, {"type": "number"}]}
# Kubernetes types whose JSON form is looser than their OpenAPI declaration says.
SPECIAL = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": INT_OR_STRING,
    "io.k8s.apimachinery.pkg.api.resource.Quantity": NUMBER_OR_STRING,
}


def kind_suffix(group: str, version: str) -> str:
    """kubeconform's KindSuffix: '-' + first label of the group (if any) + '-' + version."""
    api_version = f"{group}/{version}" if group else version
    parts = api_version.split("/")
    suffix = "-" + parts[0].split(".")[0].lower()
    if len(parts) > 1:
        suffix += "-" + parts[1].lower()
    return suffix


def strict(node: Any) -> Any:
    """Make a schema strict and JSON-Schema-clean, recursively (a copy)."""
    if isinstance(node, list):
        return [strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: strict(v) for k, v in node.items()}
    if out.get("x-kubernetes-int-or-string"):
        return {**INT_OR_STRING, **({"description": out["description"]} if "description" in out else {})}
    if out.get("format") == "int-or-string":
        return copy.deepcopy(INT_OR_STRING)
    if out.pop("nullable", False) and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    preserve = out.get("x-kubernetes-preserve-unknown-fields")
    if "properties" in out and "additionalProperties" not in out and not preserve:
        out["additionalProperties"] = False
    return out


def openapi_schemas(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """file name -> schema for every kind in a Kubernetes OpenAPI v2 document."""
    defs = spec["definitions"]
    ref = re.compile(r"#/definitions/(.+)")

    def refs_of(node: Any, seen: set[str]) -> None:
        if isinstance(node, dict):
            target = node.get("$ref")
            if isinstance(target, str) and (m := ref.fullmatch(target)) and m.group(1) not in seen:
                seen.add(m.group(1))
                refs_of(defs[m.group(1)], seen)
            for v in node.values():
                refs_of(v, seen)
        elif isinstance(node, list):
            for v in node:
                refs_of(v, seen)

    clean = {name: SPECIAL.get(name) or strict(d) for name, d in defs.items()}
    out: dict[str, dict[str, Any]] = {}
    for name, d in defs.items():
        for gvk in d.get("x-kubernetes-group-version-kind", []):
            seen: set[str] = set()
            refs_of(d, seen)
            schema = copy.deepcopy(clean[name])
            schema["$schema"] = "http://json-schema.org/draft-07/schema#"
            schema["definitions"] = {r: clean[r] for r in sorted(seen)}
            # The object names its own kind: anything else is the wrong schema.
            props = schema.setdefault("properties", {})
            api_version = f"{gvk['group']}/{gvk['version']}" if gvk["group"] else gvk["version"]
            props["apiVersion"] = {"type": "string", "enum": [api_version]}
            props["kind"] = {"type": "string", "enum": [gvk["kind"]]}
            out[f"{gvk['kind'].lower()}{kind_suffix(gvk['group'], gvk['version'])}.json"] = schema
    return out


def crd_schemas(crd: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """file name -> schema for every served version of one CustomResourceDefinition."""
    spec = crd["spec"]
    group, kind = spec["group"], spec["names"]["kind"]
    out = {}
    for version in spec["versions"]:
        if not version.get("served", True):
            continue
        schema = strict(version["schema"]["openAPIV3Schema"])
        schema["$schema"] = "http://json-schema.org/draft-07/schema#"
        props = schema.setdefault("properties", {})
        props["apiVersion"] = {"type": "string", "enum": [f"{group}/{version['name']}"]}
        props["kind"] = {"type": "string", "enum": [kind]}
        # CRDs declare metadata as a bare object; Kubernetes checks it, not the CRD.
        props["metadata"] = {"type": "object"}
        out[f"{kind.lower()}{kind_suffix(group, version['name'])}.json"] = schema
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--openapi", type=Path, required=True, help="Kubernetes swagger.json (OpenAPI v2)")
    parser.add_argument("--crd", type=Path, action="append", default=[], help="CRD YAML file (repeatable)")
    args = parser.parse_args(argv)

    schemas = openapi_schemas(json.loads(args.openapi.read_text()))
    if args.crd:
        import yaml  # only needed for CRDs

        for path in args.crd:
            for doc in yaml.safe_load_all(path.read_text()):
                if doc and doc.get("kind") == "CustomResourceDefinition":
                    schemas.update(crd_schemas(doc))
    args.out.mkdir(parents=True, exist_ok=True)
    for name, schema in schemas.items():
        (args.out / name).write_text(json.dumps(schema, separators=(",", ":")))
    print(f"k8s_schemas: {len(schemas)} schemas in {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
