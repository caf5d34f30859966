"""The perplexity part of the `inspect` report: histograms and sample documents per bucket.

Both functions take the curated documents as a DataFrame with at least `lang`,
`perplexity` and `ppl_bucket` (plus `id` and `text` for the samples).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from curation.stages.perplexity import BUCKETS

_COLORS = {"head": "tab:green", "middle": "tab:orange", "tail": "tab:red"}


def bucket_boundaries(docs: pd.DataFrame) -> list[float]:
    """The cut-offs as the data shows them: the upper end of `head` and of `middle`."""
    ends = docs.groupby("ppl_bucket")["perplexity"].max()
    return [float(ends[b]) for b in BUCKETS[:-1] if b in ends.index]


def report_sections(docs: pd.DataFrame) -> list[tuple[str, Figure]]:
    """One (title, figure) per scored language: perplexity histogram on a log axis, bars
    coloured by bucket, dashed lines at the bucket boundaries."""
    sections = []
    scored = docs[docs["perplexity"].notna()]
    for lang, group in sorted(scored.groupby("lang"), key=lambda item: -len(item[1])):
        values = group["perplexity"].to_numpy(dtype=float)
        bins = np.logspace(np.log10(values.min()), np.log10(values.max()) + 1e-9, 40)
        figure = Figure(figsize=(7, 3.2), layout="constrained")
        axes = figure.add_subplot()
        for bucket in BUCKETS:
            in_bucket = group.loc[group["ppl_bucket"] == bucket, "perplexity"]
            if len(in_bucket):
                axes.hist(in_bucket, bins=bins, color=_COLORS[bucket],
                          label=f"{bucket} ({len(in_bucket):,})")
        unbucketed = group["ppl_bucket"].isna().sum()
        if unbucketed:
            axes.hist(group.loc[group["ppl_bucket"].isna(), "perplexity"], bins=bins,
                      color="tab:gray", label=f"no cut-offs ({unbucketed:,})")
        for boundary in bucket_boundaries(group):
            axes.axvline(boundary, color="black", linestyle="--", linewidth=1)
        axes.set_xscale("log")
        axes.set_xlabel("perplexity (KenLM, log scale)")
        axes.set_ylabel("documents")
        axes.legend(fontsize="small")
        title = f"Perplexity, {lang}: {len(group):,} documents"
        axes.set_title(title, fontsize="medium")
        sections.append((title, figure))
    return sections


def sample_by_bucket(docs: pd.DataFrame, n: int = 3) -> pd.DataFrame:
    """Up to `n` documents per (language, bucket), chosen reproducibly, lowest perplexity
    first within each group; `unscored` documents included."""
    columns = [c for c in ("lang", "ppl_bucket", "perplexity", "id", "text") if c in docs]
    groups = docs.groupby(["lang", "ppl_bucket"], dropna=False, sort=True)
    sample = groups.sample(frac=1.0, random_state=0).groupby(
        ["lang", "ppl_bucket"], dropna=False, sort=True).head(n)
    return sample.sort_values(["lang", "ppl_bucket", "perplexity"])[columns].reset_index(drop=True)
