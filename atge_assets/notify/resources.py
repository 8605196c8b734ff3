"""Where release news goes: Slack, PagerDuty, a generic webhook."""

from typing import Optional

import dagster as dg

from atge_assets import notify
from atge_assets.lib.redaction import redact


class NotifierResource(dg.ConfigurableResource):
    """Notification channels. Each secret-bearing setting is bound from an environment variable
    with `dg.EnvVar` (ATGE_SLACK_WEBHOOK_URL, ATGE_PAGERDUTY_ROUTING_KEY, ATGE_NOTIFY_WEBHOOK_URL,
    ATGE_NOTIFY_WEBHOOK_SECRET) and is never logged; unset channels are simply off.
    `dagster_url` builds the links to runs in messages.
    """

    slack_webhook_url: Optional[str] = None
    pagerduty_routing_key: Optional[str] = None
    pagerduty_events_url: Optional[str] = None
    webhook_url: Optional[str] = None
    webhook_secret: Optional[str] = None
    dagster_url: str = "http://127.0.0.1:3000"

    def run_url(self, run_id: str) -> str:
        return f"{self.dagster_url.rstrip('/')}/runs/{run_id}"

    def send(self, event: notify.Event, engine) -> list[notify.DeliveryResult]:
        """Deliver to every configured channel, at most once per event (the sent log lives in
        the history database). Never raises: a failing channel must not block a rollback."""
        channels = dict(slack_webhook_url=self.slack_webhook_url,
                        pagerduty_routing_key=self.pagerduty_routing_key,
                        pagerduty_events_url=self.pagerduty_events_url,
                        webhook_url=self.webhook_url, webhook_secret=self.webhook_secret)
        try:
            notifiers = notify.build_notifiers(**channels, sent_log=notify.SqlSentLog(engine))
            return notify.dispatch(event, notifiers)
        except Exception as exc:  # a bad channel setting is reported, never raised into a rollback
            secrets = [v for v in channels.values() if v]
            return [notify.DeliveryResult(channel="config", event_key=event.idempotency_key,
                                          status=notify.FAILED, detail=redact(str(exc), secrets))]
