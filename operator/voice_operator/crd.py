"""The VoicePersonality CRD, generated from the personality model.

`chorus.personalities.PersonalitySpec` is the one definition of a personality; this turns
its JSON schema into a structural openAPIV3Schema (refs inlined, OpenAPI 3.0 bounds, no
`additionalProperties`, list types for sets) and adds the cross-field rules the model
checks in Python as CEL, so the API server refuses what the ingress would refuse.

    python -m voice_operator.crd        # rewrite the committed CRD files
    python -m voice_operator.crd --check
    python -m voice_operator.crd --stdout   # print it (an installed package, with no
                                            # repository around it, always prints)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, get_args

import yaml

from chorus.common.constants import GROUP, KIND, PLURAL, VERSION
from chorus.personalities import NAME_PATTERN, PersonalitySpec
from deployments.base import EngineId
from voice_operator.conditions import ConditionType

SINGULAR = "voicepersonality"
SHORT_NAMES = ["vp"]
CATEGORIES = ["chorus"]
ENGINES: tuple[str, ...] = get_args(EngineId)

ROOT = Path(__file__).resolve().parents[2]
FILENAME = f"{PLURAL}.{GROUP}.yaml"
OUTPUTS = [ROOT / "manifests" / "crds" / FILENAME, ROOT / "charts" / "chorus" / "crds" / FILENAME]

CONDITION_TYPES = list(get_args(ConditionType))


# --- JSON schema -> structural schema ---------------------------------------------------


def _structural(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _structural(merged, defs)
    if "anyOf" in node:
        # Optional fields: `X | None`. The CRD omits the field instead of holding null.
        branches = [b for b in node["anyOf"] if b.get("type") != "null"]
        if len(branches) != 1:
            raise ValueError(f"cannot express anyOf {node['anyOf']} structurally")
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        return _structural({**branches[0], **rest}, defs)

    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("title", "additionalProperties", "$defs"):
            continue  # unknown fields are refused by strict field validation instead
        if key == "default":
            if value is not None:
                out["default"] = _without_nulls(value)
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            # JSON Schema 2020-12 gives the bound; OpenAPI 3.0 a flag beside it.
            bound = "minimum" if key == "exclusiveMinimum" else "maximum"
            out[bound] = value
            out[key] = True
        elif key == "properties":
            out["properties"] = {k: _structural(v, defs) for k, v in value.items()}
        elif key == "items":
            out["items"] = _structural(value, defs)
        else:
            out[key] = value
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    if "enum" in out and out["type"] == "string":
        out["maxLength"] = max(len(v) for v in out["enum"])  # bounds the CEL cost estimate
    if out.get("format") == "uri":
        out.pop("minLength", None)
    first = [k for k in ("type", "description") if k in out]  # reads like hand-written YAML
    return {**{k: out[k] for k in first}, **out}


def _without_nulls(value: Any) -> Any:
    """A default as the API server stores it: unset optional fields are absent, not null."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value


def spec_schema() -> dict[str, Any]:
    raw = PersonalitySpec.model_json_schema(by_alias=True, mode="validation")
    schema = _structural(raw, raw.get("$defs", {}))
    props = schema["properties"]

    # Each engine once in the chain, each language once, samples keyed by id.
    props["fallbackChain"]["x-kubernetes-list-type"] = "set"
    props["aliases"]["x-kubernetes-list-type"] = "set"
    props["languages"]["properties"]["supported"]["x-kubernetes-list-type"] = "set"
    props["voiceSamples"]["x-kubernetes-list-type"] = "map"
    props["voiceSamples"]["x-kubernetes-list-map-keys"] = ["id"]

    props["languages"]["x-kubernetes-validations"] = [{
        "rule": "!has(self.supported) || size(self.supported) == 0 || self.primary in self.supported",
        "messageExpression": "'languages.primary ' + self.primary + ' must be one of languages.supported'",
        "reason": "FieldValueInvalid",
    }]
    props["voiceSamples"]["items"]["x-kubernetes-validations"] = [{
        "rule": "has(self.url) || (has(self.stored) && self.stored)",
        "messageExpression": "'voiceSamples[' + self.id + ']: give a url or mark it stored'",
        "reason": "FieldValueRequired",
    }]
    # One rule per engine: cheap enough for the API server's CEL cost budget, and each
    # message names the engine.
    schema["x-kubernetes-validations"] = [
        *({
            "rule": f"self.activeProvider != '{e}' || has(self.providers.{e})",
            "message": f"activeProvider {e} is not configured in providers",
            "reason": "FieldValueInvalid",
            "fieldPath": ".activeProvider",
        } for e in ENGINES),
        *({
            "rule": f"!has(self.fallbackChain) || !('{e}' in self.fallbackChain) || has(self.providers.{e})",
            "message": f"fallbackChain lists {e}, which is not configured in providers",
            "reason": "FieldValueInvalid",
            "fieldPath": ".fallbackChain",
        } for e in ENGINES),
        {
            "rule": "!has(self.fallbackChain) || !(self.activeProvider in self.fallbackChain)",
            "messageExpression": "'fallbackChain repeats the activeProvider ' + self.activeProvider",
            "reason": "FieldValueInvalid",
            "fieldPath": ".fallbackChain",
        },
    ]
    schema["description"] = (
        "A named voice: the engine that speaks first, the engines that take over, what each "
        "engine is told, the languages it speaks and the samples it clones from."
    )
    return schema


def _condition_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["type", "status"],
        "properties": {
            "type": {"type": "string", "enum": CONDITION_TYPES},
            "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
            "reason": {"type": "string", "maxLength": 1024},
            "message": {"type": "string", "maxLength": 32768},
            "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0},
            "lastTransitionTime": {"type": "string", "format": "date-time"},
        },
    }


def status_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "Written by the operator.",
        "properties": {
            "observedGeneration": {"type": "integer", "format": "int64"},
            "conditions": {
                "type": "array",
                "items": _condition_schema(),
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
            },
            "configMap": {"type": "string", "description": "the rendered ConfigMap"},
            "sampleVolume": {"type": "string", "description": "sample directory or PVC"},
            "samples": {"type": "integer", "description": "samples stored and checked"},
            "fetchedSamples": {
                "type": "object",
                "description": "sample id -> the URL it was fetched from",
                "additionalProperties": {"type": "string"},
            },
        },
    }


def render_crd() -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}", "labels": {"app.kubernetes.io/part-of": "chorus"}},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND, "listKind": f"{KIND}List", "plural": PLURAL, "singular": SINGULAR,
                "shortNames": SHORT_NAMES, "categories": CATEGORIES,
            },
            "versions": [{
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Active", "type": "string", "jsonPath": ".spec.activeProvider"},
                    {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
                    {"name": "Samples", "type": "integer", "jsonPath": ".status.samples"},
                    {"name": "Reason", "type": "string", "priority": 1,
                     "jsonPath": '.status.conditions[?(@.type=="Ready")].reason'},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "required": ["spec"],
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        # The name is a label value, a directory and a URL segment too.
                        "metadata": {"type": "object", "properties": {"name": {
                            "type": "string", "maxLength": 63, "pattern": NAME_PATTERN}}},
                        "spec": spec_schema(),
                        "status": status_schema(),
                    },
                }},
            }],
        },
    }


HEADER = "# Generated from serve/personalities.py by `python -m voice_operator.crd`; do not edit.\n"


def render_yaml() -> str:
    return HEADER + yaml.safe_dump(render_crd(), sort_keys=False, width=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a committed file is stale")
    parser.add_argument("--stdout", action="store_true", help="print the CRD instead of writing the files")
    args = parser.parse_args(argv)
    text = render_yaml()
    # An installed operator (the operator image) has no repository to write into: it prints.
    if args.stdout or not (ROOT / "pyproject.toml").is_file():
        sys.stdout.write(text)
        return 0
    stale = [p for p in OUTPUTS if not p.exists() or p.read_text() != text]
    if args.check:
        for p in stale:
            print(f"{p.relative_to(ROOT)} is stale: run python -m voice_operator.crd", file=sys.stderr)
        return 1 if stale else 0
    for p in OUTPUTS:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
