"""Secrets out of every text we produce: `redact` replaces every registered secret (and any given
one), and a filter on the `httpx` logger scrubs the full URLs it logs (a Slack webhook URL is a
credential).
"""

from __future__ import annotations

import logging
import threading
from typing import Iterable

import httpx

# -- redaction ---------------------------------------------------------------------------------

_REDACTED = "***"
_known_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every given secret, and every secret any notifier registered, replaced."""
    with _secrets_lock:
        all_secrets = _known_secrets | {s for s in secrets if s}
    for s in sorted(all_secrets, key=len, reverse=True):  # longest first: a URL before its path
        if s in text:
            text = text.replace(s, _REDACTED)
    return text


class _RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:
            return True
        clean = redact(msg)
        if clean != msg:
            record.msg, record.args = clean, None
        return True


_filter_installed = False


def register_secrets(values: Iterable[str]) -> None:
    global _filter_installed
    with _secrets_lock:
        _known_secrets.update(v for v in values if v)
        if not _filter_installed:
            # httpx logs every request's full URL at INFO; for Slack that URL is the credential.
            logging.getLogger("httpx").addFilter(_RedactingFilter())
            _filter_installed = True


def url_secrets(url: str) -> list[str]:
    """The forms in which a URL's credential-bearing part can show up in text."""
    out = [url]
    try:
        parsed = httpx.URL(url)
    except Exception:
        return out
    out.append(str(parsed))
    path_query = parsed.raw_path.decode("ascii", "replace")
    # A short path ("/hook") is no credential, and redacting it everywhere would garble text.
    if len(path_query) >= 16 or parsed.query:
        out.append(path_query)
    if parsed.query:
        out.append(parsed.query.decode("ascii", "replace"))
    if parsed.userinfo:
        out.append(parsed.userinfo.decode("ascii", "replace"))
    return out
