"""Browser fixtures: the app served on 127.0.0.1, Debian's Chromium driven by Playwright, axe-core."""

from __future__ import annotations

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import sync_playwright

from devtools import liveserver
from devtools.liveserver import PASSWORD

#: axe-core impacts that fail a test (minor and moderate ones are reported by axe only).
BLOCKING_IMPACTS = {"serious", "critical"}


@pytest.fixture(scope="session")
def database_template(tmp_path_factory):
    """A migrated and seeded SQLite file, copied for each test (migrating each time is slow)."""
    path = tmp_path_factory.mktemp("browser-db") / "template.sqlite3"
    liveserver.prepare_database(path)
    return path


@pytest.fixture
def live_server(database_template, tmp_path):
    """The app on a fresh database, served over HTTP; its clock says Monday 21/12/2026 10:00."""
    server = liveserver.LiveServer(tmp_path, template=database_template)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium (Debian's) for the whole session."""
    with sync_playwright() as playwright:
        chromium = liveserver.launch_browser(playwright)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, live_server):
    """A new browser context and page per test, relative URLs against the live server."""
    page = liveserver.new_page(browser, live_server.url)
    yield page
    page.context.close()


def login(page, email: str, password: str = PASSWORD) -> None:
    """Log in through the login page."""
    liveserver.login(page, email, password)


#: DSFR buttons whose label does not fit: an icon button outside a `fr-btns-group--icon-*`
#: group is drawn as its icon alone, its text clipped (axe still finds the name in the DOM).
CLIPPED_BUTTONS = """() => [...document.querySelectorAll('.fr-btn')]
    .filter(b => b.offsetParent !== null && b.textContent.trim() && b.scrollWidth > b.clientWidth + 1)
    .map(b => b.textContent.trim())"""


def assert_accessible(page) -> None:
    """Run axe-core on the page; fail listing every serious or critical violation, and any
    button whose visible label is clipped."""
    clipped = page.evaluate(CLIPPED_BUTTONS)
    if clipped:
        pytest.fail(f"buttons drawn without their label on {page.url}: {clipped}", pytrace=False)
    results = Axe().run(page)
    violations = [v for v in results.response["violations"] if v.get("impact") in BLOCKING_IMPACTS]
    lines = []
    for v in violations:
        lines.append(f"{v['id']} ({v['impact']}): {v['help']}")
        lines += [f"    {', '.join(map(str, node['target']))}" for node in v["nodes"]]
    if violations:
        pytest.fail(f"accessibility violations on {page.url}:\n" + "\n".join(lines), pytrace=False)
