"""The ``lattice-plan`` command line: parses arguments, calls the library, prints.

Bad input ends with exit code 2 and one line on stderr that names the
problem; ``-v`` shows the library's log, ``-q`` only errors.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lattice_plan import __version__
from lattice_plan.errors import (
    AnalysisError,
    DoseError,
    InputFileError,
    LatticePlanError,
    ProtocolError,
    SpecError,
)

if TYPE_CHECKING:
    from lattice_plan.batch import TaskRow

log = logging.getLogger("lattice_plan.cli")

EXIT_OK = 0
EXIT_BAD_INPUT = 2
END_CAPS = ("half-slice", "none")  # io.rtstruct.END_CAPS; not imported, to keep --help fast


class ProgressBars:
    """A workflow progress callback ``(task, done, total)`` shown as one tqdm bar per task.

    Bars go to stderr and are left out when stderr is not a terminal or with ``-q``.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._task: str | None = None
        self._bar: Any = None

    def __call__(self, task: str, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        if task != self._task:
            self.close()
            self._task = task
            self._bar = tqdm(total=total, desc=task, unit="step", leave=False, disable=None)
        if self._bar is not None:
            self._bar.n = done
            self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        self._bar = None
        self._task = None


def _progress(args: argparse.Namespace) -> ProgressBars:
    return ProgressBars(enabled=not args.quiet)


def _parse_value(text: str) -> Any:
    """A --set value as TOML (number, boolean, string, list); a bare word is a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _overrides(pairs: Sequence[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise SpecError(
                f"--set {pair!r}: expected KEY=VALUE with a dotted plan-spec key, "
                "e.g. --set lattice.spacing_mm=25"
            )
        out[key.strip()] = _parse_value(value.strip())
    return out


def _require_dir(path: str, what: str) -> Path:
    p = Path(path)
    if not p.is_dir():
        raise InputFileError(f"{what} {path!r} does not exist or is not a folder")
    return p


def _require_file(path: str, what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"{what} {path!r} does not exist or is not a file")
    return p


def _cmd_demo(args: argparse.Namespace) -> int:
    from lattice_plan.demo import run_demo

    bars = _progress(args)
    try:
        summary = run_demo(Path(args.out), fast=args.fast, delivery=args.delivery, progress=bars)
    finally:
        bars.close()
    if not args.quiet:
        print(summary)
    return EXIT_OK


def _cmd_plan(args: argparse.Namespace) -> int:
    from lattice_plan.demo import summary_text
    from lattice_plan.planning.spec import load_spec
    from lattice_plan.workflow import load_dicom_case, run_case

    ct_dir = _require_dir(args.ct, "CT folder")
    rtstruct = _require_file(args.rtstruct, "RTSTRUCT")
    for f in args.spec or ():
        load_spec(f)  # a missing or invalid spec fails before the CT is read
    overrides = _overrides(args.set)
    overrides["structures.gtv"] = args.gtv
    if args.oar:
        overrides["structures.oars"] = list(args.oar)
    case = load_dicom_case(ct_dir, rtstruct, gtv=args.gtv, oars=args.oar, external=args.external)
    arms = [a.upper() for a in (args.arm or ["SFRT", "SCART", "CRT"])]
    bars = _progress(args)
    try:
        metrics = run_case(
            case.patient,
            arms,
            args.out,
            spec_files=args.spec,
            overrides=overrides,
            protocol=None if args.no_qa else args.protocol,
            write_ct=False,
            progress=bars,
            ct_series=case.ct,
            source_rtstruct=case.rtstruct_path,
            figures=not args.no_figures,
            scene=not args.no_scene,
        )
    finally:
        bars.close()
    if not args.quiet:
        print(summary_text(metrics, Path(args.out)))
    return EXIT_OK


def _cmd_vertices(args: argparse.Namespace) -> int:
    from lattice_plan.geometry.lattice import LatticeParameters, place_vertices
    from lattice_plan.io.ct import read_ct
    from lattice_plan.io.rtstruct import add_to_rtstruct, read_rtstruct
    from lattice_plan.io.vertex_table import write_vertex_table

    ct_dir = _require_dir(args.ct, "CT folder")
    rtstruct = _require_file(args.rtstruct, "RTSTRUCT")
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


def _metric_list(text: str | None) -> tuple[str, ...]:
    from lattice_plan.workflow import DEFAULT_METRICS

    if text is None:
        return DEFAULT_METRICS
    items = tuple(m.strip() for m in text.split(",") if m.strip())
    if not items:
        raise AnalysisError(f"--metrics {text!r} names no metric; e.g. --metrics 'Dmean,D95%'")
    return items


def _format_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _structure_table(result: dict[str, Any]) -> str:
    """Rows: structures; columns: volume and the metrics."""
    header = ["structure", "volume_cc", *result["metrics"]]
    rows = [
        [name, *(_format_value(entry.get(c)) for c in header[1:])]
        for name, entry in result["structures"].items()
    ]
    return _text_table(header, rows)


def _text_table(header: list[str], rows: list[list[str]]) -> str:
    """Left-aligned text columns, as wide as their widest cell."""
    widths = [max([len(h), *(len(r[n]) for r in rows)]) for n, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header), *(fmt.format(*r) for r in rows)])


def _add_end_cap_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--end-cap",
        choices=END_CAPS,
        default="half-slice",
        help="how far each ROI reaches beyond its first and last contour: half a slice "
        "(default) or not at all ('none', as planning systems that report trapezoid-rule "
        "volumes do)",
    )


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from lattice_plan.workflow import evaluate_dicom

    rtdose = _require_file(args.rtdose, "RTDOSE")
    rtstruct = _require_file(args.rtstruct, "RTSTRUCT")
    if args.ct is not None:
        _require_dir(args.ct, "CT folder")
    if args.rtplan is not None:
        _require_file(args.rtplan, "RTPLAN")
    if args.protocol is not None and args.arm is None:
        raise ProtocolError("--protocol needs --arm (the protocol arm to check the plan against)")
    result = evaluate_dicom(
        rtdose,
        rtstruct,
        ct_dir=args.ct,
        rtplan_path=args.rtplan,
        metrics=_metric_list(args.metrics),
        protocol=args.protocol,
        arm=args.arm,
        fractions=args.fractions,
        prescription_gy=args.prescription_gy,
        end_cap=args.end_cap,
    )
    if args.json:
        _write_json(args.json, result)
    if not args.quiet:
        print(
            f"{result['plan']}: dose max {result['dose']['max_gy']:.3f} Gy, "
            f"{result['fractions'] or '?'} fraction(s), prescription "
            f"{_format_value(result['prescription_gy'])} Gy"
        )
        print(_structure_table(result))
        for variant, p in result["pvdr"].items():
            which = p.get("structure") or " / ".join(p["structures"])
            print(f"PVDR {variant} ({which}): {p['value']:.3f}")
        for note in result["notes"]:
            print(f"note: {note}")
        for name, entry in result["structures"].items():
            if "note" in entry:
                print(f"note: {name}: {entry['note']}")
        if "qa" in result:
            qa = result["qa"]
            print(f"QA {qa['protocol']} arm {qa['arm']}: {qa['verdict']} ({qa['counts']})")
    return EXIT_OK


def _write_json(path: str, data: Any) -> None:
    from lattice_plan.io.atomic import atomic_output_path

    target = Path(path)
    if target.parent and not target.parent.is_dir():
        raise InputFileError(f"folder of {path!r} does not exist; create it first")
    with atomic_output_path(target) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _cmd_compare(args: argparse.Namespace) -> int:
    from lattice_plan.workflow import evaluate_dicom

    table: dict[str, dict[str, Any]] = {}
    columns: list[str] = []
    if args.dirs and args.rtdose:
        raise InputFileError("give either plan folders or --rtdose files, not both")
    if args.dirs:
        for d in args.dirs:
            folder = _require_dir(d, "plan folder")
            path = folder / "metrics.json"
            if not path.is_file():
                raise InputFileError(
                    f"{d!r} holds no metrics.json; give folders written by 'lattice-plan plan' or 'demo'"
                )
            metrics = json.loads(path.read_text(encoding="utf-8"))
            label = folder.name
            for plan in metrics["plans"]:
                col = plan if len(args.dirs) == 1 else f"{label}/{plan}"
                columns.append(col)
                for part in ("plan", "physical", "eqd2"):
                    for metric, per in metrics["comparison"][part].items():
                        table.setdefault(metric, {})[col] = per.get(plan)
    elif args.rtdose:
        if args.rtstruct is None:
            raise InputFileError("--rtdose needs --rtstruct (the structure set of the doses)")
        rtstruct = _require_file(args.rtstruct, "RTSTRUCT")
        names = args.names or [Path(p).stem for p in args.rtdose]
        if len(names) != len(args.rtdose):
            raise InputFileError(
                f"--names gives {len(names)} names for {len(args.rtdose)} --rtdose files"
            )
        metric_list = _metric_list(args.metrics)
        for name, dose_path in zip(names, args.rtdose, strict=True):
            result = evaluate_dicom(
                _require_file(dose_path, "RTDOSE"),
                rtstruct,
                metrics=metric_list,
                end_cap=args.end_cap,
            )
            columns.append(name)
            for roi, entry in result["structures"].items():
                for m in metric_list:
                    table.setdefault(f"{roi} {m}", {})[name] = entry.get(m)
    else:
        raise InputFileError("give plan folders (lattice-plan compare DIR...) or --rtdose files")
    if args.json:
        _write_json(args.json, table)
    if not args.quiet:
        header = ["metric", *columns]
        rows = [[m, *(_format_value(per.get(c)) for c in columns)] for m, per in table.items()]
        print(_text_table(header, rows))
    return EXIT_OK


def _cmd_view(args: argparse.Namespace) -> int:
    from lattice_plan.viz.scene3d import export_scene_vtk, save_scene_png, show_scene
    from lattice_plan.workflow import plan_scene

    folder = _require_dir(args.plan_dir, "plan folder")
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


def _cmd_qa(args: argparse.Namespace) -> int:
    from lattice_plan.qa import Verdict, check_dicom, load_builtin_protocol, load_protocol

    protocol = load_protocol(args.protocol) if args.protocol else load_builtin_protocol()
    result = check_dicom(
        args.rtdose,
        args.rtstruct,
        protocol,
        args.arm,
        rtplan_path=args.rtplan,
        fractions=args.fractions,
        end_cap=args.end_cap,
    )
    if args.json:
        result.write_json(args.json)
    if args.csv:
        result.write_csv(args.csv)
    if not args.quiet:
        print(result.format_table())
    return EXIT_OK if result.verdict in (Verdict.PER_PROTOCOL, Verdict.MINOR_DEVIATION) else 1


def _cmd_commission(args: argparse.Namespace) -> int:
    from lattice_plan.dose.commission import (
        OUTPUT_FACTOR_DEPTH_MM,
        OUTPUT_FACTOR_SSD_MM,
        commission_files,
    )

    setup_given = args.output_factor_ssd is not None or args.output_factor_depth is not None
    if setup_given and args.output_factors is None:
        raise DoseError(
            "--output-factor-ssd and --output-factor-depth describe an output-factor file: "
            "give it with --output-factors CSV"
        )
    model, report = commission_files(
        args.scans,
        name=args.name,
        output_factor_file=args.output_factors,
        output_factor_setup_mm=(
            OUTPUT_FACTOR_SSD_MM if args.output_factor_ssd is None else args.output_factor_ssd,
            OUTPUT_FACTOR_DEPTH_MM
            if args.output_factor_depth is None
            else args.output_factor_depth,
        ),
    )
    model.to_json(args.out)
    if not args.quiet:
        print(
            f"fitted {len(report['parameters'])} parameters to {len(args.scans)} scan file(s): "
            f"RMS residual {100 * report['rms_residual']:.2f} %, "
            f"max {100 * report['max_abs_residual']:.2f} %; wrote {args.out}"
        )
        for of in report.get("output_factors", []):
            fx, fy = of["field_mm"]
            print(
                f"  output factor {fx:g} x {fy:g} mm: measured {of['measured']:.3f}, "
                f"model {of['model']:.3f} ({100 * (of['model'] / of['measured'] - 1):+.1f} %)"
            )
    return EXIT_OK


def _cmd_batch(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from lattice_plan.batch import run_cohort
    from lattice_plan.cohort import load_cohort

    if args.workers is not None and args.workers < 1:
        raise SpecError(f"--workers must be at least 1, got {args.workers}")
    cohort = load_cohort(args.cohort)
    bar = tqdm(
        total=len(cohort.tasks()),
        desc=cohort.name,
        unit="task",
        disable=True if args.quiet else None,
    )

    def progress(done: int, total: int, row: TaskRow) -> None:
        bar.update(1)
        if row.status == "failed":
            bar.write(f"{row.case}/{row.arm}: failed: {row.error}")

    try:
        result = run_cohort(
            cohort, args.out, workers=args.workers, scheduler=args.scheduler, progress=progress
        )
    finally:
        bar.close()
    if not args.quiet:
        counts = result.counts
        print(
            f"{len(result.rows)} tasks: {counts['ok']} done, {counts['skipped']} already complete, "
            f"{counts['failed']} failed; results in {result.table_csv} and {result.table_json}"
        )
    return EXIT_OK if result.counts["failed"] == 0 else 1


def _add_recalc_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``recalc`` to the command line."""
    rc = subparsers.add_parser(
        "recalc",
        help="independent dose of an RTPLAN (ours or another system's) on its CT",
        description=(
            "Recompute the dose of a photon RTPLAN from its control points (static, "
            "step-and-shoot, sliding window, arcs) with the commissioned beam model, and write "
            "it as a PLAN RTDOSE (all fractions) on the CT or on another dose's grid. With "
            "--compare: gamma (global and local) and dose differences against that RTDOSE, and "
            "with --rtstruct the DVH metrics of both."
        ),
    )
    rc.add_argument("--rtplan", required=True, metavar="FILE", help="the RTPLAN to recalculate")
    rc.add_argument("--ct", required=True, metavar="DIR", help="folder of the plan's CT series")
    rc.add_argument("--out", required=True, metavar="RTDOSE.dcm", help="RTDOSE file to write")
    rc.add_argument(
        "--machine",
        metavar="FILE",
        help="machine TOML (MLC, transmission, leaf ends) for every beam; default: the "
        "shipped machine named by the plan, else the default machine with the plan's leaves",
    )
    rc.add_argument(
        "--grid-like",
        metavar="RTDOSE",
        help="write the dose on this RTDOSE's grid (exact comparison)",
    )
    rc.add_argument("--compare", metavar="RTDOSE", help="reference dose to check against")
    rc.add_argument(
        "--gamma", metavar="CRITERION", help="gamma criterion of --compare (default 3%%/2mm)"
    )
    rc.add_argument("--rtstruct", metavar="FILE", help="RTSTRUCT: body outline and DVH metrics")
    rc.add_argument(
        "--gantry-step", type=float, default=2.0, metavar="DEG", help="arc sampling (default 2)"
    )
    rc.add_argument("--json", metavar="FILE", help="write the check's numbers as JSON")
    rc.set_defaults(func=_cmd_recalc)


def _recalc_out(path: str) -> Path:
    out = Path(path)
    if out.is_dir():
        raise InputFileError(f"--out {path!r} is a folder; give the RTDOSE file name to write")
    if not out.parent.is_dir():
        raise InputFileError(f"--out {path!r}: folder {str(out.parent)!r} does not exist")
    return out


def _cmd_recalc(args: argparse.Namespace) -> int:
    """Run ``lattice-plan recalc``; returns the exit code."""
    from lattice_plan.analysis.dose_agreement import dose_agreement, parse_gamma_criterion
    from lattice_plan.dose.machine import read_machine
    from lattice_plan.io.ct import read_ct
    from lattice_plan.io.rtdose import load_rtdose
    from lattice_plan.io.rtstruct import read_rtstruct
    from lattice_plan.recalc import (
        dvh_metrics,
        recalculate,
        reference_dose,
        write_recalc_rtdose,
    )

    rtplan = _require_file(args.rtplan, "RTPLAN")
    ct_dir = _require_dir(args.ct, "CT folder")
    out = _recalc_out(args.out)
    if args.gamma is not None and args.compare is None:
        raise InputFileError("--gamma needs --compare RTDOSE (the dose to check against)")
    criterion = parse_gamma_criterion(args.gamma or "3%/2mm")
    for option in ("machine", "grid_like", "compare", "rtstruct"):
        if getattr(args, option) is not None:
            _require_file(getattr(args, option), f"--{option.replace('_', '-')}")
    machine = read_machine(args.machine) if args.machine else None
    ct = read_ct(ct_dir)
    structures = read_rtstruct(args.rtstruct, ct) if args.rtstruct else None
    body = None
    if structures is not None and structures.of_kind("EXTERNAL"):
        body = structures.external()
    grid = None
    if args.grid_like:
        grid_dose = load_rtdose(args.grid_like, patient_position=ct.grid.patient_position)
        if grid_dose.frame_of_reference_uid != ct.frame_of_reference_uid:
            raise InputFileError(
                f"--grid-like {args.grid_like!r} is in another frame of reference than the CT"
            )
        grid = grid_dose.grid
    bars = _progress(args)
    try:
        result = recalculate(
            rtplan,
            ct,
            machine,
            grid,
            bars,
            body=body,
            gantry_step_deg=args.gantry_step,
        )
    finally:
        bars.close()
    reference = reference_dose(args.compare, result) if args.compare else None
    report: dict = {
        "rtplan": str(rtplan),
        "out": str(out),
        "n_fractions": result.delivery.n_fractions,
        "n_beams": len(result.delivery.beams),
        "n_engine_beams": result.n_engine_beams,
        "max_dose_gy": float(result.dose.array.max()),
    }
    lines = [
        f"wrote {out}: {report['n_beams']} beams, {report['n_fractions']} fractions, "
        f"max {report['max_dose_gy']:.3f} Gy"
    ]
    if reference is not None:
        agreement = dose_agreement(reference, result.dose, *criterion)
        report["check"] = agreement.as_dict()
        lines.append(agreement.summary())
        if structures is not None:
            table = dvh_metrics(
                {"recalc": result.dose, "reference": reference},
                structures,
                result.delivery.n_fractions,
            )
            report["dvh"] = table
            rows = [
                [
                    name,
                    metric,
                    _format_value(per["recalc"][metric]),
                    _format_value(per["reference"][metric]),
                ]
                for name, per in table.items()
                for metric in per["recalc"]
            ]
            lines.append(_text_table(["structure", "metric", "recalc", "reference"], rows))
    # everything that can fail is done: now write (nothing is written on bad input)
    write_recalc_rtdose(result, out)
    if args.json:
        _write_json(args.json, report)
    if not args.quiet:
        print("\n".join(lines))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lattice-plan",
        description=(
            "Dose planning for spatially fractionated (lattice/SFRT) and SCART radiotherapy, "
            "compared against a conventional (CRT) plan. Units: mm, Gy, degrees."
        ),
    )
    parser.add_argument("--version", action="version", version=f"lattice-plan {__version__}")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument(
        "-v", "--verbose", action="store_true", help="show progress details and the library log"
    )
    verbosity.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = sub.add_parser(
        "demo",
        help="run the whole job on the built-in phantom",
        description=(
            "Plan the built-in lumbar-metastasis phantom in the three arms (SFRT, SCART, CRT), "
            "compare the plans and check them against the built-in study protocol. DIR gets the "
            "CT series, one RTSTRUCT, an RTPLAN and RTDOSE per plan, metrics.json, figures, 3D "
            "images and report.html."
        ),
    )
    demo.add_argument(
        "--out", required=True, metavar="DIR", help="output folder (created if missing)"
    )
    demo.add_argument(
        "--fast",
        action="store_true",
        help="coarse and quick: 4 mm CT, 5 mm dose grid, 12 optimiser iterations",
    )
    demo.add_argument(
        "--delivery",
        choices=["sliding_window", "step_and_shoot", "ideal", "vmat"],
        help="how the SFRT and SCART plans are delivered (vmat: two full arcs); default sliding_window",
    )
    demo.set_defaults(func=_cmd_demo)

    plan = sub.add_parser(
        "plan",
        help="plan a DICOM patient (CT + RTSTRUCT) in one or more arms",
        description=(
            "Plan a patient from a CT folder and its RTSTRUCT: SFRT, SCART and/or CRT plans, "
            "their comparison and protocol QA. DIR gets an RTSTRUCT (the input's ROIs plus "
            "the planning structures: vertices, valley, STV, PTV...), an RTPLAN and RTDOSE per "
            "plan referencing the input CT, metrics.json, figures, 3D images and report.html."
        ),
    )
    plan.add_argument("--ct", required=True, metavar="DIR", help="folder of the CT series")
    plan.add_argument("--rtstruct", required=True, metavar="FILE", help="its RTSTRUCT")
    plan.add_argument("--gtv", required=True, metavar="NAME", help="ROI name of the GTV")
    plan.add_argument(
        "--arm",
        action="append",
        type=str.lower,
        choices=["sfrt", "scart", "crt"],
        help="arm to plan (repeat for several; default: all three)",
    )
    plan.add_argument(
        "--spec",
        action="append",
        metavar="FILE.toml",
        help="plan-spec TOML for the arm it names (repeat for several arms)",
    )
    plan.add_argument(
        "--oar",
        nargs="+",
        metavar="NAME",
        help="ROI names of the organs at risk (default: every ROI of type ORGAN)",
    )
    plan.add_argument(
        "--external", metavar="NAME", help="ROI name of the body outline (default: type EXTERNAL)"
    )
    plan.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a plan-spec key, e.g. --set dose.spacing_mm=3 --set lattice.spacing_mm=25",
    )
    plan.add_argument(
        "--protocol",
        default="builtin",
        metavar="NAME|FILE",
        help="protocol for QA: 'builtin' (default), a built-in name or a TOML file",
    )
    plan.add_argument("--no-qa", action="store_true", help="skip the protocol QA")
    plan.add_argument("--no-figures", action="store_true", help="skip the figures")
    plan.add_argument("--no-scene", action="store_true", help="skip the 3D images")
    plan.add_argument("--out", required=True, metavar="DIR", help="output folder")
    plan.set_defaults(func=_cmd_plan)

    vert = sub.add_parser(
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
    vert.set_defaults(func=_cmd_vertices)

    ev = sub.add_parser(
        "evaluate",
        help="DVH metrics, PVDR and protocol QA of any plan's RTDOSE + RTSTRUCT",
        description=(
            "DVH metrics of every ROI of an exported plan from any planning system, PVDR, and "
            "with --arm a protocol check. Without --ct the ROIs are rasterised on the dose grid. "
            "D-metrics are in Gy, V-metrics in the unit asked for (V20Gy in %, V20Gy[cc] in cc)."
        ),
    )
    ev.add_argument("--rtdose", required=True, metavar="FILE", help="RTDOSE (plan dose)")
    ev.add_argument("--rtstruct", required=True, metavar="FILE", help="its RTSTRUCT")
    ev.add_argument("--ct", metavar="DIR", help="CT folder: rasterise the ROIs on the CT")
    ev.add_argument("--rtplan", metavar="FILE", help="RTPLAN (fractions and prescription)")
    ev.add_argument(
        "--metrics",
        metavar="LIST",
        help="comma-separated metrics (default: Dmin,Dmean,Dmax,D98%%,D95%%,D50%%,D2%%,D0.03cc); "
        "e.g. 'Dmean,D95%%,V20Gy[cc],EQD2:Dmax'",
    )
    ev.add_argument("--fractions", type=int, help="number of fractions (default: RTPLAN)")
    ev.add_argument(
        "--prescription-gy", type=float, metavar="GY", help="prescription (default: RTPLAN)"
    )
    ev.add_argument("--protocol", metavar="NAME|FILE", help="protocol (default: built-in)")
    ev.add_argument("--arm", help="protocol arm to check the plan against, e.g. SFRT")
    _add_end_cap_option(ev)
    ev.add_argument("--json", metavar="FILE", help="write the results as JSON")
    ev.set_defaults(func=_cmd_evaluate)

    cmp_ = sub.add_parser(
        "compare",
        help="side-by-side table of plans (output folders or RTDOSE files)",
        description=(
            "The comparison table of plan folders written by 'plan' or 'demo' (their "
            "metrics.json), or DVH metrics of several RTDOSE files on one RTSTRUCT."
        ),
    )
    cmp_.add_argument("dirs", nargs="*", metavar="DIR", help="plan output folders")
    cmp_.add_argument("--rtdose", nargs="+", metavar="FILE", help="RTDOSE files to compare")
    cmp_.add_argument("--rtstruct", metavar="FILE", help="RTSTRUCT of the --rtdose files")
    cmp_.add_argument(
        "--names", nargs="+", metavar="NAME", help="column names of the --rtdose files"
    )
    cmp_.add_argument("--metrics", metavar="LIST", help="metrics for --rtdose (as in evaluate)")
    _add_end_cap_option(cmp_)
    cmp_.add_argument("--json", metavar="FILE", help="write the table as JSON")
    cmp_.set_defaults(func=_cmd_compare)

    view = sub.add_parser(
        "view",
        help="3D view of a plan folder (interactive, or a PNG with --screenshot)",
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
    view.set_defaults(func=_cmd_view)

    qa = sub.add_parser(
        "qa",
        help="check an exported plan (RTDOSE + RTSTRUCT) against a protocol arm",
        description=(
            "Check a DICOM RTDOSE + RTSTRUCT (+ RTPLAN for the fractions) from any planning "
            "system against the constraints of one arm. Exit 0: per protocol or minor "
            "deviation; 1: major deviation or incomplete; 2: bad input."
        ),
    )
    qa.add_argument("--rtdose", required=True, metavar="FILE", help="RTDOSE of the whole plan")
    qa.add_argument("--rtstruct", required=True, metavar="FILE", help="its RTSTRUCT")
    qa.add_argument("--rtplan", metavar="FILE", help="its RTPLAN (gives the fractions)")
    qa.add_argument(
        "--protocol", metavar="FILE", help="protocol TOML (default: the built-in study template)"
    )
    qa.add_argument("--arm", required=True, help="arm of the protocol, e.g. SFRT")
    qa.add_argument("--fractions", type=int, help="number of fractions (default: RTPLAN, arm)")
    _add_end_cap_option(qa)
    qa.add_argument("--json", metavar="FILE", help="write the result as JSON")
    qa.add_argument("--csv", metavar="FILE", help="write the result table as CSV")
    qa.set_defaults(func=_cmd_qa)

    com = sub.add_parser(
        "commission",
        help="fit the photon beam model to measured water-tank scans",
        description=(
            "Fit the 6 MV pencil-beam model to PTW mcc scans (a 10 x 10 cm PDD at SSD 1000 mm "
            "and profiles), and to measured output factors if given (they set the head "
            "scatter, which 10 x 10 cm scans cannot show), and write the calibrated model as JSON."
        ),
    )
    com.add_argument("scans", nargs="+", metavar="SCANS", help="PTW .mcc files")
    com.add_argument("--out", required=True, metavar="FILE", help="model JSON to write")
    com.add_argument("--name", default="6X commissioned", help="name stored in the model")
    com.add_argument(
        "--output-factors",
        metavar="CSV",
        help=(
            "measured output factors of square fields, rows of (side mm, output factor relative "
            "to 10 x 10 cm); the head scatter is then fitted to them"
        ),
    )
    com.add_argument(
        "--output-factor-ssd",
        type=float,
        metavar="MM",
        help="SSD of the output-factor measurements (default 900)",
    )
    com.add_argument(
        "--output-factor-depth",
        type=float,
        metavar="MM",
        help="depth of the output-factor measurements (default 100)",
    )
    com.set_defaults(func=_cmd_commission)

    batch = sub.add_parser(
        "batch",
        help="plan and evaluate a cohort (cases x arms x parameter sweeps) on Dask",
        description=(
            "Plan and evaluate every case, arm and parameter set of a cohort TOML file "
            "(see examples/cohort_phantom_sweep.toml) on a local Dask cluster sized to this "
            "machine, or on a running cluster (--scheduler). Outputs go to DIR/<case>/<arm>/"
            "<params>/, the results table to DIR/results.csv and results.json. Re-running skips "
            "completed tasks and redoes interrupted ones. Exit code 1 if any task failed."
        ),
    )
    batch.add_argument("cohort", metavar="COHORT.toml", help="cohort file")
    batch.add_argument("--out", required=True, metavar="DIR", help="output folder")
    where = batch.add_mutually_exclusive_group()
    where.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="local worker processes (default: one per core, memory permitting)",
    )
    where.add_argument(
        "--scheduler", metavar="ADDRESS", help="a running Dask scheduler, e.g. tcp://host:8786"
    )
    batch.set_defaults(func=_cmd_batch)
    _add_recalc_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: sys.argv[1:]); returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage, 0 on --help
        return int(exc.code or 0)
    level = logging.DEBUG if args.verbose else (logging.ERROR if args.quiet else logging.WARNING)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except LatticePlanError as exc:
        print(f"lattice-plan {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"lattice-plan {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
