"""The command line: --help on every subcommand, and config errors exit 2 naming the key."""

import subprocess
import sys

import pytest

from stalegrpo.cli import BENCHES, COMMANDS, build_parser


def test_every_subcommand_has_help(capsys):
    parser = build_parser()
    for argv in [[name, "--help"] for name in COMMANDS] + [["bench", name, "--help"] for name in BENCHES]:
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args(argv)
        assert exit_info.value.code == 0
        assert "--out" in capsys.readouterr().out


def test_console_script_help():
    out = subprocess.run(
        [sys.executable, "-m", "stalegrpo.cli", "--help"], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0
    for name in [*COMMANDS, "bench", "schema"]:
        assert name in out.stdout
