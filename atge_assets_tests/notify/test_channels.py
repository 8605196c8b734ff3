"""Notifiers against a real loopback HTTP receiver; sleeps are recorded, never slept."""

import json
import logging
import socket
import threading
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from atge_assets import notify as nt
from atge_assets.lib.http import RetryPolicy, parse_retry_after

SLACK_TOKEN = "T0SLACK/B0SLACK/xoxSlackSecret42"
ROUTING_KEY = "R0UTINGKEYsecret0000000000000042"
HOOK_SECRET = "whsec_hmac_secret_42"
HOOK_TOKEN = "hooktoken_secret_42"
SECRETS = (SLACK_TOKEN, "xoxSlackSecret42", ROUTING_KEY, HOOK_SECRET, HOOK_TOKEN)

METRICS = [
    {"metric": "e2e_ms", "current_ms": 4120.0, "baseline_ms": 3350.0, "change": 0.23,
     "verdict": "regressed", "threshold": 3700.0},  # an absolute limit, in the metric's unit
    {"metric": "db_ms", "value": 180.0, "baseline": 175.0, "change": 0.03, "verdict": "pass"},
]


class Receiver(ThreadingHTTPServer):
    """Records every request; answers from a script of (status, headers, body) or "hang", kept
    per path so notifiers dispatched in parallel to one receiver each get their own replies."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _ReceiverHandler)
        self.requests: list[dict] = []
        self.scripts: dict[str, list] = {}
        self.lock = threading.Lock()
        self.release = threading.Event()

    def answer(self, *replies, path: str = f"/services/{SLACK_TOKEN}") -> None:
        with self.lock:
            self.scripts.setdefault(path, []).extend(replies)

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    def bodies(self) -> list[dict]:
        return [json.loads(r["body"]) for r in self.requests]


class _ReceiverHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Receiver

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        with self.server.lock:
            self.server.requests.append({"path": self.path, "headers": dict(self.headers),
                                         "body": body})
            script = self.server.scripts.get(self.path)
            reply = script.pop(0) if script else (200, {}, "ok")
        if reply == "hang":
            # Held until the test ends: the client's timeout fires first, by construction.
            self.server.release.wait(10)
            self.close_connection = True
            return
        status, headers, text = reply
        data = text.encode()
        try:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass


@pytest.fixture
def receiver():
    srv = Receiver()
    threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
    yield srv
    srv.release.set()
    srv.shutdown()
    srv.server_close()


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps():
    return Sleeps()


def _rollback(**kw):
    kw = {"metrics": METRICS, "run_url": "http://127.0.0.1:3000/runs/abc123def",
          "run_id": "abc123def456", "deployment_url": "https://atge-x.vercel.app", **kw}
    return nt.rollback_event("dpl_bad123", "dpl_good99", "e2e_ms regressed by 23%", **kw)


def _slack(receiver, sleeps, **kw):
    return nt.SlackNotifier(receiver.url(f"/services/{SLACK_TOKEN}"), sleep=sleeps, **kw)


def _assert_no_secrets(*texts):
    for text in texts:
        for s in SECRETS:
            assert s not in text, f"secret leaked into: {text!r}"


# -- payloads -----------------------------------------------------------------------------------


def test_slack_payload_names_deployment_metrics_decision_and_links_the_run(receiver, sleeps):
    r = _slack(receiver, sleeps).send(_rollback())
    assert r.status == nt.SENT and r.attempts == 1 and r.http_status == 200
    (req,) = receiver.requests
    assert req["path"] == f"/services/{SLACK_TOKEN}"
    assert req["headers"]["content-type"] == "application/json"
    body = json.loads(req["body"])
    assert "dpl_bad123" in body["text"] and "dpl_good99" in body["text"]
    types = [b["type"] for b in body["blocks"]]
    assert types[0] == "header" and "section" in types and types[-1] == "actions"
    assert "dpl_bad123" in body["blocks"][0]["text"]["text"]
    fields = " ".join(f["text"] for f in body["blocks"][1]["fields"])
    assert "`dpl_bad123`" in fields and "dpl_good99" in fields
    assert "e2e_ms" in fields and "+23.0%" in fields and "4.12 s" in fields and "db_ms" in fields
    assert all(f["type"] == "mrkdwn" for f in body["blocks"][1]["fields"])
    button = body["blocks"][-1]["elements"][0]
    assert button["type"] == "button" and button["url"] == "http://127.0.0.1:3000/runs/abc123def"


def test_slack_escapes_control_characters_and_respects_field_limit(receiver, sleeps):
    many = [{"metric": f"m{i}", "value": i, "verdict": "pass"} for i in range(15)]
    ev = nt.Event(nt.PERF_ALERT, "dpl_x", "x", many, reason="a <b> & c", run_id="r1")
    _slack(receiver, sleeps).send(ev)
    body = receiver.bodies()[0]
    assert len(body["blocks"][1]["fields"]) <= 10
    assert "a &lt;b&gt; &amp; c" in json.dumps(body["blocks"])
    assert "m14" in json.dumps(body["blocks"])  # folded into the last field, not dropped
    assert not any(b["type"] == "actions" for b in body["blocks"])  # no run URL, no button


def test_pagerduty_trigger_then_resolve_with_the_same_dedup_key(receiver, sleeps):
    pd = nt.PagerDutyNotifier(ROUTING_KEY, events_url=receiver.url("/v2/enqueue"), sleep=sleeps)
    receiver.answer(*[(202, {}, '{"status":"success"}')] * 2, path="/v2/enqueue")
    alert = _rollback()
    assert pd.send(alert).status == nt.SENT
    assert pd.send(nt.recovery_event(alert, "dpl_next passed")).status == nt.SENT
    trigger, resolve = receiver.bodies()
    assert trigger["routing_key"] == ROUTING_KEY and trigger["event_action"] == "trigger"
    assert trigger["dedup_key"] == "atge-dpl_bad123"
    p = trigger["payload"]
    assert p["severity"] == "critical" and p["source"] and "dpl_bad123" in p["summary"]
    assert p["custom_details"]["metrics"][0]["metric"] == "e2e_ms"
    assert p["custom_details"]["metrics"][0]["value"] == 4120.0
    run_link = {"href": "http://127.0.0.1:3000/runs/abc123def", "text": "Dagster run"}
    assert run_link in trigger["links"]
    assert resolve == {"routing_key": ROUTING_KEY, "event_action": "resolve",
                       "dedup_key": "atge-dpl_bad123"}


def test_pagerduty_skips_kinds_it_does_not_page_for(receiver, sleeps):
    pd = nt.PagerDutyNotifier(ROUTING_KEY, events_url=receiver.url("/v2/enqueue"), sleep=sleeps)
    r = pd.send(nt.promotion_event("dpl_ok"))
    assert r.status == nt.SKIPPED and r.ok and receiver.requests == []


def test_drift_is_one_incident_per_episode_on_every_channel(receiver, sleeps):
    """Slack shows it, PagerDuty pages and resolves it by the episode's dedup_key, the webhook
    carries it; a second episode of the same deployment is a new incident."""
    drift = nt.drift_event("dpl_back", 7, "dpl_good", "dpl_back is live, but was rolled back",
                           action="benchmarking it", deployment_url="https://atge-b.vercel.app")
    assert drift.severity == "error" and drift.dedup_key == "atge-drift-7"
    assert nt.drift_event("dpl_back", 8, "dpl_good").idempotency_key != drift.idempotency_key
    receiver.answer(*[(202, {}, '{"status":"success"}')] * 2, path="/v2/enqueue")
    pd = nt.PagerDutyNotifier(ROUTING_KEY, events_url=receiver.url("/v2/enqueue"), sleep=sleeps)
    for n in (_slack(receiver, sleeps), pd, nt.WebhookNotifier(receiver.url("/hook"))):
        assert n.send(drift).status == nt.SENT
    assert pd.send(nt.recovery_event(drift, "production is dpl_good again")).status == nt.SENT
    slack, trigger, hook, resolve = receiver.bodies()
    assert ":twisted_rightwards_arrows:" in slack["text"] and "dpl_back" in slack["text"]
    assert "benchmarking it" in json.dumps(slack["blocks"])
    assert trigger["event_action"] == "trigger" and trigger["payload"]["class"] == "drift"
    assert trigger["payload"]["severity"] == "error"
    assert resolve == {"routing_key": ROUTING_KEY, "event_action": "resolve",
                       "dedup_key": "atge-drift-7"}
    assert hook["kind"] == "drift" and hook["title"] == ("Production drift: dpl_back is live, "
                                                         "dpl_good expected")


def test_perf_alerts_one_per_breached_metric_each_resolvable(receiver, sleeps):
    alerts = nt.perf_alert_events(
        "dpl_slow", [{"metric": "e2e_ms", "value": 31_000.0}, {"metric": "db_ms", "value": 100.0},
                     {"metric": "ai_ms", "value": None}],
        {"e2e_ms": 30_000, "db_ms": 2_000, "ai_ms": 10_000})
    assert [a.dedup_key for a in alerts] == ["atge-dpl_slow-e2e_ms"]
    assert alerts[0].severity == "warning" and alerts[0].metrics[0]["threshold"] == 30_000.0
    pd = nt.PagerDutyNotifier(ROUTING_KEY, events_url=receiver.url(), sleep=sleeps)
    pd.send(alerts[0])
    pd.send(nt.recovery_event(alerts[0]))
    assert [b["dedup_key"] for b in receiver.bodies()] == ["atge-dpl_slow-e2e_ms"] * 2


def test_perf_alerts_state_each_value_in_its_metrics_unit():
    # The monitored error rate is already in percent (atge_error_rate_percent): 7.5 is 7.5%.
    rate, users, e2e = nt.perf_alert_events("production", [
        {"metric": "error_rate", "value": 7.5, "unit": "%"},
        {"metric": "active_users", "value": 12_345.0, "unit": "users"},
        {"metric": "e2e_ms", "value": 31_000.0}],
        {"error_rate": 5.0, "active_users": 5000, "e2e_ms": 30_000})
    assert rate.title == "error_rate is 7.5% on production (limit 5%)"
    assert users.title == "active_users is 12345 users on production (limit 5000 users)"
    assert e2e.title == "e2e_ms is 31.00 s on production (limit 30.00 s)"
    assert rate.to_dict()["metrics"][0]["unit"] == "%"
    assert "unit" not in e2e.to_dict()["metrics"][0]  # a timing's payload is as it was
    slack = nt.SlackNotifier(f"https://hooks.slack.com/services/{SLACK_TOKEN}").render(rate)
    assert "error_rate 7.5% (limit 5%)" in slack["text"]
    assert "*error_rate*\n7.5% (limit 5%)" in [f["text"] for f in slack["blocks"][1]["fields"]]


def test_webhook_signature_verifies_over_the_raw_body(receiver, sleeps):
    hook = nt.WebhookNotifier(receiver.url(f"/hook?token={HOOK_TOKEN}"), secret=HOOK_SECRET,
                              sleep=sleeps)
    assert hook.send(_rollback()).status == nt.SENT
    (req,) = receiver.requests
    sig = req["headers"][nt.SIGNATURE_HEADER]
    assert sig.startswith("sha256=")
    assert nt.verify_signature(req["body"], sig, HOOK_SECRET)
    assert not nt.verify_signature(req["body"] + b" ", sig, HOOK_SECRET)
    assert not nt.verify_signature(req["body"], sig, "other")
    body = json.loads(req["body"])
    assert body["kind"] == "rollback" and body["deployment_id"] == "dpl_bad123"
    assert req["headers"]["X-ATGE-Idempotency-Key"] == body["idempotency_key"]


# -- retries ------------------------------------------------------------------------------------


def test_5xx_backs_off_then_succeeds(receiver, sleeps):
    receiver.answer((500, {}, "boom"), (503, {}, "busy"))
    r = _slack(receiver, sleeps).send(_rollback())
    assert r.status == nt.SENT and r.attempts == 3 and len(receiver.requests) == 3
    assert sleeps == [0.5, 1.0] and r.waited_s == 1.5


def test_429_honours_retry_after_seconds(receiver, sleeps):
    receiver.answer((429, {"Retry-After": "7"}, "rate_limited"))
    r = _slack(receiver, sleeps).send(_rollback())
    assert r.status == nt.SENT and r.attempts == 2 and sleeps == [7.0]


def test_429_honours_retry_after_http_date(receiver, sleeps):
    now = 1_700_000_000.0
    receiver.answer((429, {"Retry-After": formatdate(now + 12, usegmt=True)}, ""))
    r = _slack(receiver, sleeps, clock=lambda: now).send(_rollback())
    assert r.status == nt.SENT and sleeps == [12.0]


def test_retry_after_beyond_the_budget_gives_up_without_sleeping(receiver, sleeps):
    receiver.answer((429, {"Retry-After": "3600"}, ""))
    r = _slack(receiver, sleeps).send(_rollback())
    assert r.status == nt.FAILED and r.attempts == 1 and r.http_status == 429 and sleeps == []
    assert "budget" in r.detail


def test_gives_up_after_max_attempts_without_raising(receiver, sleeps):
    receiver.answer(*[(502, {}, "bad gateway")] * 5)
    policy = RetryPolicy(max_attempts=3, base_delay_s=1.0)
    r = _slack(receiver, sleeps, retry=policy).send(_rollback())
    assert r.status == nt.FAILED and not r.ok and r.attempts == 3 and r.http_status == 502
    assert len(receiver.requests) == 3 and sleeps == [1.0, 2.0]
    assert "gave up after 3 attempts" in r.detail


def test_total_wait_is_capped(receiver, sleeps):
    receiver.answer(*[(500, {}, "")] * 10)
    policy = RetryPolicy(max_attempts=10, base_delay_s=1.0, max_total_wait_s=5.0)
    r = _slack(receiver, sleeps, retry=policy).send(_rollback())
    assert r.status == nt.FAILED and sum(sleeps) <= 5.0 and sleeps == [1.0, 2.0]


def test_4xx_is_not_retried(receiver, sleeps):
    receiver.answer((400, {}, "invalid_payload"))
    r = _slack(receiver, sleeps).send(_rollback())
    assert r.status == nt.FAILED and r.attempts == 1 and sleeps == []
    assert "invalid_payload" in r.detail


def test_timeout_is_retried(receiver, sleeps):
    receiver.answer("hang")
    r = _slack(receiver, sleeps, timeout_s=1.0).send(_rollback())
    assert r.status == nt.SENT and r.attempts == 2 and sleeps == [0.5]
    assert len(receiver.requests) == 2


def test_connection_refused_fails_cleanly_and_redacted(sleeps):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    n = nt.SlackNotifier(f"http://127.0.0.1:{port}/services/{SLACK_TOKEN}", sleep=sleeps,
                         retry=RetryPolicy(max_attempts=2))
    r = n.send(_rollback())
    assert r.status == nt.FAILED and r.attempts == 2 and sleeps == [0.5]
    assert "ConnectError" in r.detail
    _assert_no_secrets(str(r), repr(r), repr(n))


def test_parse_retry_after():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 0 ") == 0.0
    assert parse_retry_after("-5") == 0.0
    assert parse_retry_after(formatdate(1000.0, usegmt=True), now=990.0) == 10.0
    assert parse_retry_after(formatdate(1000.0, usegmt=True), now=2000.0) == 0.0
    for bad in (None, "", "soon", "nan", "inf"):
        assert parse_retry_after(bad) is None


# -- at most once -------------------------------------------------------------------------------


def test_a_resend_of_the_same_event_is_not_delivered_twice(receiver, sleeps):
    slack = _slack(receiver, sleeps)
    assert slack.send(_rollback()).status == nt.SENT
    again = _rollback(metrics=())  # a rerun builds the event afresh: same key
    r = slack.send(again)
    assert r.status == nt.DUPLICATE and r.ok
    assert len(receiver.requests) == 1


def test_a_failed_delivery_is_not_recorded_so_a_rerun_retries(receiver, sleeps):
    log_ = nt.MemorySentLog()
    receiver.answer((400, {}, "no"))
    slack = _slack(receiver, sleeps, sent_log=log_)
    assert slack.send(_rollback()).status == nt.FAILED
    assert slack.send(_rollback()).status == nt.SENT
    assert slack.send(_rollback()).status == nt.DUPLICATE
    assert len(receiver.requests) == 2


def test_sql_sent_log_survives_a_new_process(receiver, sleeps, tmp_path):
    url = f"sqlite:///{tmp_path / 'sent.sqlite'}"
    first = nt.SqlSentLog(url)
    _slack(receiver, sleeps, sent_log=first).send(_rollback())
    first.dispose()
    second = nt.SqlSentLog(url)
    r = _slack(receiver, sleeps, sent_log=second).send(_rollback())
    second.mark_sent("x" * 500)  # long keys fit
    assert second.already_sent("x" * 500) and not second.already_sent("x" * 499)
    second.dispose()
    assert r.status == nt.DUPLICATE and len(receiver.requests) == 1


def test_channels_keep_separate_keys_and_run_failures_are_per_run(receiver, sleeps):
    shared = nt.MemorySentLog()
    a = _slack(receiver, sleeps, sent_log=shared)
    b = nt.WebhookNotifier(receiver.url("/hook"), sent_log=shared, sleep=sleeps)
    assert [r.status for r in nt.dispatch(_rollback(), [a, b])] == [nt.SENT, nt.SENT]
    f1 = nt.run_failed_event("run1", "benchmark_job", "boom", deployment_id="dpl_x")
    f2 = nt.run_failed_event("run2", "benchmark_job", "boom", deployment_id="dpl_x")
    assert a.send(f1).status == nt.SENT and a.send(f2).status == nt.SENT
    assert a.send(f1).status == nt.DUPLICATE


def test_unreadable_sent_log_still_sends(receiver, sleeps):
    class Broken:
        def already_sent(self, key):
            raise RuntimeError("db down")

        def mark_sent(self, key):
            raise RuntimeError("db down")

    r = _slack(receiver, sleeps, sent_log=Broken()).send(_rollback())
    assert r.status == nt.SENT and "sending anyway" in r.detail and "not recorded" in r.detail


# -- dispatch and secrets -----------------------------------------------------------------------


def test_dispatch_collects_failures_and_never_raises(receiver, sleeps):
    class Exploding(nt.Notifier):
        channel = "exploding"

        def send(self, event):
            raise RuntimeError(f"kaboom with {ROUTING_KEY}")

        def secrets(self):
            return (ROUTING_KEY,)

    receiver.answer(*[(500, {}, "")] * 2)
    failing = _slack(receiver, sleeps, retry=RetryPolicy(max_attempts=2))
    hook = nt.WebhookNotifier(receiver.url("/hook"), sleep=sleeps, name="audit")
    results = nt.dispatch(_rollback(), [failing, Exploding(), hook])
    assert [r.channel for r in results] == ["slack", "exploding", "audit"]
    assert [r.status for r in results] == [nt.FAILED, nt.FAILED, nt.SENT]
    _assert_no_secrets(*(str(r) for r in results), *(repr(r) for r in results))
    assert nt.dispatch(_rollback(), []) == []


def test_raise_on_failure_message_is_redacted(receiver, sleeps):
    receiver.answer((403, {}, f"bad key {ROUTING_KEY}"), path="/")
    pd = nt.PagerDutyNotifier(ROUTING_KEY, events_url=receiver.url(), sleep=sleeps)
    with pytest.raises(nt.NotificationError) as info:
        nt.dispatch(_rollback(), [pd], raise_on_failure=True)
    _assert_no_secrets(str(info.value), repr(info.value))
    assert "HTTP 403" in str(info.value)


def test_secrets_never_reach_logs(receiver, sleeps, caplog):
    caplog.set_level(logging.DEBUG)
    receiver.answer((500, {}, f"echo {SLACK_TOKEN}"))
    receiver.answer((400, {}, f"echo {ROUTING_KEY}"), path="/")
    slack = _slack(receiver, sleeps)
    pd = nt.PagerDutyNotifier(ROUTING_KEY, events_url=receiver.url(), sleep=sleeps)
    hook = nt.WebhookNotifier(receiver.url(f"/h?token={HOOK_TOKEN}"), secret=HOOK_SECRET,
                              sleep=sleeps)
    results = nt.dispatch(_rollback(), [slack, pd, hook])
    assert any("HTTP Request" in rec.getMessage() for rec in caplog.records)  # httpx did log
    _assert_no_secrets(*(rec.getMessage() for rec in caplog.records), caplog.text,
                       *(str(r) for r in results), repr(slack), repr(pd), repr(hook))


def test_invalid_urls_are_refused_without_echoing_them():
    for url in (f"http://hooks.example.com/services/{SLACK_TOKEN}", f"ftp://x/{SLACK_TOKEN}",
                f"not a url {SLACK_TOKEN}"):
        with pytest.raises(ValueError) as info:
            nt.SlackNotifier(url)
        _assert_no_secrets(str(info.value))
    with pytest.raises(ValueError):
        nt.PagerDutyNotifier("  ")


def test_build_notifiers():
    ns = nt.build_notifiers(slack_webhook_url=f"https://hooks.slack.com/services/{SLACK_TOKEN}",
                            pagerduty_routing_key=ROUTING_KEY,
                            webhook_url="https://example.com/hook", webhook_secret=HOOK_SECRET)
    assert [n.name for n in ns] == ["slack", "pagerduty", "webhook"]
    assert len({id(n.sent_log) for n in ns}) == 1
    assert nt.build_notifiers() == []
    _assert_no_secrets(repr(ns))


def test_event_defaults_and_validation():
    ev = _rollback()
    assert (ev.severity, ev.dedup_key, ev.idempotency_key) == (
        "critical", "atge-dpl_bad123", "rollback:atge-dpl_bad123")
    assert ev.metrics[0]["value"] == 4120.0 and ev.metrics[0]["baseline"] == 3350.0
    assert nt.Event(nt.PERF_ALERT, "d", "t", [{"metric": "m", "value": float("nan")}]
                    ).metrics[0]["value"] is None
    json.dumps(ev.to_dict())
    with pytest.raises(ValueError):
        nt.Event("deploy", "d", "t")
    with pytest.raises(ValueError):
        nt.Event(nt.ROLLBACK, "", "t")
    with pytest.raises(ValueError):
        nt.Event(nt.ROLLBACK, "d", "t", severity="sev1")
    failed = nt.run_failed_event("r9", "trends_job")
    assert failed.dedup_key == "atge-run-r9" and failed.idempotency_key == "run_failed:r9"
