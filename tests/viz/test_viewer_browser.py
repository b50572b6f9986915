"""The viewer page in headless Chromium (Debian chromium + chromium-driver, `make chromium`).

One page of a small synthetic case (the phantom at 5 mm, two Gaussian doses)
is opened from file:// with the network switched off before loading; the tests
read the page's state and compare canvas pixels.
"""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from matplotlib.image import imread
from scipy.ndimage import map_coordinates

from lattice_plan.geometry.grid import Grid
from lattice_plan.geometry.volume import Volume
from lattice_plan.phantoms import build_phantom
from lattice_plan.viz.viewer import ViewerPlan, viewer_payload, write_viewer_page
from lattice_plan.viz.viewer.browser import offline_chromium, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("viewer-browser")]


def _gaussian(grid: Grid, centre, peak_gy: float, sigma_mm: float) -> Volume:
    z, y, x = grid.axis_coords_lps_mm()
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    r2 = (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (zz - centre[2]) ** 2
    return Volume(peak_gy * np.exp(-r2 / (2 * sigma_mm**2)), grid, "Gy")


@pytest.fixture(scope="module")
def case():
    patient = build_phantom(spacing_mm=(5.0, 5.0, 5.0), length_mm=100.0)
    centre = patient.structures.get("GTV").centroid_lps_mm()
    dose_grid = Grid.from_extent(tuple(centre - 50), tuple(centre + 50), (4.0, 4.0, 4.0))
    plans = [
        ViewerPlan("SFRT", "SFRT", _gaussian(dose_grid, centre, 20.0, 12.0), 1, 15.0),
        ViewerPlan("CRT", "CRT", _gaussian(dose_grid, centre, 9.0, 30.0), 1, 8.0),
    ]
    return patient, plans, viewer_payload(patient.ct, list(patient.structures), plans)


@pytest.fixture(scope="module")
def page(case, tmp_path_factory):
    """(driver, patient, plans) with the viewer loaded offline and ready."""
    patient, plans, payload = case
    path = write_viewer_page(tmp_path_factory.mktemp("viewer") / "viewer.html", payload, "test")
    driver = offline_chromium(browser_log=True)
    try:
        driver.get(path.resolve().as_uri())
        _wait(driver, "window.viewerPlotsReady === true || !!window.viewerError", 60)
        yield driver, patient, plans
    finally:
        driver.quit()


def _wait(driver, condition: str, timeout_s: float) -> None:
    try:
        wait_for(driver, condition, timeout_s)
    except TimeoutError as exc:
        pytest.fail(str(exc))


def _pixels(driver, view: str) -> np.ndarray:
    url = driver.execute_script(
        f"return document.querySelector('.lpv-view[data-view={view}] canvas').toDataURL();"
    )
    return imread(io.BytesIO(base64.b64decode(url.split(",", 1)[1])), format="png")


def _severe(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def test_loads_offline_from_file_without_console_errors(page):
    driver, _, _ = page
    assert driver.execute_script("return window.viewerError || null;") is None
    assert driver.execute_script("return window.viewerReady;") is True
    assert driver.execute_script("return navigator.onLine;") is False, "the network was off"
    resources = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name);"
    )
    assert all(re.match(r"(data|blob|file):", r) for r in resources), resources
    assert _severe(driver) == []
    # The DVH panel: one curve per (plan, structure with a DVH).
    n_traces = driver.execute_script("return document.getElementById('lpv-dvh').data.length;")
    assert n_traces == sum(len(p["dvh"]) for p in page_payload(page)["plans"]) > 0


def page_payload(page) -> dict:
    driver = page[0]
    return driver.execute_script(
        "return JSON.parse(document.getElementById('lpv-data').textContent);"
    )


def test_a_slice_change_moves_the_dose_image(page):
    driver, _, _ = page
    k = driver.execute_script("return lpViewer.state.slice.k;")
    before = _pixels(driver, "axial")
    driver.execute_script(
        "document.getElementById('lpv-opacity').value = 0;"
        "document.getElementById('lpv-opacity').dispatchEvent(new Event('input'));"
    )
    no_wash = _pixels(driver, "axial")
    driver.execute_script(
        "document.getElementById('lpv-opacity').value = 45;"
        "document.getElementById('lpv-opacity').dispatchEvent(new Event('input'));"
    )
    assert np.abs(before - no_wash).max() > 0.2, "the dose wash is drawn on the axial slice"
    driver.execute_script(f"lpViewer.setSlice('axial', {k + 3});")
    moved = _pixels(driver, "axial")
    assert np.mean(np.any(np.abs(before - moved) > 0.05, axis=-1)) > 0.01
    driver.execute_script(f"lpViewer.setSlice('axial', {k});")
    np.testing.assert_array_equal(_pixels(driver, "axial"), before)


def test_a_structure_toggle_changes_the_picture(page):
    driver, _, _ = page
    before = _pixels(driver, "axial")
    box = driver.find_element("css selector", "#lpv-structures input[data-structure='GTV']")
    box.click()
    hidden = _pixels(driver, "axial")
    box.click()
    assert np.mean(np.any(np.abs(before - hidden) > 0.05, axis=-1)) > 0.001
    np.testing.assert_array_equal(_pixels(driver, "axial"), before)
    assert _severe(driver) == []


def test_the_readout_gives_the_dose_and_eqd2_at_the_cursor(page):
    driver, patient, plans = page
    from selenium.webdriver.common.action_chains import ActionChains

    canvas = driver.find_element("css selector", ".lpv-view[data-view=axial] canvas")
    ActionChains(driver).move_to_element(canvas).click().perform()
    i, j, k = driver.execute_script("const s = lpViewer.state.slice; return [s.i, s.j, s.k];")
    ActionChains(driver).move_to_element(canvas).perform()
    text = driver.find_element("id", "lpv-readout").text
    lps = patient.grid.points_lps_mm([[i, j, k]])
    ijk = plans[0].dose.grid.continuous_ijk(lps)[0]
    dose = map_coordinates(
        np.asarray(plans[0].dose.array), [[ijk[2]], [ijk[1]], [ijk[0]]], order=1
    )[0]
    shown = re.search(r"SFRT: ([\d.]+) Gy, EQD2 ([\d.]+) Gy \(1 fx, α/β ([\d.]+) Gy\)", text)
    assert shown, text
    gy, eqd2, ab = map(float, shown.groups())
    assert gy == pytest.approx(dose, abs=0.006 + 0.001 * dose)
    # EQD2 = D (D/n + a/b) / (2 + a/b) (Withers 1983) with the page's own rounding.
    assert eqd2 == pytest.approx(gy * (gy + ab) / (2 + ab), abs=0.01 + 0.002 * eqd2)


def test_the_difference_view_and_the_3d_view_draw(page):
    driver, _, _ = page
    before = _pixels(driver, "axial")
    driver.find_element("id", "lpv-diff").click()
    assert np.abs(before - _pixels(driver, "axial")).max() > 0.1
    driver.find_element("id", "lpv-diff").click()
    driver.find_element("id", "lpv-3d-show").click()
    _wait(driver, "window.viewer3dReady === true", 60)
    n_gl = driver.execute_script("return document.querySelectorAll('#lpv-3d canvas').length;")
    assert n_gl > 0
    assert _severe(driver) == []


def test_the_dvh_switches_to_eqd2_and_a_click_links_the_planes(page):
    driver, _, _ = page
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.support.ui import Select

    payload = page_payload(page)
    first = next(p for p in payload["plans"] if p["dvh"])["dvh"][0]
    Select(driver.find_element("id", "lpv-dvh-quantity")).select_by_value("eqd2_gy")
    shown = driver.execute_script(
        "return Array.from(document.getElementById('lpv-dvh').data[0].x);"
    )
    np.testing.assert_allclose(shown, first["eqd2_gy"])
    Select(driver.find_element("id", "lpv-dvh-quantity")).select_by_value("dose_gy")
    # A click on the axial view moves the coronal and sagittal planes to the clicked voxel.
    canvas = driver.find_element("css selector", ".lpv-view[data-view=axial] canvas")
    width, height = canvas.size["width"], canvas.size["height"]
    ActionChains(driver).move_to_element_with_offset(
        canvas, -width // 4, -height // 4
    ).click().perform()
    i, j = driver.execute_script("return [lpViewer.state.slice.i, lpViewer.state.slice.j];")
    ni, nj = payload["ct"]["shape"][2], payload["ct"]["shape"][1]
    # The offset is a quarter of the view left of and above its centre (HFS: i and j not flipped).
    assert i == pytest.approx(ni / 4, abs=1.5) and j == pytest.approx(nj / 4, abs=1.5)
    caption = driver.find_element("css selector", ".lpv-view[data-view=sagittal] figcaption").text
    assert caption.startswith(f"sagittal {i + 1}/{ni}")
