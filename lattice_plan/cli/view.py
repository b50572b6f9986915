"""``lattice-plan view``: the 3D view of a plan folder, or its interactive HTML viewer."""

from __future__ import annotations

import argparse

from lattice_plan.cli.common import EXIT_OK, require_dir


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``view`` to the command line."""
    view = subparsers.add_parser(
        "view",
        help="3D view of a plan folder (interactive, a PNG with --screenshot, a web page with --html)",
        description=(
            "The 3D scene of a plan in a folder written by 'plan' or 'demo': body, GTV, "
            "vertices/STV, OARs, 50 %% and 90 %% isodoses of the prescription and the beams."
        ),
    )
    view.add_argument("plan_dir", metavar="PLAN_DIR", help="folder written by plan or demo")
    view.add_argument("--plan", metavar="NAME", help="which plan (default: the first)")
    view.add_argument("--view", default="iso", help="iso, anterior, posterior, left, right, ...")
    view.add_argument("--screenshot", metavar="FILE", help="render off-screen into this PNG")
    view.add_argument("--export", metavar="DIR", help="write the meshes and dose as VTK files")
    view.add_argument(
        "--html",
        metavar="FILE",
        help="write one self-contained HTML file viewing every plan of the folder (CT slices with "
        "dose, isodoses and structures, DVHs, 3D), for any browser and offline",
    )
    view.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``lattice-plan view``; returns the exit code."""
    from lattice_plan.viz.scene3d import export_scene_vtk, save_scene_png, show_scene
    from lattice_plan.workflow import plan_scene

    folder = require_dir(args.plan_dir, "plan folder")
    if args.html:
        from lattice_plan.viz.viewer import folder_payload, write_viewer_page

        write_viewer_page(args.html, folder_payload(folder), f"lattice_plan: {folder.name}")
        if not args.quiet:
            print(f"wrote {args.html}")
        if not (args.screenshot or args.export):
            return EXIT_OK
    scene = plan_scene(folder, plan=args.plan)
    if args.export:
        written = export_scene_vtk(scene, args.export)
        if not args.quiet:
            print(f"wrote {len(written)} VTK files to {args.export}")
    if args.screenshot:
        save_scene_png(scene, args.screenshot, view=args.view)
        if not args.quiet:
            print(f"wrote {args.screenshot}")
    elif not args.export:
        show_scene(scene, view=args.view)
    return EXIT_OK
