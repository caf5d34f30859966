"""Heuristic quality filters: signal columns `q_*` and the rules that threshold them.

Each rule is a field of `QualityRules`: `min_X` / `max_X` bounds the column `q_X`. Rules are
checked in field order and the first failing one is the reason `quality:<field>`. The
thresholds come from `rules_for(lang)` per row, so languages can differ (the `lang` column
from the langid stage; without it, the default rules apply).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from curation.config import QualityConfig, QualityRules
from curation.stages.base import Stage, set_column
from curation.stages.quality_signals import SIGNALS, document_signals


def signal_of(rule: str) -> str:
    """The column a rule field bounds: `min_words` -> `q_words`."""
    return "q_" + rule.removeprefix("min_").removeprefix("max_")


class QualityStage(Stage):
    name = "quality"
    reads = ("text",)
    writes = SIGNALS

    def __init__(self, config: QualityConfig):
        self.config = config

    def score(self, table: pa.Table) -> pa.Table:
        limit = self.config.max_chars_scored
        texts = table.column("text").to_pylist()
        langs = table.column("lang").to_pylist() if "lang" in table.column_names else [None] * len(texts)
        rows = [document_signals(text[:limit], lang) for text, lang in zip(texts, langs)]
        columns = zip(*rows) if rows else [[]] * len(SIGNALS)
        for (name, dtype), values in zip(SIGNALS.items(), columns):
            table = set_column(table, name, pa.array(values, dtype))
        return table

    def select(self, table: pa.Table) -> pa.Array:
        if "lang" in table.column_names:
            # Null lang (undetected) uses the default rules, like a language without overrides.
            lang = pc.fill_null(table.column("lang").combine_chunks(), "")
        else:
            lang = pa.array([""] * len(table), pa.string())
        encoded = pc.dictionary_encode(lang)
        rules = [self.config.rules_for(code) for code in encoded.dictionary.to_pylist()]
        reason = pa.nulls(len(table), pa.string())
        for field in QualityRules.model_fields:
            per_lang = pa.array([getattr(r, field) for r in rules], pa.float64())
            if per_lang.null_count == len(per_lang):
                continue
            threshold = per_lang.take(encoded.indices)
            signal = table.column(signal_of(field))
            compare = pc.less if field.startswith("min_") else pc.greater
            # A null threshold (rule off) or null signal (not applicable) never fails.
            failed = pc.fill_null(compare(signal, threshold), False)
            reason = pc.if_else(pc.and_(failed, pc.is_null(reason)), f"quality:{field}", reason)
        return reason
