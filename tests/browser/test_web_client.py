"""The web client as a person uses it: a real headless Chromium against the local stack (through the temporary
front door until the stack signs users in itself; see conftest.py)."""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import uuid
from urllib.parse import urlsplit

import pytest
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser.conftest import screenshot
from tests.conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.browser]


# ---- how a person finds things: by their label, their text, their role -----------------------------------------

def labelled(driver, label: str):
    """The form control whose <label> reads `label` (fails if the label is not tied to a control)."""
    element = driver.find_element(By.XPATH, f"//label[normalize-space()='{label}']")
    return driver.find_element(By.ID, element.get_attribute("for"))


def button(driver, text: str):
    return driver.find_element(By.XPATH, f"//button[normalize-space()='{text}']")


def link(driver, text: str):
    return driver.find_element(By.XPATH, f"//a[contains(normalize-space(), '{text}')]")


def type_into(driver, label: str, value: str) -> None:
    control = labelled(driver, label)
    if control.get_attribute("type") == "date":
        # Typed as a person would in an en-US date field: month, day, year.
        year, month, day = value.split("-")
        control.send_keys(month + day + year)
    else:
        control.clear()
        control.send_keys(value)


def status(driver) -> str:
    return driver.find_element(By.CSS_SELECTOR, "[role=status]").text


def wait_for(driver, condition, timeout: float = 30, what: str = "the page"):
    """Poll `condition` until truthy; the page re-rendering meanwhile (stale or missing elements) is waited out.
    On a timeout the message says what the page showed."""
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1, ignored_exceptions=(
            NoSuchElementException, StaleElementReferenceException)).until(condition)
    except TimeoutException:
        shown = driver.execute_script(
            "return [location.href, document.getElementById('main')?.innerText,"
            " document.getElementById('offline-notice')?.innerText, document.getElementById('status')?.innerText,"
            " navigator.onLine, Boolean(navigator.serviceWorker?.controller)]")
        console = [entry["message"] for entry in driver.get_log("browser")][-10:]
        raise AssertionError(f"waiting for {what}: after {timeout:.0f} s the page showed {shown}; console: {console}") \
            from None


def wait_status(driver, starts_with: str, timeout: float = 30) -> str:
    wait_for(driver, lambda d: status(d).startswith(starts_with), timeout,
             f"the status region to say {starts_with!r} (it says {status(driver)!r})")
    return status(driver)


def wait_heading(driver, text: str, timeout: float = 30) -> None:
    wait_for(driver, lambda d: any(text in h.text for h in d.find_elements(By.TAG_NAME, "h1")), timeout,
             f"the heading {text!r}")


def sign_in(driver, cognito, user_id: int) -> None:
    email, password = cognito.user(user_id)
    type_into(driver, "Email", email)
    type_into(driver, "Password", password)
    button(driver, "Sign in").click()
    wait_for(driver, lambda d: "Signed in as" in d.find_element(By.ID, "who").text, what="signing in")


def stay(days_ahead: int, nights: int) -> tuple[str, str]:
    start = dt.date.today() + dt.timedelta(days=days_ahead)
    return start.isoformat(), (start + dt.timedelta(days=nights)).isoformat()


def nights_of(check_in: str, check_out: str) -> list[str]:
    start, end = dt.date.fromisoformat(check_in), dt.date.fromisoformat(check_out)
    return [(start + dt.timedelta(days=i)).isoformat() for i in range((end - start).days)]


def calendar_status(driver, date: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, f"td[data-date='{date}']").get_attribute("data-status")


def open_listing(driver, web, listing_id: int, check_in: str, check_out: str, guests: int = 1) -> None:
    driver.get(f"{web.url}/#/listing/{listing_id}?check_in={check_in}&check_out={check_out}&guests={guests}")
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, f"td[data-date='{check_in}'][data-status='free']"),
             what="the calendar")


def choose_card(driver, name: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(labelled(driver, "Card")).select_by_visible_text(name)


def requested_hosts(driver) -> set[str]:
    """Every http(s) origin the page asked for something (Chrome's network log)."""
    hosts = set()
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            url = message["params"]["request"]["url"]
            if url.startswith(("http:", "https:")):  # not data:, blob:, or the browser's own chrome:// pages
                parts = urlsplit(url)
                hosts.add(f"{parts.scheme}://{parts.netloc}")
    return hosts


# ---- the tests -------------------------------------------------------------------------------------------------

def test_search_open_a_listing_sign_in_book_and_find_it_in_my_bookings(browser, web, cognito, http):
    check_in, check_out = stay(60, 3)
    browser.get(web.url + "/")
    wait_heading(browser, "Find a stay")
    # GIVEN a search by city, dates and guests
    type_into(browser, "City", "Lisbon")
    type_into(browser, "Check-in", check_in)
    type_into(browser, "Check-out", check_out)
    type_into(browser, "Guests", "2")
    button(browser, "Search").click()
    wait_for(browser, lambda d: d.find_elements(By.XPATH, "//a[contains(., 'Lisbon #31')]"), what="results")
    result = link(browser, "Lisbon #31")
    price = http.get("/v1/listings/31").body["nightly_price_cents"]
    assert "Lisbon" in result.text and "per night" in result.text
    assert f"{price * 3 / 100:,.2f}" in result.text and "for 3 nights" in result.text  # the stay's total
    screenshot(browser, "search-results", phone_scroll_to=".summary")

    # WHEN the person opens the listing, signs in when asked, and books with a card that succeeds
    result.click()
    wait_heading(browser, "Lisbon #31")
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f"td.stay[data-date='{check_in}']"),
             what="the chosen stay highlighted")
    wait_for(browser, lambda d: [calendar_status(d, night) for night in nights_of(check_in, check_out)] == ["free"] * 3,
             what="the stay's nights free")
    screenshot(browser, "listing-calendar")
    button(browser, "Book").click()
    wait_heading(browser, "Sign in")
    assert "sign in to book" in status(browser)
    sign_in(browser, cognito, 20)
    wait_heading(browser, "Lisbon #31")
    assert labelled(browser, "Check-in").get_attribute("value") == check_in  # the dates were kept
    choose_card(browser, "Visa — succeeds")
    button(browser, "Book").click()

    # THEN the answer is final at once, and My bookings lists the booking first
    said = wait_status(browser, "Confirmed")
    assert "3 nights" in said and "Lisbon #31" in said
    wait_for(browser, lambda d: all(calendar_status(d, night) == "booked" for night in nights_of(check_in, check_out)),
             what="the booked nights in the calendar")
    screenshot(browser, "booking-confirmed")
    (posted,) = web.bookings_posted()
    assert "user_id" not in posted.body  # the user comes from the token
    assert posted.headers.get("Idempotency-Key") and posted.headers.get("Authorization", "").startswith("Bearer ")
    link(browser, "My bookings").click()
    wait_heading(browser, "My bookings")
    first = wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".records li"), what="the bookings")[0]
    assert "Lisbon #31" in first.text and "Confirmed" in first.text
    assert first.get_attribute("data-booking-key").endswith(posted.headers["Idempotency-Key"])  # the user's key
    screenshot(browser, "my-bookings")
    link(browser, "My payments").click()
    wait_heading(browser, "My payments")
    payment = wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".records li"), what="the payments")[0]
    assert "Paid" in payment.text and f"{price * 3 / 100:,.2f}" in payment.text

    # and the page never asked anything of anyone but its own origin and the Cognito endpoint
    assert requested_hosts(browser) <= {web.url, cognito.endpoint}


@pytest.mark.parametrize(("card", "sentence"), [
    ("Declined card", "Your card was declined, so nothing was booked or charged."),
    ("Insufficient funds", "Your card was declined for insufficient funds, so nothing was booked or charged."),
])
def test_a_declined_card_is_told_in_a_sentence_and_nothing_is_booked(browser, web, cognito, card, sentence):
    check_in, check_out = stay(70 if card == "Declined card" else 80, 2)
    browser.get(web.url + "/#/sign-in")
    sign_in(browser, cognito, 21)
    open_listing(browser, web, 33, check_in, check_out)
    choose_card(browser, card)
    button(browser, "Book").click()
    said = wait_status(browser, "Your card")
    assert said.startswith(sentence)
    assert "_" not in said  # no raw code such as card_declined
    wait_for(browser, lambda d: [calendar_status(d, night) for night in nights_of(check_in, check_out)]
             == ["free", "free"], what="the nights still free")


def _sandbox_outage(on: bool) -> None:
    from booking_core.adapters.mysql import connect

    conn = connect(autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("UPDATE sandbox_state SET outage=%s WHERE id=1", (1 if on else 0,))
    finally:
        conn.close()


def test_a_booking_that_comes_back_pending_turns_confirmed_by_itself_after_the_retry_run(browser, web, cognito):
    """GIVEN the payment provider is down, a booking is queued (Pending, cancellable in My bookings); WHEN the
    provider is back and the retry run (`make retry`) re-drives it, THEN the page shows Confirmed by itself."""
    check_in, check_out = stay(90, 2)
    browser.get(web.url + "/#/sign-in")
    sign_in(browser, cognito, 22)
    open_listing(browser, web, 34, check_in, check_out)
    _sandbox_outage(True)
    try:
        button(browser, "Book").click()
        said = wait_status(browser, "Pending")
    finally:
        _sandbox_outage(False)
    assert "updates by itself" in said
    (posted,) = web.bookings_posted()
    key = posted.headers["Idempotency-Key"]
    link(browser, "My bookings").click()
    wait_heading(browser, "My bookings")
    awaiting = wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f"li.awaiting[data-booking-key$='{key}']"),
                        what="the request awaiting a decision")[0]
    assert "Pending" in awaiting.text and "Lisbon" not in awaiting.text
    assert awaiting.find_element(By.XPATH, ".//button[normalize-space()='Cancel']").is_displayed()

    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'layer'}"}
    retry = subprocess.run([sys.executable, "-m", "infra.local.scheduler", "--trigger", "RetryFunction"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert retry.returncode == 0, retry.stderr

    said = wait_status(browser, "Confirmed", timeout=90)
    assert "2 nights" in said
    polls = [s for s in web.seen if s.path.startswith("/v1/bookings/requests/") and s.path.endswith(key)]
    assert polls and all(p.headers.get("Authorization") for p in polls)
    assert len(web.bookings_posted()) == 1  # followed, never re-sent


def test_a_pending_request_cancelled_in_my_bookings_is_never_booked_nor_charged(browser, web, cognito, http):
    """GIVEN a booking queued while the provider is down; WHEN its Cancel button in My bookings is pressed, THEN a
    sentence says nothing was booked or charged, and the retry run that follows leaves it cancelled."""
    check_in, check_out = stay(110, 2)
    browser.get(web.url + "/#/sign-in")
    sign_in(browser, cognito, 22)
    open_listing(browser, web, 36, check_in, check_out)
    _sandbox_outage(True)
    try:
        button(browser, "Book").click()
        wait_status(browser, "Pending")
    finally:
        _sandbox_outage(False)
    key = web.bookings_posted()[-1].headers["Idempotency-Key"]
    link(browser, "My bookings").click()
    wait_heading(browser, "My bookings")
    awaiting = wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f"li.awaiting[data-booking-key$='{key}']"),
                        what="the request awaiting a decision")[0]

    awaiting.find_element(By.XPATH, ".//button[normalize-space()='Cancel']").click()

    said = wait_status(browser, "You cancelled this request")
    assert "Nothing was booked or charged" in said
    assert awaiting.find_element(By.CSS_SELECTOR, ".state").text == "Not booked"
    deletes = [s for s in web.seen if s.method == "DELETE" and s.path.endswith(key)]
    assert len(deletes) == 1 and deletes[0].headers.get("Authorization")

    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'layer'}"}
    retry = subprocess.run([sys.executable, "-m", "infra.local.scheduler", "--trigger", "RetryFunction"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert retry.returncode == 0, retry.stderr
    after = http.as_user(22).get(deletes[0].path)  # the status URL names the scoped key, as the DELETE did
    assert after.status == 200 and after.body["status"] == "rejected" and after.body["reason"] == "cancelled", after.body


def test_nights_just_booked_by_someone_else_are_refused_in_a_sentence_and_shown_booked(browser, web, cognito, http):
    check_in, check_out = stay(100, 3)
    browser.get(web.url + "/#/sign-in")
    sign_in(browser, cognito, 23)
    open_listing(browser, web, 35, check_in, check_out)
    wait_for(browser, lambda d: [calendar_status(d, night) for night in nights_of(check_in, check_out)] == ["free"] * 3,
             what="the stay's nights free")

    # GIVEN someone else books two of these nights through the API while the page is open
    # (at merge: with that user's token instead of user_id in the body)
    other = http.post("/v1/bookings", {"user_id": 1, "listing_id": 35, "check_in": check_in,
                                       "check_out": nights_of(check_in, check_out)[2], "guests": 1,
                                       "payment_token": "tok_visa"},
                      headers={"Idempotency-Key": f"someone-else-{uuid.uuid4().hex[:12]}"})
    assert other.status == 201, other.body

    # WHEN this person books the stay THEN a sentence says the nights were taken, and the calendar shows them booked
    button(browser, "Book").click()
    said = wait_status(browser, "Someone else has just booked")
    assert "choose other dates" in said
    wait_for(browser, lambda d: [calendar_status(d, n) for n in nights_of(check_in, check_out)]
             == ["booked", "booked", "free"], what="the calendar to show the taken nights")
    screenshot(browser, "dates-taken")


def go_offline(driver) -> None:
    """Chrome's own offline mode (DevTools network emulation), as when a phone loses its signal: for the page
    (navigator.onLine turns false) and for its service worker, a target of its own that the page's emulation does
    not cover (its fetches would still reach the server)."""
    conditions = {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1}
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.emulateNetworkConditions", conditions)
    workers = [t for t in driver.execute_cdp_cmd("Target.getTargets", {})["targetInfos"] if t["type"] == "service_worker"]
    assert workers, "no service worker to take offline"
    for worker in workers:
        session = driver.execute_cdp_cmd("Target.attachToTarget", {"targetId": worker["targetId"], "flatten": False})
        for number, (method, params) in enumerate([("Network.enable", {}),
                                                   ("Network.emulateNetworkConditions", conditions)]):
            driver.execute_cdp_cmd("Target.sendMessageToTarget", {
                "sessionId": session["sessionId"],
                "message": json.dumps({"id": number + 1, "method": method, "params": params})})


def test_offline_the_shell_and_the_last_results_open_with_a_notice_and_nothing_is_booked(browser, web, cognito):
    check_in, check_out = stay(110, 2)
    search = f"#/?city=Porto&check_in={check_in}&check_out={check_out}"
    browser.get(f"{web.url}/#/sign-in")
    sign_in(browser, cognito, 21)
    browser.execute_async_script(
        "const done = arguments[0]; navigator.serviceWorker.ready.then(() => {"
        " if (navigator.serviceWorker.controller) done(); else"
        " navigator.serviceWorker.addEventListener('controllerchange', () => done()); });")
    browser.get(f"{web.url}/{search}")
    results = wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "a.result"), what="results")
    titles = [r.find_element(By.CSS_SELECTOR, ".title").text for r in results]
    assert titles and all("Porto" in t for t in titles)

    # GIVEN a listing open when the connection drops: pressing Book sends nothing
    results[0].click()
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f"td[data-date='{check_in}']"), what="the calendar")
    go_offline(browser)
    reached = len(web.seen)
    wait_for(browser, lambda d: d.find_element(By.ID, "offline-notice").is_displayed(), what="the offline notice")
    button(browser, "Book").click()
    assert wait_status(browser, "You are offline, so nothing was sent and nothing was booked.")

    # WHEN the page is reloaded offline on the last search
    browser.get(f"{web.url}/{search}")
    browser.refresh()

    # THEN the shell and the last results show, with the offline notice
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "a.result"), what="the saved results")
    notice = browser.find_element(By.ID, "offline-notice")
    assert notice.is_displayed() and notice.text.startswith("You are offline. These are the results saved at")
    assert [r.text for r in browser.find_elements(By.CSS_SELECTOR, "a.result .title")] == titles
    screenshot(browser, "offline", phone_scroll_to=".summary")
    assert not web.bookings_posted()
    # Nothing reached the server but the browser's own update check of the worker script on navigation.
    assert [s.path for s in web.seen[reached:] if s.path != "/sw.js"] == []


def test_search_pages_and_a_booking_flow_work_from_the_keyboard_alone(browser, web):
    browser.get(web.url + "/")
    wait_heading(browser, "Find a stay")
    active = browser.switch_to.active_element
    # Tab from the page start to the City field: skip link, brand, the three nav links, Sign in, then City.
    for _ in range(20):
        active.send_keys(Keys.TAB)
        active = browser.switch_to.active_element
        if active.get_attribute("name") == "city":
            break
    assert active.get_attribute("name") == "city"
    assert active.value_of_css_property("outline-style") != "none"  # focus is visible
    active.send_keys(Keys.ENTER)  # an empty search: every listing, cheapest first, ten at a time
    wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "a.result")) == 10, what="the first page")
    more = button(browser, "More results")
    more.send_keys(Keys.ENTER)
    wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "a.result")) == 20, what="the second page")
    assert browser.switch_to.active_element == browser.find_elements(By.CSS_SELECTOR, "a.result")[10]
    title = browser.switch_to.active_element.find_element(By.CSS_SELECTOR, ".title").text
    browser.switch_to.active_element.send_keys(Keys.ENTER)
    wait_heading(browser, title)
    assert browser.switch_to.active_element.tag_name == "h1"  # focus moves to the new screen's heading


def test_sign_up_confirm_sign_in_and_sign_out(browser, web, cognito):
    email = f"new-{uuid.uuid4().hex[:8]}@example.com"
    browser.get(web.url + "/#/sign-in")
    link(browser, "Create an account").click()
    wait_heading(browser, "Create an account")
    type_into(browser, "Name", "Nova Traveller")
    type_into(browser, "Email", email)
    type_into(browser, "Password", "short")
    button(browser, "Create account").click()
    assert wait_status(browser, "Please choose a longer password")
    type_into(browser, "Password", "Nova-pass-2030!")
    button(browser, "Create account").click()
    wait_heading(browser, "Confirm your account")
    type_into(browser, "Confirmation code", "123456")  # the local endpoint accepts any code
    button(browser, "Confirm").click()
    wait_heading(browser, "Sign in")
    assert status(browser).startswith("Your account is confirmed")
    assert labelled(browser, "Email").get_attribute("value") == email
    type_into(browser, "Password", "wrong-Password-1")
    button(browser, "Sign in").click()
    assert wait_status(browser, "The email or password is not right.")
    type_into(browser, "Password", "Nova-pass-2030!")
    button(browser, "Sign in").click()
    wait_for(browser, lambda d: email in d.find_element(By.ID, "who").text, what="signed in")
    button(browser, "Sign out").click()
    wait_for(browser, lambda d: link(d, "Sign in").is_displayed(), what="signed out")
    assert browser.execute_script("return localStorage.getItem('stays.session')") is None


def test_an_expired_id_token_is_renewed_with_the_refresh_token_before_the_call(browser, web, cognito):
    browser.get(web.url + "/#/sign-in")
    sign_in(browser, cognito, 24)
    before = browser.execute_script("return JSON.parse(localStorage.getItem('stays.session'))")
    # GIVEN the ID token has expired (as if an hour had passed)
    browser.execute_script("const s = JSON.parse(localStorage.getItem('stays.session')); s.expiresAt = Date.now() - 1000;"
                           " localStorage.setItem('stays.session', JSON.stringify(s));")
    # WHEN the person opens My bookings THEN the app renews the token first and the API call carries the new one
    link(browser, "My bookings").click()
    wait_heading(browser, "My bookings")
    wait_for(browser, lambda d: d.find_elements(By.XPATH, "//*[normalize-space()='No bookings yet.']"),
             what="the (empty) bookings list")
    after = browser.execute_script("return JSON.parse(localStorage.getItem('stays.session'))")
    assert after["idToken"] != before["idToken"] and after["refreshToken"] == before["refreshToken"]
    assert after["expiresAt"] > before["expiresAt"] - 1000
    calls = [s for s in web.seen if s.path.startswith(("/v1/me", "/v1/users"))]
    assert calls and all(s.headers.get("Authorization") == f"Bearer {after['idToken']}" for s in calls)
