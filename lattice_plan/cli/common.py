"""What the commands share: exit codes, progress bars, option parsing, input checks, tables, JSON."""

from __future__ import annotations

import argparse
import json
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lattice_plan.errors import AnalysisError, InputFileError, SpecError

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


def progress_bars(args: argparse.Namespace) -> ProgressBars:
    """The progress bars of a command (none with ``-q``)."""
    return ProgressBars(enabled=not args.quiet)


def parse_value(text: str) -> Any:
    """A --set value as TOML (number, boolean, string, list); a bare word is a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_overrides(pairs: Sequence[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise SpecError(
                f"--set {pair!r}: expected KEY=VALUE with a dotted plan-spec key, "
                "e.g. --set lattice.spacing_mm=25"
            )
        out[key.strip()] = parse_value(value.strip())
    return out


def require_dir(path: str, what: str) -> Path:
    p = Path(path)
    if not p.is_dir():
        raise InputFileError(f"{what} {path!r} does not exist or is not a folder")
    return p


def require_file(path: str, what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"{what} {path!r} does not exist or is not a file")
    return p


def metric_list(text: str | None) -> tuple[str, ...]:
    from lattice_plan.workflow import DEFAULT_METRICS

    if text is None:
        return DEFAULT_METRICS
    items = tuple(m.strip() for m in text.split(",") if m.strip())
    if not items:
        raise AnalysisError(f"--metrics {text!r} names no metric; e.g. --metrics 'Dmean,D95%'")
    return items


def format_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def structure_table(result: dict[str, Any]) -> str:
    """Rows: structures; columns: volume and the metrics."""
    header = ["structure", "volume_cc", *result["metrics"]]
    rows = [
        [name, *(format_value(entry.get(c)) for c in header[1:])]
        for name, entry in result["structures"].items()
    ]
    return text_table(header, rows)


def text_table(header: list[str], rows: list[list[str]]) -> str:
    """Left-aligned text columns, as wide as their widest cell."""
    widths = [max([len(h), *(len(r[n]) for r in rows)]) for n, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header), *(fmt.format(*r) for r in rows)])


def add_end_cap_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--end-cap",
        choices=END_CAPS,
        default="half-slice",
        help="how far each ROI reaches beyond its first and last contour: half a slice "
        "(default) or not at all ('none', as planning systems that report trapezoid-rule "
        "volumes do)",
    )


def add_crt_schedule_option(parser: argparse.ArgumentParser) -> None:
    """``--crt-schedule NAME``: the CRT arm's schedule, planned against its protocol arm."""
    from lattice_plan.planning.crt import CRT_SCHEDULES

    parser.add_argument(
        "--crt-schedule",
        metavar="NAME",
        help=f"CRT schedule: {', '.join(CRT_SCHEDULES)} (default 30Gy/10); the CRT plan is "
        "made against the protocol arm of that schedule",
    )


def write_json(path: str, data: Any) -> None:
    from lattice_plan.io.atomic import atomic_output_path

    target = Path(path)
    if target.parent and not target.parent.is_dir():
        raise InputFileError(f"folder of {path!r} does not exist; create it first")
    with atomic_output_path(target) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
