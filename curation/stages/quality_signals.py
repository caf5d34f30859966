"""Quality signals of one document, in the style of Gopher, C4 and FineWeb.

The text is split into words, lines and paragraphs once; every signal is computed from
those. Words are whitespace-separated tokens (as in Gopher). Repetition signals count
*repeats*: a line, paragraph or n-gram that already occurred earlier in the document.
`SIGNALS` is the single list of signal columns, in the order `document_signals` returns them.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from functools import cache
from importlib import resources
from itertools import compress, filterfalse

import pyarrow as pa

SIGNALS: dict[str, pa.DataType] = {
    "q_words": pa.int32(),
    "q_mean_word_len": pa.float32(),
    "q_longest_word": pa.int32(),
    "q_symbol_word_ratio": pa.float32(),
    "q_bullet_lines_ratio": pa.float32(),
    "q_ellipsis_lines_ratio": pa.float32(),
    "q_alpha_words_ratio": pa.float32(),
    "q_stop_words": pa.int32(),
    "q_lorem_ipsum": pa.int32(),
    "q_curly_brackets": pa.int32(),
    "q_boilerplate_lines_ratio": pa.float32(),
    "q_terminal_punct_lines_ratio": pa.float32(),
    "q_short_lines_ratio": pa.float32(),
    "q_dup_line_frac": pa.float32(),
    "q_dup_line_char_frac": pa.float32(),
    "q_dup_para_frac": pa.float32(),
    "q_dup_para_char_frac": pa.float32(),
    **{f"q_top_{n}gram_char_frac": pa.float32() for n in (2, 3, 4)},
    **{f"q_dup_{n}gram_char_frac": pa.float32() for n in range(5, 11)},
}

BULLETS = ("•", "‣", "◦", "▪", "▫", "●", "○", "■", "□", "►", "▶", "➢", "✓", "-", "*", "·", "–", "—")
ELLIPSES = ("...", "…")
TERMINAL_PUNCT = (".", "!", "?", "…", '"', "'", "”", "’", "»", "。", "！", "？")
SHORT_LINE_CHARS = 30
_LETTER = re.compile(r"[^\W\d_]")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
# C4's boilerplate line markers; plain "cookie" would also hit recipes and children's stories.
_BOILERPLATE = re.compile(
    r"javascript|privacy policy|terms of (?:use|service)|cookie policy|use(?:s| of)? cookies")


@cache
def stop_words(lang: str | None) -> frozenset[str] | None:
    """The stop words of `lang` in lower, Capitalized and UPPER case; None without a list."""
    table = resources.files("curation").joinpath("resources/stop_words.txt").read_text("utf-8")
    for line in table.splitlines():
        code, _, words = line.partition("\t")
        if code == lang and not line.startswith("#"):
            return frozenset(form for w in words.split() for form in (w, w.capitalize(), w.upper()))
    return None


def _ratio(count: float, total: float) -> float:
    return count / total if total else 0.0


def _repeats(items: list[str], total_chars: int) -> tuple[float, float]:
    """Fraction of items that repeat an earlier one, and fraction of characters in them."""
    counts = Counter(items)
    repeated_chars = sum(len(item) * (k - 1) for item, k in counts.items() if k > 1)
    return _ratio(len(items) - len(counts), len(items)), _ratio(repeated_chars, total_chars)


def _ngrams(words: list[str], n: int) -> Iterator[tuple[str, ...]]:
    return zip(*(words[i:] for i in range(n)))


def _top_ngram_char_frac(words: list[str], n: int, word_chars: int) -> float:
    """Characters covered by the most frequent n-gram (all its occurrences), if it repeats."""
    counts = Counter(_ngrams(words, n))
    k = max(counts.values(), default=0)
    if k < 2:
        return 0.0
    gram = next(g for g, count in counts.items() if count == k)  # the first of ties
    return _ratio(sum(map(len, gram)) * k, word_chars)


def _dup_ngram_char_fracs(words: list[str], lengths: list[int], word_chars: int) -> list[float]:
    """For n = 5..10: characters of the words inside repeats of an earlier n-gram."""
    grams5 = list(_ngrams(words, 5))
    counts5 = Counter(grams5)
    if len(counts5) == len(grams5):
        return [0.0] * 6  # no 5-gram repeats, so no longer n-gram can repeat either
    # A repeated n-gram (n >= 5) starts with a repeated 5-gram: only those starts are candidates.
    candidates = [i for i, g in enumerate(grams5) if counts5[g] > 1]
    fracs = []
    for n in range(5, 11):
        covered = bytearray(len(words))
        seen: set[tuple[str, ...]] = set()
        for i in candidates:
            gram = tuple(words[i:i + n])
            if len(gram) < n:
                break
            if gram in seen:
                covered[i:i + n] = b"\x01" * n
            else:
                seen.add(gram)
        fracs.append(_ratio(sum(compress(lengths, covered)), word_chars))
    return fracs


def document_signals(text: str, lang: str | None) -> tuple:
    """All signals of `text`, in `SIGNALS` order."""
    words = text.split()
    n_words = len(words)
    lengths = list(map(len, words))
    word_chars = sum(lengths)
    lines = [line for line in map(str.strip, text.split("\n")) if line]
    n_lines = len(lines)
    paragraphs = [p for p in map(str.strip, _PARAGRAPH_BREAK.split(text)) if p]

    stops = stop_words(lang)
    stop_count = None if stops is None else sum(map(stops.__contains__, words))
    symbols = text.count("#") + sum(text.count(e) for e in ELLIPSES)
    # Most words are purely alphabetic; only the others need the (slower) regex. Kept in C
    # via filterfalse/map: a Python-level loop over every word costs a third of the stage.
    mixed = list(filterfalse(str.isalpha, words))
    alpha_words = n_words - len(mixed) + sum(map(bool, map(_LETTER.search, mixed)))

    lower = text.lower()
    # One scan of the whole text; per-line matching only in the rare documents with a hit.
    boilerplate_lines = 0
    if _BOILERPLATE.search(lower):
        boilerplate_lines = sum(1 for line in lines if _BOILERPLATE.search(line.lower()))

    return (
        n_words,
        _ratio(word_chars, n_words),
        max(lengths, default=0),
        _ratio(symbols, n_words),
        _ratio(sum(1 for line in lines if line.startswith(BULLETS)), n_lines),
        _ratio(sum(1 for line in lines if line.endswith(ELLIPSES)), n_lines),
        _ratio(alpha_words, n_words),
        stop_count,
        lower.count("lorem ipsum"),
        text.count("{") + text.count("}"),
        _ratio(boilerplate_lines, n_lines),
        _ratio(sum(1 for line in lines if line.endswith(TERMINAL_PUNCT)), n_lines),
        _ratio(sum(1 for line in lines if len(line) <= SHORT_LINE_CHARS), n_lines),
        *_repeats(lines, len(text)),
        *_repeats(paragraphs, len(text)),
        *(_top_ngram_char_frac(words, n, word_chars) for n in (2, 3, 4)),
        *_dup_ngram_char_fracs(words, lengths, word_chars),
    )

