"""The ``deeptree`` command: one subcommand per step of the method.

Each subcommand lives in its own module ``deeptree/cli/<name>.py`` that defines

* ``NAME``: the subcommand's name,
* ``HELP``: one line of help,
* ``add_arguments(parser)``: its options,
* ``run(args) -> int``: the work (exit status).

Every module of this package is a subcommand (found with :mod:`pkgutil`); :data:`ORDER`
only sets the order of the help. Importing a module must be cheap (import torch and
friends inside ``run``), so that ``deeptree --help`` answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from deeptree import __version__
from deeptree.io import InputError

#: Order of the subcommands in the help (the order of the method); others follow by name.
ORDER: tuple[str, ...] = (
    "info", "phantom", "labels", "simulate", "attention", "train", "predict", "evaluate",
    "reproduce", "view", "notebooks",
)


def command_modules() -> list[str]:
    """Names of the subcommand modules in ``deeptree/cli/``, in help order."""
    names = [m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")]
    return sorted(names, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))


def _modules():
    for name in command_modules():
        yield importlib.import_module(f"deeptree.cli.{name}")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``deeptree`` command with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="deeptree",
        description="DeepTree airway segmentation: data, labels, training, inference, evaluation.",
    )
    parser.add_argument("--version", action="version", version=f"deeptree {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _modules():
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``deeptree`` console script. Returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except (InputError, FileNotFoundError, ValueError) as err:
        # Bad input: one clear line, no traceback.
        print(f"deeptree {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"deeptree {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
