"""The viewer page in headless Chromium, offline: what the browser tests and the viewer benchmark share.

Drives the Debian packages chromium and chromium-driver (``make chromium``)
through selenium (a test extra, imported only here and only when called).
WebGL (the 3D panel) runs on the CPU through SwiftShader.
"""

from __future__ import annotations

import shutil
import time
from typing import Any

from lattice_plan.errors import VisualizationError

_CHROMIUM_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--use-angle=swiftshader",  # WebGL (3D panel) on the CPU
    "--enable-unsafe-swiftshader",
    "--window-size=1400,1600",
)


def offline_chromium(*, browser_log: bool = False) -> Any:
    """A headless Chromium webdriver with the network switched off (quit it when done).

    ``browser_log`` keeps the page's console messages for ``driver.get_log("browser")``.
    """
    paths = {exe: shutil.which(exe) for exe in ("chromium", "chromedriver")}
    for exe, path in paths.items():
        if path is None:
            raise VisualizationError(
                f"{exe} is not installed; run `make chromium` (Debian chromium, chromium-driver)"
            )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = paths["chromium"]
    for arg in _CHROMIUM_ARGS:
        options.add_argument(arg)
    if browser_log:
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(paths["chromedriver"]), options=options)
    try:
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd(
            "Network.emulateNetworkConditions",
            {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
        )
    except BaseException:
        driver.quit()
        raise
    return driver


def wait_for(driver: Any, condition: str, timeout_s: float, poll_s: float = 0.05) -> None:
    """Poll the JavaScript expression ``condition`` until it is true; TimeoutError after ``timeout_s``."""
    end = time.monotonic() + timeout_s
    while not driver.execute_script(f"return {condition};"):
        if time.monotonic() > end:
            raise TimeoutError(f"the page did not reach `{condition}` in {timeout_s:g} s")
        time.sleep(poll_s)
