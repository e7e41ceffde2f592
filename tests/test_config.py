"""Config loading and schema validation: bad input names the key and the file."""

from dataclasses import dataclass, field
from typing import ClassVar, Literal

import pytest

from stalegrpo.collapse import CollapseConfig
from stalegrpo.config import ConfigError, describe, json_schema, load_config


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


def test_schema_descriptions_are_the_field_docstrings():
    schema = json_schema(Example)
    assert schema["properties"]["lr"]["description"] == "learning rate"
    assert schema["properties"]["collapse"]["description"] == "collapse detectors"
    # nested sections carry their own docstrings; a multi-line one is joined into one line
    detector = schema["properties"]["collapse"]["properties"]["reward_detector"]["description"]
    assert detector.startswith("run the reward detector (false for") and "\n" not in detector


def test_a_field_without_docstring_has_no_description():
    @dataclass
    class Bare:
        documented: int = 1
        """has one"""
        bare: int = 2

    properties = json_schema(Bare)["properties"]
    assert properties["documented"]["description"] == "has one"
    assert "description" not in properties["bare"]


@dataclass
class Grid:
    RENAMED: ClassVar[dict[str, str]] = {"lrs": "eta", "small_drift_max": "the workflow config's fits section"}
    eta: list[float] = field(default_factory=lambda: [0.1], metadata={"exclusiveMinimum": 0, "minItems": 1})
    """grid of learning rates η"""
    horizons: list[int] | None = field(default=None, metadata={"minimum": 1})
    """horizons T' (None: T only)"""
    cap: float | None = field(default=None, metadata={"maximum": 1})
    """an optional bounded scalar"""
    collapse: CollapseConfig = field(default_factory=CollapseConfig)
    """collapse detectors"""


@dataclass
class Renamed(Grid):
    @dataclass
    class Section:
        RENAMED: ClassVar[dict[str, str]] = {"kapa": "kappa"}
        kappa: float = 1.0
        """threshold"""

    section: Section = field(default_factory=Section)
    """a section with renamed keys"""


def test_list_bounds_bound_the_items():
    items = json_schema(Grid)["properties"]["eta"]
    assert items["items"]["exclusiveMinimum"] == 0 and "exclusiveMinimum" not in items
    assert items["minItems"] == 1 and items["default"] == [0.1]
    optional = json_schema(Grid)["properties"]["horizons"]["anyOf"]
    assert optional[0]["items"]["minimum"] == 1 and optional[1] == {"type": "null"}
    assert load_config(Grid, None, ["eta=[0.1, 2]", "horizons=[1, 5]"]).horizons == [1, 5]
    assert load_config(Grid, None, ["horizons=null"]).horizons is None


@pytest.mark.parametrize(
    "override, message",
    [
        ("eta=[0.1,-3]", "key 'eta[1]' = -3 is invalid: expected exclusiveMinimum 0"),
        ("eta=[]", "key 'eta' = [] is invalid: expected minItems 1"),
        ("eta=[0.1, fast]", "key 'eta[1]' = 'fast' is invalid: expected type 'number'"),
        ("horizons=[4, 0]", "key 'horizons[1]' = 0 is invalid: expected minimum 1"),
        ("cap=2", "key 'cap' = 2 is invalid: expected maximum 1"),
    ],
)
def test_bad_list_items_name_the_key_and_index(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(Grid, None, [override])
    assert str(err.value) == f"bad configuration (defaults): {message}"


def test_size_bounds_need_a_list():
    @dataclass
    class Wrong:
        n: int = field(default=1, metadata={"minItems": 1})

    with pytest.raises(TypeError, match="'n'"):
        json_schema(Wrong)


def test_renamed_class_attribute_is_not_a_key():
    assert "RENAMED" not in json_schema(Renamed)["properties"]
    assert "RENAMED" not in json_schema(Renamed)["properties"]["section"]["properties"]


def test_renamed_keys_name_the_new_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lrs: [0.1]\n")
    with pytest.raises(ConfigError) as err:
        load_config(Renamed, path)
    assert str(err.value) == f"bad configuration ({path}): key 'lrs' was renamed to 'eta'"
    with pytest.raises(ConfigError) as err:
        load_config(Renamed, None, ["lrs=[0.1]"])
    assert str(err.value) == "bad configuration (defaults): key 'lrs' was renamed to 'eta'"


def test_renamed_keys_of_sections_and_moved_keys():
    with pytest.raises(ConfigError) as err:
        load_config(Renamed, None, ["section.kapa=2", "small_drift_max=3"])
    assert str(err.value) == (
        "bad configuration (defaults): key 'section.kapa' was renamed to 'section.kappa'; "
        "key 'small_drift_max' was moved to the workflow config's fits section"
    )


def test_renamed_keys_come_before_unknown_ones():
    with pytest.raises(ConfigError) as err:
        load_config(Renamed, None, ["zzz=1", "lrs=[1]", "section.q=1"])
    message = str(err.value)
    assert message.startswith("bad configuration (defaults): key 'lrs' was renamed to 'eta'; unknown key(s) ")
    assert "unknown key(s) 'zzz'; valid keys: cap, collapse, eta, horizons, section" in message
    assert "unknown key(s) 'q' in section 'section'; valid keys: kappa" in message
    assert "'lrs'" not in message.split("renamed to 'eta'")[1]  # not also reported as unknown


def test_describe_lists_every_key_with_type_bounds_default_and_docstring():
    text = describe(Grid)
    assert "eta (list[float]; items > 0, ≥ 1 items; default [0.1])\n    grid of learning rates η" in text
    assert "horizons (list[int] | null; items ≥ 1; default null)" in text
    assert "collapse (section): collapse detectors" in text
    assert "collapse.kappa (float; default 1.0)" in text
    assert "objective ({behavior, recompute}; default behavior)" in describe(Example)
    assert "bench.steps (int; ≥ 1; default 10)" in describe(Example, "bench.")
