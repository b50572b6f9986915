"""The built-in synthetic patient: a lumbar bone metastasis with a paravertebral soft-tissue mass.

Head-first supine, LPS frame (x to patient left, y posterior, z superior), mm.
The anatomy is drawn analytically from ellipsoids, elliptic cylinders and
tubes, so it is deterministic and builds in well under a second:

- body: abdomen outline 330 x 230 mm, 4 mm skin rim, 18 mm subcutaneous fat,
  muscle wall, an intra-abdominal fat compartment with gas-bearing small-bowel
  loops, the liver cranially on the right, both kidneys;
- lumbar spine: vertebral bodies (cortical shell, cancellous core) with
  intervertebral discs, pedicles, laminae, transverse and spinous processes,
  and the spinal canal holding the cauda equina;
- the metastasis: an irregular (lobulated) soft-tissue mass with a necrotic
  core to the patient's left of the spine, which has destroyed the left half
  of one vertebral body (lytic), pushing the left kidney aside.

HU values are typical of a 120 kVp abdominal CT: air -1000, fat -100,
muscle 45, kidney 35, liver 60, bowel content 15 with gas -750, CSF 10,
cancellous bone 220, cortical bone 900, disc 85, tumour 40, necrosis 15.
Structure names follow AAPM TG-263.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.spatial import cKDTree

from lattice_plan.errors import GeometryError
from lattice_plan.geometry.grid import Grid
from lattice_plan.geometry.patient import Patient
from lattice_plan.geometry.structure import Structure, StructureKind, StructureSet
from lattice_plan.geometry.volume import Volume

HU = {
    "air": -1000.0,
    "fat": -100.0,
    "visceral_fat": -90.0,
    "muscle": 45.0,
    "kidney": 35.0,
    "liver": 60.0,
    "bowel_wall": 35.0,
    "bowel_content": 15.0,
    "gas": -750.0,
    "csf": 10.0,
    "nerve": 25.0,
    "cancellous": 220.0,
    "cortical": 900.0,
    "posterior_elements": 550.0,
    "disc": 85.0,
    "tumour": 40.0,
    "necrosis": 15.0,
}

VERTEBRA_PITCH_MM = 36.0  # vertebral body height 27 mm + disc 9 mm
VERTEBRAL_BODY_CENTER_Y_MM = 35.0
CANAL_CENTER_Y_MM = 66.0


@dataclass(frozen=True)
class PhantomParameters:
    """Size and position knobs of the built-in patient (mm).

    mass_diameters_mm: full lengths of the soft-tissue mass along x (LR), y (AP), z (SI).
    mass_center_lps_mm: centre of the mass; the default sits left-paravertebral at the
        level of the lytic vertebra.
    lobulation: relative amplitude of the surface irregularity (0 gives a smooth ellipsoid).
    seed: drives the lobulation phases and the CT noise.
    """

    spacing_mm: tuple[float, float, float] = (2.5, 2.5, 2.5)
    length_mm: float = 200.0
    mass_diameters_mm: tuple[float, float, float] = (62.0, 54.0, 68.0)
    mass_center_lps_mm: tuple[float, float, float] = (52.0, 38.0, 0.0)
    lobulation: float = 0.10
    noise_hu: float = 6.0
    seed: int = 0

    def __post_init__(self) -> None:
        sp = np.asarray(self.spacing_mm, dtype=float)
        if sp.shape != (3,) or np.any(sp <= 0) or np.any(sp > 5):
            raise GeometryError(
                f"phantom spacing_mm must be three values in (0, 5] mm, got {self.spacing_mm!r}"
            )
        if not 60 <= self.length_mm <= 400:
            raise GeometryError(f"phantom length_mm must be 60-400 mm, got {self.length_mm}")
        d = np.asarray(self.mass_diameters_mm, dtype=float)
        if d.shape != (3,) or np.any(d < 10) or np.any(d > 120):
            raise GeometryError(
                f"mass_diameters_mm must be three values in 10-120 mm, got {self.mass_diameters_mm!r}"
            )
        if not 0 <= self.lobulation <= 0.3:
            raise GeometryError(f"lobulation must be in 0-0.3, got {self.lobulation}")


def _ellipsoid(X, Y, Z, c, semi) -> NDArray[np.float64]:
    """Normalised ellipsoid radius (1 on the surface)."""
    return np.sqrt(
        ((X - c[0]) / semi[0]) ** 2 + ((Y - c[1]) / semi[1]) ** 2 + ((Z - c[2]) / semi[2]) ** 2
    )


def _body_radius(X, Y, Z, shrink_mm: float = 0.0) -> NDArray[np.float64]:
    """Normalised radius of the abdominal outline (a superellipse, slightly flatter posteriorly)."""
    ax = 165.0 * (1.0 + 0.02 * np.sin(Z / 60.0)) - shrink_mm
    ay = np.where(Y < 0, 118.0, 108.0) - shrink_mm
    return (np.abs(X / ax) ** 2.2 + np.abs(Y / ay) ** 2.2) ** (1 / 2.2)


def _bowel_centerline(seed: int) -> NDArray[np.float64]:
    """Points along meandering small-bowel loops in the anterior abdomen (LPS mm)."""
    rng = np.random.default_rng(seed + 101)
    pts = []
    for n, z0 in enumerate(np.arange(-90.0, 100.0, 34.0)):
        t = np.linspace(0, 1, 200)
        x = -100 + 190 * t
        y = -58 + 18 * np.sin(2 * np.pi * (1.6 * t + rng.uniform())) + (8 if n % 2 else -8)
        z = z0 + 9 * np.sin(2 * np.pi * (2.1 * t + rng.uniform()))
        pts.append(np.stack([x, y, z], axis=1))
    return np.concatenate(pts)


def build_phantom(params: PhantomParameters | None = None, **overrides: object) -> Patient:
    """The built-in patient as a :class:`Patient` (CT in HU and TG-263 named structures).

    Pass a :class:`PhantomParameters` or keyword overrides of its fields.
    """
    if params is None:
        params = PhantomParameters(**overrides)  # type: ignore[arg-type]
    elif overrides:
        raise GeometryError("pass either a PhantomParameters object or keyword overrides, not both")
    p = params
    half_len = p.length_mm / 2
    grid = Grid.from_extent((-180.0, -130.0, -half_len), (180.0, 130.0, half_len), p.spacing_mm)
    z_k, y_j, x_i = grid.axis_coords_lps_mm()
    # float32 coordinates: the analytic shapes need no more and it halves the build time.
    Z, Y, X = np.meshgrid(
        z_k.astype(np.float32), y_j.astype(np.float32), x_i.astype(np.float32), indexing="ij"
    )

    body = _body_radius(X, Y, Z) <= 1.0
    skin_inner = _body_radius(X, Y, Z, shrink_mm=4.0) <= 1.0
    muscle_wall = _body_radius(X, Y, Z, shrink_mm=18.0) <= 1.0
    cavity = (((X / 128.0) ** 2 + ((Y + 40.0) / 68.0) ** 2) <= 1.0) & (Y < 12.0)

    # Lumbar spine: vertebral bodies separated by discs.
    z_in_level = np.mod(Z + VERTEBRA_PITCH_MM / 2, VERTEBRA_PITCH_MM) - VERTEBRA_PITCH_MM / 2
    level_index = np.round((Z - z_in_level) / VERTEBRA_PITCH_MM).astype(int)
    in_body_height = np.abs(z_in_level) <= 13.5
    vb_r = np.sqrt((X / 24.0) ** 2 + ((Y - VERTEBRAL_BODY_CENTER_Y_MM) / 17.0) ** 2)
    vb_core_r = np.sqrt((X / 21.5) ** 2 + ((Y - VERTEBRAL_BODY_CENTER_Y_MM) / 14.5) ** 2)
    vertebral_body = (vb_r <= 1.0) & in_body_height
    cancellous = (vb_core_r <= 1.0) & (np.abs(z_in_level) <= 11.0)
    disc = (vb_r <= 1.0) & ~in_body_height
    canal_r = np.sqrt((X / 11.5) ** 2 + ((Y - CANAL_CENTER_Y_MM) / 9.0) ** 2)
    canal = canal_r <= 1.0
    cauda = np.sqrt((X / 6.0) ** 2 + ((Y - CANAL_CENTER_Y_MM - 1.0) / 4.5) ** 2) <= 1.0
    posterior_ring = (canal_r > 1.0) & (
        np.sqrt((X / 19.0) ** 2 + ((Y - CANAL_CENTER_Y_MM) / 15.0) ** 2) <= 1.0
    )
    posterior_ring &= (Y > VERTEBRAL_BODY_CENTER_Y_MM + 12.0) & (np.abs(z_in_level) <= 11.0)
    spinous = (
        (np.abs(X) <= 4.0)
        & (Y > CANAL_CENTER_Y_MM)
        & (Y <= 104.0)
        & (np.abs(z_in_level + 3.0) <= 9.0)
    )
    transverse = (
        (np.abs(X) >= 14.0)
        & (np.abs(X) <= 48.0)
        & (np.abs(Y - 58.0) <= 4.5)
        & (np.abs(z_in_level) <= 5.0)
    )
    posterior_elements = posterior_ring | spinous | transverse

    # Organs.
    kidney_r = _ellipsoid(X, Y, Z, (-78.0, 48.0, 28.0), (27.0, 21.0, 52.0)) <= 1.0
    kidney_l = _ellipsoid(X, Y, Z, (108.0, 30.0, 62.0), (25.0, 20.0, 48.0)) <= 1.0
    liver = (_ellipsoid(X, Y, Z, (-80.0, -5.0, 140.0), (78.0, 75.0, 78.0)) <= 1.0) & muscle_wall
    centerline = _bowel_centerline(p.seed)
    bowel = np.zeros(grid.shape, dtype=bool)
    gas = np.zeros(grid.shape, dtype=bool)
    cand = cavity & muscle_wall & ~liver
    tree = cKDTree(centerline)
    idx = np.nonzero(cand)
    d, _ = tree.query(np.stack([X[idx], Y[idx], Z[idx]], axis=1))
    bowel[idx] = d <= 12.0
    gas_points = centerline[::47]
    gas_tree = cKDTree(gas_points)
    dg, _ = gas_tree.query(np.stack([X[idx], Y[idx], Z[idx]], axis=1))
    gas[idx] = (d <= 9.0) & (dg <= 8.0)

    # The metastasis: lobulated mass plus the lytic left half of the vertebral body it arises from.
    c = np.asarray(p.mass_center_lps_mm, dtype=float)
    semi = np.asarray(p.mass_diameters_mm, dtype=float) / 2
    rng = np.random.default_rng(p.seed)
    r_main = _ellipsoid(X, Y, Z, c, semi)
    lobe = _ellipsoid(
        X, Y, Z, c + np.array([0.35, -0.25, 0.3]) * semi, semi * np.array([0.6, 0.55, 0.6])
    )
    r_mass = np.minimum(r_main, lobe)
    Xn, Yn, Zn = (X - c[0]) / semi[0], (Y - c[1]) / semi[1], (Z - c[2]) / semi[2]
    phases = rng.uniform(0, 2 * np.pi, size=6)
    ripple = (
        np.sin(2.2 * Xn + phases[0]) * np.cos(1.7 * Yn + phases[1])
        + np.sin(2.6 * Zn + phases[2]) * np.cos(2.0 * Xn + phases[3])
        + 0.5 * np.sin(3.1 * Yn + 2.3 * Zn + phases[4])
    ) / 2.5
    mass = r_mass * (1.0 - p.lobulation * ripple) <= 1.0
    necrosis = r_main <= 0.38
    lytic_level = int(np.round(c[2] / VERTEBRA_PITCH_MM))
    lytic = vertebral_body & (level_index == lytic_level) & (X > -4.0)
    # Keep organs out of the tumour: it pushes them aside rather than overlapping them.
    canal_guard = np.sqrt((X / 14.5) ** 2 + ((Y - CANAL_CENTER_Y_MM) / 12.0) ** 2) <= 1.0
    tumour = (mass | lytic) & body & ~canal_guard & ~kidney_l & ~kidney_r & ~bowel & ~liver
    tumour &= skin_inner

    # Assemble the CT, from the outside in.
    ct = np.full(grid.shape, HU["air"], dtype=np.float64)
    ct[body] = HU["fat"]
    ct[muscle_wall] = HU["muscle"]
    ct[cavity & muscle_wall] = HU["visceral_fat"]
    ct[liver] = HU["liver"]
    ct[kidney_l | kidney_r] = HU["kidney"]
    ct[bowel] = HU["bowel_wall"]
    ct[bowel & ~gas] = HU["bowel_content"]
    ct[gas] = HU["gas"]
    ct[disc] = HU["disc"]
    ct[vertebral_body] = HU["cortical"]
    ct[cancellous & vertebral_body] = HU["cancellous"]
    ct[posterior_elements & ~canal] = HU["posterior_elements"]
    ct[canal] = HU["csf"]
    ct[cauda] = HU["nerve"]
    ct[tumour] = HU["tumour"]
    ct[tumour & necrosis] = HU["necrosis"]
    if p.noise_hu > 0:
        noise = np.random.default_rng(p.seed + 7).normal(0.0, p.noise_hu, size=grid.shape)
        ct[body] += noise[body]
    ct = np.round(ct).astype(np.int16)

    structures = StructureSet(
        (
            Structure("External", body, grid, StructureKind.EXTERNAL),
            Structure("Skin", body & ~skin_inner, grid, StructureKind.OAR, (255, 200, 150)),
            Structure("GTV", tumour, grid, StructureKind.GTV),
            Structure("CaudaEquina", cauda, grid, StructureKind.OAR, (255, 255, 0)),
            Structure("SpinalCanal", canal, grid, StructureKind.OAR, (200, 200, 0)),
            Structure("Kidney_L", kidney_l, grid, StructureKind.OAR, (150, 75, 0)),
            Structure("Kidney_R", kidney_r, grid, StructureKind.OAR, (190, 110, 40)),
            Structure("Bowel", bowel, grid, StructureKind.OAR, (255, 150, 200)),
            Structure("Liver", liver, grid, StructureKind.OAR, (140, 40, 40)),
        ),
        grid,
    )
    return Patient(
        ct=Volume(ct, grid, "HU"),
        structures=structures,
        patient_id="LP-PHANTOM-001",
        patient_name="Phantom^Lumbar Metastasis",
        description=(
            "lattice_plan built-in phantom: lumbar vertebral metastasis with a left paravertebral "
            f"soft-tissue mass ({p.mass_diameters_mm[0]:.0f} x {p.mass_diameters_mm[1]:.0f} x "
            f"{p.mass_diameters_mm[2]:.0f} mm), seed {p.seed}"
        ),
    )
