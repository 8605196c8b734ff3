"""The notifications' settings section. The channels' secrets (ATGE_SLACK_WEBHOOK_URL,
ATGE_PAGERDUTY_ROUTING_KEY, ATGE_NOTIFY_WEBHOOK_URL, ATGE_NOTIFY_WEBHOOK_SECRET) are never read
here: only whether each is set, so the wiring binds exactly those with `dg.EnvVar`."""

from __future__ import annotations

from dataclasses import dataclass

from atge_assets.lib.settings import Env, SettingsError, SharedSettings, is_set, text

SECRETS = {
    "slack_webhook_url": "ATGE_SLACK_WEBHOOK_URL",
    "pagerduty_routing_key": "ATGE_PAGERDUTY_ROUTING_KEY",
    "webhook_url": "ATGE_NOTIFY_WEBHOOK_URL",
    "webhook_secret": "ATGE_NOTIFY_WEBHOOK_SECRET",
}


@dataclass(frozen=True)
class NotifySettings:
    secrets_set: tuple[str, ...] = ()  # fields of SECRETS whose variable is set
    pagerduty_events_url: str | None = None
    dagster_url: str = "http://127.0.0.1:3000"

    @classmethod
    def from_env(cls, env: Env, shared: SharedSettings) -> "NotifySettings":
        s = cls(
            secrets_set=tuple(f for f, var in SECRETS.items() if is_set(env, var)),
            pagerduty_events_url=text(env, "ATGE_PAGERDUTY_EVENTS_URL"),
            dagster_url=text(env, "ATGE_DAGSTER_URL", "http://127.0.0.1:3000"),
        )
        for name, value in (("ATGE_PAGERDUTY_EVENTS_URL", s.pagerduty_events_url),
                            ("ATGE_DAGSTER_URL", s.dagster_url)):
            if value and not value.startswith(("http://", "https://")):
                raise SettingsError(f"{name}={value!r} is not an http(s) URL")
        if "webhook_secret" in s.secrets_set and "webhook_url" not in s.secrets_set:
            raise SettingsError("ATGE_NOTIFY_WEBHOOK_SECRET is set but ATGE_NOTIFY_WEBHOOK_URL "
                                "is not")
        return s
