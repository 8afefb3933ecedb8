"""Checking API responses: against the checked-in OpenAPI document, and recommendations
responses' rec_ids, which name their run and variant."""

import json
from pathlib import Path

from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from store.experiments import RecId

OPENAPI = json.loads((Path(__file__).resolve().parents[1] / "serving" / "openapi.json").read_text())
REGISTRY = Registry().with_resource("urn:openapi", DRAFT202012.create_resource(OPENAPI))


def assert_matches_openapi(response, path: str, method: str = "get") -> None:
    """The response's status is documented for the path, and its body fits that schema."""
    documented = OPENAPI["paths"][path][method]["responses"]
    assert str(response.status_code) in documented, f"{response.status_code} not documented for {path}"
    assert response.mimetype == "application/json"
    pointer = "/".join(["#/paths", path.replace("/", "~1"), method, "responses", str(response.status_code)])
    schema = {"$ref": "urn:openapi" + pointer + "/content/application~1json/schema"}
    Draft202012Validator(schema, registry=REGISTRY).validate(response.get_json())


def without_rec_id(body: dict) -> dict:
    """The body without its rec_id, after checking that the rec_id names the body's run,
    experiment, variant and whether it was forced."""
    body = dict(body)
    rec = RecId.parse(body.pop("rec_id"))
    assert (rec.run_id, rec.experiment, rec.variant, rec.forced) == (
        body["run_id"], body["experiment"], body["variant"], body["forced"]
    )  # fmt: skip
    return body


NO_EXPERIMENT = {"experiment": None, "variant": "default", "forced": False}
