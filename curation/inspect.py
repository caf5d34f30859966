"""`python -m curation inspect OUTPUT`: what a run kept, dropped and why.

Prints summary tables (funnel, languages, drop reasons, score quantiles, sample documents
per reason) and writes OUTPUT/report.html: one self-contained page with the plots
(funnel, language distribution, score histograms, topic sections from the perplexity
and dedup modules when their columns are present).
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pds

from curation import storage
from curation.config import StorageConfig

SCORE_PREFIXES = ("lang_score", "q_", "perplexity", "dup_cluster_size")
SAMPLE_ROWS = 200_000  # rows read for plots and quantiles: enough for smooth histograms


def _dataset(fs, path: str):
    """All part files of a directory; later phases add columns (dedup's `dup_*`), so the
    schema is the union of the files', not the first file's."""
    if not fs.exists(path):
        return None
    dataset = pds.dataset(path, filesystem=fs, format="parquet", partitioning="hive")
    schemas = [fragment.physical_schema for fragment in dataset.get_fragments()]
    if not schemas:
        return None
    schema = pa.unify_schemas(schemas + [dataset.partitioning.schema]
                              if dataset.partitioning else schemas)
    return pds.dataset(path, schema=schema, filesystem=fs, format="parquet", partitioning="hive")


def load_frames(output: str, storage_cfg: StorageConfig) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """stats.json, and up to SAMPLE_ROWS curated and rejected rows (text cut to 500 chars)."""
    fs, root = storage.open_fs(output, storage_cfg)
    stats_path = storage.join(root, "stats.json")
    if not fs.exists(stats_path):
        raise SystemExit(f"error: {output} has no stats.json: not a finished curation run")
    stats = json.loads(fs.cat_file(stats_path))
    frames = []
    for name in ("curated", "rejected"):
        dataset = _dataset(fs, storage.join(root, name))
        if dataset is None:
            frames.append(pd.DataFrame())
            continue
        frame = dataset.head(SAMPLE_ROWS).to_pandas()
        frame["text"] = frame["text"].str.slice(0, 500)
        frames.append(frame)
    return stats, frames[0], frames[1]


def _table(rows: list[list], header: list[str]) -> str:
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def funnel_rows(stats: dict) -> list[list]:
    rows = [["input", f"{stats['input']['docs']:,}", f"{stats['input']['chars']:,}", ""]]
    for name, s in stats["stages"].items():
        rows.append([name, f"{s['out']['docs']:,}", f"{s['out']['chars']:,}", f"-{s['dropped']['docs']:,}"])
    rows.append(["kept", f"{stats['kept']['docs']:,}", f"{stats['kept']['chars']:,}", ""])
    return rows


def score_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c.startswith(SCORE_PREFIXES) and pd.api.types.is_numeric_dtype(frame[c])]


def summarize(output: str, storage_cfg: StorageConfig, stats: dict | None = None, samples: int = 2) -> None:
    loaded, curated, rejected = load_frames(output, storage_cfg)
    stats = stats or loaded
    print("\nfunnel (documents and characters after each stage)")
    print(_table(funnel_rows(stats), ["stage", "docs", "chars", "dropped"]))
    total = max(1, stats["input"]["docs"])
    print("\nlanguages")
    langs = sorted(stats["by_lang"].items(), key=lambda kv: -kv[1].get("kept_docs", 0))
    print(_table([[lang, f"{v.get('kept_docs', 0):,}", f"{v.get('rejected_docs', 0):,}"] for lang, v in langs[:25]],
                 ["lang", "kept", "rejected"]))
    print("\ndrop reasons")
    reasons = sorted(stats["rejected"].items(), key=lambda kv: -kv[1]["docs"])
    print(_table([[r, f"{v['docs']:,}", f"{100 * v['docs'] / total:.1f}%"] for r, v in reasons],
                 ["reason", "docs", "of input"]))
    both = pd.concat([curated, rejected], ignore_index=True)
    columns = score_columns(both)
    if columns:
        print("\nscore quantiles (kept and rejected documents)")
        q = both[columns].quantile([0.05, 0.25, 0.5, 0.75, 0.95]).T
        print(_table([[c] + [f"{v:.3g}" for v in q.loc[c]] for c in columns], ["score", "p5", "p25", "p50", "p75", "p95"]))
    if len(rejected):
        print("\nsample documents per drop reason")
        for reason, group in rejected.groupby("reason"):
            for text in group["text"].head(samples):
                print(f"  [{reason}] {text[:160]!r}")


def _figure_html(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt
    plt.close(fig)
    return f'<img src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def report_figures(stats: dict, curated: pd.DataFrame, rejected: pd.DataFrame) -> list[tuple[str, str]]:
    """(title, html) sections of the report."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sections = []
    fig, ax = plt.subplots(figsize=(8, 3.5))
    rows = funnel_rows(stats)
    ax.barh([r[0] for r in rows][::-1], [int(r[1].replace(",", "")) for r in rows][::-1], color="#4c72b0")
    ax.set_xlabel("documents")
    sections.append(("Funnel: documents after each stage", _figure_html(fig)))

    langs = sorted(stats["by_lang"].items(), key=lambda kv: -(kv[1].get("kept_docs", 0) + kv[1].get("rejected_docs", 0)))[:30]
    if langs:
        fig, ax = plt.subplots(figsize=(9, 3.5))
        names = [k for k, _ in langs]
        ax.bar(names, [v.get("kept_docs", 0) for _, v in langs], label="kept", color="#55a868")
        ax.bar(names, [v.get("rejected_docs", 0) for _, v in langs], bottom=[v.get("kept_docs", 0) for _, v in langs],
               label="rejected", color="#c44e52")
        ax.set_yscale("log")
        ax.legend()
        ax.tick_params(axis="x", rotation=60)
        sections.append(("Languages", _figure_html(fig)))

    reasons = sorted(stats["rejected"].items(), key=lambda kv: -kv[1]["docs"])
    if reasons:
        fig, ax = plt.subplots(figsize=(8, 0.3 * len(reasons) + 1))
        ax.barh([r for r, _ in reasons][::-1], [v["docs"] for _, v in reasons][::-1], color="#c44e52")
        ax.set_xlabel("documents dropped")
        sections.append(("Drop reasons", _figure_html(fig)))

    columns = score_columns(pd.concat([curated, rejected], ignore_index=True))
    if columns:
        cols = 4
        rows_n = (len(columns) + cols - 1) // cols
        fig, axes = plt.subplots(rows_n, cols, figsize=(4 * cols, 2.6 * rows_n), squeeze=False)
        for ax, column in zip(axes.flat, columns):
            for frame, label, color in ((curated, "kept", "#55a868"), (rejected, "rejected", "#c44e52")):
                if column in frame and frame[column].notna().any():
                    ax.hist(frame[column].dropna(), bins=40, alpha=0.6, label=label, color=color)
            ax.set_title(column, fontsize=9)
        for ax in list(axes.flat)[len(columns):]:
            ax.axis("off")
        axes.flat[0].legend(fontsize=8)
        fig.tight_layout()
        sections.append(("Score histograms (kept vs rejected)", _figure_html(fig)))

    both = pd.concat([curated, rejected], ignore_index=True)
    if "perplexity" in both.columns and both["perplexity"].notna().any():
        from curation.lm.report import report_sections, sample_by_bucket
        sections.extend((title, _figure_html(fig)) for title, fig in report_sections(both))
        sections.append(("Sample documents per perplexity bucket",
                         sample_by_bucket(both).to_html(index=False, escape=True)))

    if "dup_cluster_size" in both.columns and (both["dup_cluster_size"] > 1).any():
        from curation.dedup.phase import example_clusters
        rows = []
        for cluster in example_clusters(both, both):
            cells = "".join(f"<td><b>{'kept' if i == 0 else 'removed'}</b> {html.escape(doc_id)}<br>"
                            f"{html.escape(text)}</td>" for i, (doc_id, text) in enumerate(cluster[:4]))
            rows.append(f"<tr>{cells}</tr>")
        sections.append(("Example duplicate clusters (kept document first)",
                         f"<table border=1 cellpadding=4>{''.join(rows)}</table>"))

    if len(rejected):
        samples = rejected.groupby("reason").head(3)[["reason", "id", "text"]]
        sections.append(("Sample dropped documents", samples.to_html(index=False, escape=True)))
    return sections


def write_report(output: str, storage_cfg: StorageConfig) -> str:
    stats, curated, rejected = load_frames(output, storage_cfg)
    body = "\n".join(f"<h2>{html.escape(title)}</h2>\n{content}"
                     for title, content in report_figures(stats, curated, rejected))
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>curation report</title>"
            f"<style>body{{font-family:sans-serif;max-width:1100px;margin:auto}} td{{vertical-align:top;"
            f"font-size:12px}}</style></head><body><h1>Curation report: {html.escape(output)}</h1>"
            f"<p>{stats['input']['docs']:,} documents in, {stats['kept']['docs']:,} kept.</p>{body}</body></html>")
    fs, root = storage.open_fs(output, storage_cfg)
    storage.write_bytes_atomic(fs, storage.join(root, "report.html"), page.encode())
    return storage.join(output, "report.html")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m curation inspect", description=__doc__)
    parser.add_argument("output", help="a run's output directory (local or s3://)")
    parser.add_argument("--samples", type=int, default=2, help="sample documents per drop reason")
    parser.add_argument("--endpoint-url", help="S3 endpoint (default: $AWS_ENDPOINT_URL)")
    args = parser.parse_args(argv)
    storage_cfg = StorageConfig(endpoint_url=args.endpoint_url)
    summarize(args.output, storage_cfg, samples=args.samples)
    print(f"\nreport: {write_report(args.output, storage_cfg)}")
    return 0
