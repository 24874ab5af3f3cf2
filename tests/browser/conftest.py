"""The operator console in a real browser: Debian's Chromium, driven by Playwright.

Started once for the module: `scim2-server` (the downstream SCIM peer), the real
`provisync serve` binary on a fresh data dir (static admin and SCIM tokens), a few users
created through the hub's SCIM API, and a target that cannot be reached (so its changes
end as dead letters while the tests run). Every page is checked for JavaScript errors,
console errors and CSP violations; screenshots of each page (1280 px and phone width) go
to SCREENSHOTS, printed at the end.
"""

import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(os.environ.get("PROVISYNC_SCREENSHOTS", ROOT / ".test-env" / "console-screenshots"))
ADMIN_TOKEN = "console-test-admin-token"
SCIM_TOKEN = "console-test-scim-token"
PEER_TOKEN = "console-test-peer-token"
CHROMIUM = os.environ.get("PROVISYNC_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def binary():
    candidates = []
    if os.environ.get("CARGO_TARGET_DIR"):
        candidates.append(Path(os.environ["CARGO_TARGET_DIR"]) / "debug" / "provisync")
    candidates.append(ROOT / "target" / "debug" / "provisync")
    for c in candidates:
        if c.exists():
            return c
    raise RuntimeError(f"provisync not built (looked at {candidates}): run `make test`")


def wait_http(url, headers=None, timeout=30):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            req = urllib.request.Request(url, headers=headers or {})
            with urllib.request.urlopen(req, timeout=2) as r:
                if r.status < 500:
                    return
        except Exception as e:  # not up yet
            last = e
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up: {last}")


def call(method, url, token, body=None, content_type="application/json"):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={
        "Authorization": f"Bearer {token}", "Content-Type": content_type})
    with urllib.request.urlopen(req, timeout=10) as r:
        text = r.read().decode()
        return json.loads(text) if text else None


class Hub:
    def __init__(self, base, peer):
        self.base = base
        self.peer = peer

    def admin(self, method, path, body=None):
        return call(method, f"{self.base}/admin{path}", ADMIN_TOKEN, body)


@pytest.fixture(scope="session")
def hub():
    venv = os.environ.get("PROVISYNC_TEST_VENV", str(ROOT / ".venv"))
    work = Path(tempfile.mkdtemp(prefix="provisync-console-"))
    procs = []
    try:
        peer_port = free_port()
        peer_log = open(work / "scim2-server.log", "w")
        procs.append(subprocess.Popen(
            [f"{venv}/bin/scim2-server", "--hostname", "127.0.0.1", "--port", str(peer_port),
             "--bearer-token", PEER_TOKEN],
            stdout=peer_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        peer = f"http://127.0.0.1:{peer_port}/v2"
        wait_http(f"{peer}/ServiceProviderConfig", {"Authorization": f"Bearer {PEER_TOKEN}"})

        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROVISYNC_")}
        env.update({
            "PORT": str(port),
            "PROVISYNC_DATA_DIR": str(work / "data"),
            "PROVISYNC_ADMIN_TOKEN": ADMIN_TOKEN,
            "PROVISYNC_SCIM_TOKEN": SCIM_TOKEN,
            # The SCIM peer and the unreachable target are on loopback.
            "PROVISYNC_ALLOW_PRIVATE_TARGETS": "1",
            # The unreachable target's changes reach the dead-letter queue in seconds.
            "PROVISYNC_MAX_RECEIVE_COUNT": "4",
            "RUST_LOG": "warn",
        })
        hub_log = open(work / "provisync.log", "w")
        procs.append(subprocess.Popen([str(binary()), "serve"], env=env, stdout=hub_log,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz")
        h = Hub(base, peer)
        # A target nobody answers at: the users' changes to it end as dead letters.
        h.admin("PUT", "/targets/crm-down", {
            "kind": "scim", "base_url": f"http://127.0.0.1:{free_port()}/scim/v2",
            "auth": {"bearer": "unused"}})
        for user, given, family, title in [
            ("alice@example.com", "Alice", "Archer", "Engineer"),
            ("bob@example.com", "Bob", "Baker", "Designer"),
            ("carol@example.com", "Carol", "Cooper", "Engineer"),
        ]:
            call("POST", f"{base}/scim/v2/Users", SCIM_TOKEN, {
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": user, "name": {"givenName": given, "familyName": family},
                "displayName": f"{given} {family}", "title": title, "active": True,
                "emails": [{"value": user, "primary": True}], "password": "Secret-123!"},
                "application/scim+json")
        yield h
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.fixture(scope="session")
def browser_context():
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw, tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        ctx = pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport=DESKTOP, accept_downloads=True)
        # CSP violations, recorded by the page itself (an init script is not subject to CSP).
        ctx.add_init_script(
            "window.__csp = [];"
            "document.addEventListener('securitypolicyviolation',"
            " e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));")
        yield ctx
        ctx.close()


class Watched:
    """A page whose console errors, page errors and CSP violations are collected."""

    def __init__(self, page):
        self.page = page
        self.errors = []
        self.expected = []
        page.on("console", lambda m: m.type == "error" and self.errors.append(f"console: {m.text}"))
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))

    def expect_error(self, fragment):
        """An error the test provokes on purpose (a refused sign-in's 401)."""
        self.expected.append(fragment)

    def check(self):
        csp = self.page.evaluate("window.__csp || []")
        bad = [e for e in self.errors if not any(x in e for x in self.expected)]
        bad += [f"csp: {v}" for v in csp]
        self.errors.clear()
        self.expected.clear()
        assert not bad, f"errors on {self.page.url}: {bad}"


@pytest.fixture(scope="session")
def watched(browser_context):
    page = browser_context.pages[0] if browser_context.pages else browser_context.new_page()
    w = Watched(page)
    yield w


@pytest.fixture(autouse=True)
def no_errors(request):
    """After each test: no JavaScript error, console error or CSP violation."""
    yield
    if "watched" in request.fixturenames:
        request.getfixturevalue("watched").check()


def shot(page, name):
    """Screenshots of the current page at 1280 px and at phone width."""
    page.set_viewport_size(DESKTOP)
    page.screenshot(path=str(SCREENSHOTS / f"{name}-1280.png"), full_page=True)
    page.set_viewport_size(PHONE)
    page.wait_for_timeout(300)  # the chart redraws at the new width
    page.screenshot(path=str(SCREENSHOTS / f"{name}-phone.png"), full_page=True)
    page.set_viewport_size(DESKTOP)


def pytest_terminal_summary(terminalreporter):
    if SCREENSHOTS.exists():
        terminalreporter.write_line(f"console screenshots: {SCREENSHOTS}")
