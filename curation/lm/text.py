"""The one text normalization and tokenization used to train KenLM models and to score.

A model only gives meaningful probabilities for text prepared exactly like its training
text, so `build-lm` and the perplexity stage both call `lm_lines` and nothing else. Any
change to what it returns must bump `NORMALIZATION_VERSION`: it is written in each model's
sidecar JSON and checked when the model is loaded for scoring.

What it does, per line (after CCNet's normalizer, with word tokens instead of
SentencePiece pieces):
1. Unicode NFKC (full-width forms, ligatures, `…` -> `...`), then lower case.
2. Typographic punctuation folded to ASCII: curly and angle quotes -> `"` / `'`,
   dashes -> `-`, and PTB-style ```` `` ```` / `''` quotes -> `"`.
3. Every digit (any script) -> `0`: numbers vary endlessly, their shape matters.
4. Control and format characters dropped. Accents are KEPT: stripping them would merge
   distinct words in most languages other than English.
5. Tokens: runs of word characters, or single punctuation characters, joined by one
   space. Blank lines are dropped.
"""

from __future__ import annotations

import re
import unicodedata

NORMALIZATION_VERSION = 1

_PUNCTUATION = str.maketrans({
    **dict.fromkeys("“”„‟«»〝〞＂", '"'),
    **dict.fromkeys("‘’‚‛‹›`´", "'"),
    **dict.fromkeys("‐‑‒–—―−", "-"),
})
_PTB_QUOTES = re.compile(r"``|''")
_DIGIT = re.compile(r"\d")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2064\ufeff]")
_TOKEN = re.compile(r"\w+|[^\w\s]")


def normalize_line(line: str) -> str:
    """One line of raw text -> space-separated normalized tokens ('' when nothing is left)."""
    line = unicodedata.normalize("NFKC", line).lower()
    line = _PTB_QUOTES.sub('"', line).translate(_PUNCTUATION)
    line = _CONTROL.sub("", _DIGIT.sub("0", line))
    return " ".join(_TOKEN.findall(line))


def lm_lines(text: str) -> list[str]:
    """A document -> its non-empty normalized lines, each scored as one KenLM sentence."""
    return [normalized for line in text.split("\n") if (normalized := normalize_line(line))]


def token_count(lines: list[str]) -> int:
    """Tokens KenLM predicts for these lines: their words plus one `</s>` per line."""
    return sum(line.count(" ") + 2 for line in lines)
