"""Config from defaults, TOML and flags; every bad value names its field."""

import pytest

from core.config import FIELD_TYPES, TrainConfig, build_config, load_toml, parse_value
from core.errors import BadConfig, BadInput


def test_flags_override_toml_override_defaults(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('schedule = "linear"\nbatch-size = 8\nlr = 1\ndim_mults = [1, 2]\n')
    cfg = build_config({"batch_size": 4, "schedule": None}, f)
    assert (cfg.schedule, cfg.batch_size, cfg.lr, cfg.dim_mults) == ("linear", 4, 1.0, "1,2")
    assert cfg.dropout == TrainConfig().dropout


@pytest.mark.parametrize("text,message", [
    ("colour = 1\n", "unknown key 'colour'"),
    ('lr = "fast"\n', "key 'lr': expected a number, got 'fast'"),
    ("batch_size = 2.5\n", "key 'batch_size': expected a whole number, got 2.5"),
    ("conditional = 1\n", "key 'conditional': expected true or false, got 1"),
    ("lr = \n", "not valid TOML"),
])
def test_bad_toml(tmp_path, text, message):
    f = tmp_path / "c.toml"
    f.write_text(text)
    with pytest.raises(BadInput, match=message):
        load_toml(f)


@pytest.mark.parametrize("values,message", [
    ({"schedule": "exp"}, "--schedule: unknown value 'exp'"),
    ({"attention": "sparse"}, "--attention: unknown value 'sparse'"),
    ({"objective": "score"}, "--objective: unknown value 'score'"),
    ({"lr": 0.0}, "--lr: must be positive, got 0.0"),
    ({"batch_size": -1}, "--batch-size: must be positive, got -1"),
    ({"image_size": 48}, "--image-size: unknown value 48"),
    ({"conditional": True, "classes": "cancerous"}, "--conditional needs --classes both"),
    ({"dim_mults": "1,x"}, "--dim-mults: expected comma-separated integers"),
    ({"dropout": 1.5}, "--dropout: must be in \\[0, 1\\)"),
])
def test_bad_values(values, message):
    with pytest.raises(BadInput, match=message):
        TrainConfig(**values).validate()


def test_missing_config_file(tmp_path):
    with pytest.raises(BadInput, match="config file not found"):
        build_config({}, tmp_path / "nope.toml")


def test_fields_have_real_types():
    assert (FIELD_TYPES["lr"], FIELD_TYPES["batch_size"], FIELD_TYPES["augment"], FIELD_TYPES["tag"]) == \
        (float, int, bool, list)


@pytest.mark.parametrize("name,raw,value", [
    ("lr", "2e-4", 2e-4), ("lr", 1, 1.0), ("batch_size", "64", 64), ("batch_size", "1e3", 1000),
    ("batch_size", 1000.0, 1000), ("augment", "off", False), ("augment", "Yes", True), ("augment", True, True),
    ("tag", "a, b c", ["a", "b", "c"]), ("tag", ["a"], ["a"]), ("dim_mults", [1, 2, 4], "1,2,4"),
    ("schedule", " linear ", "linear"),
])
def test_one_parser_reads_text_and_toml_values_alike(name, raw, value):
    assert parse_value(name, raw) == value


@pytest.mark.parametrize("name,raw,expected", [
    ("lr", "fast", "a number"), ("batch_size", "2.5", "a whole number"), ("batch_size", True, "a whole number"),
    ("augment", "maybe", "true or false"), ("lr", "nan?", "a number"), ("schedule", 3, "text"),
])
def test_the_parser_refuses_with_the_field_and_the_value(name, raw, expected):
    with pytest.raises(BadInput) as err:
        parse_value(name, raw)
    assert err.value.field == name
    assert str(err.value) == f"--{name.replace('_', '-')}: expected {expected}, got {raw!r}"


def test_validate_reports_every_bad_field_in_field_order():
    with pytest.raises(BadConfig) as err:
        TrainConfig(image_size=48, dim=12, lr=0.0, dropout=1.5, seed=-1).validate()
    assert list(err.value.problems) == ["image_size", "dim", "dropout", "lr", "seed"]
    assert err.value.field == "image_size"
    assert "; --dim: must be a multiple of 8" in str(err.value)


def test_build_config_joins_unreadable_flags_and_invalid_values():
    with pytest.raises(BadConfig) as err:
        build_config({"lr": "abc", "dim": "1.5", "dropout": "2", "schedule": None})
    assert err.value.problems == {"dim": "--dim: expected a whole number, got '1.5'",
                                  "lr": "--lr: expected a number, got 'abc'",
                                  "dropout": "--dropout: must be in [0, 1), got 2.0"}
