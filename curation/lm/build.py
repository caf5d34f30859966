"""`python -m curation build-lm`: train one language's KenLM model on a reference corpus.

Every input line goes through `curation.lm.text.lm_lines`, the normalization the
perplexity stage scores with. A deterministic share of lines (by a hash of the line, so
repeated lines never straddle the split) is held out; the rest is fed to `lmplz`, the
ARPA output compiled by `build_binary`, and the model's perplexity on the held-out lines
recorded in the sidecar `<lang>.json` next to `<lang>.binary`.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import kenlm
from tqdm import tqdm

from curation.lm.scoring import lines_log10_prob, perplexity, sidecar_path
from curation.lm.text import NORMALIZATION_VERSION, lm_lines, token_count

DEFAULT_KENLM_BIN = Path.home() / ".cache" / "rawtext" / "kenlm" / "bin"
# WikiText escapes intra-word hyphens and number separators as ` @-@ `, ` @,@ `, ` @.@ `.
_WIKITEXT_ESCAPE = re.compile(r" @(.)@ ")


def kenlm_bin() -> Path:
    return Path(os.environ.get("KENLM_BIN", DEFAULT_KENLM_BIN))


def _tool(name: str, bin_dir: Path) -> str:
    path = bin_dir / name
    if not os.access(path, os.X_OK):
        raise FileNotFoundError(f"KenLM's {name} not found in {bin_dir}: run `make setup` or "
                                f"`bash scripts/build_kenlm.sh {bin_dir}` (or set KENLM_BIN)")
    return str(path)


def expand_inputs(patterns: list[str]) -> list[Path]:
    """Files, directories (every file inside, recursively) and globs -> sorted files."""
    files: set[Path] = set()
    for pattern in patterns:
        matches = glob.glob(pattern, recursive=True) or [pattern]
        for match in map(Path, matches):
            if match.is_dir():
                files.update(p for p in match.rglob("*") if p.is_file())
            elif match.is_file():
                files.add(match)
            else:
                raise FileNotFoundError(f"no input file matches {pattern!r}")
    return sorted(files)


def corpus_lines(files: list[Path]) -> Iterator[str]:
    """Raw lines of the reference files, with a progress bar over their bytes."""
    with tqdm(total=sum(f.stat().st_size for f in files), unit="B", unit_scale=True,
              desc="reading corpus") as progress:
        for path in files:
            with path.open(encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    progress.update(len(line.encode()))
                    yield _WIKITEXT_ESCAPE.sub(r"\1", line)


def is_heldout(line: str, heldout_percent: float) -> bool:
    """Deterministic split: a line is held out when its hash falls in the first
    `heldout_percent` of the hash range."""
    digest = hashlib.blake2b(line.strip().encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 10_000 < heldout_percent * 100


def write_training_text(files: list[Path], train_path: Path,
                        heldout_percent: float) -> tuple[dict, list[str]]:
    """Normalize the corpus into `train_path` (one sentence per line, as lmplz reads it);
    returns the training statistics and the held-out normalized lines."""
    heldout: list[str] = []
    stats = {"lines": 0, "tokens": 0, "vocab": 0}
    vocab: set[str] = set()
    with train_path.open("w", encoding="utf-8") as train:
        for raw in corpus_lines(files):
            lines = lm_lines(raw)
            if is_heldout(raw, heldout_percent):
                heldout.extend(lines)
                continue
            for line in lines:
                train.write(line + "\n")
                vocab.update(line.split(" "))
            stats["lines"] += len(lines)
            stats["tokens"] += token_count(lines)
    stats["vocab"] = len(vocab)
    return stats, heldout


def build(lang: str, inputs: list[str], out_dir: Path, order: int = 5,
          prune: tuple[int, ...] = (0, 0, 1), heldout_percent: float = 5.0,
          memory: str = "25%", bin_dir: Path | None = None) -> dict:
    """Train `<out_dir>/<lang>.binary`; returns (and writes) the sidecar metadata."""
    if len(prune) > order or list(prune) != sorted(prune) or prune[0] != 0:
        raise ValueError(f"--prune {prune}: at most {order} non-decreasing thresholds "
                         "(one per order), the first 0 (lmplz cannot prune unigrams)")
    bin_dir = bin_dir or kenlm_bin()
    lmplz, build_binary = _tool("lmplz", bin_dir), _tool("build_binary", bin_dir)
    files = expand_inputs(inputs)
    started = time.time()
    out_dir.mkdir(parents=True, exist_ok=True)
    partial = out_dir / f".{lang}.binary.partial"
    try:
        with tempfile.TemporaryDirectory(prefix=f"build-lm-{lang}-") as work:
            train_path = Path(work) / "train.txt"
            train, heldout = write_training_text(files, train_path, heldout_percent)
            if not train["lines"]:
                raise ValueError(f"no text in {inputs}: nothing to train on")
            arpa = Path(work) / f"{lang}.arpa"
            print(f"lmplz: order {order}, prune {' '.join(map(str, prune))}, "
                  f"{train['tokens']:,} tokens", flush=True)
            _run([lmplz, "-o", str(order), "--prune", *map(str, prune), "-S", memory, "-T", work,
                  "--discount_fallback", "--text", str(train_path), "--arpa", str(arpa)])
            _run([build_binary, "-S", memory, str(arpa), str(partial)])
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    heldout_tokens = token_count(heldout)
    model = kenlm.Model(str(partial))
    oov = sum(word not in model for line in heldout for word in line.split(" "))
    sidecar = {
        "language": lang,
        "order": order,
        "prune": list(prune),
        "normalization_version": NORMALIZATION_VERSION,
        "inputs": [str(f) for f in files],
        "heldout_rule": f"blake2b(line) % 10000 < {heldout_percent * 100:g}",
        "train": train,
        "heldout": {
            "lines": len(heldout),
            "tokens": heldout_tokens,
            "perplexity": perplexity(lines_log10_prob(model, heldout), heldout_tokens),
            "oov_rate": oov / max(heldout_tokens - len(heldout), 1),
        },
        "build_seconds": round(time.time() - started, 1),
        "binary_bytes": partial.stat().st_size,
    }
    binary = out_dir / f"{lang}.binary"
    # Sidecar first: a model is only ever loadable together with its normalization version.
    sidecar_path(binary).write_text(json.dumps(sidecar, indent=2))
    partial.replace(binary)
    return sidecar


def _run(command: list[str]) -> None:
    """Run a KenLM tool; on failure show its output (lmplz explains itself well)."""
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode:
        raise RuntimeError(f"{Path(command[0]).name} failed ({result.returncode}):\n"
                           f"{result.stderr[-4000:]}")


def _thresholds(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in re.split(r"[\s,]+", text.strip()))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give integers, e.g. '0 0 1'") from None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m curation build-lm", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", help="reference text files, directories or globs")
    parser.add_argument("--lang", required=True, help="ISO 639-1 code; names the output files")
    parser.add_argument("--out", type=Path, default=Path("models/kenlm"),
                        help="output directory (default: models/kenlm)")
    parser.add_argument("--order", type=int, default=5, help="n-gram order (default: 5)")
    parser.add_argument("--prune", type=_thresholds, default=(0, 0, 1),
                        help="lmplz count thresholds per order, the last repeated for higher "
                        "orders, e.g. '0 0 1' or 0,0,1 (default: 0,0,1: n-grams of order 3 "
                        "and up seen only once are pruned)")
    parser.add_argument("--heldout-percent", type=float, default=5.0,
                        help="share of lines held out to measure perplexity (default: 5)")
    parser.add_argument("--memory", default="25%",
                        help="lmplz/build_binary memory budget, e.g. 25%% or 2G (default: 25%%)")
    parser.add_argument("--kenlm-bin", type=Path, default=None,
                        help=f"directory of lmplz and build_binary (default: $KENLM_BIN, "
                        f"else {DEFAULT_KENLM_BIN})")
    args = parser.parse_args(argv)
    if not 0 < args.heldout_percent < 100:
        parser.error("--heldout-percent must be between 0 and 100")
    try:
        sidecar = build(args.lang, args.inputs, args.out, args.order, args.prune,
                        args.heldout_percent, args.memory, args.kenlm_bin)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        parser.exit(1, f"build-lm: {e}\n")
    held = sidecar["heldout"]
    evaluation = (f"held-out perplexity {held['perplexity']:.1f} ({held['tokens']:,} tokens, "
                  f"OOV {held['oov_rate']:.2%})" if held["lines"] else
                  "no held-out lines (corpus too small for --heldout-percent)")
    print(f"{args.out / args.lang}.binary: {sidecar['train']['tokens']:,} training tokens, "
          f"vocab {sidecar['train']['vocab']:,}, {evaluation}, {sidecar['build_seconds']} s")
    return 0
