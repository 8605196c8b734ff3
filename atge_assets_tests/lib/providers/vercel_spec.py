"""Vercel's OpenAPI excerpt (vercel_openapi/, a copy of ../shared/data/vercel-openapi) for tests:
each operation's response schema, a validator, and payloads built from the schemas.

Validation is openapi-schema-validator's OAS 3.0 read validator: the excerpt is OpenAPI 3.0.3,
whose `nullable` a plain JSON Schema validator does not know (it would refuse every null that
Vercel documents). `$ref`s resolve against the whole document through a `referencing` registry.

Two readings of the excerpt, both deliberate:
- `nullable: true` beside an `enum` that lacks null: OAS 3.0.3 reads that as "null refused", yet
  Vercel documents null as meaningful there (`target: null` is a preview) and sends it; null is
  added to such enums. `nullable_enums_refusing_null` lists them, and a test keeps it honest.
- GET /v13/deployments/{idOrUrl} answers a `oneOf` of two overlapping branches (public fields;
  public and private fields): the private branch, what the owner's token gets, is the schema,
  which is stricter than the `anyOf` the excerpt's README suggests.
- PATCH /v1/projects/{idOrName}/rolling-release/config answers a `oneOf` whose first branch
  (`rollingRelease` present, anything) matches every answer the second does, so a right answer
  matches both and fails `oneOf`, and only a wrong one (stages malformed) could pass. The second
  branch (null, or the config with typed stages) is the schema: it validates all there is to
  validate, and what it refuses the `oneOf` would too.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

from openapi_schema_validator import OAS30ReadValidator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

HERE = Path(__file__).resolve().parent / "vercel_openapi"
EXCERPT = HERE / "vercel-api-excerpt.json"
SHARED_EXCERPT = (Path(__file__).resolve().parents[3].parent
                  / "shared/data/vercel-openapi/vercel-api-excerpt.json")
URI = "urn:vercel-openapi-excerpt"
V13 = "/v13/deployments/{idOrUrl}"
RR_CONFIG = "/v1/projects/{idOrName}/rolling-release/config"
DROP = object()  # an override that removes the field


@cache
def raw_document() -> dict:
    return json.loads(EXCERPT.read_text())


@cache
def document() -> dict:
    doc = copy.deepcopy(raw_document())
    for schema in _schemas(doc):
        if schema.get("nullable") and "enum" in schema and None not in schema["enum"]:
            schema["enum"] = [*schema["enum"], None]
    content = doc["paths"][V13]["get"]["responses"]["200"]["content"]["application/json"]
    private = content["schema"]["oneOf"][0]
    assert "build" in private["required"], "the v13 branches moved; pick the private one again"
    content["schema"] = private
    content = doc["paths"][RR_CONFIG]["patch"]["responses"]["200"]["content"]["application/json"]
    anything, typed = content["schema"]["oneOf"]
    assert "properties" not in anything["properties"]["rollingRelease"], "the branches moved"
    content["schema"] = typed
    return doc


def nullable_enums_refusing_null(doc: dict) -> list[list]:
    return [s["enum"] for s in _schemas(doc)
            if s.get("nullable") and "enum" in s and None not in s["enum"]]


def _schemas(node: Any):
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _schemas(value)
    elif isinstance(node, list):
        for value in node:
            yield from _schemas(value)


def operations() -> list[tuple[str, str]]:
    """(method, path) of every operation in the excerpt."""
    return [(method, path) for path, item in document()["paths"].items()
            for method in item if method in ("get", "post", "put", "patch", "delete")]


def statuses(method: str, path: str) -> set[int]:
    return {int(code) for code in document()["paths"][path][method]["responses"]}


def _pointer(*parts: str) -> str:
    return "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


@cache
def _registry() -> Registry:
    return Registry().with_resource(URI, Resource(contents=document(), specification=DRAFT4))


def validator(method: str, path: str, status: int = 200):
    """The validator of one operation's answer, or None where the excerpt gives no body."""
    response = document()["paths"][path][method]["responses"][str(status)]
    if "application/json" not in response.get("content", {}):
        return None
    ref = URI + _pointer("paths", path, method, "responses", str(status), "content",
                         "application/json", "schema")
    return OAS30ReadValidator({"$ref": ref}, registry=_registry())


def errors(body: Any, method: str, path: str, status: int = 200) -> list[str]:
    """Every way `body` is not what the excerpt promises, one line each: `where: what`."""
    v = validator(method, path, status)
    if v is None:
        return []
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message[:200]}"
            for e in sorted(v.iter_errors(body), key=lambda e: list(map(str, e.absolute_path)))]


def _resolve(schema: dict) -> dict:
    while "$ref" in schema:
        node: Any = document()
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        schema = node
    return schema


def example(schema: dict) -> Any:
    """A smallest instance of `schema`: its required properties only, each from the schema's
    own `example` where it gives one, else its first enum value, else null where allowed, else a
    plain value of its type."""
    schema = _resolve(schema)
    if "example" in schema:
        return copy.deepcopy(schema["example"])
    if "enum" in schema:
        return schema["enum"][0]
    for key in ("oneOf", "anyOf"):
        if key in schema:
            return example(schema[key][0])
    if schema.get("nullable"):
        return None
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return {k: example(schema["properties"][k]) for k in schema.get("required", [])}
    if kind == "array":
        return []
    return {"string": "x", "number": 0, "integer": 0, "boolean": False}[kind]


def response_schema(method: str, path: str, status: int = 200) -> dict:
    return document()["paths"][path][method]["responses"][str(status)]["content"][
        "application/json"]["schema"]


def _with(schema: dict, fields: dict) -> dict:
    out = example({k: v for k, v in _resolve(schema).items() if k != "nullable"})
    for key, value in fields.items():
        if value is DROP:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def list_item(**fields) -> dict:
    """An entry of GET /v6/deployments built from its schema, with `fields` set (DROP removes)."""
    items = response_schema("get", "/v6/deployments")["properties"]["deployments"]["items"]
    return _with(items, fields)


def list_page(items: list, next_until: int | None = None) -> dict:
    return {"deployments": items,
            "pagination": {"count": len(items), "next": next_until, "prev": None}}


def deployment(**fields) -> dict:
    """The answer of GET /v13/deployments/{id} built from its schema, with `fields` set."""
    return _with(response_schema("get", V13), fields)


def project(**fields) -> dict:
    """The answer of GET /v9/projects/{id} built from its schema, with `fields` set."""
    return _with(response_schema("get", "/v9/projects/{idOrName}"), fields)


def target(**fields) -> dict:
    """One value of a project's `targets` (the live deployment of an environment)."""
    targets = response_schema("get", "/v9/projects/{idOrName}")["properties"]["targets"]
    return _with(targets["additionalProperties"], fields)
