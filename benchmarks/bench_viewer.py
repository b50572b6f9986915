"""Size and opening time of the HTML viewer in headless Chromium. Prints JSON.

``python benchmarks/bench_viewer.py [PLAN_DIR]``: the viewer page of PLAN_DIR
(a folder written by ``lattice-plan demo`` or ``plan``; without it, the fast
demo is run into a temporary folder) is written as ``lattice-plan view --html``
does and opened three times from file:// with the network off. Reported:
the page size, the time to build it, and per load the milliseconds from the
start of navigation until the slices are drawn and usable (``viewerReady``;
target < 3000) and until the DVH panel is drawn (plotly.js parsed). The
1-minute load average is reported, since other work on the machine slows the
wall-clock times.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from lattice_plan.viz.viewer import folder_payload, write_viewer_page
from lattice_plan.viz.viewer.browser import offline_chromium, wait_for


def _open_times(page: Path, runs: int = 3) -> list[dict[str, float]]:
    driver = offline_chromium()
    out = []
    try:
        for _ in range(runs):
            driver.get("about:blank")
            driver.get(page.resolve().as_uri())
            wait_for(driver, "window.viewerPlotsReady === true || !!window.viewerError", 120, 0.02)
            error = driver.execute_script("return window.viewerError || null")
            if error:
                raise RuntimeError(f"the viewer failed: {error}")
            ready = driver.execute_script("return window.viewerReadyMs")
            plots = driver.execute_script("return window.viewerPlotsReadyMs")
            out.append({"slices_ready_ms": round(ready), "dvh_ready_ms": round(plots)})
    finally:
        driver.quit()
    return out


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        if len(sys.argv) > 1:
            folder = Path(sys.argv[1])
        else:
            from lattice_plan.cli import main as cli

            folder = Path(tmp) / "demo"
            assert cli(["-q", "demo", "--fast", "--out", str(folder)]) == 0
        start = time.perf_counter()
        page = write_viewer_page(Path(tmp) / "viewer.html", folder_payload(folder), folder.name)
        build_s = time.perf_counter() - start
        result = {
            "plan_dir": str(folder),
            "page_mb": round(page.stat().st_size / 1e6, 2),
            "build_s": round(build_s, 1),
            "load_average_1min": round(os.getloadavg()[0], 1),
            "loads": _open_times(page),
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
