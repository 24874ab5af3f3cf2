"""The console as an operator uses it: sign in, see the targets, add a SCIM target
pointing at scim2-server and test it, provision a user on demand and read the steps, find
the user's entries in Activity, redrive a dead letter, sign out; a wrong token sees
nothing. The tests run in this order and share one browser page (one operator's visit)."""

import re
import time
import urllib.request

from playwright.sync_api import expect

from conftest import ADMIN_TOKEN, PEER_TOKEN, PHONE, DESKTOP, SCIM_TOKEN, SCREENSHOTS, call, shot


def admin_status(page, path, method="GET", headers=None):
    """Status of an admin API call made by the page itself (with its cookies)."""
    return page.evaluate(
        "async ([p, m, h]) => (await fetch(p, {method: m, headers: h, credentials: 'same-origin'})).status",
        [path, method, headers or {}])


def test_a_wrong_token_sees_nothing(hub, watched):
    page = watched.page
    page.goto(f"{hub.base}/console/")
    expect(page.get_by_role("heading", name="Provisync console")).to_be_visible()
    shot(page, "01-sign-in")
    # The refused sign-in answers 401, which Chromium reports as a failed resource load.
    watched.expect_error("status of 401")
    page.get_by_label("Admin token").fill("not-the-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not a valid admin token")
    expect(page.locator("#top")).to_be_hidden()
    assert page.locator("table").count() == 0
    # Nothing is readable without a session, and the field was emptied.
    assert admin_status(page, "/admin/targets") == 401
    assert page.get_by_label("Admin token").input_value() == ""
    shot(page, "02-wrong-token")


def test_sign_in_and_see_the_targets(hub, watched):
    page = watched.page
    page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Overview", level=1)).to_be_visible()
    expect(page.locator("#who")).to_have_text("admin:static")
    # The token is nowhere in the page or its storage; the cookie is HttpOnly, Strict.
    assert ADMIN_TOKEN not in page.content()
    assert page.evaluate("document.cookie") == ""
    assert page.evaluate("JSON.stringify(localStorage) + JSON.stringify(sessionStorage)") == "{}{}"
    cookie = next(c for c in page.context.cookies() if c["name"] == "provisync_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    # Overview: the target, its kind, mode and health; the chart.
    row = page.locator("tr", has_text="crm-down")
    expect(row).to_contain_text("scim")
    expect(row).to_contain_text("realtime")
    expect(page.get_by_role("img", name=re.compile("Operations per hour"))).to_be_visible()
    page.get_by_role("button", name="30 days").click()
    expect(page.get_by_role("img", name=re.compile("Operations per day"))).to_be_visible()
    page.get_by_role("button", name="24 hours").click()
    # A change without the CSRF token is refused even with the session cookie.
    watched.expect_error("status of 403")
    assert admin_status(page, "/admin/deadletters/redrive", "POST") == 403
    page.get_by_role("link", name="Targets", exact=True).click()
    expect(page.get_by_role("heading", name="Targets", level=1)).to_be_visible()
    expect(page.locator("tr", has_text="crm-down")).to_be_visible()


def test_add_a_scim_target_and_test_it(hub, watched):
    page = watched.page
    page.get_by_role("link", name="Add a target").click()
    expect(page.get_by_role("heading", name="Add a target")).to_be_visible()
    page.get_by_label("Id", exact=True).fill("scim2")
    page.get_by_label("Kind").select_option("scim")
    page.get_by_label("Base URL").fill(hub.peer)
    page.get_by_label("Bearer token").fill(PEER_TOKEN)
    # On demand only: changes still retrying for the unreachable target (every user's
    # create) must not reach this one before the test provisions alice.
    page.get_by_label("Mode").select_option("manual")
    page.get_by_label("Scope filter (SCIM filter on hub users)").fill('title eq "Engineer"')
    page.get_by_role("button", name="Count the users it selects").click()
    expect(page.get_by_role("status").filter(has_text="in scope")).to_contain_text("2 of 3 users are in scope")
    # A mapping rule, previewed on a chosen user before saving.
    page.get_by_role("button", name="Add a rule").click()
    page.get_by_label("Target attribute").fill("userType")
    page.get_by_label("Rule", exact=True).select_option("constant")
    page.get_by_label("Source or value").fill("Employee")
    page.get_by_label("Preview on the user").fill("ali")
    page.get_by_role("button", name=re.compile("alice@example.com")).click()
    page.get_by_role("button", name="Preview what the target receives").click()
    expect(page.get_by_label("Payload")).to_contain_text('"userType": "Employee"')
    expect(page.get_by_label("Payload")).not_to_contain_text("Secret-123!")
    shot(page, "04-target-form")
    page.get_by_role("button", name="Add target").click()
    expect(page.get_by_role("heading", name="Target scim2")).to_be_visible()
    # The secret is write-only: shown as set, never as its value.
    expect(page.get_by_text("Set. Leave empty to keep it.")).to_be_visible()
    assert PEER_TOKEN not in page.content()
    page.get_by_role("button", name="Test connection").click()
    expect(page.get_by_text(re.compile("Connection works"))).to_be_visible(timeout=15000)
    # Saving again without retyping the secret keeps it: the test still passes.
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_text("Saved.")).to_be_visible()
    page.get_by_role("button", name="Test connection").click()
    expect(page.get_by_text(re.compile("Connection works"))).to_be_visible(timeout=15000)
    page.get_by_role("link", name="← Targets").click()
    expect(page.locator("tr", has_text="scim2")).to_be_visible()
    shot(page, "03-targets")


def test_provision_a_user_on_demand(hub, watched):
    page = watched.page
    page.get_by_role("link", name="Provision on demand").click()
    expect(page.get_by_role("heading", name="Provision on demand")).to_be_visible()
    page.get_by_label("Target").select_option("scim2")
    page.get_by_label("User").fill("alice")
    page.get_by_role("button", name=re.compile("alice@example.com")).click()
    page.get_by_role("button", name="Provision", exact=True).click()
    steps = page.locator("ol.steps > li")
    expect(steps).to_have_count(4, timeout=20000)
    expect(steps.nth(0)).to_contain_text("In scope")
    expect(steps.nth(1)).to_contain_text("created")
    expect(steps.nth(2)).to_contain_text("attribute(s)")
    expect(steps.nth(3)).to_contain_text("create: delivered")
    expect(page.locator("ol.steps > li.failed")).to_have_count(0)
    # The account is on the peer now.
    req = urllib.request.Request(
        f'{hub.peer}/Users?filter=userName%20eq%20%22alice@example.com%22',
        headers={"Authorization": f"Bearer {PEER_TOKEN}"})
    with urllib.request.urlopen(req, timeout=5) as r:
        assert '"totalResults": 1' in r.read().decode().replace('"totalResults":1', '"totalResults": 1')
    shot(page, "05-provision")


def test_find_the_user_in_activity(hub, watched):
    page = watched.page
    page.get_by_role("link", name="See alice@example.com in Activity").click()
    expect(page.get_by_role("heading", name="Activity")).to_be_visible()
    expect(page.get_by_label("Account")).to_have_value(re.compile("."))
    rows = page.locator("tbody tr")
    expect(rows.filter(has_text="scim2").filter(has_text="create")).not_to_have_count(0)
    # The account's userName is shown, not only its id; the operator who asked is named.
    expect(rows.first).to_contain_text("alice@example.com")
    expect(rows.filter(has_text="admin:static")).not_to_have_count(0)
    # The filtered view as CSV, downloaded as the operator would.
    with page.expect_download() as dl:
        page.get_by_role("link", name="Export CSV").click()
    text = open(dl.value.path(), encoding="utf-8").read()
    assert text.startswith("time,target,operation,status,account")
    assert "alice@example.com" in text and "bob@example.com" not in text
    # Filters by userName from the form.
    page.get_by_label("Account").fill("bob@example.com")
    page.get_by_label("Operation").select_option("create")
    page.get_by_role("button", name="Apply filters").click()
    expect(page).to_have_url(re.compile("account=bob"))
    expect(page.locator("tbody")).not_to_contain_text("alice@example.com")
    page.get_by_label("Account").fill("")
    page.get_by_label("Operation").select_option("")
    page.get_by_role("button", name="Apply filters").click()
    expect(page.locator("tbody tr").filter(has_text="configure")).not_to_have_count(0)
    shot(page, "06-activity")
    # The view the README shows: one user's entries, the first screenful.
    page.goto(f"{hub.base}/console/#/activity?account=alice%40example.com")
    expect(page.locator("tbody tr").first).to_contain_text("alice@example.com")
    page.screenshot(path=str(SCREENSHOTS / "06-activity-alice-1280.png"))


def test_sources(hub, watched):
    page = watched.page
    page.get_by_role("link", name="Sources", exact=True).click()
    page.get_by_role("link", name="Add a source").click()
    page.get_by_label("Id", exact=True).fill("intranet")
    page.get_by_label("Signing secret").fill("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    page.get_by_label("Accept users and groups").check()
    page.get_by_role("button", name="Add source").click()
    expect(page.get_by_role("heading", name="Source intranet")).to_be_visible()
    expect(page.get_by_text("1 set. Leave empty to keep.")).to_be_visible()
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_text("Saved.")).to_be_visible()
    # Test connection on a webhook source: push-only, and no signed delivery yet.
    page.get_by_role("button", name="Test connection").click()
    expect(page.get_by_role("status").filter(has_text="Push-only")).to_contain_text("no signed delivery accepted yet", timeout=15000)
    # A pull source (the SCIM peer) is reached with its token.
    page.get_by_role("link", name="← Sources").click()
    page.get_by_role("link", name="Add a source").click()
    page.get_by_label("Id", exact=True).fill("peer-idp")
    page.get_by_label("Direction").select_option("pull")
    page.get_by_label("Accept users and groups").check()
    page.get_by_label("API").select_option("scim")
    page.get_by_label("Base URL").fill(hub.peer)
    page.get_by_label("Bearer token").fill(PEER_TOKEN)
    # Saved disabled: the schedule must not pull the peer's users while the other tests run.
    page.get_by_label("Enabled").uncheck()
    page.get_by_role("button", name="Add source").click()
    expect(page.get_by_role("heading", name="Source peer-idp")).to_be_visible()
    assert PEER_TOKEN not in page.content()
    page.get_by_role("button", name="Test connection").click()
    expect(page.get_by_text(re.compile("Connection works .*reached"))).to_be_visible(timeout=15000)
    shot(page, "07-source-test")
    page.get_by_role("link", name="← Sources").click()
    expect(page.locator("tr", has_text="intranet")).to_be_visible()
    # The list tests a source too.
    page.locator("tr", has_text="peer-idp").get_by_role("button", name="Test connection").click()
    expect(page.locator("tr", has_text="peer-idp").get_by_text(re.compile("Connection works"))).to_be_visible(timeout=15000)
    shot(page, "07-sources")


def test_redrive_a_dead_letter(hub, watched):
    page = watched.page
    # The unreachable target's changes die after their retries (4 receives: 3.5-7 s from start).
    deadline = time.time() + 90
    while hub.admin("GET", "/deadletters")["count"] == 0:
        assert time.time() < deadline, "no dead letter appeared"
        time.sleep(1)
    page.get_by_role("link", name="Dead letters").click()
    expect(page.get_by_role("heading", name="Dead letters")).to_be_visible()
    rows = page.locator("tbody tr:not(.detail-row)")
    expect(rows.first).to_contain_text("@example.com")
    before = rows.count()
    rows.first.get_by_role("button", name="Inspect").click()
    body = page.locator("tr.detail-row pre").first
    expect(body).to_be_visible()
    # Never a password, clear or sealed.
    expect(body).not_to_contain_text("Secret-123!")
    expect(body).not_to_contain_text("v1.")
    shot(page, "08-dead-letters")
    rows.first.get_by_role("button", name="Redrive").click()
    expect(page.get_by_role("status").filter(has_text="back to the queue")).to_be_visible()
    expect(rows.filter(has=page.get_by_role("button", name="Redrive"))).to_have_count(before - 1)
    entries = hub.admin("GET", "/activity?op=redrive")["entries"]
    assert entries and entries[0]["actor"] == "admin:static"


def test_release_and_discard_held_changes(hub, watched):
    page = watched.page
    # A target that takes at most one deprovision an hour; these three users only.
    hub.admin("PUT", "/targets/guarded", {
        "kind": "scim", "base_url": hub.peer, "auth": {"bearer": PEER_TOKEN},
        "scope_filter": 'userName sw "leaver"',
        "deprovision_guard": {"max": 1, "window_minutes": 60}})
    ids = []
    for n in range(4):
        ids.append(call("POST", f"{hub.base}/scim/v2/Users", SCIM_TOKEN, {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": f"leaver{n}@example.com", "active": True},
            "application/scim+json")["id"])

    def delivered(op):
        entries = hub.admin("GET", f"/audit?target=guarded&op={op}&status=delivered&limit=100")["entries"]
        return len(entries)

    deadline = time.time() + 30
    while delivered("create") < 4:
        assert time.time() < deadline, "the four users did not reach the guarded target"
        time.sleep(0.3)
    for i in ids:
        call("DELETE", f"{hub.base}/scim/v2/Users/{i}", SCIM_TOKEN)
    deadline = time.time() + 30
    while len(hub.admin("GET", "/targets/guarded/held")["held"]) < 3:
        assert time.time() < deadline, "three deletions were not held"
        time.sleep(0.3)
    assert delivered("delete") == 1

    # The overview's badge leads to them.
    page.get_by_role("link", name="Overview", exact=True).click()
    badge = page.locator("tr", has_text="guarded").get_by_role("link", name=re.compile("held, waiting for approval"))
    expect(badge).to_have_text("held, waiting for approval (3)")
    badge.click()
    expect(page.get_by_role("heading", name="Held changes for guarded")).to_be_visible()
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.first).to_contain_text("leaver")
    expect(rows.first).to_contain_text("delete")
    shot(page, "09-held")

    # Each action asks first; a declined one changes nothing.
    page.once("dialog", lambda d: d.dismiss())
    rows.first.get_by_role("button", name="Discard").click()
    expect(rows).to_have_count(3)
    kept = rows.nth(2).locator("td").first.inner_text().split("\n")[0]
    page.once("dialog", lambda d: d.accept())
    rows.first.get_by_role("button", name="Discard").click()
    expect(page.get_by_role("status").filter(has_text="discarded, not sent")).to_be_visible()
    expect(rows).to_have_count(2)
    # Discarded elsewhere meanwhile (another operator, the CLI): the page says so.
    other = hub.admin("GET", "/targets/guarded/held")["held"][0]
    hub.admin("POST", "/targets/guarded/held/discard", {"ids": [other["id"]]})
    page.once("dialog", lambda d: d.accept())
    rows.first.get_by_role("button", name="Release").click()
    expect(page.get_by_role("status").filter(has_text="no longer held")).to_be_visible()
    expect(rows).to_have_count(1)
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Release all").click()
    expect(page.get_by_text("Nothing is held for guarded")).to_be_visible(timeout=10000)
    expect(page.get_by_role("status").filter(has_text="1 sent (their outcomes are in Activity)")).to_be_visible()
    shot(page, "09-held-released")
    assert hub.admin("GET", "/targets/guarded/held")["held"] == []
    deadline = time.time() + 15
    while delivered("delete") < 2:
        assert time.time() < deadline, f"the release of {kept} was not delivered"
        time.sleep(0.3)
    released = hub.admin("GET", "/audit?target=guarded&op=release_held&limit=10")["entries"]
    assert released and released[0]["actor"] == "admin:static", released


def test_every_page_on_a_phone(hub, watched):
    page = watched.page
    # The unreachable target's other changes reach the dead-letter queue in a few seconds.
    deadline = time.time() + 60
    while hub.admin("GET", "/deadletters")["count"] == 0:
        assert time.time() < deadline, "no dead letter left"
        time.sleep(1)
    page.get_by_role("link", name="Overview", exact=True).click()
    expect(page.get_by_role("heading", name="Overview", level=1)).to_be_visible()
    # The overview shows the failing target and its dead letters.
    row = page.locator("tr", has_text="crm-down")
    expect(row).to_contain_text("failing")
    expect(row.locator("td").nth(6)).not_to_have_text("0")
    shot(page, "00-overview")
    page.set_viewport_size(PHONE)
    for name in ["overview", "activity", "targets", "targets/new", "targets/edit/scim2", "sources",
                 "sources/edit/intranet", "provision", "deadletters", "held/guarded"]:
        page.goto(f"{hub.base}/console/#/{name}")
        page.wait_for_selector("main h1")
        if name == "targets/new":
            page.get_by_role("button", name="Add a rule").click()
            page.get_by_role("button", name="Add a group").click()
        # Nothing wider than the screen but what scrolls on purpose (tables).
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"{name} is {overflow}px wider than a phone"
    page.set_viewport_size(DESKTOP)


def test_keyboard_and_labels(hub, watched):
    page = watched.page
    page.goto(f"{hub.base}/console/#/targets/new")
    page.wait_for_selector("main h1")
    # Every form control has a label.
    unlabelled = page.evaluate("""() => [...document.querySelectorAll('main input, main select, main textarea')]
        .filter(e => !e.labels?.length && !e.getAttribute('aria-label')).map(e => e.name || e.outerHTML)""")
    assert unlabelled == []
    # The skip link comes first, then the navigation; links work from the keyboard.
    first = page.evaluate("""() => [...document.querySelectorAll('a[href], button, input, select, textarea')]
        .filter(e => e.offsetParent !== null || e.classList.contains('skip')).slice(0, 2).map(e => e.textContent)""")
    assert first == ["Skip to content", "Overview"]
    page.focus("a.skip")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Overview"
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Overview", level=1)).to_be_visible()


def test_sign_out(hub, watched):
    page = watched.page
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("You are signed out.")).to_be_visible()
    watched.expect_error("status of 401")
    expect(page.locator("#top")).to_be_hidden()
    assert admin_status(page, "/admin/targets") == 401
    page.goto(f"{hub.base}/console/#/targets")
    expect(page.get_by_label("Admin token")).to_be_visible()
    entries = hub.admin("GET", "/activity?op=sign_out")["entries"]
    assert entries and entries[0]["actor"] == "admin:static"
    print(f"screenshots in {SCREENSHOTS}")
