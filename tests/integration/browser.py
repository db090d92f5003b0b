"""Headless Chromium for tests, driven by Selenium through Debian's chromedriver (the two ship as one version).

Nothing is downloaded: the browser and driver are the system's (/usr/bin/chromium, /usr/bin/chromedriver), and
Selenium is given both paths so it never looks for a driver of its own. Without them the tests that need a browser
skip, saying what to install; CI installs them (.ci/run).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.integration.harness import REPO

ARTIFACTS = REPO / ".run" / "artifacts"
# As root, in a container, with no network beyond package registries: no sandbox, no GPU, nothing phoning home.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1100,900",
]


@contextmanager
def chromium() -> Iterator[WebDriver]:
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    with tempfile.TemporaryDirectory(prefix="ck-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = browser
        for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]:
            options.add_argument(flag)
        # The browser's console (errors, CSP violations) becomes readable through get_log("browser").
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        session = webdriver.Chrome(service=Service(driver), options=options)
        try:
            yield session
        finally:
            session.quit()


def console_errors(driver: WebDriver) -> list[dict[str, Any]]:
    """The console's errors since the last call (reading the log empties it)."""
    entries: list[dict[str, Any]] = driver.get_log("browser")  # type: ignore[no-untyped-call]  # unannotated upstream
    return [entry for entry in entries if entry["level"] == "SEVERE"]


def wait_for(driver: WebDriver, script: str, timeout_s: float = 20.0) -> Any:
    """Until the script (an expression's body: `return ...`) returns something truthy; that value."""
    return WebDriverWait(driver, timeout_s, poll_frequency=0.1).until(lambda d: d.execute_script(script))


def screenshot(driver: WebDriver, name: str) -> None:
    """The whole page (the window stretched to its height) as .run/artifacts/{name}.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    width = driver.get_window_size()["width"]
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.set_window_size(width, height + 200)
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))
