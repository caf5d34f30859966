"""KenLM language models for perplexity filtering (CCNet style).

`text` holds the one normalization shared by training (`build`) and scoring
(`curation.stages.perplexity`); `report` draws the perplexity part of the inspect report.
"""
