"""Real-browser testing of the console (SPEC §16): Debian's Chromium driven by Playwright for Python.

Playwright's own browser download (`playwright install`) is never used: the browser is
`/usr/bin/chromium` from Debian (scripts/ensure-chromium.sh). Every host but 127.0.0.1 is made
unresolvable, and a `Watch` fails the test on any console error, any uncaught page error and any
request to a host other than the clusters under test. axe-core comes, pinned, from its npm package
through scripts/fetch_axe.py.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.cluster import Cluster

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Request

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# CI (CI=true) and `make test` (PEERING_REQUIRE_BROWSER=1) must run these tests, not skip them
REQUIRED = os.environ.get("PEERING_REQUIRE_BROWSER") == "1" or os.environ.get("CI") == "true"
LAUNCH_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
    # nothing but 127.0.0.1 resolves: a page that needed a CDN (or phoned home) would fail
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]  # fmt: skip
VIEWPORT = {"width": 1280, "height": 800}
# where the screenshots of every screen go when asked for (PEERING_UI_SCREENSHOTS=docs): docs/console-*.png
SHOTS = os.environ.get("PEERING_UI_SCREENSHOTS")


def missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed (pip install -r requirements.lock)"
    if not Path(CHROMIUM).exists():
        return "chromium is not installed (bash scripts/ensure-chromium.sh)"
    return None


def require() -> None:
    """Skip without a browser, except where the tests are required (then fail)."""
    reason = missing()
    if reason is None:
        return
    if REQUIRED:
        pytest.fail(f"the browser tests are required here but {reason}", pytrace=False)
    pytest.skip(reason)


@contextmanager
def launched() -> Iterator[Browser]:
    """Debian's Chromium, headless, offline but for 127.0.0.1 (skipped or failed as `require` says)."""
    require()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield chromium
        chromium.close()


def new_context(browser: Browser, watch: Watch, clusters: list[Cluster], **options: Any) -> BrowserContext:
    """A fresh profile watched by `watch`, allowed to use the clipboard on the clusters' origins."""
    context = browser.new_context(viewport=VIEWPORT, **options)  # type: ignore[arg-type]
    watch.attach(context)
    for cluster in clusters:
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=cluster.http_url)
    context.set_default_timeout(10_000)
    return context


def set_token(page: Page, cluster: Cluster, secret: str) -> None:
    """Enter an ACL token on the Settings page, as an operator does (kept in that origin's localStorage)."""
    from playwright.sync_api import expect

    page.goto(f"{cluster.http_url}/ui/settings")
    page.get_by_label("ACL token (SecretID)").fill(secret)
    page.get_by_role("button", name="Save token").click()
    expect(page.locator("#token-info")).to_contain_text("The token in use is valid")


def api_client(cluster: Cluster, token: str | None = None) -> httpx.Client:
    """The cluster's HTTP API, as a test drives it beside the browser."""
    headers = {"X-Consul-Token": token} if token else {}
    return httpx.Client(base_url=cluster.http_url, headers=headers, timeout=10)


def peer_clusters(acceptor: Cluster, name: str, dialer: Cluster, back: str) -> None:
    """Peer two clusters through the API (for the tests whose subject is not the walk itself)."""
    with api_client(acceptor) as api:
        token = api.post("/v1/peering/token", json={"PeerName": name}).raise_for_status().json()["PeeringToken"]
    with api_client(dialer) as api:
        api.post("/v1/peering/establish", json={"PeerName": back, "PeeringToken": token}).raise_for_status()


def register(api: httpx.Client, node: str, address: str, service: dict[str, Any], *checks: dict[str, Any]) -> None:
    """`PUT /v1/catalog/register`: one instance on `node` with its checks (a check without ServiceID is the node's)."""
    body = {"Node": node, "Address": address, "Service": service, "Checks": list(checks)}
    assert api.put("/v1/catalog/register", json=body).raise_for_status().json() is True


def http_check(service_id: str, status: str, output: str) -> dict[str, Any]:
    return {
        "CheckID": f"{service_id}-http",
        "Name": "http",
        "Status": status,
        "ServiceID": service_id,
        "Output": output,
    }


def host_of(url: str) -> str:
    return urlsplit(url).netloc


@dataclass
class Watch:
    """Collects what must not happen in a page: console errors, page errors, requests to other hosts.

    `expected` are HTTP statuses the test provokes from the API on purpose (Chromium logs each non-2xx
    answer as a console error): those are allowed only for `/v1/` addresses of the clusters.
    """

    hosts: set[str]
    expected: set[int] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def attach(self, context: BrowserContext) -> None:
        context.on("console", self._console)
        context.on("weberror", lambda error: self.problems.append(f"page error: {error.error}"))
        context.on("request", self._request)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        url = message.location.get("url", "")
        if self._provoked(message.text, url):
            return
        self.problems.append(f"console error: {message.text} ({url})")

    def _provoked(self, text: str, url: str) -> bool:
        parts = urlsplit(url)
        if parts.netloc not in self.hosts or not parts.path.startswith("/v1/"):
            return False
        return any(f"status of {status} " in text for status in self.expected)

    def _request(self, request: Request) -> None:
        self.requests.append(request.url)
        if host_of(request.url) not in self.hosts:
            self.problems.append(f"request to another host: {request.method} {request.url}")

    def check(self) -> None:
        assert not self.problems, "\n".join(self.problems)


def axe_script() -> str:
    """The pinned axe-core, fetched once by scripts/fetch_axe.py (a failure there fails the test)."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "fetch_axe.py")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        if REQUIRED:
            pytest.fail(result.stderr.strip(), pytrace=False)
        pytest.skip(result.stderr.strip())
    return Path(result.stdout.strip()).read_text()


AXE_RUN = """async () => {
  const result = await axe.run(document, { resultTypes: ["violations"] });
  return result.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 5).map((n) => n.target.join(" ")),
  }));
}"""


def axe_violations(page: Page, script: str) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is now (the context must bypass the CSP to inject it)."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.add_script_tag(content=script)
    violations: list[dict[str, Any]] = page.evaluate(AXE_RUN)
    return violations


def shot(page: Page, name: str) -> None:
    """With $PEERING_UI_SCREENSHOTS set, a full-page screenshot into that folder as console-<name>.png
    (a screenshot takes about a second, so the other runs skip them)."""
    if not SHOTS:
        return
    folder = Path(SHOTS) if Path(SHOTS).is_absolute() else ROOT / SHOTS
    folder.mkdir(parents=True, exist_ok=True)
    front(page).screenshot(path=folder / f"console-{name}.png", full_page=True, animations="disabled", caret="hide")


def front(page: Page) -> Page:
    """Bring a tab to the front before using it: Chromium throttles background tabs (a click there may
    wait for seconds), and an operator looks at the tab they use."""
    page.bring_to_front()
    return page


MARK = "() => { window.__noReload = true; }"
UNMARKED = "() => window.__noReload !== true"


def mark(page: Page) -> None:
    """Remember this document: `still_same(page)` is true only if it was never reloaded since."""
    page.evaluate(MARK)


def still_same(page: Page) -> bool:
    return not page.evaluate(UNMARKED)
