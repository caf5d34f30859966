"""Loading a KenLM model built by `build-lm`, and the CCNet perplexity formula.

Perplexity of a document = 10 ** (-(sum of log10 p over its lines) / tokens), where each
line is scored as one sentence (with <s> and </s>) and `tokens` counts every predicted
token, the </s> of each line included. Held-out perplexity in `build-lm` and document
perplexity in the stage are the same formula over the same normalized lines.
"""

from __future__ import annotations

import json
from pathlib import Path

from curation.lm.text import NORMALIZATION_VERSION, lm_lines, token_count


def sidecar_path(model_path: str | Path) -> Path:
    """`en.binary` -> `en.json`, the metadata `build-lm` writes beside every model."""
    return Path(model_path).with_suffix(".json")


def load_model(model_path: str | Path):
    """A `kenlm.Model`, after checking that it was trained on text normalized like ours."""
    import kenlm

    path = Path(model_path)
    if not path.is_file():
        raise FileNotFoundError(f"no KenLM model at {path} (build one with "
                                "`python -m curation build-lm`)")
    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        raise FileNotFoundError(f"{sidecar} is missing: models must come from `build-lm`, "
                                "which records the text normalization they were trained on")
    version = json.loads(sidecar.read_text()).get("normalization_version")
    if version != NORMALIZATION_VERSION:
        raise ValueError(f"{path} was trained with text normalization v{version}, this code "
                         f"scores with v{NORMALIZATION_VERSION}: rebuild it with `build-lm`")
    return kenlm.Model(str(path))


def lines_log10_prob(model, lines: list[str]) -> float:
    """Sum of log10 probabilities of normalized lines, each a sentence with <s> ... </s>."""
    return sum(model.score(line, bos=True, eos=True) for line in lines)


def perplexity(log10_prob: float, tokens: int) -> float | None:
    """CCNet perplexity; None when there is nothing to score."""
    return 10.0 ** (-log10_prob / tokens) if tokens else None


def document_perplexity(model, text: str) -> float | None:
    lines = lm_lines(text)
    return perplexity(lines_log10_prob(model, lines), token_count(lines))
