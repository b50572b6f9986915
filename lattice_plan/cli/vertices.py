"""``lattice-plan vertices``: lattice vertices in a GTV, written into a copy of the RTSTRUCT."""

from __future__ import annotations

import argparse

from lattice_plan.cli.common import EXIT_OK, require_dir, require_file


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``vertices`` to the command line."""
    vert = subparsers.add_parser(
        "vertices",
        help="place lattice vertices in a GTV and write them into a copy of the RTSTRUCT",
        description=(
            "Place lattice vertices (spheres) in the GTV of a DICOM patient, clear of the named "
            "OARs, and write a copy of the RTSTRUCT with the vertices added (one ROI with all "
            "spheres and one per sphere), for import into a planning system."
        ),
    )
    vert.add_argument("--ct", required=True, metavar="DIR", help="folder of the CT series")
    vert.add_argument("--rtstruct", required=True, metavar="FILE", help="its RTSTRUCT")
    vert.add_argument("--gtv", required=True, metavar="NAME", help="ROI name of the GTV")
    vert.add_argument("--oar", nargs="+", metavar="NAME", help="ROIs to keep the vertices from")
    vert.add_argument(
        "--pattern",
        default="hcp",
        help="hcp (default), fcc, simple_cubic (sc) or alternating_cubic (bcc)",
    )
    vert.add_argument("--diameter", type=float, default=15.0, metavar="MM", help="sphere diameter")
    vert.add_argument(
        "--spacing", type=float, default=30.0, metavar="MM", help="centre-to-centre distance"
    )
    vert.add_argument(
        "--gtv-margin",
        type=float,
        default=5.0,
        metavar="MM",
        help="sphere surface to GTV surface, at least",
    )
    vert.add_argument(
        "--oar-clearance",
        type=float,
        default=10.0,
        metavar="MM",
        help="sphere surface to every OAR, at least",
    )
    vert.add_argument("--max-vertices", type=int, metavar="N", help="keep at most N vertices")
    vert.add_argument(
        "--rotation-step",
        type=float,
        metavar="DEG",
        help="also search lattice rotations about z in steps of DEG",
    )
    vert.add_argument("--name", default="Vertices", help="ROI name (per-sphere ROIs get _01, ...)")
    vert.add_argument("--out", required=True, metavar="FILE.dcm", help="RTSTRUCT to write")
    vert.add_argument("--csv", metavar="FILE", help="also write the vertex centres as CSV")
    vert.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``lattice-plan vertices``; returns the exit code."""
    from lattice_plan.geometry.lattice import LatticeParameters, place_vertices
    from lattice_plan.io.ct import read_ct
    from lattice_plan.io.rtstruct import add_to_rtstruct, read_rtstruct
    from lattice_plan.io.vertex_table import write_vertex_table

    ct_dir = require_dir(args.ct, "CT folder")
    rtstruct = require_file(args.rtstruct, "RTSTRUCT")
    ct = read_ct(ct_dir)
    structures = read_rtstruct(rtstruct, ct)
    gtv = structures.get(args.gtv)
    oars = [structures.get(n) for n in args.oar or ()]
    params = LatticeParameters(
        diameter_mm=args.diameter,
        spacing_mm=args.spacing,
        pattern=args.pattern,
        gtv_margin_mm=args.gtv_margin,
        oar_clearance_mm=args.oar_clearance,
        max_vertices=args.max_vertices,
        rotation_step_deg=args.rotation_step,
    )
    result = place_vertices(gtv, oars, params)
    combined = result.vertices.renamed(args.name)
    singles = [
        s.renamed(f"{args.name}_{n:02d}") for n, s in enumerate(result.vertex_structures(), 1)
    ]
    add_to_rtstruct(rtstruct, [combined, *singles], ct, args.out)
    if args.csv:
        write_vertex_table(result, args.csv)
    if not args.quiet:
        print(
            f"{result.n_vertices} vertices ({params.pattern.value}, {params.diameter_mm:g} mm "
            f"spheres, {params.spacing_mm:g} mm apart) in {gtv.name} ({gtv.volume_cc:.1f} cc): "
            f"{result.vertices_per_100cc:.2f} per 100 cc; wrote {args.out}"
            + (f" and {args.csv}" if args.csv else "")
        )
        for n, c in enumerate(result.centers_lps_mm, 1):
            print(f"  {args.name}_{n:02d}: ({c[0]:.1f}, {c[1]:.1f}, {c[2]:.1f}) mm LPS")
    return EXIT_OK
