"""Notifications: events (events.py), delivery with a sent log (delivery.py, sent_log.py) and the
channels (channels.py: Slack, PagerDuty, a signed webhook). The Dagster wiring is in
resources.py, sensors.py and definitions.py; this package exports the plain-Python API."""

from atge_assets.notify.channels import (
    PAGERDUTY_EVENTS_URL,
    SIGNATURE_HEADER,
    PagerDutyNotifier,
    SlackNotifier,
    WebhookNotifier,
    build_notifiers,
    sign,
    verify_signature,
)
from atge_assets.notify.delivery import (
    DUPLICATE,
    FAILED,
    SENT,
    SKIPPED,
    DeliveryResult,
    NotificationError,
    Notifier,
    dispatch,
)
from atge_assets.notify.events import (
    DRIFT,
    HELD,
    KINDS,
    PERF_ALERT,
    PROMOTION,
    RECOVERY,
    ROLLBACK,
    RUN_FAILED,
    SEVERITIES,
    Event,
    amount,
    drift_event,
    held_event,
    perf_alert_events,
    promotion_event,
    recovery_event,
    rollback_event,
    run_failed_event,
    stage_event,
)
from atge_assets.notify.sent_log import MemorySentLog, SentLog, SqlSentLog

__all__ = [
    "PAGERDUTY_EVENTS_URL", "SIGNATURE_HEADER", "PagerDutyNotifier", "SlackNotifier",
    "WebhookNotifier", "build_notifiers", "sign", "verify_signature", "DUPLICATE", "FAILED",
    "SENT", "SKIPPED", "DeliveryResult", "NotificationError", "Notifier", "dispatch", "DRIFT",
    "HELD", "KINDS", "PERF_ALERT", "PROMOTION", "RECOVERY", "ROLLBACK", "RUN_FAILED",
    "SEVERITIES", "Event", "amount", "drift_event", "held_event", "perf_alert_events",
    "promotion_event", "recovery_event", "rollback_event", "run_failed_event", "stage_event",
    "MemorySentLog",
    "SentLog", "SqlSentLog",
]
