"""A real headless Chromium (Debian's ``chromium`` + ``chromium-driver``) for tests that look at
pages the way a person does."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def browser():
    """A Selenium driver for headless Chromium; skips (fails in CI) when it is missing."""
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        if os.environ.get("CI"):
            pytest.fail("chromium/chromedriver missing in CI (scripts/ensure-browser installs it)")
        pytest.skip("chromium and chromedriver are not installed (scripts/ensure-browser)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1400,850"):
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)


@contextmanager
def viewer_page(path: Path, *args: str) -> Iterator:
    """``maxrf view PATH`` (and ``args``) with headless Chromium on its page: the driver. After
    the body the page must have logged no error; the browser and the viewer are then closed."""
    from helpers import start_viewer

    url, proc = start_viewer(path, *args)
    driver = None
    try:
        driver = browser()
        driver.get(url)
        yield driver
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        if driver is not None:
            driver.quit()
        proc.terminate()
        proc.wait(timeout=20)
