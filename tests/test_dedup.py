"""Dedup: datasketch identity, LSH parameters, short-document rule, clustering and the
Ray Data phase, on real documents from ../shared/data."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from datasketch import LeanMinHash, MinHash, MinHashLSH
from datasketch.lsh import _optimal_param

from curation.config import DedupConfig
from curation.dedup import deduplicate, example_clusters
from curation.dedup.components import connected_components
from curation.dedup.exact import exact_keys
from curation.dedup.lsh import optimal_params
from curation.dedup.minhash import EMPTY, signatures, to_lean_minhash
from curation.dedup.shingles import (
    jaccard,
    shingle_hash,
    shingle_hashes,
    shingle_sets,
    shingle_texts,
    words,
)


@pytest.fixture(scope="module")
def c4(shared_data) -> list[str]:
    with open(shared_data / "webcrawl" / "c4_en_first1000docs.jsonl") as f:
        return [json.loads(line)["text"] for _, line in zip(range(60), f)]


@pytest.fixture(scope="module")
def multilingual(shared_data) -> list[str]:
    udhr = shared_data / "multilingual" / "udhr"
    return [(udhr / name).read_text(errors="replace")[:3000] for name in ("rus.txt", "hin.txt", "ara.txt", "vie.txt")
            if (udhr / name).exists()]


def _datasketch(text: str, num_perm: int, seed: int) -> MinHash:
    m = MinHash(num_perm=num_perm, seed=seed, hashfunc=shingle_hash)
    m.update_batch(shingle_texts(text, 5))
    return m


@pytest.mark.parametrize("num_perm,seed", [(128, 1), (64, 42)])
def test_signatures_bit_identical_to_datasketch(c4, multilingual, num_perm, seed):
    texts = c4 + multilingual + ["", "two words", "Ünïcode «quotes» — and emoji 😀 here, ok?"]
    hashes, offsets, _ = shingle_hashes(pa.array(texts), 5)
    ours = signatures(hashes, offsets, num_perm, seed)
    for text, signature in zip(texts, ours):
        expected = _datasketch(text, num_perm, seed)
        np.testing.assert_array_equal(signature, expected.hashvalues)
        assert to_lean_minhash(signature, seed) == LeanMinHash(expected)


def test_datasketch_lsh_accepts_our_signatures(c4):
    edited = c4[0].replace("BBQ", "barbecue", 1)
    hashes, offsets, _ = shingle_hashes(pa.array(c4 + [edited]), 5)
    sigs = signatures(hashes, offsets, 128, 1)
    lsh = MinHashLSH(threshold=0.8, num_perm=128)
    for i, sig in enumerate(sigs[:-1]):
        lsh.insert(f"c4-{i}", to_lean_minhash(sig, 1))
    assert lsh.query(to_lean_minhash(sigs[-1], 1)) == ["c4-0"]


@pytest.mark.parametrize("threshold,num_perm,fp_weight", [(0.8, 128, 0.5), (0.5, 128, 0.5), (0.9, 256, 0.3), (0.7, 64, 0.8)])
def test_optimal_params_match_datasketch(threshold, num_perm, fp_weight):
    assert optimal_params(threshold, num_perm, fp_weight) == _optimal_param(threshold, num_perm, fp_weight, 1 - fp_weight)


def test_short_and_empty_documents():
    assert words("Hello, WORLD!  naïve—café") == [b"hello", b"world", "naïve".encode(), "café".encode()]
    assert shingle_texts("Only three words", 5) == [b"only three words"]
    assert shingle_texts(" ... ", 5) == []
    hashes, offsets, n_words = shingle_hashes(pa.array(["", None, "Only three words", "only THREE words!"]), 5)
    assert list(n_words) == [0, 0, 3, 3]
    sigs = signatures(hashes, offsets, 16, 1)
    assert (sigs[:2] == EMPTY).all()
    np.testing.assert_array_equal(sigs[2], sigs[3])


def test_exact_keys_ignore_case_and_spacing_only():
    keys = exact_keys(pa.array(["A  b\nc", "a b c", "a b c.", None, ""])).to_pylist()
    assert keys[0] == keys[1] != keys[2]
    assert keys[3] == keys[4]


def test_true_jaccard_of_shingle_sets(c4):
    base = c4[1].split()
    variants = [" ".join(base), " ".join(base[: len(base) // 2]), " ".join(base + base)]
    hashes, offsets, _ = shingle_hashes(pa.array(variants), 5)
    sets = shingle_sets(hashes, offsets)
    reference = [set(shingle_texts(v, 5)) for v in variants]
    expected = [len(reference[0] & r) / len(reference[0] | r) for r in reference]
    np.testing.assert_allclose(jaccard(pa.concat_arrays([sets[:1]] * 3), sets), expected)


def test_connected_components_hand_checked():
    nodes, labels = connected_components(np.array([5, 7, 9, 100, 11]), np.array([7, 8, 10, 5, 11]))
    groups = {}
    for node, label in zip(nodes, labels):
        groups.setdefault(label, set()).add(int(node))
    assert sorted(map(sorted, groups.values())) == [[5, 7, 8, 100], [9, 10], [11]]


def test_phase_on_ray_data(ray_local, c4):
    import ray

    story, other = c4[2], c4[3]
    near = story.replace(".", ";", 1) + " Thanks for reading."
    docs = [  # (source, text); sources are ordered ["web", "books"], "books" has priority
        ("web", story), ("web", story.upper()), ("books", story),   # exact copies: books kept
        ("web", near),                                               # near copy of story
        ("web", other), ("web", other + " Read more."),              # near pair, web-only
        *(("web", t) for t in c4[10:40]),                            # unrelated documents
        ("web", ""), ("books", ""), ("web", "Hi"), ("web", "hi!"),   # empty and short
    ]
    table = pa.table({"id": [f"d{i}" for i in range(len(docs))], "source": [s for s, _ in docs],
                      "text": [t for _, t in docs], "path": ["in.jsonl"] * len(docs),
                      "record": pa.array(range(len(docs)), pa.int64())})
    marks, stats = deduplicate(ray.data.from_arrow(table), DedupConfig(priority=["books"]), ["web", "books"])
    m = marks.to_pandas().set_index("id")
    assert len(m) == len(docs) and m.index.is_unique
    kept = m[m.dup_kept]
    assert m.loc["d0", "dup_of"] == "d2" and m.loc["d0", "dup_reason"] == "exact_duplicate"
    assert m.loc["d1", "dup_reason"] == "exact_duplicate"
    assert m.loc["d3", "dup_of"] == "d2" and m.loc["d3", "dup_reason"] == "near_duplicate"
    assert m.loc["d2", "dup_cluster_size"] == 4 and m.loc["d2", "dup_cluster_id"] == "d2"
    assert m.loc["d5", "dup_of"] == "d4" and m.loc["d4", "dup_kept"]
    assert m.loc["d36", "dup_reason"] == "exact_duplicate" and m.loc["d36", "dup_of"] == "d37"
    assert m.loc["d39", "dup_reason"] == "near_duplicate"   # "hi!" ~ "Hi": one whole-doc shingle
    unrelated = m.loc[[f"d{i}" for i in range(6, 36)]]
    assert unrelated.dup_kept.all() and (unrelated.dup_cluster_size == 1).all()
    assert (unrelated.dup_cluster_id == unrelated.index).all() and unrelated.dup_of.isna().all()
    removed = m[~m.dup_kept]
    assert stats["docs_removed_exact"] == 3 and stats["docs_removed_near"] == 3 == len(removed) - 3
    assert stats["bytes_removed"] == sum(len(docs[int(i[1:])][1].encode()) for i in removed.index)
    assert stats["clusters"] == 4 and stats["cluster_size_histogram"] == {2: 3, 4: 1}
    assert (stats["bands"], stats["rows"]) == _optimal_param(0.8, 128, 0.1, 0.9) == (14, 9)
    assert len(kept) == len(docs) - 6
    clusters = example_clusters(table.to_pandas(), m.reset_index(), n=2)
    assert clusters[0][0][0] == "d2" and len(clusters[0]) == 4


def test_verification_drops_lsh_false_positives(ray_local, c4):
    import ray

    table = pa.table({"id": [f"c{i}" for i in range(40)], "source": ["web"] * 40, "text": c4[:40],
                      "path": ["in.jsonl"] * 40, "record": pa.array(range(40), pa.int64())})
    loose = DedupConfig(ngram=1, bands=32, rows=1, exact=False)  # one shared word min-hash: a candidate
    _, stats = deduplicate(ray.data.from_arrow(table), loose, ["web"])
    assert stats["candidate_pairs"] > 0
    assert stats["verified_pairs"] == stats["docs_removed_near"] == 0
