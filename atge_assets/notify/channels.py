"""The channels: Slack incoming webhook (text + Block Kit), PagerDuty Events API v2 and a signed
generic JSON webhook.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Iterable, Mapping

from atge_assets.lib.redaction import url_secrets
from atge_assets.notify.delivery import Notifier, _check_url
from atge_assets.notify.events import (
    HELD,
    PERF_ALERT,
    PROMOTION,
    RECOVERY,
    ROLLBACK,
    RUN_FAILED,
    Event,
    _iso,
    amount,
)
from atge_assets.notify.sent_log import MemorySentLog, SentLog

# -- Slack -------------------------------------------------------------------------------------

_EMOJI = {ROLLBACK: ":rewind:", PROMOTION: ":rocket:", RUN_FAILED: ":x:",
          PERF_ALERT: ":warning:", RECOVERY: ":white_check_mark:", HELD: ":hand:"}
_MAX_FIELDS = 10  # Slack's limit per section


def _metric_text(m: Mapping) -> str:
    unit = m.get("unit")
    text = amount(m["value"], unit)
    if m.get("threshold") is not None:
        text += f" (limit {amount(m['threshold'], unit)})"
    elif m["baseline"] is not None:
        text += f" vs {amount(m['baseline'], unit)}"
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
        return tuple(url_secrets(self._webhook_url))

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
                 trigger_on: Iterable[str] = (ROLLBACK, PERF_ALERT, HELD), **kw):
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
        return tuple(url_secrets(self._hook_url)) + ((self._secret,) if self._secret else ())

    def render(self, event: Event) -> dict:
        return event.to_dict()

    def headers(self, body: bytes, event: Event) -> dict[str, str]:
        h = {"X-ATGE-Event": event.kind, "X-ATGE-Idempotency-Key": event.idempotency_key}
        if self._secret:
            h[self.signature_header] = sign(body, self._secret)
        return h


# -- wiring ------------------------------------------------------------------------------------


def build_notifiers(*, slack_webhook_url: str | None = None,
                    pagerduty_routing_key: str | None = None,
                    pagerduty_events_url: str | None = None, webhook_url: str | None = None,
                    webhook_secret: str | None = None, sent_log: SentLog | None = None,
                    **kw) -> list[Notifier]:
    """The notifiers whose settings are given, sharing one sent log. Extra keyword arguments go
    to every notifier."""
    log_ = sent_log if sent_log is not None else MemorySentLog()
    out: list[Notifier] = []
    if slack_webhook_url:
        out.append(SlackNotifier(slack_webhook_url, sent_log=log_, **kw))
    if pagerduty_routing_key:
        out.append(PagerDutyNotifier(pagerduty_routing_key, sent_log=log_,
                                     events_url=pagerduty_events_url or PAGERDUTY_EVENTS_URL, **kw))
    if webhook_url:
        out.append(WebhookNotifier(webhook_url, secret=webhook_secret or None, sent_log=log_, **kw))
    return out
