"""Config from defaults, TOML and flags; every bad value names its field."""

import pytest

from core.config import TrainConfig, build_config, load_toml
from core.errors import BadInput


def test_flags_override_toml_override_defaults(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('schedule = "linear"\nbatch-size = 8\nlr = 1\ndim_mults = [1, 2]\n')
    cfg = build_config({"batch_size": 4, "schedule": None}, f)
    assert (cfg.schedule, cfg.batch_size, cfg.lr, cfg.dim_mults) == ("linear", 4, 1.0, "1,2")
    assert cfg.dropout == TrainConfig().dropout


@pytest.mark.parametrize("text,message", [
    ("colour = 1\n", "unknown key 'colour'"),
    ('lr = "fast"\n', "key 'lr' must be float, got 'fast'"),
    ("batch_size = 2.5\n", "key 'batch_size' must be int"),
    ("conditional = 1\n", "key 'conditional' must be bool"),
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
