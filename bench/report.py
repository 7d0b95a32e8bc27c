"""The results: one Markdown table (printed and saved), the raw numbers as JSON, a concurrency plot."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

SECTIONS = (
    "read",
    "acl",
    "list",
    "token",
    "establish",
    "sharing",
    "watchers",
    "postgres",
    "memory",
    "startup",
    "baselines",
)
HEADER = ("scenario", "req/s", "p50", "p99", "baseline", "ratio to baseline", "target", "pass/fail")


@dataclass
class Row:
    """One line of the table. `value_*` are what the p50/p99 columns show for non-latency rows."""

    section: str
    scenario: str
    rps: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    baseline: str | None = None
    baseline_rps: float | None = None
    ratio: float | None = None
    target: str | None = None
    passed: bool | None = None
    value: str | None = None  # shown in the p50 column instead of a latency (RSS, cold start)
    value_max: str | None = None  # shown in the p99 column instead of a latency
    errors: int = 0
    foreign_cpu: float = 0.0  # the most any run of it saw other processes use, in cores
    busy_mark: bool = False


def _num(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def _ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.2f} ms" if value < 10 else f"{value:.1f} ms"


def _verdict(row: Row) -> str:
    if row.errors:
        return f"INVALID ({row.errors} errors)"
    if row.passed is None:
        return "—"
    return "PASS" if row.passed else "FAIL"


def _cells(row: Row) -> list[str]:
    baseline = "—"
    if row.baseline is not None:
        baseline = row.baseline + (f" ({_num(row.baseline_rps)} req/s)" if row.baseline_rps is not None else "")
    return [
        row.scenario + (" †" if row.busy_mark else ""),
        _num(row.rps),
        row.value if row.value is not None else _ms(row.p50_ms),
        row.value_max if row.value_max is not None else _ms(row.p99_ms),
        baseline,
        f"{row.ratio:.2f}x" if row.ratio is not None else "—",
        row.target or "—",
        _verdict(row),
    ]


def markdown(title: str, preamble: Sequence[str], rows: Sequence[Row], notes: Sequence[str]) -> str:
    """The report: a title, a few context lines, the table (with a section line per group), notes."""
    lines = [f"# {title}", "", *preamble, ""]
    lines.append("| " + " | ".join(HEADER) + " |")
    lines.append("|" + "|".join(["---", "---:", "---:", "---:", "---", "---:", "---", "---"]) + "|")
    section = None
    order = {name: i for i, name in enumerate(SECTIONS)}
    for row in sorted(rows, key=lambda r: order.get(r.section, len(order))):  # stable: run order within one
        if row.section != section:
            section = row.section
            lines.append(f"| **{section}** |" + " |" * (len(HEADER) - 1))
        lines.append("| " + " | ".join(_cells(row)) + " |")
    lines += ["", *(f"- {note}" for note in notes), ""]
    return "\n".join(lines)


def save(directory: Path, stamp: str, text: str, data: Mapping[str, Any]) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    md, js = directory / f"{stamp}.md", directory / f"{stamp}.json"
    md.write_text(text)
    js.write_text(json.dumps(data, indent=2, default=_jsonable) + "\n")
    return md, js


def _jsonable(value: object) -> object:
    if isinstance(value, Row):
        return asdict(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def ensure_matplotlib() -> str | None:
    """Import matplotlib (Agg), installing it into this venv with pip when missing; None if impossible."""
    try:
        importlib.import_module("matplotlib")
    except ImportError:
        print("installing matplotlib into the venv (pip) for the concurrency plot ...", flush=True)
        done = subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "matplotlib"],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            return f"matplotlib could not be installed: {done.stderr.strip()[-300:]}"
        importlib.invalidate_caches()
        try:
            importlib.import_module("matplotlib")
        except ImportError as exc:
            return f"matplotlib not importable after installing it: {exc}"
    return None


def plot(sweep: Mapping[str, Mapping[str, Mapping[int, float]]], path: Path, subtitle: str) -> None:
    """req/s against concurrency: one panel per scenario, the service and its baseline as two lines."""
    matplotlib = importlib.import_module("matplotlib")
    matplotlib.use("Agg")
    pyplot = importlib.import_module("matplotlib.pyplot")
    figure, axes = pyplot.subplots(1, len(sweep), figsize=(6 * len(sweep), 4.5), squeeze=False)
    for axis, (panel, lines) in zip(axes[0], sweep.items(), strict=True):
        for label, points in lines.items():
            xs = sorted(points)
            axis.plot(xs, [points[x] for x in xs], marker="o", label=label)
        axis.set_xscale("log", base=2)
        axis.set_xticks(sorted({x for points in lines.values() for x in points}))
        axis.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        axis.set_ylim(bottom=0)
        axis.set_xlabel("concurrent connections")
        axis.set_ylabel("requests per second")
        axis.set_title(panel)
        axis.grid(True, alpha=0.3)
        axis.legend()
    figure.suptitle(subtitle, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
