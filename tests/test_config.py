import pytest

from curation.config import ConfigError, load_config, parse_config

MINIMAL = {"sources": [{"name": "c4", "paths": ["x.jsonl"]}]}


def test_defaults_are_valid_and_documented():
    config = parse_config(MINIMAL)
    assert config.langid.min_score == 0.5
    assert config.run.on_existing == "resume"
    from curation.config import PipelineConfig

    def undocumented(model, prefix=""):
        for name, field in model.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
                yield from undocumented(annotation, f"{prefix}{name}.")
            elif not field.description and name != "sources":
                yield prefix + name

    assert list(undocumented(PipelineConfig)) == []


def test_error_names_field_and_allowed_values():
    with pytest.raises(ConfigError) as err:
        parse_config({**MINIMAL, "run": {"on_existing": "maybe"}})
    message = str(err.value)
    assert "run.on_existing" in message and "'resume', 'refuse' or 'overwrite'" in message


def test_unknown_field_is_an_error():
    with pytest.raises(ConfigError, match=r"langid\.min_scor.*Extra inputs are not permitted"):
        parse_config({**MINIMAL, "langid": {"min_scor": 0.3}})


def test_range_and_duplicate_sources():
    with pytest.raises(ConfigError, match=r"langid\.min_score"):
        parse_config({**MINIMAL, "langid": {"min_score": 1.5}})
    with pytest.raises(ConfigError, match="repeated: \\['c4'\\]"):
        parse_config({"sources": MINIMAL["sources"] * 2})


def test_yaml_file_overrides_and_bad_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("sources:\n  - {name: a, paths: [a.txt]}\n")
    config = load_config(path, ["run.output=/tmp/elsewhere", "langid.keep=[en, de]"])
    assert config.run.output == "/tmp/elsewhere" and config.langid.keep == ["en", "de"]
    path.write_text("sources: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")


def test_fingerprint_ignores_where_and_how_fast():
    a = parse_config(MINIMAL)
    b = parse_config({**MINIMAL, "run": {"output": "s3://b/x"}, "ray": {"workers": 7}})
    c = parse_config({**MINIMAL, "langid": {"min_score": 0.6}})
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_configuration_reference_is_current(capsys):
    from pathlib import Path

    from curation.run import config_doc

    config_doc([])
    generated = capsys.readouterr().out
    committed = (Path(__file__).parents[1] / "docs" / "configuration.md").read_text()
    assert generated == committed, "docs/configuration.md is stale: run `python -m curation config-doc > docs/configuration.md`"
