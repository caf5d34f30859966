"""Near-duplicate quality: an evaluation set built from real documents in ../shared/data.

Pairs (base, variant) come from controlled edits of real documents (typos, word
insertions / deletions / swaps, truncation, boilerplate headers and footers, paragraph
reordering, partial copies; one or two edits of random strength); hard negatives pair each
base with the most similar *other* document of its source (same topic / same style). Every
pair is labelled by its true word-5-gram Jaccard similarity (Python sets of
`shingle_texts`, independent of the hashing). The corpus goes through `deduplicate`
(Ray Data) and a pair is predicted duplicate when both documents end in one cluster.

Prints pair-level precision / recall / F1 at the threshold (with and without
verification), recall for pairs with Jaccard >= 0.85, and the LSH detection rate per
Jaccard bin against the theoretical S-curve 1 - (1 - s^r)^b.

    .venv/bin/python benchmarks/bench_dedup_quality.py [--per-source 400] [--threshold 0.8]
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import re
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import ray

from curation.config import DedupConfig
from curation.dedup import deduplicate
from curation.dedup.lsh import band_keys, detection_probability
from curation.dedup.minhash import signatures
from curation.dedup.phase import lsh_params
from curation.dedup.shingles import shingle_hashes, shingle_texts

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BOILERPLATE = ("Subscribe to our newsletter for the latest updates and exclusive offers. "  # noqa: SIM905 - a sentence reads better than its word list
               "Copyright all rights reserved. Privacy policy terms of use cookie settings contact us.").split()


def _chunks(words: list[str], size: int) -> list[str]:
    return [" ".join(words[i:i + size]) for i in range(0, len(words) - size + 1, size)]


def load_bases(per_source: int) -> dict[str, list[str]]:
    c4 = [json.loads(line)["text"] for line in (DATA / "webcrawl/c4_en_first1000docs.jsonl").open(errors="replace")]
    wiki = re.split(r"\n = [^=\n]+ = \n", (DATA / "reference_en/wikitext2_raw_test.txt").read_text(errors="replace"))
    stories, current = [], []
    for para in (DATA / "tinystories/tinystories_v1_train_head_cased.txt").read_text(errors="replace").split("\n\n"):
        current.append(para)
        if sum(len(p.split()) for p in current) >= 120:
            stories.append("\n".join(current))
            current = []
    union = _chunks((DATA / "reference_en/nltk_state_union_1945_2006.txt").read_text(errors="replace").split(), 300)
    sources = {"c4": c4, "wikitext": [" ".join(a.split()[:600]) for a in wiki], "tinystories": stories,
               "state_union": union}
    return {name: [d for d in docs if len(d.split()) >= 80][:per_source] for name, docs in sources.items()}


def edit(text: str, rng: random.Random) -> str:
    words = text.split()
    for kind in rng.sample(["typos", "insert", "delete", "swap", "truncate", "boilerplate", "reorder", "partial"],
                           rng.choice([1, 1, 2])):
        rate = rng.uniform(0.005, 0.08)
        n = len(words)
        if kind == "typos":
            for i in rng.sample(range(n), max(1, int(rate * n))):
                w = words[i]
                k = rng.randrange(len(w))
                words[i] = w[:k] + rng.choice("abcdefghijklmnopqrstuvwxyz") + w[k + 1:]
        elif kind == "insert":
            for _ in range(max(1, int(rate * n))):
                words.insert(rng.randrange(len(words) + 1), rng.choice(words))
        elif kind == "delete":
            for i in sorted(rng.sample(range(n), max(1, int(rate * n))), reverse=True):
                del words[i]
        elif kind == "swap":
            for _ in range(max(1, int(rate * n))):
                i = rng.randrange(n - 1)
                words[i], words[i + 1] = words[i + 1], words[i]
        elif kind == "truncate":
            words = words[:int(n * rng.uniform(0.6, 0.98))]
        elif kind == "boilerplate":
            words = BOILERPLATE[:rng.randrange(5, 20)] + words + BOILERPLATE[-rng.randrange(5, 20):]
        elif kind == "reorder":
            blocks = _chunks(words, max(20, n // rng.randrange(3, 8))) or [" ".join(words)]
            rng.shuffle(blocks)
            words = " ".join(blocks).split()
        else:  # partial copy
            keep = int(n * rng.uniform(0.5, 0.95))
            start = rng.randrange(n - keep + 1)
            words = words[start:start + keep]
    return " ".join(words)


def true_jaccard(a: str, b: str, ngram: int) -> float:
    sa, sb = set(shingle_texts(a, ngram)), set(shingle_texts(b, ngram))
    return len(sa & sb) / len(sa | sb) if sa | sb else 1.0


def hard_negatives(docs: list[str]) -> list[int]:
    """For each document, the most similar other one by word overlap (unigram MinHash)."""
    hashes, offsets, _ = shingle_hashes(pa.array(docs), 1)
    sigs = signatures(hashes, offsets, 64, 7)
    similarity = np.stack([(sigs == s).mean(axis=1) for s in sigs])
    np.fill_diagonal(similarity, -1)
    return list(similarity.argmax(axis=1))


def build(per_source: int, variants: int, ngram: int, seed: int):
    rng = random.Random(seed)
    texts, sources, pairs = [], [], []
    for source, docs in load_bases(per_source).items():
        first = len(texts)
        texts += docs
        sources += [source] * len(docs)
        for i, j in enumerate(hard_negatives(docs)):
            pairs.append((first + i, first + int(j), "hard_negative"))
        for i, doc in enumerate(docs):
            for _ in range(variants):
                texts.append(edit(doc, rng))
                sources.append(source)
                pairs.append((first + i, len(texts) - 1, "variant"))
    labels = np.array([true_jaccard(texts[a], texts[b], ngram) for a, b, _ in pairs])
    return texts, sources, pairs, labels


def run(texts, sources, cfg: DedupConfig) -> tuple[np.ndarray, dict]:
    table = pa.table({"id": [str(i) for i in range(len(texts))], "source": sources, "text": texts,
                      "path": ["eval"] * len(texts), "record": pa.array(range(len(texts)), pa.int64())})
    marks, stats = deduplicate(ray.data.from_arrow(table), cfg, sorted(set(sources)))
    m = marks.to_pandas()
    cluster = m.set_index("id").loc[[str(i) for i in range(len(texts))], "dup_cluster_id"].to_numpy()
    return cluster, stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-source", type=int, default=400)
    ap.add_argument("--variants", type=int, default=3)
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    base_cfg = DedupConfig(threshold=args.threshold, exact=False)
    texts, sources, pairs, labels = build(args.per_source, args.variants, base_cfg.ngram, args.seed)
    a = np.array([p[0] for p in pairs])
    b = np.array([p[1] for p in pairs])
    kinds = np.array([p[2] for p in pairs])
    print(f"eval set: {len(texts)} documents, {len(pairs)} pairs "
          f"({(kinds == 'variant').sum()} edited copies, {(kinds == 'hard_negative').sum()} hard negatives), "
          f"{(labels >= args.threshold).sum()} with true Jaccard >= {args.threshold}")

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             _temp_dir=tempfile.mkdtemp(prefix="bdq-", dir="/tmp"))
    positive = labels >= args.threshold
    print(f"\n{'verify':>6} | {'precision':>9} | {'recall':>6} | {'F1':>6} | {'recall J>=0.85':>14} | "
          f"{'TP':>5} | {'FP':>4} | {'FN':>4} | candidates")
    for verify in (True, False):
        cluster, stats = run(texts, sources, base_cfg.model_copy(update={"verify": verify}))
        predicted = cluster[a] == cluster[b]
        tp, fp, fn = (predicted & positive).sum(), (predicted & ~positive).sum(), (~predicted & positive).sum()
        precision, recall = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
        f1 = 2 * precision * recall / max(precision + recall, 1e-12)
        high = labels >= 0.85
        print(f"{verify!s:>6} | {precision:9.4f} | {recall:6.4f} | {f1:6.4f} | "
              f"{predicted[high].mean():14.4f} | {tp:5d} | {fp:4d} | {fn:4d} | {stats['candidate_pairs']}")

    bands, rows = lsh_params(base_cfg)
    hashes, offsets, _ = shingle_hashes(pa.array(texts), base_cfg.ngram)
    keys = band_keys(signatures(hashes, offsets, base_cfg.num_perm, base_cfg.seed), bands, rows)
    collide = (keys[a] == keys[b]).any(axis=1)
    print(f"\nLSH detection rate (share a band key, b={bands} r={rows}) vs the S-curve, per true Jaccard bin")
    print(f"{'Jaccard':>11} | {'pairs':>5} | {'measured':>8} | {'theory':>6}")
    edges = [0, 0.3, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0001]
    for lo, hi in itertools.pairwise(edges):
        inside = (labels >= lo) & (labels < hi)
        if inside.any():
            theory = detection_probability(labels[inside], bands, rows).mean()
            print(f"{lo:4.2f}-{min(hi, 1):4.2f} | {inside.sum():5d} | {collide[inside].mean():8.3f} | {theory:6.3f}")
    ray.shutdown()


if __name__ == "__main__":
    main()
