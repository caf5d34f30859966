"""Mixture planning on the real sample's sizes (characters stand in for tokens here; the
token-level shares are checked end to end in test_shards.py)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import pytest

from curation.config import ConfigError, MixtureConfig, SourceConfig
from curation.hashing import hash_strings
from curation.mixture import draws, plan, token_histogram
from tests.curated_sample import sample_documents


@pytest.fixture(scope="module")
def docs(shared_data) -> list[dict]:
    return sample_documents(shared_data)


@pytest.fixture(scope="module")
def available(docs) -> dict[tuple[str, str], int]:
    sizes: Counter = Counter()
    for d in docs:
        sizes[d["source"], d["lang"]] += len(d["text"])
    return dict(sizes)


def sources(**options: dict) -> list[SourceConfig]:
    return [SourceConfig(name=name, paths=["-"], **options.get(name, {}))
            for name in ("tinystories", "c4", "ud")]


def per_source(cells: dict) -> dict[str, float]:
    out: Counter = Counter()
    for (source, _), n in cells.items():
        out[source] += n
    return dict(out)


def test_weights_share_out_the_available_tokens(available):
    mix = plan(available, sources(tinystories={"weight": 2}, c4={"weight": 1}, ud={"weight": 1}),
               MixtureConfig())
    targets, total = per_source(mix.targets), sum(available.values())
    assert targets == pytest.approx({"tinystories": total / 2, "c4": total / 4, "ud": total / 4})
    for cell, n in available.items():
        assert mix.rates[cell] == pytest.approx(mix.targets[cell] / n)


def test_temperature_flattens_languages_within_a_source(available):
    mix = plan(available, sources(), MixtureConfig(temperature=3.0))
    de, fr = available["ud", "de"], available["ud", "fr"]
    assert mix.targets["ud", "de"] / mix.targets["ud", "fr"] == pytest.approx((de / fr) ** (1 / 3))
    assert mix.rates["ud", "de"] > 1 > mix.rates["ud", "fr"]  # the rarer language is up-sampled
    assert per_source(mix.targets)["ud"] == pytest.approx(per_source(available)["ud"])


def test_max_epochs_caps_up_sampling_and_the_report_shows_the_shortfall(available):
    mix = plan(available, sources(ud={"weight": 10, "max_epochs": 1.5}, c4={"weight": 1}),
               MixtureConfig())
    assert all(mix.rates[c] == 1.5 for c in available if c[0] == "ud")
    achieved = {c: round(n * mix.rates[c]) for c, n in available.items()}
    ud = mix.report(achieved)["sources"]["ud"]
    assert ud["epochs"] == pytest.approx(1.5, abs=1e-3)
    assert ud["achieved_share"] < ud["target_share"]


def test_token_budgets_take_precedence_and_weights_share_the_rest(available):
    total = sum(available.values())
    mix = plan(available, sources(c4={"tokens": 1000}, tinystories={"weight": 1}, ud={"weight": 3}),
               MixtureConfig(total_tokens=total))
    targets = per_source(mix.targets)
    assert targets["c4"] == pytest.approx(1000)
    assert targets["ud"] == pytest.approx(3 * targets["tinystories"])
    assert sum(targets.values()) == pytest.approx(total)
    with pytest.raises(ConfigError, match="leaves no tokens for the weighted sources"):
        plan(available, sources(c4={"tokens": total}, ud={"weight": 1}), MixtureConfig(total_tokens=total))


def test_unknown_source_and_disabled_mixture(available):
    with pytest.raises(ConfigError, match=r"sources not in the config: \['ud'\]"):
        plan(available, sources()[:2], MixtureConfig())
    assert set(plan(available, [], MixtureConfig(enabled=False)).rates.values()) == {1.0}


def test_copies_follow_the_rate_by_document_hash(docs):
    hashes = hash_strings(pa.array([d["id"] for d in docs]))
    cells = {("c4", "en"): 10}
    mix = plan(cells, sources(c4={"tokens": 23, "max_epochs": 5}), MixtureConfig())  # rate 2.3 for every document
    names = np.array(["c4"] * len(docs), object)
    langs = np.array(["en"] * len(docs), object)
    copies = mix.copies(names, langs, hashes, seed=0)
    assert set(copies) == {2, 3}
    assert copies.mean() == pytest.approx(2.3, abs=3 / np.sqrt(len(docs)))
    assert (mix.copies(names, langs, hashes, seed=0) == copies).all()
    assert (mix.copies(names, langs, hashes, seed=1) != copies).any()


def test_histogram_thresholds_hit_token_targets_to_within_one_document(docs):
    """C4 pages vary a lot in length: taking 30% of the documents is not 30% of the tokens."""
    c4 = [d for d in docs if d["source"] == "c4"]
    sizes = np.array([len(d["text"]) for d in c4], np.float64)
    hashes = hash_strings(pa.array([d["id"] for d in c4]))
    cell = ("c4", "en")
    histogram = token_histogram(draws(hashes, 0), sizes)
    names, langs = np.array(["c4"] * len(c4), object), np.array(["en"] * len(c4), object)
    for share in (0.3, 1.7):
        target = share * sizes.sum()
        mix = plan({cell: int(sizes.sum())}, sources(c4={"tokens": int(target)}), MixtureConfig(),
                   {cell: histogram})
        achieved = (sizes * mix.copies(names, langs, hashes, seed=0)).sum()
        assert abs(achieved - target) <= sizes.max(), share
