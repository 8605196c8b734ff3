"""Fixtures for this folder: one sandbox per module, its metrics reset for each test."""

from atge_assets_tests.defs.monitoring.helpers import sandbox, shared_sandbox  # noqa: F401
