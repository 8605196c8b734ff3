"""The excerpt the shape tests rest on: the copy is the shared one, and the one liberty taken
with it (null admitted in nullable enums, see vercel_spec.py) is still needed."""

import pytest

from atge_assets_tests.lib.providers import vercel_spec as spec


def test_the_copy_equals_the_shared_excerpt():
    if not spec.SHARED_EXCERPT.exists():
        pytest.skip(f"no shared excerpt at {spec.SHARED_EXCERPT} (a clone without ../shared)")
    assert spec.EXCERPT.read_bytes() == spec.SHARED_EXCERPT.read_bytes()


def test_nullable_enums_need_null_admitted():
    """Read literally, OAS 3.0.3 refuses the null Vercel documents for a preview's `target`;
    should Vercel list null in its enums, the liberty in vercel_spec.document() can go."""
    assert ["production", "staging"] in spec.nullable_enums_refusing_null(spec.raw_document())
    assert spec.nullable_enums_refusing_null(spec.document()) == []
    item = spec.list_item(target=None)
    assert spec.errors(spec.list_page([item]), "get", "/v6/deployments") == []


def test_a_v13_answer_is_checked_against_the_private_branch():
    public_only = {k: v for k, v in spec.deployment().items() if k != "build"}
    assert "(root): 'build' is a required property" in spec.errors(public_only, "get", spec.V13)
