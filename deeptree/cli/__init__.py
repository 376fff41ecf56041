"""The ``deeptree`` command: one subcommand per step of the method.

Each subcommand lives in its own module ``deeptree/cli/<name>.py`` that defines

* ``NAME``: the subcommand's name,
* ``HELP``: one line of help,
* ``add_arguments(parser)``: its options,
* ``run(args) -> int``: the work (exit status).

Every module of this package is a subcommand (found with :mod:`pkgutil`); :data:`ORDER`
only sets the order of the help. Importing a module must be cheap (import torch and
friends inside ``run``), so that ``deeptree --help`` answers at once.

Errors: :func:`main` turns a bad input (:class:`~deeptree.io.InputError`, ``ValueError``)
and an operating-system error (the ``OSError`` family: missing file, existing file or folder
in the way, permission, read-only or full file system) and a missing optional extra
(:class:`~deeptree.extras.MissingExtraError`, e.g. ``deeptree view`` without napari) into one
line on stderr,
``deeptree <command>: error: <file or option>: <problem>``, and exit status 2 (also for
running out of memory on the host or the GPU); a warning is one line as well. The global
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import signal
import sys
import warnings

from deeptree import __version__
from deeptree.extras import MissingExtraError
from deeptree.io import InputError
from deeptree.signals import sigterm_as_interrupt

#: Order of the subcommands in the help (the order of the method); others follow by name.
ORDER: tuple[str, ...] = (
    "info", "phantom", "labels", "simulate", "attention", "train", "predict", "segment", "evaluate",
    "reproduce", "ship", "view", "notebooks",
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
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback of an error"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _modules():
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def os_error_message(err: OSError) -> str:
    """One line for an operating-system error: the file(s) it concerns and the problem.

    Parameters
    ----------
    err : OSError
        E.g. ``FileExistsError``, ``NotADirectoryError``, ``IsADirectoryError``,
        ``PermissionError``, or an ``OSError`` with ``errno.EROFS`` (read-only file system).

    Returns
    -------
    str
        ``"<file>: <problem>"`` (``"<file> -> <file2>: <problem>"`` for a rename), or the
        error's own text when it names no file.
    """
    problem = err.strerror or str(err) or type(err).__name__
    if err.filename is None:
        return problem
    where = str(err.filename)
    if err.filename2 is not None:
        where += f" -> {err.filename2}"
    return f"{where}: {problem}"


def memory_error_message(err: BaseException) -> str:
    """One line for running out of memory: where, and what to do about it.

    Parameters
    ----------
    err : MemoryError, torch.cuda.OutOfMemoryError, or torch's CPU allocator ``RuntimeError``
        (:func:`is_out_of_memory`).

    Returns
    -------
    str
    """
    gpu = "OutOfMemory" in type(err).__name__ or "CUDA" in str(err)
    first = str(err).splitlines()[0] if str(err) else type(err).__name__
    if len(first) > 160:
        first = first[:157] + "..."
    where = "the GPU" if gpu else "this machine"
    todo = (
        "a smaller --batch-size or patch (a smaller --profile: cpu or smoke), a smaller input "
        "(crop it), fewer --workers, or close the other programs that use "
        + ("the GPU" if gpu else "memory")
    )
    return f"out of memory on {where} ({first}); what helps: {todo}; --debug shows where it happened"


def is_out_of_memory(err: BaseException) -> bool:
    """True if ``err`` says the host or a GPU ran out of memory.

    ``MemoryError`` (numpy, python), ``torch.cuda.OutOfMemoryError``, and the
    ``RuntimeError`` of torch's CPU allocator (``DefaultCPUAllocator: can't allocate
    memory``), which is what a process under ``ulimit -v`` gets from a convolution.

    Parameters
    ----------
    err : BaseException

    Returns
    -------
    bool
    """
    if isinstance(err, MemoryError) or "OutOfMemory" in type(err).__name__:
        return True
    text = str(err)
    return isinstance(err, RuntimeError) and (
        "can't allocate memory" in text or "out of memory" in text.lower()
    )


def _warning_line(command: str):
    """A ``warnings.formatwarning`` giving ``deeptree <command>: warning: <message>``."""

    def format_line(message, category, filename, lineno, line=None):
        return f"deeptree {command}: warning: {message}\n"

    return format_line


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``deeptree`` console script.

    Parameters
    ----------
    argv : list of str, optional
        The arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success, 1 when some cases of a batch failed (the command lists them), 2 on a
        bad input, option or operating-system error (one line on stderr; with ``--debug`` the
        traceback instead), 130 when interrupted (Ctrl-C), 143 when terminated (SIGTERM).
    """
    args = build_parser().parse_args(argv)
    formatwarning = warnings.formatwarning
    if not args.debug:  # a warning is one line too (pytest's recording is not affected)
        warnings.formatwarning = _warning_line(args.command)
    try:
        with sigterm_as_interrupt():  # SIGTERM stops a command as Ctrl-C does
            return int(args._run(args) or 0)
    except (InputError, ValueError, OSError, MissingExtraError) as err:
        if args.debug:
            raise
        text = os_error_message(err) if isinstance(err, OSError) else str(err)
        # one clear line, no traceback
        print(f"deeptree {args.command}: error: {text}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as err:
        # a device out of memory (torch.cuda.OutOfMemoryError is a RuntimeError) or the host
        # out of memory (torch's CPU allocator raises a RuntimeError); any other RuntimeError
        # is a bug and keeps its traceback
        if args.debug or not is_out_of_memory(err):
            raise
        print(f"deeptree {args.command}: error: {memory_error_message(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        if args.debug:
            raise
        # Ctrl-C: 130; SIGTERM (deeptree.signals.Terminated): 143, as a shell reports them
        signum = int(getattr(err, "signum", signal.SIGINT))
        if signum == signal.SIGINT:
            line = "interrupted" + (f": {err}" if str(err) else "")
        else:  # its text begins with "terminated (SIGTERM)"
            line = str(err) or "terminated"
        print(f"deeptree {args.command}: {line}", file=sys.stderr)
        return 128 + signum
    finally:
        warnings.formatwarning = formatwarning


if __name__ == "__main__":
    sys.exit(main())
