"""The operator's view, in a real browser: Chromium (Debian's `chromium` package) driven by
Playwright through `atge up`, after the README's 1.3x demo.

Dagster's UI is a React app that renders after load and does not redraw metadata by itself: every
wait is for text on the page (reloading while it is not there yet), bounded by a timeout, never a
fixed sleep.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import pytest

from atge_assets.deployments.history import DeploymentHistory
from atge_assets.harness import stack

CHROMIUM = "/usr/bin/chromium"


def _require_chromium():
    """Playwright and Debian's Chromium, or a skip with the reason; under CI (CI=true) a failure,
    so CI never passes by skipping the one test that looks at the UI."""
    reason = ""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        reason = "playwright is not installed (pip install -e '.[test]')"
    if not reason and not os.access(CHROMIUM, os.X_OK):
        # Playwright's own browser download needs the internet; the distribution's does not.
        reason = f"no Chromium at {CHROMIUM} (apt-get install -y chromium; .ci/run does it)"
    if reason:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI needs the browser: {reason}")
        pytest.skip(reason)


@pytest.mark.slow
def test_the_ui_shows_a_rollback_on_releases_and_on_the_runs_page(tmp_path):
    _require_chromium()
    from playwright.sync_api import sync_playwright

    s = stack.start(tmp_path / "home")
    try:
        s.wait_for(s.ui_ready, 180)
        first = s.status()["production"]
        with contextlib.closing(_Store(tmp_path / "home" / "history.sqlite")) as store:
            s.wait_for(lambda: store.history.decisions_for(first), 240)
        # The README's demo: a 30%-slower production deployment, rolled back by itself.
        slow = s.deploy(slowdown=1.3)
        s.wait_for(lambda: s.status()["rollbacks"], 240)
        assert s.status()["production"] == first

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM)
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            step = "releases"
            try:
                # The releases table: the slow deployment's row says rolled_back, to `first`.
                row = page.locator(f'tr:has(> td:text-is("{slow}"))'
                                   ':has(> td:text-is("rolled_back"))'
                                   f':has(> td:text-is("{first}"))')
                _until_shown(s, page, s.ui_url + "/assets/releases", row, 180)

                step = "runs"
                # The Runs list: the run that judged it carries its decision as a tag. The list
                # is virtualized: a row is a `data-index` element, not a table row.
                def run_of(dep):
                    return page.locator("[data-index]", has=page.get_by_text(
                        f"partition: {dep}", exact=True))

                decided = run_of(slow).get_by_text("atge/decision: rolled_back", exact=True)
                _until_shown(s, page, s.ui_url + "/runs", decided, 120)

                step = "runs filtered by tag"
                # ...and the tag filter tells the rollback from the keep.
                _until_shown(s, page, s.ui_url + "/runs?q%5B0%5D=tag%3Aatge%2Fdecision%3D"
                             "rolled_back", decided, 120)
                assert run_of(first).count() == 0
            except Exception as exc:
                shot = tmp_path / f"failure-{step.replace(' ', '-')}.png"
                page.screenshot(path=str(shot), full_page=True)
                (tmp_path / "failure-page.txt").write_text(page.inner_text("body"))
                raise AssertionError(f"{step}: not shown in the UI; see {shot} and "
                                     f"{s.log_path}") from exc
            finally:
                browser.close()
    finally:
        code = s.stop()
    assert code == 0, s.log_path.read_text()[-3000:]


def _until_shown(s: stack.Stack, page, url: str, locator, timeout_s: float) -> None:
    """Open `url` until `locator` is visible: the page shows what the webserver knew when it
    loaded, and the refresh it waits for (a run, its tags) may land after that."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    deadline = time.monotonic() + timeout_s
    while True:
        if s.proc.poll() is not None:
            raise RuntimeError(f"atge up exited with {s.proc.returncode}")
        page.goto(url)
        left = deadline - time.monotonic()
        try:
            locator.first.wait_for(state="visible", timeout=max(1.0, min(left, 30)) * 1000)
            return
        except PlaywrightTimeout:
            if time.monotonic() >= deadline:
                raise


class _Store:
    def __init__(self, path: Path):
        self.history = DeploymentHistory(f"sqlite:///{path}")

    def close(self):
        self.history.dispose()
