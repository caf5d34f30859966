"""Normalization: Unicode form, control characters, whitespace; drops empty and huge docs.

Line structure is kept (quality rules and perplexity work per line/paragraph): inside a
line, runs of spaces/tabs collapse to one space; runs of more than two newlines collapse to
a blank line; control characters other than newline and tab are removed.
"""

from __future__ import annotations

import re
import unicodedata

import pyarrow as pa
import pyarrow.compute as pc

from curation.config import NormalizeConfig
from curation.stages.base import Stage, set_column

# C0/C1 controls except \t and \n, plus zero-width and BOM characters that break tokenizers.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b\u200e\u200f\ufeff]")
_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200a\u202f\u205f\u3000]+")
_SPACE_AROUND_NEWLINE = re.compile(r" ?\n ?")
_MANY_NEWLINES = re.compile(r"\n{3,}")


def normalize_text(text: str, form: str = "NFC") -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    if not text.isascii():
        text = unicodedata.normalize(form, text)
    text = _SPACES.sub(" ", text)
    text = _SPACE_AROUND_NEWLINE.sub("\n", text)
    text = _MANY_NEWLINES.sub("\n\n", text)
    return text.strip()


class NormalizeStage(Stage):
    name = "normalize"
    reads = ("text",)
    writes = {"text": pa.string()}

    def __init__(self, config: NormalizeConfig):
        self.config = config

    def score(self, table: pa.Table) -> pa.Table:
        form = self.config.form
        limit = self.config.max_chars
        # Oversized documents are left as they are: `select` drops them as `too_long`, and
        # normalizing 50 MB only to drop it would waste the worker's time.
        texts = [t if len(t) > limit else normalize_text(t, form)
                 for t in table.column("text").to_pylist()]
        return set_column(table, "text", pa.array(texts, pa.string()))

    def select(self, table: pa.Table) -> pa.Array:
        lengths = pc.utf8_length(table.column("text").combine_chunks())
        too_long = pc.if_else(pc.greater(lengths, self.config.max_chars), "too_long", None)
        return pc.if_else(pc.less(lengths, self.config.min_chars), "empty", too_long)
