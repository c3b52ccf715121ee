"""The reviewers' page in a real browser: Debian's Chromium, driven by Playwright (nothing is
downloaded), against the page's server on loopback and the queue on moto's server."""

from __future__ import annotations

import os
import shutil
import threading
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import expect

from catalogue_purge.enforce.catalogue import InMemoryCatalogue, LiveListing, Status
from catalogue_purge.review.queue import Lane, State
from catalogue_purge.review.serve import Desk, make_server

from .test_review_queue import candidate

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
REQUIRED = os.environ.get("CATALOGUE_PURGE_REQUIRE_BROWSER") == "1"  # set by .ci/run

HOSTILE = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script> S19 miner'


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        if REQUIRED:
            pytest.fail("chromium is not installed (apt-get install chromium)")
        pytest.skip("chromium is not installed (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def serve():
    servers = []

    def start(desk: Desk) -> str:
        server = make_server(desk, 0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def catalogue_of(*listings: str, title: str | None = None) -> InMemoryCatalogue:
    return InMemoryCatalogue(
        {
            listing: LiveListing(
                listing,
                "S-1",
                Status.ACTIVE,
                "Computer & Office > Graphics Cards",
                title or f"RTX 3080 ex-mining {listing}",
                "Ran 24/7 in a mining rig, ex-mining.",
                "DE",
                "2021-10-01T00:00:00.000000Z",
            )
            for listing in listings
        }
    )


def open_page(browser, url: str):
    page = browser.new_page()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    page.wait_for_selector("#listing-id:not(:empty), #empty:not([hidden])")
    return page, requests, errors


def test_claim_decide_by_keyboard_reload_and_nothing_external(browser, serve, queue):
    q = queue()
    q.enqueue([candidate("L-1"), candidate("L-2")], "run-1")
    url = serve(Desk(q, "rv-anna", catalogue=catalogue_of("L-1", "L-2")))
    page, requests, errors = open_page(browser, url)
    assert page.inner_text("#listing-id") == "L-1"
    assert page.locator("#title mark").first.inner_text().lower() == "ex-mining"
    assert page.locator("#description mark").count() >= 1
    assert "used-mining-gpus" in page.inner_text("#evidence")

    page.reload()  # the same claim, not another item
    page.wait_for_selector("#listing-id:not(:empty)")
    assert page.inner_text("#listing-id") == "L-1"

    page.keyboard.press("k")  # no reason yet: the page asks for it
    assert "give the reason" in page.inner_text("#message")
    page.keyboard.type("a gaming card, sold alone")
    page.keyboard.press("Control+Enter")
    expect(page.locator("#listing-id")).to_have_text("L-2")
    item = q.get("L-1")
    assert item is not None and item.state is State.DECIDED
    assert item.final is not None and item.final["decision"] == "keep"
    assert (
        item.final["reviewer"] == "rv-anna" and item.final["reason"] == "a gaming card, sold alone"
    )

    page.click("button[data-decision=delist]")
    page.fill("#reason", "a rig part")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("#empty:not([hidden])")
    done = q.get("L-2")
    assert (
        done is not None and done.final is not None and done.final["rules"] == ["used-mining-gpus"]
    )
    assert errors == []
    assert all(r.startswith(url) for r in requests), requests


def test_a_hostile_title_is_shown_as_text_and_never_runs(browser, serve, queue):
    q = queue()
    q.enqueue([candidate("L-1", title=HOSTILE)], "run-1")
    url = serve(Desk(q, "rv-anna", catalogue=catalogue_of("L-1", title=HOSTILE)))
    page, requests, errors = open_page(browser, url)
    assert errors == []
    assert "<script>" in page.inner_text("#title")
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#title img, #title script").count() == 0
    assert all(r.startswith(url) for r in requests), requests  # the <img> never loaded


def test_a_second_reviewer_sees_the_first_decision_and_agrees(browser, serve, queue):
    q = queue(share=1.0)
    q.enqueue([candidate("L-1")], "run-1")
    catalogue = catalogue_of("L-1")
    first, _, _ = open_page(browser, serve(Desk(q, "rv-anna", catalogue=catalogue)))
    first.fill("#reason", "a gaming card")
    first.click("button[data-decision=keep]")
    first.wait_for_selector("#empty:not([hidden])")  # her own decision is not hers to check
    item = q.get("L-1")
    assert item is not None and item.lane is Lane.SECOND

    second, _, _ = open_page(browser, serve(Desk(q, "rv-ben", catalogue=catalogue)))
    assert "rv-anna (tier 1): keep: a gaming card" in second.inner_text("#earlier")
    second.fill("#reason", "agreed")
    second.click("button[data-decision=keep]")
    second.wait_for_selector("#empty:not([hidden])")
    decided = q.get("L-1")
    assert decided is not None and decided.state is State.DECIDED
    assert decided.final is not None and decided.final["second_review"]


def test_a_conflict_between_two_reviewers_is_refused_on_the_page(browser, serve, queue):
    q = queue()
    q.enqueue([candidate("L-1")], "run-1")
    catalogue = catalogue_of("L-1")
    anna, _, _ = open_page(browser, serve(Desk(q, "rv-anna", catalogue=catalogue)))
    assert anna.inner_text("#listing-id") == "L-1"
    # Her claim runs out while the page is open; another reviewer takes the item over.
    item = q.get("L-1")
    assert item is not None
    past = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    q._update(item, {"claim_expires": past})
    ben, _, _ = open_page(browser, serve(Desk(q, "rv-ben", catalogue=catalogue)))
    assert ben.inner_text("#listing-id") == "L-1"
    anna.fill("#reason", "a gaming card")
    anna.click("button[data-decision=keep]")
    anna.wait_for_selector("#message.error")
    assert "load it again" in anna.inner_text("#message") or "claim" in anna.inner_text("#message")
    assert q.get("L-1").state is State.CLAIMED  # Ben's claim stands, Anna decided nothing


def test_the_api_wants_the_pages_token_and_a_loopback_host(serve, queue):
    q = queue()
    url = serve(Desk(q, "rv-anna"))
    for headers in ({}, {"X-Review-Token": "guess"}):
        request = urllib.request.Request(f"{url}api/next", headers=headers)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 403
    rebound = urllib.request.Request(url, headers={"Host": "evil.example:80"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(rebound, timeout=10)
    assert refused.value.code == 403
    with urllib.request.urlopen(url, timeout=10) as answer:
        policy = answer.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy


def test_the_second_tier_decides_an_escalation_with_an_account_penalty(browser, serve, queue):
    q = queue()
    q.enqueue([candidate("L-1")], "run-1")
    [item] = q.claim("rv-anna")
    q.decide("L-1", reviewer="rv-anna", version=item.version, decision="escalate", reason="?")
    first, _, _ = open_page(browser, serve(Desk(q, "rv-anna", catalogue=catalogue_of("L-1"))))
    expect(first.locator("#empty")).to_be_visible()  # tier 1 never gets an escalation
    assert first.locator("#account-step-row").is_hidden()
    lead, _, errors = open_page(
        browser, serve(Desk(q, "rv-lead", tier=2, catalogue=catalogue_of("L-1")))
    )
    assert lead.inner_text("#listing-id") == "L-1"
    lead.select_option("#account-step", "account-frozen")
    lead.fill("#reason", "hides miners on purpose")
    lead.click("button[data-decision=delist]")
    lead.wait_for_selector("#empty:not([hidden])")
    decided = q.get("L-1")
    assert decided is not None and decided.final is not None
    assert (decided.final["account_step"], decided.final["tier"]) == ("account-frozen", 2)
    assert errors == []
