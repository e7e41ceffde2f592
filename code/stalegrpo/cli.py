"""The ``stalegrpo`` command line.

Every subcommand takes an optional YAML config plus ``key=value`` overrides (validated against
the config's schema, see :mod:`stalegrpo.config`) and an output directory; ``stalegrpo CMD --help``
lists the config keys. The heavy modules are imported only when their subcommand runs or its
``--help`` is printed, so ``stalegrpo --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from stalegrpo.config import ConfigError, describe, json_schema

# subcommand -> (module, help). Each module exposes ``main(config, overrides, out)`` and a
# ``CONFIG_CLASS`` dataclass whose schema ``stalegrpo schema NAME`` prints.
COMMANDS = {
    "exact": ("stalegrpo.exact", "run the exact staleness testbed over a grid (docs/method.md §9)"),
    "pretrain": ("stalegrpo.pretrain", "build the tokenizer and pretrain the base policy on a task"),
    "train": ("stalegrpo.train", "run asynchronous GRPO on a language model (docs/method.md §2-§5)"),
    "make-checkpoint": (
        "stalegrpo.checkpoints",
        "write a tiny random Qwen2/Llama checkpoint with a BPE tokenizer, standing in for a downloaded one",
    ),
}
BENCHES = {
    "exact": ("stalegrpo.exact", "grid throughput of the exact testbed: runs x steps per second"),
    "lm": ("stalegrpo.bench", "t_gen, t_train, sync vs async step rates and speedup (docs/method.md §7)"),
}
# the config sections of commands that read more than their module's CONFIG_CLASS, for --help:
# command path -> [(key prefix, "module:attribute")]
CONFIG_SECTIONS = {
    ("bench", "lm"): [("", "stalegrpo.train:CONFIG_CLASS"), ("bench.", "stalegrpo.bench:BenchConfig")],
}


def config_sections(command: tuple[str, ...]) -> list[tuple[str, type]]:
    """(key prefix, config dataclass) of each section ``command`` reads; imports its modules."""
    if command in CONFIG_SECTIONS:
        specs = CONFIG_SECTIONS[command]
    else:
        module = (BENCHES[command[1]] if command[0] == "bench" else COMMANDS[command[0]])[0]
        specs = [("", f"{module}:CONFIG_CLASS")]
    sections = []
    for prefix, spec in specs:
        module, attribute = spec.split(":")
        cls = getattr(importlib.import_module(module), attribute, None)
        if cls is not None:
            sections.append((prefix, cls))
    return sections


def keys_epilog(command: tuple[str, ...]) -> str:
    """The ``--help`` listing of every config key of ``command``: type, bounds, default, docstring."""
    parts = []
    for prefix, cls in config_sections(command):
        where = f"as {prefix}KEY=VALUE overrides" if prefix else "in the YAML file or as key=value overrides"
        listing = describe(cls, prefix, width=96)
        parts.append(f"{cls.__name__} keys ({where}):\n" + _indent(listing))
    return "\n\n".join(parts)


def _indent(text: str) -> str:
    return "\n".join("  " + line if line else line for line in text.splitlines())


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose epilog, the command's config keys, is built only when help is printed.

    Building it imports the command's module (torch for most), which ``stalegrpo --help`` and
    ordinary runs of other commands should not pay for.
    """

    def __init__(self, *args, command: tuple[str, ...] | None = None, **kwargs):
        if command is not None:
            kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)
        self.command = command

    def format_help(self) -> str:
        if self.command is not None and self.epilog is None:
            try:
                self.epilog = keys_epilog(self.command)
            except ImportError as err:  # help must still print where an optional dependency is missing
                self.epilog = f"(the config keys cannot be listed: {err})"
        return super().format_help()


def _add_config_args(p: argparse.ArgumentParser, out_default: str) -> None:
    p.add_argument("config", nargs="?", help="YAML config file (defaults are used without one)")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="overrides of the config keys listed below (section.key=value in a section)",
    )
    p.add_argument("--out", default=out_default, help=f"output directory (default: {out_default})")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="stalegrpo",
        description="Staleness-learning-rate scaling laws for asynchronous GRPO: testbed, runs and benchmarks.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text, command=(name,))
        _add_config_args(p, f"results/{name}")
        if name == "pretrain":
            p.add_argument(
                "--model",
                metavar="PATH",
                help="start from this local HF checkpoint instead of a new model (same as model=PATH)",
            )
    bench = sub.add_parser("bench", help="benchmarks that print ratios measured in one run", description="benchmarks")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    for name, (_, help_text) in BENCHES.items():
        p = bench_sub.add_parser(name, help=help_text, description=help_text, command=("bench", name))
        _add_config_args(p, f"results/bench/{name}")
    schema = sub.add_parser("schema", help="print the JSON schema of a command's config", description="print a config schema")
    schema.add_argument("name", choices=sorted(COMMANDS), help="command whose config schema to print")
    return parser


def _split_overrides(args) -> tuple[str | None, list[str]]:
    # argparse puts a lone 'key=value' into the config slot when no file is given
    config, overrides = args.config, list(args.overrides)
    if config is not None and "=" in config and not config.endswith((".yaml", ".yml")):
        config, overrides = None, [config, *overrides]
    return config, overrides


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "schema":
            module = importlib.import_module(COMMANDS[args.name][0])
            print(json.dumps(json_schema(module.CONFIG_CLASS), indent=2, ensure_ascii=False))
            return 0
        config, overrides = _split_overrides(args)
        if args.command == "bench":
            module = importlib.import_module(BENCHES[args.bench][0])
            return module.bench(config, overrides, args.out) or 0
        if getattr(args, "model", None):
            overrides.append(f"model={args.model}")
        module = importlib.import_module(COMMANDS[args.command][0])
        return module.main(config, overrides, args.out) or 0
    except ConfigError as err:
        print(f"stalegrpo {args.command}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
