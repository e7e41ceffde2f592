"""Config loading and schema validation: bad input names the key and the file."""

from dataclasses import dataclass, field
from typing import Literal

import pytest

from stalegrpo.collapse import CollapseConfig
from stalegrpo.config import ConfigError, json_schema, load_config


@dataclass
class Example:
    lr: float = 1e-3
    """learning rate"""
    steps: int = field(default=10, metadata={"minimum": 1})
    """horizon"""
    objective: Literal["behavior", "recompute"] = "behavior"
    """surrogate"""
    collapse: CollapseConfig = field(default_factory=CollapseConfig)
    """collapse detectors"""


def test_yaml_plus_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lr: 3\nsteps: 5\n")
    cfg = load_config(Example, path, ["objective=recompute", "collapse.kappa=2.5"])
    assert cfg.lr == 3.0 and isinstance(cfg.lr, float)
    assert (cfg.steps, cfg.objective, cfg.collapse.kappa) == (5, "recompute", 2.5)


@pytest.mark.parametrize(
    "override, names",
    [
        ("lrr=1", "'lrr'"),
        ("steps=0", "'steps'"),
        ("objective=ppo", "'objective'"),
        ("collapse.kapa=1", "'kapa'"),
        ("lr=fast", "'lr'"),
    ],
)
def test_bad_values_name_the_key(override, names):
    with pytest.raises(ConfigError, match=names):
        load_config(Example, None, [override])


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_config(Example, tmp_path / "nope.yaml")


def test_schema_has_defaults_and_enums():
    schema = json_schema(Example)
    assert schema["additionalProperties"] is False
    assert schema["properties"]["objective"]["enum"] == ["behavior", "recompute"]
    assert schema["properties"]["steps"]["minimum"] == 1


def test_exponent_floats_without_a_dot_are_numbers(tmp_path):
    # YAML 1.1 reads 1e-4 as a string; learning rates are written that way
    path = tmp_path / "c.yaml"
    path.write_text("lr: 1e-4\n")
    assert load_config(Example, path).lr == 1e-4
    assert load_config(Example, None, ["lr=3e-4", "steps=3"]).lr == 3e-4
