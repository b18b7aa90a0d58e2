"""
The dashboard in a real headless Chromium (Debian's, driven by Playwright's
Python package; no browser download): log in with an admin key, today's
spend equals the ledger's, a key created on the page (with a limit of one
request a minute) works on the API port, is rate limited on its second
request and is refused once revoked there, a what-if runs, a wrong key is refused,
the session cookie is HttpOnly and SameSite=Strict, and a model named
``<script>`` is shown as text.  Screenshots of every page go to
tests/artifacts/ (gitignored).

Skipped, loudly, only when Chromium or Playwright is missing and CI is unset.
"""

from __future__ import annotations

import os
import time
import warnings
from decimal import Decimal
from typing import Any

import openai
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest, TestCase

from dd0c_route.ledger.interfaces import KeyInfo
from dd0c_route.ledger.keys import generate_key, hash_key, new_key_id
from dd0c_route.ledger.records import UsageRecord

from .live import start_live_proxy
from .test_admin_live import ADMIN, MESSAGES, admin_port

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = os.path.join(os.path.dirname(__file__), "artifacts")
HOSTILE = "<script>window.hacked=1</script><img src=x onerror=window.hacked=2>"


def require_browser() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if sync_playwright is not None and os.path.exists(CHROMIUM):
        return sync_playwright
    reason = f"browser tests need {CHROMIUM} (apt-get install -y chromium) and playwright (pip install playwright)"
    if os.environ.get("CI"):
        raise AssertionError("CI is set: " + reason)
    warnings.warn("SKIPPING BROWSER TESTS: " + reason, stacklevel=2)
    raise SkipTest(reason)


class DashboardBrowserTests(TestCase):
    timeout = 120

    @inlineCallbacks
    def test_login_spend_keys_whatif_and_escaping(self):
        """The whole tour, one browser: see the module docstring."""
        sync_playwright = require_browser()
        live = yield start_live_proxy(self, extra_config=ADMIN)
        port = yield admin_port(live)
        admin_key = generate_key()
        live.built.store.add_key(KeyInfo(new_key_id(), "boss", hash_key(admin_key), time.time(), admin=True))
        client = live.openai_client()
        for _ in range(3):
            yield deferToThread(lambda: client.chat.completions.create(model="gpt-4o", messages=MESSAGES))
        # A hostile model name, as a client could make one appear in a record.
        live.built.store.write_records([UsageRecord(request_id="req-hostile", model=HOSTILE, model_requested=HOSTILE,
                                                    status=404, created_at=time.time(), latency_ms=1.0)])
        records = yield live.records()
        today = sum((r.cost_usd for r in records if r.cost_usd is not None), Decimal(0))
        self.assertGreater(today, 0)
        base = f"http://127.0.0.1:{port}"
        api_base = live.base_url + "/v1"
        os.makedirs(ARTIFACTS, exist_ok=True)

        def tour() -> dict[str, Any]:
            seen: dict[str, Any] = {}
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                try:
                    # bypass_csp: Playwright's waits evaluate strings; it also
                    # means the escaping below is proven without CSP's help.
                    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
                    page = context.new_page()
                    page.goto(base + "/")
                    page.fill("#login-key", generate_key())
                    page.press("#login-key", "Enter")
                    page.wait_for_function("document.getElementById('login-error').textContent.length > 0")
                    seen["wrong_key_error"] = page.text_content("#login-error")
                    seen["wrong_key_cookies"] = page.context.cookies()
                    page.screenshot(path=os.path.join(ARTIFACTS, "login.png"), full_page=True)
                    page.fill("#login-key", admin_key)
                    page.press("#login-key", "Enter")
                    page.wait_for_function("document.getElementById('ov-today').textContent.length > 0")
                    seen["today"] = page.text_content("#ov-today")
                    seen["cookies"] = page.context.cookies()
                    page.screenshot(path=os.path.join(ARTIFACTS, "overview.png"), full_page=True)
                    page.click("a[href='#spend']")
                    page.wait_for_selector("#spend-chart svg rect", state="attached")
                    page.screenshot(path=os.path.join(ARTIFACTS, "spend.png"), full_page=True)
                    page.click("a[href='#keys']")
                    page.fill("#key-name", "from-the-page")
                    page.fill("#key-rpm", "1")
                    page.click("#key-form button[type=submit]")
                    page.wait_for_selector("#key-created:not([hidden])")
                    seen["new_key"] = page.text_content("#key-secret")
                    seen["use_new"] = openai.OpenAI(base_url=api_base, api_key=seen["new_key"]).chat.completions.create(
                        model="gpt-4o-mini", messages=MESSAGES).choices[0].message.content
                    try:
                        openai.OpenAI(base_url=api_base, api_key=seen["new_key"], max_retries=0).chat.completions.create(
                            model="gpt-4o-mini", messages=MESSAGES)
                        seen["second_in_minute"] = "accepted"
                    except openai.RateLimitError as error:
                        seen["second_in_minute"] = (error.status_code, error.code)
                    seen["key_row"] = page.eval_on_selector_all(
                        "#keys-table tr", "rows => rows.map(r => r.textContent).filter(t => t.includes('from-the-page'))")
                    page.screenshot(path=os.path.join(ARTIFACTS, "keys.png"), full_page=True)
                    page.click("button[aria-label='Revoke key from-the-page']")
                    page.wait_for_function("document.getElementById('keys-table').textContent.includes('revoked')")
                    try:
                        openai.OpenAI(base_url=api_base, api_key=seen["new_key"], max_retries=0).chat.completions.create(
                            model="gpt-4o-mini", messages=MESSAGES)
                        seen["after_revoke"] = "accepted"
                    except openai.AuthenticationError as error:
                        seen["after_revoke"] = error.status_code
                    page.click("a[href='#requests']")
                    page.wait_for_function("document.getElementById('req-table').rows.length > 0")
                    seen["hostile_cells"] = page.eval_on_selector_all("#req-table td", "tds => tds.map(td => td.textContent)")
                    seen["hacked"] = page.evaluate("window.hacked === undefined ? null : window.hacked")
                    seen["scripts"] = page.evaluate("document.scripts.length")
                    seen["imgs"] = page.evaluate("document.images.length")
                    page.screenshot(path=os.path.join(ARTIFACTS, "requests.png"), full_page=True)
                    page.click("a[href='#routing']")
                    page.click("#whatif-form button[type=submit]")
                    page.wait_for_function("document.getElementById('whatif-total').textContent.length > 0")
                    seen["whatif_total"] = page.text_content("#whatif-total")
                    seen["whatif_rows"] = page.eval_on_selector_all("#whatif-table td", "tds => tds.map(td => td.textContent)")
                    page.screenshot(path=os.path.join(ARTIFACTS, "routing.png"), full_page=True)
                    page.set_viewport_size({"width": 390, "height": 844})
                    page.click("a[href='#overview']")
                    page.wait_for_function("document.getElementById('ov-today').textContent.length > 0")
                    seen["phone_scroll_width"] = page.evaluate("document.documentElement.scrollWidth")
                    page.screenshot(path=os.path.join(ARTIFACTS, "overview-phone.png"), full_page=True)
                    # Keyboard: Tab from the top reaches the nav links.
                    page.keyboard.press("Tab")
                    seen["first_tab"] = page.evaluate("document.activeElement.textContent")
                finally:
                    browser.close()
            return seen

        seen = yield deferToThread(tour)
        self.assertTrue(seen["wrong_key_error"])
        self.assertEqual(seen["wrong_key_cookies"], [])
        self.assertEqual(seen["today"], f"${float(today):.4f}")
        (cookie,) = seen["cookies"]
        self.assertEqual((cookie["httpOnly"], cookie["sameSite"]), (True, "Strict"))
        self.assertGreater(cookie["expires"], time.time())
        self.assertTrue(seen["new_key"].startswith("dd0c-"))
        self.assertTrue(seen["use_new"])
        self.assertEqual(seen["second_in_minute"], (429, "rate_limited"))  # Requests/min 1, set on the page
        self.assertEqual(len(seen["key_row"]), 1)
        self.assertEqual(seen["after_revoke"], 401)
        self.assertIn(HOSTILE, seen["hostile_cells"])
        self.assertEqual((seen["hacked"], seen["scripts"], seen["imgs"]), (None, 1, 0))
        self.assertEqual(seen["whatif_rows"][:1], ["cheap"])
        self.assertRegex(seen["whatif_total"], r"^-?\d+(\.\d+)?$")
        self.assertLessEqual(seen["phone_scroll_width"], 390)
        self.assertTrue(seen["first_tab"])
