"""The sweep report: one row per job of a multirun (its overrides, status,
metrics, its rank by the metric, per-stage seconds and cache use), written as
sweep.csv, sweep.md and sweep.png into the multirun folder, with the best job named. Written at the
end of every `python -m runner -m ...`; again, for any multirun folder, with

    python -m runner.report MULTIRUN_DIR [--metric NAME]
"""
from __future__ import annotations

import argparse
import csv
import io
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from runner import atomic
from runner.errors import RunnerError
from runner.evaluation import LOWER_IS_BETTER
from runner.jobs import Job, Outcome, collect

STAGES = ("detect", "pose", "visualize", "export", "evaluate")


def overrides(job: Job) -> dict[str, str]:
    """The job's command-line overrides (Hydra's .hydra/overrides.yaml), hydra.* left out."""
    try:
        listed = yaml.safe_load((job.folder / ".hydra" / "overrides.yaml").read_text()) or []
    except (OSError, yaml.YAMLError):
        return {}
    pairs = (str(o).lstrip("+~").split("=", 1) for o in listed)
    return {k: v for k, v in (p for p in pairs if len(p) == 2) if not k.startswith("hydra")}


def row(job: Job) -> dict:
    manifest = job.manifest or {}
    stages = manifest.get("stages", {})
    out = {"job": job.folder.name, "status": job.status + (" (dry run)" if manifest.get("dry_run") else ""),
           **overrides(job)}
    out.update((manifest.get("metrics") or {}).get("values", {}))
    out["seconds"] = round(sum(s.get("seconds", 0) for s in stages.values()), 3)
    for name in STAGES:
        if name in stages:
            out.update({f"{name} seconds": stages[name]["seconds"], f"{name} cached": stages[name]["cache_hits"],
                        f"{name} computed": stages[name]["computed"]})
            if manifest.get("dry_run"):  # a dry run computes nothing: what it would
                out[f"{name} to compute"] = sum(stages[name].get("would_compute", {}).values())
    failed = manifest.get("failed") or []
    error = manifest.get("error") or ("; ".join(f"{f['id']}: {f['error']}" for f in failed[:3]) if failed else "")
    out["error"] = error if job.manifest else "the job wrote no manifest (killed?)"
    return out


@dataclass
class Report:
    rows: list[dict]
    swept: list[str]          # override keys whose values differ between jobs
    metric: str
    higher_is_better: bool
    best: dict | None

    def describe_best(self) -> str:
        if self.rows and all(str(r["status"]).endswith("(dry run)") for r in self.rows):
            return "none: a dry run runs no model (each row says what its job would compute)"
        if self.best is None:
            return f"no job finished ok with a value for {self.metric}"
        setting = " ".join(f"{k}={self.best[k]}" for k in self.swept) or "(no swept values)"
        return f"job {self.best['job']}: {setting}, {self.metric} {self.best[self.metric]:.4g}"


def build(outcome: Outcome, metric: str | None = None) -> Report:
    rows = [row(job) for job in outcome.jobs]
    keys = dict.fromkeys(k for job in outcome.jobs for k in overrides(job))
    swept = [k for k in keys if len({r.get(k) for r in rows}) > 1]
    metric = metric or main_metric(outcome) or "seconds"
    higher = metric not in LOWER_IS_BETTER and metric != "seconds"  # seconds: this report's run-time column
    scored = [r for r in rows if isinstance(r.get(metric), (int, float)) and r["status"] == "ok"]
    ranked = sorted(scored, key=lambda r: r[metric], reverse=higher)
    for r in rows:  # 1 = best; jobs with equal values share a rank; no rank without a value
        r["rank"] = 1 + sum(1 for other in ranked if (other[metric] > r[metric] if higher else
                                                      other[metric] < r[metric])) if r in ranked else ""
    best = ranked[0] if ranked else None
    return Report(rows, swept, metric, higher, best)


def main_metric(outcome: Outcome) -> str | None:
    for job in outcome.jobs:
        manifest = job.manifest or {}
        chosen = ((manifest.get("config") or {}).get("sweep") or {}).get("metric")
        if chosen:
            return chosen
        if manifest.get("metrics"):
            return manifest["metrics"]["main"]
    return None


def write(outcome: Outcome, metric: str | None = None) -> Report:
    """sweep.csv, sweep.md and sweep.png in the multirun folder."""
    report = build(outcome, metric)
    folder = outcome.folder
    columns = list(dict.fromkeys(k for r in report.rows for k in r))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(report.rows)
    atomic.write_bytes(folder / "sweep.csv", text.getvalue().encode())
    atomic.write_bytes(folder / "sweep.md", markdown(report).encode())
    plot(report, folder / "sweep.png")
    return report


def markdown(report: Report) -> str:
    shown = ["job", "status", *report.swept, report.metric, "rank",
             *[k for k in ("AP", "AR", "PCK", "AUC", "EPE") if k != report.metric
               and any(k in r for r in report.rows)], "seconds",
             *[f"{s} {what}" for s in ("detect", "pose") for what in ("computed", "to compute")
               if any(f"{s} {what}" in r for r in report.rows)],
             "error"]
    shown = list(dict.fromkeys(shown))
    lines = [f"# Sweep: {len(report.rows)} jobs", "",
             f"Best by {report.metric} ({'higher' if report.higher_is_better else 'lower'} is better): "
             f"{report.describe_best()}", "", "![sweep](sweep.png)", "",
             "| " + " | ".join(shown) + " |", "| " + " | ".join("---" for _ in shown) + " |"]
    for r in report.rows:
        cells = [cell(r.get(k, "")) for k in shown]
        if report.best is r:
            cells[0] = f"**{cells[0]}** (best)"
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Every column, per-stage seconds and cache hits included: sweep.csv."]
    return "\n".join(lines) + "\n"


def cell(value) -> str:
    """A table cell: numbers (also a searched override's "0.5841694527491272") to 4 digits."""
    if isinstance(value, str) and number(value) is not None and "." in value:
        value = float(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def plot(report: Report, path: Path) -> None:
    """The metric against each swept value, one line per setting of the other
    swept values (a scatter when every setting is its own, as in a search)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report.rows if isinstance(r.get(report.metric), (int, float))]
    params = report.swept or ["job"]
    fig, axes = plt.subplots(1, len(params), figsize=(5 * len(params), 4), squeeze=False)
    for ax, param in zip(axes[0], params):
        others = [p for p in report.swept if p != param]
        groups: dict = {}
        for r in rows:
            groups.setdefault(tuple(r.get(p) for p in others), []).append(r)
        categorical = any(number(r.get(param)) is None for r in rows)
        order = sorted({str(r.get(param)) for r in rows}) if categorical else None
        xs = (lambda rs: [order.index(str(r.get(param))) for r in rs]) if categorical else \
            (lambda rs: [number(r.get(param)) for r in rs])
        if all(len(g) == 1 for g in groups.values()):
            ax.scatter(xs(rows), [r[report.metric] for r in rows], label="jobs")
        else:
            for setting, group in sorted(groups.items(), key=lambda kv: str(kv[0])):
                group = sorted(group, key=lambda r: xs([r])[0])
                label = ", ".join(f"{p}={v}" for p, v in zip(others, setting)) or report.metric
                ax.plot(xs(group), [r[report.metric] for r in group], marker="o", label=label)
        if report.best is not None and report.best in rows:
            ax.scatter(xs([report.best]), [report.best[report.metric]], s=160, facecolors="none",
                       edgecolors="red", linewidths=2, label=f"best (job {report.best['job']})", zorder=3)
        if categorical:
            ax.set_xticks(range(len(order)), order)
        ax.set_xlabel(param)
        ax.set_ylabel(report.metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{report.metric} per job ({len(rows)} with a value)")
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m runner.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="a multirun folder (multirun/DATE/TIME)")
    parser.add_argument("--metric", help="rank and plot by this metric (default: the evaluation's main one)")
    args = parser.parse_args(argv)
    try:
        folder = Path(args.folder)
        outcome = collect(folder)
        if not outcome.jobs:
            raise RunnerError(f"{folder} holds no sweep jobs (no */.hydra/config.yaml): pass a multirun folder")
        report = write(outcome, args.metric)
    except RunnerError as err:
        sys.exit(f"error: {err}")
    print(f"{len(report.rows)} jobs; best by {report.metric}: {report.describe_best()}")
    print(f"wrote {folder / 'sweep.csv'}, sweep.md, sweep.png")


if __name__ == "__main__":
    main()
