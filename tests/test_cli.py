"""The command line: --help on every subcommand, and config errors exit 2 naming the key."""

import dataclasses
import json
import subprocess
import sys
import typing

import pytest

from stalegrpo.cli import BENCHES, COMMANDS, build_parser, config_sections, main

ALL_COMMANDS = [(name,) for name in COMMANDS] + [("bench", name) for name in BENCHES]


def _keys(cls, prefix=""):
    """Every key of a config dataclass as written on the command line, nested sections as a.b."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            yield from _keys(hints[f.name], f"{prefix}{f.name}.")
        yield prefix + f.name


def test_every_subcommand_has_help(capsys):
    parser = build_parser()
    for command in ALL_COMMANDS:
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([*command, "--help"])
        assert exit_info.value.code == 0
        assert "--out" in capsys.readouterr().out


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=" ".join)
def test_help_lists_every_config_key(command, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([*command, "--help"])
    out = capsys.readouterr().out
    sections = config_sections(command)
    assert sections, f"{' '.join(command)} has no config class"
    for prefix, cls in sections:
        for key in _keys(cls, prefix):
            assert f"\n  {key} (" in out, key


def test_bench_lm_help_shows_the_train_and_bench_sections(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "lm", "--help"])
    out = capsys.readouterr().out
    assert "TrainConfig keys" in out and "BenchConfig keys (as bench.KEY=VALUE overrides)" in out
    assert "\n  collapse.kappa (float" in out and "\n  bench.steps (int" in out


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=" ".join)
def test_every_config_key_is_documented(command):
    # a new key without a docstring fails here: the docstring is its --help and schema description
    def undocumented(schema, prefix=""):
        for name, prop in schema["properties"].items():
            if not prop.get("description", "").strip():
                yield prefix + name
            if "properties" in prop:
                yield from undocumented(prop, f"{prefix}{name}.")

    from stalegrpo.config import json_schema

    for prefix, cls in config_sections(command):
        assert list(undocumented(json_schema(cls), prefix)) == [], cls.__name__


def test_schema_prints_descriptions(capsys):
    assert main(["schema", "exact"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert all(prop.get("description") for prop in schema["properties"].values())


def test_top_level_help_imports_no_command_module():
    code = (
        "import sys\nfrom stalegrpo.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'stalegrpo.train', 'stalegrpo.exact') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("[]")


def test_console_script_help():
    out = subprocess.run(
        [sys.executable, "-m", "stalegrpo.cli", "--help"], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0
    for name in [*COMMANDS, "bench", "schema"]:
        assert name in out.stdout
