"""What Slack and PagerDuty accept, checked on the bodies we actually post: Slack's Block Kit
through slack-sdk's own models, PagerDuty's Events API v2 through a JSON Schema written from its
documentation (data/pagerduty-events-v2.schema.json)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
from slack_sdk.models.blocks import Block

EVENTS_V2_SCHEMA = json.loads(
    (Path(__file__).parent / "data" / "pagerduty-events-v2.schema.json").read_text())
_EVENTS_V2 = jsonschema.Draft202012Validator(
    EVENTS_V2_SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def assert_block_kit(message: dict) -> None:
    """A valid incoming-webhook message: a fallback `text`, and blocks slack-sdk parses into its
    models, that pass their validation (lengths, counts) and lose nothing on the way: a field
    the model does not know would be dropped by Slack too."""
    assert isinstance(message.get("text"), str) and message["text"], "no fallback text"
    assert len(message["text"]) <= 3000
    blocks = message.get("blocks") or []
    assert 0 < len(blocks) <= 50
    for raw in blocks:
        block = Block.parse(raw)
        assert block is not None, f"not a Block Kit block: {raw}"
        block.validate_json()  # raises SlackObjectFormationError
        assert _normal(block.to_dict()) == _normal(raw), f"Block Kit drops part of {raw}"


def assert_events_v2(body: dict) -> None:
    """A valid Events API v2 alert event, or the first error with where it is."""
    error = next(iter(_EVENTS_V2.iter_errors(body)), None)
    assert error is None, f"not an Events API v2 event: {error.message} at {list(error.path)}"


def _normal(value):
    """JSON as Slack reads it: key order does not matter."""
    return json.loads(json.dumps(value, sort_keys=True))
