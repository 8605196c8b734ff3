"""Vercel Deployment Protection: deployment URLs answer 401 to automated clients unless they send
the project's "Protection Bypass for Automation" secret in `x-vercel-protection-bypass` (the
same secret a deployment sees as VERCEL_AUTOMATION_BYPASS_SECRET).

Every request this tool makes to a deployment (benchmark samples, the interleaved reference,
smoke tests, load tests) carries it; those requests only ever go to hosts the provider or the
configuration allows, so the secret never reaches anyone else. It is registered for redaction,
so no log line or message can show it.
"""

from __future__ import annotations

from atge_assets.lib.redaction import register_secrets

BYPASS_HEADER = "x-vercel-protection-bypass"
BYPASS_VARIABLE = "VERCEL_AUTOMATION_BYPASS_SECRET"


def bypass_headers(secret: str | None) -> dict[str, str]:
    """The header to send to a protected deployment; none without a secret."""
    if not secret:
        return {}
    register_secrets([secret])
    return {BYPASS_HEADER: secret}
