"""KenLM perplexity, CCNet style: columns `perplexity` and `ppl_bucket`.

Each document is scored with the model of its language (`perplexity.models`); documents
in other languages pass through with a null perplexity and bucket `unscored`. Buckets are
`head` / `middle` / `tail`, split at two per-language perplexity cut-offs: given in the
config, or fitted by `fit` at the configured percentiles of a sample of the run's own
documents (so that e.g. 30% of a language's documents land in `head`).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curation.config import PerplexityConfig
from curation.lm.scoring import document_perplexity, load_model
from curation.stages.base import Resources, Stage, set_column

UNSCORED = "unscored"
BUCKETS = ("head", "middle", "tail")


class PerplexityStage(Stage):
    name = "perplexity"
    reads = ("text", "lang")
    writes = {"perplexity": pa.float32(), "ppl_bucket": pa.string()}
    # KenLM binaries are memory-mapped and shared between processes: no per-worker reserve.
    resources = Resources(num_cpus=1)

    def __init__(self, config: PerplexityConfig):
        self.config = config
        self.models: dict = {}

    def setup(self) -> None:
        self.models = {lang: load_model(path) for lang, path in self.config.models.items()}

    def score(self, table: pa.Table) -> pa.Table:
        perplexities: list[float | None] = []
        buckets: list[str | None] = []
        for text, lang in zip(table.column("text").to_pylist(), table.column("lang").to_pylist()):
            model = self.models.get(lang)
            value = document_perplexity(model, text) if model is not None else None
            perplexities.append(value)
            buckets.append(self._bucket(lang, value))
        table = set_column(table, "perplexity", pa.array(perplexities, pa.float32()))
        return set_column(table, "ppl_bucket", pa.array(buckets, pa.string()))

    def _bucket(self, lang: str | None, value: float | None) -> str | None:
        if value is None:
            return UNSCORED
        cutoffs = self.config.cutoffs.get(lang)
        if cutoffs is None:  # too few documents of this language to fit cut-offs
            return None
        return BUCKETS[int(np.searchsorted(cutoffs, value, side="right"))]

    def select(self, table: pa.Table) -> pa.Array:
        drop = pa.repeat(False, len(table))
        if self.config.keep_buckets is not None:
            bucket = table.column("ppl_bucket")
            bucketed = pc.is_in(bucket, value_set=pa.array(BUCKETS))
            kept = pc.is_in(bucket, value_set=pa.array(self.config.keep_buckets, pa.string()))
            drop = pc.and_(bucketed, pc.invert(kept))
        if self.config.max_perplexity is not None:
            too_high = pc.greater(table.column("perplexity"), self.config.max_perplexity)
            drop = pc.or_(drop, pc.fill_null(too_high, False))
        return pc.if_else(drop, "perplexity", pa.scalar(None, pa.string()))

    def fit(self, sample: pa.Table) -> dict:
        """Cut-offs for every modelled language that has none in the config, at the
        configured percentiles of its perplexities in `sample`. Returns the config patch
        `{"cutoffs": {...}}` (given ones included) and applies it to this stage too."""
        missing = [lang for lang in self.config.models if lang not in self.config.cutoffs]
        if not missing or not len(sample):
            return {}
        if "perplexity" in sample.column_names:  # the executor ran this stage on it already
            scored = sample
        else:
            if not self.models:
                self.setup()
            scored = self.score(sample)
        cutoffs = {lang: list(pair) for lang, pair in self.config.cutoffs.items()}
        for lang in missing:
            in_lang = pc.equal(scored.column("lang"), lang)
            values = pc.drop_null(scored.column("perplexity").filter(in_lang)).to_numpy()
            if len(values) >= self.config.min_fit_docs:
                cutoffs[lang] = [float(x) for x in np.percentile(values, self.config.percentiles)]
        patch = {"cutoffs": cutoffs}
        self.config = PerplexityConfig.model_validate({**self.config.model_dump(), **patch})
        return patch
