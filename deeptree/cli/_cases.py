"""What the per-case subcommands share: finding the input masks by case id, the loop over
the cases (a bad case is reported, the others go on), output names and JSON records.

Not a subcommand (the leading underscore keeps it out of ``deeptree --help``).
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from tqdm import tqdm

from deeptree.cli import is_out_of_memory, memory_error_message, os_error_message
from deeptree.files import FolderLock, clean_orphan_temporaries, file_sha256
from deeptree.io import (
    InputError,
    atomic_write,
    case_id_from_path,
    check_case_id_unique,
)
from deeptree.io_checks import THICK_SLICE_MM, ThickSliceWarning, thick_slice_message


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
        check_case_id_unique(found, case_id, file)
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


#: The case folders of a dataset (ATM'22 / nnU-Net layout): no command writes into them.
DATASET_FOLDERS = ("imagesTr", "labelsTr", "imagesTs", "labelsTs")


def refuse_dataset_folder(folder, option: str = "--out") -> None:
    """Refuse to write into a dataset's ``imagesTr``/``labelsTr`` (or ``*Ts``) folder.

    Outputs named by case id there (``<id>.nii.gz``) would replace the ground truth, and any
    other file would be read as a case by the next command on the dataset.

    Parameters
    ----------
    folder : path-like
        The folder a command would write files into.
    option : str
        The option that named it, for the message.

    Raises
    ------
    InputError
        ``folder`` (after resolving ``..`` and links) is named as one of
        :data:`DATASET_FOLDERS` (letter case ignored).
    """
    name = Path(folder).resolve().name
    for kind in DATASET_FOLDERS:
        if name.lower() == kind.lower():
            raise InputError(
                f"{folder}: {option} is the {kind} folder of a dataset; its files are the "
                "dataset's cases and are never written: give another folder"
            )


def check_writable_folder(folder, option: str = "--out") -> Path:
    """Create ``folder`` if needed and check that a file can be written there, before any
    long work; a dataset's case folder is refused (:func:`refuse_dataset_folder`).

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
        ``folder`` is a file, or a dataset's ``imagesTr``/``labelsTr`` folder.
    OSError
        The folder cannot be created or written (permission, read-only file system, ...);
        the error names the folder.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder}: {option} needs a folder here, but this is a file")
    refuse_dataset_folder(folder, option)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise OSError(err.errno, f"{option}: cannot write here ({err.strerror})", str(folder)) from err
    return folder


def for_each_case(
    cases: Mapping[str, Path],
    work: Callable[[str, Path], str | tuple[str, Sequence[Path]]],
    *,
    desc: str,
    progress: bool,
    record: DoneRecord | None = None,
    targets: Callable[[str, Path], Sequence[Path]] | None = None,
) -> list[str]:
    """The per-case loop of the commands: ``work(case_id, path)`` on every case, printing the
    line it returns; a case whose input is bad (:class:`~deeptree.io.InputError`), whose
    files fail (an ``OSError``: a full disk, a permission) or that runs out of memory is
    reported and the others go on.

    Parameters
    ----------
    cases : mapping case id -> input file
    work : callable
        Returns the line to print, or ``(line, output files)``; the output files are what
        ``record`` keeps.
    desc : str
        Progress bar title.
    progress : bool
        Show the progress bar.
    record : DoneRecord, optional
        A case that ``record`` holds as complete (same input, same settings, its outputs
        unchanged) is skipped with the line ``<case id>: already complete, kept``; each case
        done is added to it.
    targets : callable, optional
        ``targets(case_id, path)``: the files ``work`` will write; with ``record``, a case
        whose target exists and is not an output of ``record`` fails before any work
        (:meth:`DoneRecord.check_replaceable`: never replaced without ``--overwrite``).

    Returns
    -------
    list of str
        ``"<case id>: <error>"`` of each failed case.
    """
    problems = []
    for case_id, path in tqdm(cases.items(), desc=desc, unit="case", disable=not progress):
        try:
            if record is not None and record.is_complete(case_id, [path]):
                print(f"{case_id}: already complete, kept")
                continue
            if record is not None and targets is not None:
                for target in targets(case_id, path):
                    record.check_replaceable(target)
            done = work(case_id, path)
            line, outputs = done if isinstance(done, tuple) else (done, None)
            if record is not None and outputs is not None:
                record.add(case_id, [path], outputs)
        except InputError as err:
            problems.append(f"{case_id}: {err}")
            continue
        except OSError as err:
            problems.append(f"{case_id}: {os_error_message(err)}")
            continue
        except (MemoryError, RuntimeError) as err:
            if not is_out_of_memory(err):
                raise  # a bug: its traceback
            problems.append(f"{case_id}: {memory_error_message(err)}")  # a smaller one may fit
            continue
        print(line)
    return problems


class DoneRecord:
    """What a batch command has completed in its output folder, so that a rerun skips it.

    Kept in ``<folder>/.deeptree-<command>.json`` (hidden: never read as an input): the
    command's ``settings`` (options, checkpoint checksums) and, for each case done, the
    sha256 of its input file(s) and of its output files. A case is complete when the record
    holds it with the same input checksums and its output files are there with the recorded
    checksums; anything else (never done, killed before its record was written, an output
    removed or changed, the input changed) is done again.

    Parameters
    ----------
    folder : path-like
        The output folder.
    command : str
        The subcommand, e.g. ``"predict"``.
    settings : dict
        JSON-able; everything that changes the outputs.
    overwrite : bool
        Start a new record (every case is done again), whatever the folder holds, and
        replace files of the folder that the record does not hold
        (:meth:`check_replaceable`).

    Raises
    ------
    InputError
        The folder holds outputs of this command made with other settings and
        ``overwrite`` is not set (naming the settings that differ).
    """

    def __init__(self, folder, command: str, settings: dict, overwrite: bool = False):
        self.folder = Path(folder)
        self.path = self.folder / f".deeptree-{command}.json"
        self.settings = json.loads(json.dumps(settings))
        self.cases: dict[str, dict] = {}
        self.overwrite = overwrite
        old = self._read()
        if old is None or overwrite:
            return
        if old.get("settings") == self.settings:
            self.cases = old.get("cases", {})
            return
        if any(
            (self.folder / name).exists()
            for case in old.get("cases", {}).values()
            for name in case.get("outputs", {})
        ):
            before = old.get("settings", {})
            differ = sorted(
                k for k in set(before) | set(self.settings) if before.get(k) != self.settings.get(k)
            )
            raise InputError(
                f"{self.folder}: holds the outputs of an earlier `deeptree {command}` with other "
                f"settings ({', '.join(differ)}); give --overwrite to replace them, or another --out"
            )

    def _read(self) -> dict | None:
        if not self.path.is_file():
            return None
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # unreadable: as if absent, every case is done again
        return data if isinstance(data, dict) else None

    def is_complete(self, case_id: str, inputs: Sequence[Path]) -> bool:
        """True if ``case_id`` was done from these inputs and its outputs are unchanged."""
        case = self.cases.get(case_id)
        if case is None:
            return False
        if case.get("inputs") != [file_sha256(p) for p in inputs]:
            return False
        for name, digest in case.get("outputs", {}).items():
            target = self.folder / name
            if not target.is_file() or file_sha256(target) != digest:
                return False
        return True

    def check_replaceable(self, target) -> None:
        """Refuse to replace a file this command did not write, unless ``overwrite``.

        Parameters
        ----------
        target : path-like
            A file in the folder that a case is about to write.

        Raises
        ------
        InputError
            ``target`` exists and is not an output of a case of the record (a file of the
            user's, or of another program), and ``overwrite`` is not set.
        """
        target = Path(target)
        if self.overwrite or not target.exists():
            return
        name = target.resolve().relative_to(self.folder.resolve()).as_posix()
        if any(name in case.get("outputs", {}) for case in self.cases.values()):
            return
        raise InputError(
            f"{target}: exists and was not written by an earlier run of this command (it is not "
            f"in {self.path.name}); give --overwrite to replace it, or another --out"
        )

    def add(self, case_id: str, inputs: Sequence[Path], outputs: Sequence[Path]) -> None:
        """Record ``case_id`` as done (written at once, atomically)."""
        self.cases[case_id] = {
            "inputs": [file_sha256(p) for p in inputs],
            "outputs": {
                Path(o).resolve().relative_to(self.folder.resolve()).as_posix(): file_sha256(o)
                for o in outputs
            },
        }
        write_json(self.path, {"settings": self.settings, "cases": self.cases})


@contextlib.contextmanager
def locked_output(folder, command: str, subfolders: Sequence[str] = ()) -> Iterator[Path]:
    """Hold the lock of an output folder for the whole command, and remove the temporary
    files a killed run left there.

    Another process writing to ``folder`` makes this refuse at once
    (:class:`~deeptree.io.FolderLocked`, exit 2); the lock of a process that died is taken
    over with a notice on stderr. Temporary files of dead processes of this package are
    removed from ``folder`` and ``subfolders`` (:func:`~deeptree.files.clean_orphan_temporaries`),
    with a notice.

    Parameters
    ----------
    folder : path-like
        Created if missing.
    command : str
        The subcommand, e.g. ``"predict"``.
    subfolders : sequence of str
        The sub-folders of ``folder`` the command writes into (cleaned too; nothing deeper).
    """
    folder = Path(folder)
    lock = FolderLock(folder, f"deeptree {command}")
    with lock:
        if lock.taken_over:
            print(
                f"deeptree {command}: took over the lock of a process that no longer runs "
                f"({folder / lock.path.name}: {lock.taken_over})",
                file=sys.stderr,
            )
        removed = clean_orphan_temporaries(folder, subfolders)
        if removed:
            print(
                f"deeptree {command}: removed {len(removed)} temporary file(s) left in {folder} "
                "by an interrupted run",
                file=sys.stderr,
            )
        yield folder


def warn_thick_inputs(paths: Sequence[Path]) -> None:
    """One :class:`~deeptree.io_checks.ThickSliceWarning` for the inputs (headers only are read)
    whose voxels are thicker than :data:`~deeptree.io_checks.THICK_SLICE_MM`: how many, and the
    first of them."""
    import warnings

    import nibabel as nib
    import numpy as np

    thick = []
    for path in paths:
        try:
            # the voxel size of every reader: the affine's columns (deeptree.io.read_nifti)
            affine = np.asarray(nib.load(str(path)).affine, float)
            zooms = tuple(float(z) for z in np.linalg.norm(affine[:3, :3], axis=0))
        except Exception:  # unreadable: the case reports it when it is read
            continue
        if zooms and max(zooms) > THICK_SLICE_MM:
            thick.append((path, zooms))
    if thick:
        path, zooms = thick[0]
        name = str(path) if len(thick) == 1 else f"{len(thick)} of {len(paths)} inputs, e.g. {path}"
        warnings.warn(thick_slice_message(zooms, name), ThickSliceWarning, stacklevel=2)


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


def mask_inputs(args, kinds: Sequence[str]) -> tuple[dict[str, Path], Path]:
    """The input masks and the output folder of a per-mask subcommand (``--input``, ``--out``,
    ``--dataset-layout``): refuses an output folder over the inputs or not writable, and warns
    once about thick-slice inputs.

    Returns
    -------
    files : dict of case id to Path
        :func:`masks_by_id` of ``args.input``.
    out_dir : Path
    """
    files = masks_by_id(args.input)
    out_dir = Path(args.out)
    for folder in output_folders(out_dir, kinds, args.dataset_layout):
        refuse_out_over_inputs(folder, files.values(), from_folder=Path(args.input).is_dir())
    check_writable_folder(out_dir)
    warn_thick_inputs(list(files.values()))
    return files, out_dir


def run_cases_locked(
    command: str,
    out_dir,
    settings: Mapping,
    cases: Mapping[str, Path],
    work: Callable,
    *,
    overwrite: bool = False,
    progress: bool = False,
    subfolders: Sequence[str] = (),
    targets: Callable[[str, Path], Sequence[Path]] | None = None,
) -> list[str]:
    """Run ``work`` on every case with the output folder locked (:func:`locked_output`, with
    ``subfolders``) and the cases its :class:`DoneRecord` holds as complete under the same
    ``settings`` kept; ``targets`` as in :func:`for_each_case`.

    Returns
    -------
    list of str
        :func:`for_each_case`'s problems (one line per failed case).
    """
    with locked_output(out_dir, command, subfolders):
        done = DoneRecord(out_dir, command, settings, overwrite=overwrite)
        return for_each_case(
            cases, work, desc=command, progress=progress, record=done, targets=targets
        )
