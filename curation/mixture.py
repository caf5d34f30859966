"""Mixture weighting: how many copies of each document go into the training tokens.

Targets are set per source (a token budget, or a weight sharing out a total) and, within a
source, per language by temperature sampling (p_lang ∝ n_lang^(1/T)). Each (source,
language) cell then gets a rate = target / available tokens, capped at the source's
`max_epochs`. A document is repeated floor(rate) times, plus once more when its hash
draw falls below the cell's threshold: up-sampling by repetition and down-sampling by
document hash are the same rule, deterministic, and need no global state.

The threshold is not simply the fractional part of the rate: documents differ in length,
so "30% of the documents" can be far from 30% of the tokens in a cell of a few hundred
long web pages. A histogram of tokens by hash draw (summed over batches, a few KB per
cell) gives the draw below which documents hold exactly the wanted share of tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from curation.config import ConfigError, MixtureConfig, SourceConfig
from curation.hashing import mix, unit

Cell = tuple[str, str]  # (source, lang)
HISTOGRAM_BINS = 1024


def draws(doc_hashes: np.ndarray, seed: int) -> np.ndarray:
    """Each document's uniform draw in [0, 1) for the extra copy."""
    return unit(mix(doc_hashes, seed))


def token_histogram(doc_draws: np.ndarray, n_tokens: np.ndarray) -> np.ndarray:
    """Tokens per draw bin."""
    bins = np.minimum((doc_draws * HISTOGRAM_BINS).astype(np.int64), HISTOGRAM_BINS - 1)
    return np.bincount(bins, weights=n_tokens, minlength=HISTOGRAM_BINS)


@dataclass(frozen=True)
class MixturePlan:
    available: dict[Cell, int]  # tokens per cell before mixing
    targets: dict[Cell, float]  # wanted tokens per cell
    rates: dict[Cell, float]  # copies per token of the cell
    thresholds: dict[Cell, float]  # a document gets its extra copy when its draw is below

    def copies(self, sources: np.ndarray, langs: np.ndarray, doc_hashes: np.ndarray,
               seed: int) -> np.ndarray:
        """Copies (0, 1, 2, ...) of each document."""
        cells = list(zip(sources, langs))
        whole = np.floor([self.rates.get(c, 1.0) for c in cells])
        extra = draws(doc_hashes, seed) < np.array([self.thresholds.get(c, 0.0) for c in cells])
        return (whole + extra).astype(np.int64)

    def report(self, achieved: dict[Cell, int]) -> dict:
        """Target vs achieved token shares per source and per language."""
        return {"sources": _shares(self.available, self.targets, achieved, axis=0),
                "languages": _shares(self.available, self.targets, achieved, axis=1)}


def plan(available: dict[Cell, int], sources: list[SourceConfig], cfg: MixtureConfig,
         histograms: dict[Cell, np.ndarray] | None = None) -> MixturePlan:
    """Targets and rates per cell. With `histograms` (`token_histogram` of each cell's
    documents), thresholds hit the token targets; without, they are the fractional rates."""
    if not cfg.enabled:
        return MixturePlan(available, {c: float(n) for c, n in available.items()},
                           {c: 1.0 for c in available}, {})
    by_name = {s.name: s for s in sources}
    unknown = sorted({s for s, _ in available} - set(by_name))
    if unknown:
        raise ConfigError(f"mixture: curated documents come from sources not in the config: {unknown}")
    per_source = {name: sum(n for (s, _), n in available.items() if s == name) for name in by_name}
    source_targets = _source_targets(per_source, sources, cfg.total_tokens)
    targets, rates = {}, {}
    for name, target in source_targets.items():
        cells = {c: n for c, n in available.items() if c[0] == name and n > 0}
        tempered = {c: n ** (1.0 / cfg.temperature) for c, n in cells.items()}
        for cell, n in cells.items():
            targets[cell] = target * tempered[cell] / sum(tempered.values())
            rates[cell] = min(targets[cell] / n, by_name[name].max_epochs)
    thresholds = {c: _threshold(r - np.floor(r), (histograms or {}).get(c)) for c, r in rates.items()}
    return MixturePlan(available, targets, rates, thresholds)


def _threshold(fraction: float, histogram: np.ndarray | None) -> float:
    """The draw below which the cell's documents hold `fraction` of its tokens."""
    if histogram is None or not histogram.sum():
        return fraction
    cumulative = np.concatenate([[0.0], np.cumsum(histogram)]) / histogram.sum()
    return float(np.interp(fraction, cumulative, np.linspace(0, 1, HISTOGRAM_BINS + 1)))


def _source_targets(per_source: dict[str, int], sources: list[SourceConfig],
                    total: int | None) -> dict[str, float]:
    """Token target per source: its `tokens`; else its `weight`'s share of what the total
    leaves; else (neither set) all its tokens, once."""
    fixed = {s.name: float(s.tokens) for s in sources if s.tokens is not None}
    natural = {s.name: float(per_source[s.name]) for s in sources
               if s.tokens is None and s.weight is None}
    weighted = {s.name: s.weight for s in sources if s.tokens is None and s.weight is not None}
    if not weighted:
        return fixed | natural
    budget = (total - sum(fixed.values()) - sum(natural.values()) if total is not None
              else float(sum(per_source[name] for name in weighted)))
    if budget <= 0:
        raise ConfigError(f"mixture.total_tokens={total} leaves no tokens for the weighted sources "
                          f"{sorted(weighted)} after the fixed and unweighted ones")
    share = sum(weighted.values())
    return fixed | natural | {name: budget * w / share for name, w in weighted.items()}


def _shares(available: dict[Cell, int], targets: dict[Cell, float], achieved: dict[Cell, int],
            axis: int) -> dict[str, dict]:
    def total(counts: dict[Cell, float], key: str) -> float:
        return sum(v for c, v in counts.items() if c[axis] == key)

    keys = sorted({c[axis] for c in available} | {c[axis] for c in targets})
    target_sum, achieved_sum = sum(targets.values()) or 1.0, sum(achieved.values()) or 1
    return {k: {"available_tokens": int(total(available, k)),
                "target_tokens": round(total(targets, k)),
                "target_share": round(total(targets, k) / target_sum, 6),
                "achieved_tokens": int(total(achieved, k)),
                "achieved_share": round(total(achieved, k) / achieved_sum, 6),
                "epochs": round(total(achieved, k) / max(total(available, k), 1), 4)}
            for k in keys}
