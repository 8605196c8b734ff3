"""Delivery of notifications: the `Notifier` base every channel builds on, and `dispatch`.

The caller builds an `Event` (events.py: rollback, promotion, failed run, performance alert,
recovery), calls `dispatch(event, notifiers)` and logs the `DeliveryResult`s it gets back.

Guarantees, and why:
- Nothing raises into the caller (unless asked): a rollback has already happened by the time we
  notify, and a dead Slack must never turn a successful rollback run into a failed one.
- At most one message per event and channel: each notifier records the event's idempotency key in
  a `SentLog` after a delivery, and skips keys already there, so a re-executed run stays quiet.
  The key leaves out the run id on purpose: a re-execution is the same event. The window between
  "delivered" and "recorded" remains (a crash there resends once); PagerDuty's dedup_key makes that
  harmless for pages, and the generic webhook sends `X-ATGE-Idempotency-Key` so receivers can
  drop it.
- Retries (lib/http.py's `post_with_retry`): 5xx, timeouts and connection errors back off exponentially; 429 (and a 503 that says
  so) waits for `Retry-After`. Attempts and the total time spent sleeping are both capped, and a
  Retry-After beyond the remaining budget gives up at once rather than sleeping for nothing.
  Other 4xx mean the message itself is wrong and are not retried. A retry after a timeout can
  repeat a message the server did get; for a page that is the lesser evil, and the dedup and
  idempotency keys above let the receiver collapse it.
- Secrets (the Slack URL's path is a token, the routing key, the HMAC secret, a webhook URL's
  path and query) never reach an exception, a log line or a DeliveryResult: every text we produce
  goes through `redact` (lib/redaction.py), and a filter on the `httpx` logger scrubs its "HTTP Request: POST <url>".
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import httpx

from atge_assets.lib.http import RetryPolicy, post_with_retry
from atge_assets.lib.redaction import redact, register_secrets
from atge_assets.notify.events import Event
from atge_assets.notify.sent_log import MemorySentLog, SentLog


def _check_url(url: str, what: str) -> str:
    """https, or plain http to loopback (tests, a local relay): a credential never crosses a
    network in clear text."""
    try:
        parsed = httpx.URL(url)
    except Exception:
        raise ValueError(f"{what} is not a valid URL") from None
    host = parsed.host or ""
    if parsed.scheme == "https" and host:
        return url
    if parsed.scheme == "http" and host in ("127.0.0.1", "localhost", "::1"):
        return url
    raise ValueError(f"{what} must be an https:// URL (http only to localhost)")


# -- delivery ----------------------------------------------------------------------------------

SENT = "sent"
DUPLICATE = "duplicate"  # delivered before, per the sent log: not sent again
SKIPPED = "skipped"  # this channel does not carry this kind of event
FAILED = "failed"


@dataclass(frozen=True)
class DeliveryResult:
    channel: str
    event_key: str
    status: str
    attempts: int = 0
    http_status: int | None = None
    waited_s: float = 0.0  # time spent sleeping between attempts
    detail: str = ""  # redacted

    @property
    def ok(self) -> bool:
        return self.status != FAILED

    def __str__(self) -> str:
        parts = [f"{self.channel}: {self.status} {self.event_key}"]
        if self.attempts:
            parts.append(f"after {self.attempts} attempt(s)")
        if self.http_status is not None:
            parts.append(f"HTTP {self.http_status}")
        if self.detail:
            parts.append(f"({self.detail})")
        return " ".join(parts)


class NotificationError(RuntimeError):
    """Raised by `dispatch(..., raise_on_failure=True)` only; the message is redacted."""




def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


class Notifier:
    """One channel. Subclasses say where (`_url`), what (`render`), which secrets, and may add
    headers; `send` does the rest and never raises."""

    channel = "notifier"

    def __init__(self, *, name: str | None = None, sent_log: SentLog | None = None,
                 retry: RetryPolicy | None = None, timeout_s: float = 5.0,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.time,
                 transport: httpx.BaseTransport | None = None):
        # Give two notifiers of one channel distinct names, or they share sent-log keys.
        self.name = name or self.channel
        self.sent_log: SentLog = sent_log if sent_log is not None else MemorySentLog()
        self.retry = retry or RetryPolicy()
        self.timeout_s = timeout_s
        self._sleep = sleep
        self._clock = clock
        self._transport = transport
        register_secrets(self.secrets())

    # -- per channel ---------------------------------------------------------------------------
    def _url(self) -> str:
        raise NotImplementedError

    def secrets(self) -> tuple[str, ...]:
        return ()

    def render(self, event: Event) -> dict | None:
        """The JSON body for `event`, or None when this channel does not carry it."""
        raise NotImplementedError

    def headers(self, body: bytes, event: Event) -> dict[str, str]:
        return {}

    # -- shared ----------------------------------------------------------------------------------
    def send(self, event: Event) -> DeliveryResult:
        key = f"{self.name}:{event.idempotency_key}"
        result = self._result(event)
        try:
            seen = self.sent_log.already_sent(key)
        except Exception as exc:
            # Cannot tell: a duplicate is better than a rollback nobody hears about.
            seen, note = False, f"sent log unreadable ({type(exc).__name__}); sending anyway"
        else:
            note = ""
        if seen:
            return result(DUPLICATE, detail="delivered before")
        try:
            body = self.render(event)
            if body is None:
                return result(SKIPPED, detail=f"{self.channel} does not carry {event.kind}")
            data = _json_bytes(body)
            headers = {"content-type": "application/json", "user-agent": "atge-assets/0.1",
                       **self.headers(data, event)}
            with httpx.Client(timeout=httpx.Timeout(self.timeout_s), transport=self._transport,
                              follow_redirects=False) as client:
                out = post_with_retry(client, self._url(), data, headers, self.retry,
                                      sleep=self._sleep, clock=self._clock,
                                      secrets=self.secrets())
        except Exception as exc:  # a bug in a renderer must not escape either
            return result(FAILED, detail=self._clean(f"{type(exc).__name__}: {exc}"))
        if not out.ok:
            return result(FAILED, out.attempts, out.status, out.waited_s,
                          self._clean("; ".join(x for x in (out.detail, note) if x)))
        try:
            self.sent_log.mark_sent(key)
        except Exception as exc:
            note = "; ".join(x for x in (note, f"delivered but not recorded "
                                         f"({type(exc).__name__}): a rerun may send it again") if x)
        return result(SENT, out.attempts, out.status, out.waited_s, self._clean(note))

    def _result(self, event: Event):
        def make(status, attempts=0, http_status=None, waited_s=0.0, detail=""):
            return DeliveryResult(self.name, event.idempotency_key, status, attempts,
                                  http_status, waited_s, detail)
        return make

    def _clean(self, text: str) -> str:
        return redact(text, self.secrets())[:500]

    def __repr__(self) -> str:  # never the URL or key
        return f"{type(self).__name__}(name={self.name!r})"


def dispatch(event: Event, notifiers: Sequence[Notifier], *,
             raise_on_failure: bool = False) -> list[DeliveryResult]:
    """Send `event` through every notifier, in parallel so a slow channel does not delay a page.
    Results come back in the notifiers' order; failures are results, not exceptions."""

    def one(n: Notifier) -> DeliveryResult:
        try:
            return n.send(event)
        except Exception as exc:  # a custom Notifier that does raise
            secrets = n.secrets() if hasattr(n, "secrets") else ()
            return DeliveryResult(getattr(n, "name", type(n).__name__), event.idempotency_key,
                                  FAILED, detail=redact(f"{type(exc).__name__}: {exc}",
                                                        secrets)[:500])

    if not notifiers:
        return []
    if len(notifiers) == 1:
        results = [one(notifiers[0])]
    else:
        with ThreadPoolExecutor(max_workers=len(notifiers),
                                thread_name_prefix="atge-notify") as pool:
            results = list(pool.map(one, notifiers))
    failed = [r for r in results if not r.ok]
    if raise_on_failure and failed:
        raise NotificationError("; ".join(str(r) for r in failed))
    return results
