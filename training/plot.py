"""Draw a run's training curves from its metrics.jsonl (training/metrics.py) to a PNG.

    python -m training plot RUN [--out curves.png]

RUN is a metrics.jsonl file or a directory holding one (the newest below it is used).
One panel per numeric metric against `step`, with loss and val_loss on the same panel.
metrics.jsonl is appended across restarts, so a resumed run may log a step twice: the
later record wins, which is what the resumed run actually trained.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

METRICS_FILE = "metrics.jsonl"
# Metrics drawn together on one panel; every other numeric key gets its own.
SHARED_PANELS = {"loss": ["loss", "val_loss"]}


def find_metrics(run: str | Path) -> Path:
    run = Path(run)
    if run.is_file():
        return run
    found = sorted(run.rglob(METRICS_FILE), key=lambda p: p.stat().st_mtime) if run.is_dir() else []
    if not found:
        raise FileNotFoundError(f"no {METRICS_FILE} in {run}")
    return found[-1]


def read_series(path: Path) -> dict[str, dict[int, float]]:
    """metric -> {step: value}; later records replace earlier ones for the same step."""
    series: dict[str, dict[int, float]] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            step = int(record["step"])
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(
                f"{path}:{number}: not a metrics record with a step ({error})"
            ) from None
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                series.setdefault(key, {})[step] = float(value)
    return series


def panels(series: dict[str, dict[int, float]]) -> list[tuple[str, list[str]]]:
    grouped = {key for keys in SHARED_PANELS.values() for key in keys}
    out = [(title, [k for k in keys if k in series]) for title, keys in SHARED_PANELS.items()]
    out += [(key, [key]) for key in sorted(series) if key not in grouped]
    return [(title, keys) for title, keys in out if keys]


def plot(run: str | Path, out: str | Path | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # files only: works without a display
    import matplotlib.pyplot as plt

    path = find_metrics(run)
    series = read_series(path)
    if not series:
        raise ValueError(f"{path} has no numeric metrics to plot")
    layout = panels(series)
    columns = min(3, len(layout))
    rows = math.ceil(len(layout) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5 * columns, 3.2 * rows), squeeze=False)
    for ax, (title, keys) in zip(axes.flat, layout):
        for key in keys:
            steps = sorted(series[key])
            ax.plot(
                steps,
                [series[key][s] for s in steps],
                label=key,
                marker="o" if len(steps) < 30 else None,
                markersize=3,
            )
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if len(keys) > 1:
            ax.legend()
    for ax in axes.flat[len(layout) :]:
        ax.set_visible(False)
    fig.suptitle(str(path.parent))
    fig.tight_layout()
    out = Path(out) if out else path.parent / "curves.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training plot", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("run", help="metrics.jsonl or a run directory holding one")
    parser.add_argument("--out", help="PNG to write (default: curves.png beside metrics.jsonl)")
    args = parser.parse_args(argv)
    print(f"wrote {plot(args.run, args.out)}")
    return 0
