"""Notifications for release events: Slack, PagerDuty Events API v2 and a signed JSON webhook.

Pure core: no Dagster. The caller builds an `Event` (rollback, promotion, failed run, performance
alert, recovery), calls `dispatch(event, notifiers)` and logs the `DeliveryResult`s it gets back.

Guarantees, and why:
- Nothing raises into the caller (unless asked): a rollback has already happened by the time we
  notify, and a dead Slack must never turn a successful rollback run into a failed one.
- At most one message per event and channel: each notifier records the event's idempotency key in
  a `SentLog` after a delivery, and skips keys already there, so a re-executed run stays quiet.
  The key leaves out the run id on purpose: a re-execution is the same event. The window between
  "delivered" and "recorded" remains (a crash there resends once); PagerDuty's dedup_key makes that
  harmless for pages, and the generic webhook sends `X-ATGE-Idempotency-Key` so receivers can
  drop it.
- Retries: 5xx, timeouts and connection errors back off exponentially; 429 (and a 503 that says
  so) waits for `Retry-After`. Attempts and the total time spent sleeping are both capped, and a
  Retry-After beyond the remaining budget gives up at once rather than sleeping for nothing.
  Other 4xx mean the message itself is wrong and are not retried. A retry after a timeout can
  repeat a message the server did get; for a page that is the lesser evil, and the dedup and
  idempotency keys above let the receiver collapse it.
- Secrets (the Slack URL's path is a token, the routing key, the HMAC secret, a webhook URL's
  path and query) never reach an exception, a log line or a DeliveryResult: every text we produce
  goes through `redact`, and a filter on the `httpx` logger scrubs its "HTTP Request: POST <url>".
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import json
import logging
import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence

import httpx
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from atge_assets.lib.history.engine import make_engine
from atge_assets.lib.history.migrations import migrate
from atge_assets.lib.history.schema import md
from atge_assets.lib.history.schema import notifications_sent as _sent

log = logging.getLogger(__name__)

# -- events ------------------------------------------------------------------------------------

ROLLBACK = "rollback"
PROMOTION = "promotion"
RUN_FAILED = "run_failed"
PERF_ALERT = "perf_alert"
RECOVERY = "recovery"
KINDS = (ROLLBACK, PROMOTION, RUN_FAILED, PERF_ALERT, RECOVERY)

# PagerDuty's four severities; Slack and the webhook show the same word.
SEVERITIES = ("critical", "error", "warning", "info")
_DEFAULT_SEVERITY = {ROLLBACK: "critical", RUN_FAILED: "error", PERF_ALERT: "warning",
                     PROMOTION: "info", RECOVERY: "info"}


@dataclass(frozen=True)
class Event:
    """One thing worth telling people about. Only kind, deployment id (or run id) and title are
    required; severity, dedup_key and idempotency_key get per-kind defaults.

    `metrics` items are mappings with `metric`, `value`, `baseline`, `change` (a fraction: 0.23 =
    23% slower), `verdict` and optionally `threshold`; the comparison rows' `current_ms` /
    `baseline_ms` are accepted as `value` / `baseline`. Values are milliseconds unless the metric
    names its `unit` ("%", "users", ...: see metrics_source.UNITS for the monitored metrics).
    `dedup_key` names the incident (PagerDuty resolves by it); `idempotency_key` names this
    message (the sent log skips it the second time).
    """

    kind: str
    deployment_id: str
    title: str
    metrics: Sequence[Mapping[str, Any]] = ()
    decision: str = ""
    reason: str = ""
    run_url: str | None = None
    run_id: str | None = None
    deployment_url: str | None = None
    severity: str = ""
    dedup_key: str = ""
    idempotency_key: str = ""
    occurred_at: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown event kind {self.kind!r}; expected one of {KINDS}")
        if not self.deployment_id and not self.run_id:
            raise ValueError("an event needs a deployment_id or a run_id")
        severity = self.severity or _DEFAULT_SEVERITY[self.kind]
        if severity not in SEVERITIES:
            raise ValueError(f"severity {severity!r} is not one of {SEVERITIES}")
        dedup = self.dedup_key or (f"atge-{self.deployment_id}" if self.deployment_id
                                   else f"atge-run-{self.run_id}")
        if self.idempotency_key:
            key = self.idempotency_key
        elif self.kind == RUN_FAILED:
            key = f"{RUN_FAILED}:{self.run_id or dedup}"  # every failed run is its own event
        else:
            key = f"{self.kind}:{dedup}"
        set_ = object.__setattr__  # frozen: defaults are filled in once, here
        set_(self, "severity", severity)
        set_(self, "dedup_key", dedup)
        set_(self, "idempotency_key", key)
        set_(self, "metrics", tuple(_metric(m) for m in self.metrics))

    def to_dict(self) -> dict:
        return {
            "kind": self.kind, "deployment_id": self.deployment_id, "title": self.title,
            "severity": self.severity, "decision": self.decision, "reason": self.reason,
            "metrics": [dict(m) for m in self.metrics], "run_id": self.run_id,
            "run_url": self.run_url, "deployment_url": self.deployment_url,
            "dedup_key": self.dedup_key, "idempotency_key": self.idempotency_key,
            "occurred_at": _iso(self.occurred_at),
        }


def _metric(m: Mapping[str, Any]) -> dict:
    if not isinstance(m, Mapping) or not m.get("metric"):
        raise ValueError("each metric needs at least a 'metric' name")
    out = {
        "metric": str(m["metric"]),
        "value": _num(m.get("value", m.get("current_ms"))),
        "baseline": _num(m.get("baseline", m.get("baseline_ms"))),
        "change": _num(m.get("change")),
        "verdict": str(m.get("verdict") or ""),
    }
    if m.get("threshold") is not None:
        out["threshold"] = _num(m["threshold"])
    if m.get("unit") is not None:
        out["unit"] = str(m["unit"])
    return out


def _num(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None  # NaN cannot go into JSON, and means "no value" here


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def rollback_event(deployment_id: str, rollback_to: str, reason: str = "", *,
                   metrics: Sequence[Mapping] = (), run_url: str | None = None,
                   run_id: str | None = None, deployment_url: str | None = None) -> Event:
    return Event(ROLLBACK, deployment_id, f"Rolled back {deployment_id}", metrics,
                 decision=f"production rolled back to {rollback_to}", reason=reason,
                 run_url=run_url, run_id=run_id, deployment_url=deployment_url)


def promotion_event(deployment_id: str, reason: str = "", *, metrics: Sequence[Mapping] = (),
                    run_url: str | None = None, run_id: str | None = None,
                    deployment_url: str | None = None) -> Event:
    return Event(PROMOTION, deployment_id, f"Promoted {deployment_id} to production", metrics,
                 decision="promoted to production", reason=reason, run_url=run_url,
                 run_id=run_id, deployment_url=deployment_url)


def run_failed_event(run_id: str, job_name: str, error: str = "", *, deployment_id: str = "",
                     run_url: str | None = None) -> Event:
    what = f" for {deployment_id}" if deployment_id else ""
    return Event(RUN_FAILED, deployment_id, f"Run of {job_name}{what} failed",
                 decision="not judged: the deployment was neither kept nor rolled back by this run"
                 if deployment_id else "run failed",
                 reason=error[:500], run_url=run_url, run_id=run_id)


def perf_alert_events(deployment_id: str, metrics: Iterable[Mapping],
                      thresholds: Mapping[str, float], *, run_url: str | None = None,
                      run_id: str | None = None, deployment_url: str | None = None) -> list[Event]:
    """One alert per metric whose value is above its absolute threshold (in the metric's unit, ms
    unless it names another), e.g. `{"e2e_ms": 30000}`. Each gets its own dedup_key, so each
    resolves on its own."""
    events = []
    for raw in metrics:
        m = _metric(raw)
        limit = thresholds.get(m["metric"])
        if limit is None or m["value"] is None or m["value"] <= limit:
            continue
        m["threshold"] = float(limit)
        unit = m.get("unit")
        events.append(Event(
            PERF_ALERT, deployment_id,
            f"{m['metric']} is {_amount(m['value'], unit)} on {deployment_id} "
            f"(limit {_amount(limit, unit)})", [m],
            decision="alert: above the absolute limit", run_url=run_url, run_id=run_id,
            deployment_url=deployment_url, dedup_key=f"atge-{deployment_id}-{m['metric']}"))
    return events


def recovery_event(of: Event, reason: str = "", *, run_url: str | None = None,
                   run_id: str | None = None, metrics: Sequence[Mapping] = ()) -> Event:
    """The all-clear for an earlier rollback or alert: same deployment, same dedup_key."""
    return Event(RECOVERY, of.deployment_id, f"Recovered: {of.title}", metrics,
                 decision="resolved", reason=reason, run_url=run_url or of.run_url,
                 run_id=run_id, deployment_url=of.deployment_url, dedup_key=of.dedup_key)


# -- the sent log ------------------------------------------------------------------------------


class SentLog(Protocol):
    def already_sent(self, key: str) -> bool: ...

    def mark_sent(self, key: str) -> None: ...


class MemorySentLog:
    def __init__(self) -> None:
        self._keys: set[str] = set()
        self._lock = threading.Lock()

    def already_sent(self, key: str) -> bool:
        with self._lock:
            return key in self._keys

    def mark_sent(self, key: str) -> None:
        with self._lock:
            self._keys.add(key)


class SqlSentLog:
    """The sent log in a SQL table (SQLite file or Postgres): survives restarts, shared by the
    daemon's sensors and the run workers. Pass the history store's engine to share its database."""

    def __init__(self, url_or_engine: "str | sa.Engine"):
        self._own = isinstance(url_or_engine, str)
        self.engine = make_engine(url_or_engine) if self._own else url_or_engine
        migrate(self.engine, md)

    def already_sent(self, key: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(_sent.c.key).where(_sent.c.key == _db_key(key))
                                ).first() is not None

    def mark_sent(self, key: str) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(_sent.insert().values(key=_db_key(key), sent_at=time.time()))
        except IntegrityError:  # recorded by a concurrent sender: same fact
            pass

    def dispose(self) -> None:
        if self._own:
            self.engine.dispose()


def _db_key(key: str) -> str:
    # Metric names make keys unbounded; a digest keeps them unique and within the column.
    return key if len(key) <= 200 else "sha256:" + hashlib.sha256(key.encode()).hexdigest()


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


def _register_secrets(values: Iterable[str]) -> None:
    global _filter_installed
    with _secrets_lock:
        _known_secrets.update(v for v in values if v)
        if not _filter_installed:
            # httpx logs every request's full URL at INFO; for Slack that URL is the credential.
            logging.getLogger("httpx").addFilter(_RedactingFilter())
            _filter_installed = True


def _url_secrets(url: str) -> list[str]:
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


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 4
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    max_total_wait_s: float = 60.0  # sleeping only; each attempt is also bounded by its timeout

    def backoff(self, retry: int) -> float:
        return min(self.max_delay_s, self.base_delay_s * 2 ** retry)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait per a Retry-After header (delta-seconds or HTTP date); None if unusable."""
    if not value or not value.strip():
        return None
    value = value.strip()
    try:
        secs = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        secs = when.timestamp() - (time.time() if now is None else now)
    return max(0.0, secs) if math.isfinite(secs) else None


@dataclass(frozen=True)
class PostOutcome:
    ok: bool
    attempts: int
    status: int | None
    waited_s: float
    detail: str


def post_with_retry(
    client: httpx.Client,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
    secrets: Iterable[str] = (),
) -> PostOutcome:
    """POST with the retry rules above. Never raises for HTTP or network trouble; `detail` is
    redacted with `secrets` (plus every registered secret)."""
    secrets = tuple(secrets)
    waited = 0.0
    status: int | None = None
    detail = ""
    for attempt in range(1, policy.max_attempts + 1):
        retry_after = None
        try:
            resp = client.post(url, content=body, headers=dict(headers))
        except httpx.TimeoutException as exc:
            status, detail = None, f"timed out ({type(exc).__name__})"
        except httpx.TransportError as exc:
            status, detail = None, f"{type(exc).__name__}: {redact(str(exc), secrets)[:200]}"
        except httpx.HTTPError as exc:  # not a network problem: retrying will not help
            return PostOutcome(False, attempt, None, waited,
                               f"{type(exc).__name__}: {redact(str(exc), secrets)[:200]}")
        else:
            status = resp.status_code
            if 200 <= status < 300:
                return PostOutcome(True, attempt, status, waited, "")
            snippet = redact(resp.text[:300], secrets).strip()[:200]
            detail = f"HTTP {status}" + (f": {snippet}" if snippet else "")
            if status != 429 and status < 500:
                return PostOutcome(False, attempt, status, waited, detail)
            retry_after = parse_retry_after(resp.headers.get("retry-after"), clock())
        if attempt == policy.max_attempts:
            break
        wait = policy.backoff(attempt - 1)
        if retry_after is not None:
            # The server said when; sooner would only earn another 429.
            wait = max(retry_after, wait) if status != 429 else retry_after
        if waited + wait > policy.max_total_wait_s:
            return PostOutcome(False, attempt, status, waited,
                               f"{detail}; gave up: waiting {wait:.1f}s more would exceed the "
                               f"{policy.max_total_wait_s:.0f}s budget")
        sleep(wait)
        waited += wait
    return PostOutcome(False, policy.max_attempts, status, waited,
                       f"{detail}; gave up after {policy.max_attempts} attempts")


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
        _register_secrets(self.secrets())

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


# -- Slack -------------------------------------------------------------------------------------

_EMOJI = {ROLLBACK: ":rewind:", PROMOTION: ":rocket:", RUN_FAILED: ":x:",
          PERF_ALERT: ":warning:", RECOVERY: ":white_check_mark:"}
_MAX_FIELDS = 10  # Slack's limit per section


def _amount(v: float | None, unit: str | None = None) -> str:
    if v is None:
        return "n/a"
    if unit is None or unit == "ms":  # no unit: a benchmark timing, and those are all ms
        return f"{v / 1000:.2f} s" if abs(v) >= 1000 else f"{v:.0f} ms"
    text = f"{v:.4g}" if abs(v) < 10_000 else f"{v:.0f}"  # never 1.2e+04 users
    # Percentages are taken as given: the monitored error rate and cpu are already in percent.
    return text + unit if unit in ("", "%") else f"{text} {unit}"


def _metric_text(m: Mapping) -> str:
    unit = m.get("unit")
    text = _amount(m["value"], unit)
    if m.get("threshold") is not None:
        text += f" (limit {_amount(m['threshold'], unit)})"
    elif m["baseline"] is not None:
        text += f" vs {_amount(m['baseline'], unit)}"
    if m["change"] is not None:
        text += f" ({m['change']:+.1%})"
    if m["verdict"]:
        text += f" · {m['verdict']}"
    return text


def _esc(text: str) -> str:
    """Slack mrkdwn treats &, < and > as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackNotifier(Notifier):
    """Slack incoming webhook (`ATGE_SLACK_WEBHOOK_URL`): `text` for notifications and old
    clients, `blocks` for the message itself."""

    channel = "slack"

    def __init__(self, webhook_url: str, *, button_text: str = "Open run in Dagster", **kw):
        self._webhook_url = _check_url(webhook_url, "the Slack webhook URL")
        self.button_text = button_text[:75]
        super().__init__(**kw)

    def _url(self) -> str:
        return self._webhook_url

    def secrets(self) -> tuple[str, ...]:
        return tuple(_url_secrets(self._webhook_url))

    def render(self, event: Event) -> dict:
        emoji = _EMOJI[event.kind]
        dep = _esc(event.deployment_id) if event.deployment_id else "n/a"
        dep_md = f"<{event.deployment_url}|`{dep}`>" if event.deployment_url else f"`{dep}`"
        fields = [f"*Deployment*\n{dep_md}",
                  f"*Decision*\n{_esc(event.decision or event.kind)}",
                  f"*Severity*\n{event.severity}"]
        if event.run_id:
            run = _esc(event.run_id[:8])
            fields.append(f"*Run*\n<{event.run_url}|{run}>" if event.run_url else f"*Run*\n{run}")
        room = _MAX_FIELDS - len(fields)
        shown = event.metrics if len(event.metrics) <= room else event.metrics[:room - 1]
        fields += [f"*{_esc(m['metric'])}*\n{_esc(_metric_text(m))}" for m in shown]
        hidden = event.metrics[len(shown):]
        if hidden:
            fields.append("*More metrics*\n" + _esc(
                "; ".join(f"{m['metric']} {_metric_text(m)}" for m in hidden)))
        blocks: list[dict] = [
            {"type": "header",
             "text": {"type": "plain_text", "text": f"{emoji} {event.title}"[:150], "emoji": True}},
            {"type": "section",
             "fields": [{"type": "mrkdwn", "text": f[:2000]} for f in fields]},
        ]
        if event.reason:
            blocks.append({"type": "section", "text": {
                "type": "mrkdwn", "text": f"*Why*\n{_esc(event.reason)}"[:3000]}})
        if event.run_url:
            blocks.append({"type": "actions", "elements": [{
                "type": "button", "text": {"type": "plain_text", "text": self.button_text},
                "url": event.run_url, "action_id": "atge_open_run"}]})
        text = f"{emoji} {_esc(event.title)}: deployment {dep}"
        if event.decision:
            text += f", {_esc(event.decision)}"
        if event.metrics:
            text += " (" + ", ".join(f"{_esc(m['metric'])} {_esc(_metric_text(m))}"
                                     for m in event.metrics[:5]) + ")"
        if event.run_url:
            text += f" <{event.run_url}|run>"
        return {"text": text[:3000], "blocks": blocks}


# -- PagerDuty ---------------------------------------------------------------------------------

PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"


class PagerDutyNotifier(Notifier):
    """PagerDuty Events API v2 (`ATGE_PAGERDUTY_ROUTING_KEY`): `trigger` for the kinds in
    `trigger_on`, `resolve` (same dedup_key) for a recovery; other kinds are skipped."""

    channel = "pagerduty"

    def __init__(self, routing_key: str, *, events_url: str = PAGERDUTY_EVENTS_URL,
                 source: str = "atge-assets",
                 trigger_on: Iterable[str] = (ROLLBACK, PERF_ALERT), **kw):
        if not routing_key or not routing_key.strip():
            raise ValueError("a PagerDuty routing key is required (ATGE_PAGERDUTY_ROUTING_KEY)")
        self._routing_key = routing_key.strip()
        self._events_url = _check_url(events_url, "the PagerDuty events URL")
        self.source = source
        self.trigger_on = frozenset(trigger_on)
        super().__init__(**kw)

    def _url(self) -> str:
        return self._events_url

    def secrets(self) -> tuple[str, ...]:
        return (self._routing_key,)

    def render(self, event: Event) -> dict | None:
        if event.kind == RECOVERY:
            return {"routing_key": self._routing_key, "event_action": "resolve",
                    "dedup_key": event.dedup_key}
        if event.kind not in self.trigger_on:
            return None
        summary = event.title + (f": {event.decision}" if event.decision else "")
        links = []
        if event.run_url:
            links.append({"href": event.run_url, "text": "Dagster run"})
        if event.deployment_url:
            links.append({"href": event.deployment_url,
                          "text": f"Deployment {event.deployment_id}"})
        body = {
            "routing_key": self._routing_key,
            "event_action": "trigger",
            "dedup_key": event.dedup_key,
            "payload": {
                "summary": summary[:1024],
                "source": self.source,
                "severity": event.severity,
                "timestamp": _iso(event.occurred_at),
                "group": "vercel",
                "class": event.kind,
                "custom_details": {
                    "deployment_id": event.deployment_id, "decision": event.decision,
                    "reason": event.reason, "metrics": [dict(m) for m in event.metrics],
                    "run_id": event.run_id, "run_url": event.run_url,
                },
            },
            "client": "ATGE release guard",
            "links": links,
        }
        if event.deployment_id:
            body["payload"]["component"] = event.deployment_id
        if event.run_url:
            body["client_url"] = event.run_url
        return body


# -- generic JSON webhook ----------------------------------------------------------------------

SIGNATURE_HEADER = "X-ATGE-Signature-256"


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, header_value: str | None, secret: str) -> bool:
    """For receivers: does `header_value` sign exactly these raw bytes?"""
    if not header_value:
        return False
    return hmac.compare_digest(sign(body, secret).encode(),
                               header_value.strip().encode("utf-8", "replace"))


class WebhookNotifier(Notifier):
    """POST `Event.to_dict()` as JSON. With a secret, `X-ATGE-Signature-256: sha256=<hex HMAC of
    the raw body>`; the body carries `occurred_at`, so a receiver can also refuse stale replays."""

    channel = "webhook"

    def __init__(self, url: str, *, secret: str | None = None,
                 signature_header: str = SIGNATURE_HEADER, **kw):
        self._hook_url = _check_url(url, "the webhook URL")
        self._secret = secret or None
        self.signature_header = signature_header
        super().__init__(**kw)

    def _url(self) -> str:
        return self._hook_url

    def secrets(self) -> tuple[str, ...]:
        return tuple(_url_secrets(self._hook_url)) + ((self._secret,) if self._secret else ())

    def render(self, event: Event) -> dict:
        return event.to_dict()

    def headers(self, body: bytes, event: Event) -> dict[str, str]:
        h = {"X-ATGE-Event": event.kind, "X-ATGE-Idempotency-Key": event.idempotency_key}
        if self._secret:
            h[self.signature_header] = sign(body, self._secret)
        return h


# -- wiring ------------------------------------------------------------------------------------


def notifiers_from_env(env: Mapping[str, str] | None = None, *,
                       sent_log: SentLog | None = None, **kw) -> list[Notifier]:
    """The notifiers whose settings are present: `ATGE_SLACK_WEBHOOK_URL`,
    `ATGE_PAGERDUTY_ROUTING_KEY` (+ `ATGE_PAGERDUTY_EVENTS_URL`), `ATGE_NOTIFY_WEBHOOK_URL`
    (+ `ATGE_NOTIFY_WEBHOOK_SECRET`). Extra keyword arguments go to every notifier."""
    env = os.environ if env is None else env
    log_ = sent_log if sent_log is not None else MemorySentLog()
    out: list[Notifier] = []
    if env.get("ATGE_SLACK_WEBHOOK_URL"):
        out.append(SlackNotifier(env["ATGE_SLACK_WEBHOOK_URL"], sent_log=log_, **kw))
    if env.get("ATGE_PAGERDUTY_ROUTING_KEY"):
        out.append(PagerDutyNotifier(
            env["ATGE_PAGERDUTY_ROUTING_KEY"], sent_log=log_,
            events_url=env.get("ATGE_PAGERDUTY_EVENTS_URL") or PAGERDUTY_EVENTS_URL, **kw))
    if env.get("ATGE_NOTIFY_WEBHOOK_URL"):
        out.append(WebhookNotifier(env["ATGE_NOTIFY_WEBHOOK_URL"],
                                   secret=env.get("ATGE_NOTIFY_WEBHOOK_SECRET") or None,
                                   sent_log=log_, **kw))
    return out
