"""Every page's URL opened first, straight after a server start (a bookmark, a tab reconnecting after a restart),
shows the real app: its navigation with icons, the Model sidebar and the page's own title.

A fresh server for each URL, because the bug lived only until someone opened ``/``: Streamlit served its own
menu of a ``pages/`` folder to a page URL opened before the main script had run once.
"""

from __future__ import annotations

import pytest

from tests.browser_support import CHROMIUM, CHROMIUM_ARGS, SKIP_REASON, running_app

TIMEOUT_MS = 180_000

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed "
                               "(pip install playwright; no browser download is needed)")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason=SKIP_REASON)


@pytest.mark.parametrize("path, title", [("Listen_live", "Listen live"), ("Library", "Library"),
                                         ("", "Music genre classifier")])
def test_a_page_url_opened_first_shows_the_real_navigation(tmp_path, path, title):
    with running_app(tmp_path / "streamlit.log", "--server.fileWatcherType", "none") as url:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1300, "height": 900})
                page.goto(f"{url}/{path}", wait_until="networkidle")
                page.get_by_role("heading", name=title).first.wait_for(timeout=TIMEOUT_MS)
                sidebar = page.locator("[data-testid='stSidebar']")
                sidebar.get_by_text("Genre model").first.wait_for(timeout=TIMEOUT_MS)
                nav = page.locator("[data-testid='stSidebarNav']")
                links = [text.strip() for text in nav.locator("a").all_inner_texts()]
                # the app's own navigation: its three titles, each with a Material icon
                assert [link.split("\n")[-1] for link in links] == ["Upload a song", "Listen live", "Library"], links
                assert nav.locator("[data-testid='stIconMaterial']").count() == 3
                assert "app" not in links
                page.screenshot(path=str(tmp_path / f"{path or 'home'}.png"), full_page=True)
            finally:
                browser.close()
