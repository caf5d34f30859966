"""Perplexity filtering on real data: a small KenLM model built by `build-lm` from the
reference English corpus, scoring held-out reference text, C4 web documents and
multilingual sentences."""

from __future__ import annotations

import csv
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from curation import stats as run_stats
from curation.config import PerplexityConfig
from curation.lm import build as lm_build
from curation.lm.report import report_sections, sample_by_bucket
from curation.lm.scoring import load_model, sidecar_path
from curation.lm.text import lm_lines, normalize_line, token_count
from curation.pipeline import apply_stage
from curation.stages.perplexity import UNSCORED, PerplexityStage

HELDOUT_PERCENT = 5.0


@pytest.fixture(scope="session")
def kenlm_tools() -> Path:
    bin_dir = lm_build.kenlm_bin()
    if not (bin_dir / "lmplz").exists() or not (bin_dir / "build_binary").exists():
        pytest.skip(f"KenLM lmplz/build_binary not built in {bin_dir}: run "
                    f"`bash scripts/build_kenlm.sh {bin_dir}` (or set KENLM_BIN)")
    return bin_dir


@pytest.fixture(scope="session")
def reference_files(shared_data) -> list[Path]:
    return sorted((shared_data / "reference_en").glob("*.txt"))


@pytest.fixture(scope="session")
def english_model(kenlm_tools, reference_files, tmp_path_factory) -> Path:
    """An order-3 model on the whole reference corpus (a few seconds)."""
    out = tmp_path_factory.mktemp("kenlm")
    lm_build.build("en", [str(f) for f in reference_files], out, order=3, prune=(0, 0, 1),
                   heldout_percent=HELDOUT_PERCENT, bin_dir=kenlm_tools)
    return out / "en.binary"


@pytest.fixture(scope="session")
def c4_docs(shared_data) -> list[str]:
    with (shared_data / "webcrawl" / "c4_en_first1000docs.jsonl").open() as handle:
        return [json.loads(line)["text"] for line in handle]


def _stage(model: Path, **settings) -> PerplexityStage:
    stage = PerplexityStage(PerplexityConfig(enabled=True, models={"en": str(model)}, **settings))
    stage.setup()
    return stage


def _table(texts: list[str], langs: list[str]) -> pa.Table:
    return pa.table({
        "id": [str(i) for i in range(len(texts))],
        "source": ["test"] * len(texts),
        "text": texts,
        "lang": langs,
        "reason": pa.nulls(len(texts), pa.string()),
    })


def _perplexities(stage: PerplexityStage, texts: list[str]) -> np.ndarray:
    return stage.score(_table(texts, ["en"] * len(texts))).column("perplexity").to_numpy()


def test_heldout_reference_scores_lower_than_web_documents(english_model, reference_files, c4_docs):
    heldout = [raw for raw in lm_build.corpus_lines(reference_files)
               if lm_lines(raw) and lm_build.is_heldout(raw, HELDOUT_PERCENT)]
    heldout_docs = ["".join(heldout[i:i + 10]) for i in range(0, len(heldout), 10)]
    assert len(heldout_docs) > 100
    stage = _stage(english_model)
    reference = _perplexities(stage, heldout_docs)
    web = _perplexities(stage, c4_docs)
    assert reference.mean() < web.mean()
    assert np.median(reference) < np.median(web)
    sidecar = json.loads(sidecar_path(english_model).read_text())
    assert sidecar["heldout"]["lines"] == sum(len(lm_lines(raw)) for raw in heldout)
    assert 50 < sidecar["heldout"]["perplexity"] < np.median(web)


def test_word_shuffled_documents_score_higher(english_model, c4_docs):
    rng = random.Random(0)

    def shuffle_words(text: str) -> str:
        words = text.split()
        rng.shuffle(words)
        return " ".join(words)

    docs = [d for d in c4_docs if len(d.split()) >= 20]
    stage = _stage(english_model)
    original = _perplexities(stage, docs)
    shuffled = _perplexities(stage, [shuffle_words(d) for d in docs])
    assert (shuffled > original).mean() >= 0.95


def test_fitted_buckets_have_configured_proportions(english_model, c4_docs):
    stage = _stage(english_model, percentiles=(20, 70), keep_buckets=["head", "middle"])
    table = _table(c4_docs, ["en"] * len(c4_docs))
    patch = stage.fit(table)
    low, high = patch["cutoffs"]["en"]
    assert 0 < low < high
    scored = stage.score(table)
    shares = pd.Series(scored.column("ppl_bucket").to_pylist()).value_counts(normalize=True)
    assert shares["head"] == pytest.approx(0.20, abs=0.01)
    assert shares["middle"] == pytest.approx(0.50, abs=0.01)
    assert shares["tail"] == pytest.approx(0.30, abs=0.01)
    reasons = stage.select(scored)
    is_tail = pc.equal(scored.column("ppl_bucket"), "tail")
    assert reasons.to_pylist() == ["perplexity" if t else None for t in is_tail.to_pylist()]
    # Cut-offs given in the config are used as they are, and nothing is left to fit.
    given = _stage(english_model, cutoffs={"en": (low, high)})
    assert given.fit(table) == {}
    assert given.score(table).column("ppl_bucket").equals(scored.column("ppl_bucket"))


def test_unscored_languages_pass_through_and_are_counted(english_model, c4_docs, shared_data):
    with (shared_data / "multilingual" / "ud_sentences_dev.tsv").open() as handle:
        rows = [r for r in csv.DictReader(handle, delimiter="\t") if r["lang"] in ("de", "fr", "zh")]
    foreign = rows[::10]
    texts = c4_docs[:200] + [r["text"] for r in foreign]
    langs = ["en"] * 200 + [r["lang"] for r in foreign]
    stage = _stage(english_model, cutoffs={"en": (1.0, 2.0)}, keep_buckets=["head"],
                   max_perplexity=1.0)
    stats = run_stats.new_stats()
    result = apply_stage(stage, _table(texts, langs), stats)
    unscored = pc.equal(result.column("ppl_bucket"), UNSCORED)
    assert pc.sum(unscored).as_py() == len(foreign)
    assert result.filter(unscored).column("perplexity").null_count == len(foreign)
    assert result.filter(unscored).column("reason").null_count == len(foreign)
    # Every English document is above these cut-offs: all dropped, and only they are.
    assert stats["stages"]["perplexity"]["dropped"]["docs"] == 200
    assert stats["stages"]["perplexity"]["out"]["docs"] == len(foreign)


def test_build_and_score_share_one_normalization(kenlm_tools, tmp_path):
    corpus = tmp_path / "tiny.txt"
    raw_lines = ["The Cat sat “here”.", "THE DOG sat 42 times!", "Café au lait—twice."] * 30
    corpus.write_text("\n".join(raw_lines) + "\n")
    assert lm_build.main(["--lang", "xx", "--out", str(tmp_path / "out"), "--order", "2",
                          "--prune", "0 0", "--heldout-percent", "0.01", str(corpus)]) == 0
    sidecar = json.loads((tmp_path / "out" / "xx.json").read_text())
    assert (sidecar["order"], sidecar["prune"], sidecar["heldout"]["lines"]) == (2, [0, 0], 0)
    normalized = [normalize_line(line) for line in raw_lines]
    lm_build.write_training_text([corpus], tmp_path / "train.txt", heldout_percent=0.01)
    assert (tmp_path / "train.txt").read_text().splitlines() == normalized
    assert normalized[:3] == ['the cat sat " here " .', "the dog sat 00 times !",
                              "café au lait - twice ."]
    assert sidecar["train"]["lines"] == 90
    assert sidecar["train"]["tokens"] == token_count(normalized) == 30 * (8 + 7 + 7)
    assert sidecar["train"]["vocab"] == len({w for line in normalized for w in line.split()})
    model = load_model(tmp_path / "out" / "xx.binary")
    assert "00" in model and "café" in model and "42" not in model and "The" not in model
    # The stage normalizes raw text exactly as training did: same perplexity as scoring
    # the normalized line directly with KenLM.
    stage = PerplexityStage(PerplexityConfig(enabled=True, models={"xx": str(tmp_path / "out" / "xx.binary")}))
    stage.setup()
    scored = stage.score(_table(["THE DOG sat 17 times!"], ["xx"]))
    direct = 10 ** (-model.score("the dog sat 00 times !") / 7)
    assert scored.column("perplexity")[0].as_py() == pytest.approx(direct, rel=1e-5)


def test_models_with_another_normalization_are_refused(english_model, tmp_path):
    copy = tmp_path / "en.binary"
    shutil.copy(english_model, copy)
    sidecar = json.loads(sidecar_path(english_model).read_text())
    sidecar_path(copy).write_text(json.dumps({**sidecar, "normalization_version": 0}))
    with pytest.raises(ValueError, match="normalization v0"):
        load_model(copy)


def test_build_lm_explains_missing_tools(tmp_path, reference_files, capsys):
    with pytest.raises(SystemExit) as exit_info:
        lm_build.main(["--lang", "en", "--out", str(tmp_path), "--kenlm-bin", str(tmp_path),
                       str(reference_files[0])])
    assert exit_info.value.code == 1
    assert "scripts/build_kenlm.sh" in capsys.readouterr().err


def test_report_sections_and_samples(english_model, c4_docs, shared_data):
    stage = _stage(english_model)
    table = _table(c4_docs[:300] + ["Guten Tag, wie geht es Ihnen?"], ["en"] * 300 + ["de"])
    stage.fit(table)
    docs = stage.score(table).to_pandas()
    sections = report_sections(docs)
    assert [title for title, _ in sections] == ["Perplexity, en: 300 documents"]
    axes = sections[0][1].axes[0]
    assert axes.get_xscale() == "log"
    boundaries = sorted(line.get_xdata()[0] for line in axes.get_lines())
    assert boundaries == pytest.approx(stage.config.cutoffs["en"], rel=0.05)
    samples = sample_by_bucket(docs, n=2)
    assert samples.groupby(["lang", "ppl_bucket"]).size().to_dict() == {
        ("de", UNSCORED): 1, ("en", "head"): 2, ("en", "middle"): 2, ("en", "tail"): 2}
