"""What the per-case subcommands share: finding the input masks by case id, the loop over
the cases (a bad case is reported, the others go on), output names and JSON records.

Not a subcommand (the leading underscore keeps it out of ``deeptree --help``).
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from tqdm import tqdm

from deeptree.io import InputError, atomic_write, case_id_from_path


def masks_by_id(path, option: str = "input", *, allow_file: bool = True) -> dict[str, Path]:
    """NIfTI masks keyed by case id (``_0000`` and ``.nii(.gz)`` stripped): one file, a
    folder of masks, or a dataset root with ``labelsTr/`` (its masks are used).

    Parameters
    ----------
    path : path-like
    option : str
        The command-line option (or argument) that named ``path``, for errors.
    allow_file : bool
        Accept a single file; False: ``path`` must be a folder, and it may hold no mask.

    Returns
    -------
    dict case id -> Path, sorted by file name (hidden files skipped)

    Raises
    ------
    InputError
        Nothing there, two files with the same case id, or (with ``allow_file``) no mask in
        the folder.
    """
    path = Path(path)
    if allow_file and path.is_file():
        return {case_id_from_path(path): path}
    if not path.is_dir():
        if allow_file:
            raise InputError(f"{path}: no such file or folder")
        raise InputError(f"{path}: {option} must be a folder of .nii/.nii.gz masks")
    folder = path / "labelsTr" if (path / "labelsTr").is_dir() else path
    found: dict[str, Path] = {}
    for file in sorted(folder.iterdir()):
        if file.name.startswith(".") or not file.name.endswith((".nii.gz", ".nii")):
            continue
        case_id = case_id_from_path(file)
        if case_id in found:
            raise InputError(
                f"{folder}: two files for case {case_id}: {found[case_id].name}, {file.name}"
            )
        found[case_id] = file
    if allow_file and not found:
        raise InputError(f"{folder}: no .nii/.nii.gz mask in this folder")
    return found


def refuse_out_over_inputs(out, inputs, option: str = "--out", *, from_folder: bool = True) -> None:
    """Refuse an output that would overwrite an input or mix the outputs with the inputs.

    Parameters
    ----------
    out : path-like
        An output file, or a folder the command writes files into.
    inputs : iterable of path-like
        The input files of the command.
    option : str
        The option that named ``out``, for the message.
    from_folder : bool
        The inputs were listed from a folder (a batch): ``out`` may not be that folder
        either. False for one input file named on the command line, whose outputs may go
        beside it (they have other names).

    Raises
    ------
    InputError
        ``out`` is one of the inputs, or (``from_folder``) the folder that holds them: a
        later run on that folder would read the outputs as inputs.
    """
    target = Path(out).resolve()
    for path in inputs:
        source = Path(path).resolve()
        if target == source:
            raise InputError(
                f"{out}: {option} is the input file {path}; a command never overwrites its inputs"
            )
        if from_folder and target == source.parent:
            raise InputError(
                f"{out}: {option} is the folder of the input {path}; the outputs would be mixed "
                "with the inputs (and read as inputs by the next run): give another folder"
            )


def check_writable_folder(folder, option: str = "--out") -> Path:
    """Create ``folder`` if needed and check that a file can be written there, before any
    long work.

    Parameters
    ----------
    folder : path-like
    option : str
        The option that named the folder (or the file in it), for the message.

    Returns
    -------
    Path
        ``folder``.

    Raises
    ------
    InputError
        ``folder`` is a file.
    OSError
        The folder cannot be created or written (permission, read-only file system, ...);
        the error names the folder.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder}: {option} needs a folder here, but this is a file")
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise OSError(err.errno, f"{option}: cannot write here ({err.strerror})", str(folder)) from err
    return folder


def for_each_case(
    cases: Mapping[str, Path], work: Callable[[str, Path], str], *, desc: str, progress: bool
) -> list[str]:
    """The per-case loop of the commands: ``work(case_id, path)`` on every case, printing the
    line it returns; a case whose input is bad (:class:`~deeptree.io.InputError`) is
    skipped and the others go on.

    Returns
    -------
    list of str
        ``"<case id>: <error>"`` of each skipped case.
    """
    problems = []
    for case_id, path in tqdm(cases.items(), desc=desc, unit="case", disable=not progress):
        try:
            line = work(case_id, path)
        except InputError as err:
            problems.append(f"{case_id}: {err}")
            continue
        print(line)
    return problems


def report_problems(command: str, problems: Sequence[str], what: str) -> int:
    """Print the problems of a run on stderr (``deeptree <command>: <n> <what>:`` and one
    line each); returns the exit status: 1 when there were problems, else 0."""
    if not problems:
        return 0
    print(f"deeptree {command}: {len(problems)} {what}:", file=sys.stderr)
    for line in problems:
        print(f"  {line}", file=sys.stderr)
    return 1


def output_path(out_dir, case_id: str, kind: str, suffix: str, dataset_layout: bool):
    """``out/<id>_<kind><suffix>``, or ``out/<kind>Tr/<id><suffix>`` in the dataset layout."""
    if dataset_layout:
        return Path(out_dir) / f"{kind}Tr" / f"{case_id}{suffix}"
    return Path(out_dir) / f"{case_id}_{kind}{suffix}"


def output_folders(out_dir, kinds: Sequence[str], dataset_layout: bool) -> list[Path]:
    """The folders :func:`output_path` writes into: ``[out]``, or ``out/<kind>Tr`` for each
    kind in the dataset layout."""
    if dataset_layout:
        return [Path(out_dir) / f"{kind}Tr" for kind in kinds]
    return [Path(out_dir)]


def write_json(path, data: dict) -> None:
    """Write ``data`` as indented JSON, atomically."""

    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)

    atomic_write(path, write)
