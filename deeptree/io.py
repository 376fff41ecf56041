"""Reading and writing NIfTI cases, dataset layouts, and input validation.

Conventions (see the README's "Conventions"):

* arrays are numpy in nibabel's (i, j, k) order, never transposed or resampled here;
* ``spacing`` is a 3-tuple of floats in mm, taken from the header zooms;
* the affine travels with a case and is written back unchanged;
* masks are ``bool`` or ``uint8``; anatomy labels ``uint8`` in {0, 1, 2, 3};
* outputs are written to a temporary name in the target folder and renamed, so an
  interrupted write never leaves a partial file; inputs are never modified.

Every problem with an input raises :class:`InputError`, whose message names the file
and the problem.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

#: The small real files shipped with the repository (see ``data/samples/README.md``).
SAMPLES_DIR = Path(__file__).resolve().parent.parent / "data" / "samples"

#: Tolerance (mm) when comparing the affines of a CT and its label.
AFFINE_TOLERANCE_MM = 1e-3


class InputError(ValueError):
    """A bad input file or array. The message names the file (or array) and the problem."""


# --------------------------------------------------------------------------------------------
# validation of arrays
# --------------------------------------------------------------------------------------------
def check_volume(array: np.ndarray, name: str = "array") -> np.ndarray:
    """Check that ``array`` is a finite 3D volume and return it unchanged.

    Parameters
    ----------
    array : ndarray, shape (I, J, K), any numeric dtype
    name : str
        What to call the array in the error (usually its file name).

    Raises
    ------
    InputError
        If the array is not 3D, is empty, or (for float dtypes) holds NaN or inf.
    """
    array = np.asarray(array)
    if array.ndim != 3:
        raise InputError(f"{name}: expected a 3D volume, got {array.ndim}D with shape {array.shape}")
    if array.size == 0:
        raise InputError(f"{name}: the volume is empty (shape {array.shape})")
    if array.dtype.kind not in "biuf":
        raise InputError(f"{name}: expected a numeric volume, got dtype {array.dtype}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        n_bad = int((~np.isfinite(array)).sum())
        raise InputError(f"{name}: {n_bad} voxels are NaN or infinite")
    return array


def check_spacing(spacing, name: str = "spacing") -> tuple[float, float, float]:
    """Return ``spacing`` as a tuple of three positive floats (mm), else raise.

    Parameters
    ----------
    spacing : sequence of 3 numbers
        Voxel size along (i, j, k) in mm.
    name : str
        What to call it in the error (usually the file name).
    """
    try:
        values = tuple(float(s) for s in spacing)
    except (TypeError, ValueError) as err:
        raise InputError(f"{name}: spacing must be three numbers in mm, got {spacing!r}") from err
    if len(values) != 3:
        raise InputError(f"{name}: spacing must have 3 values (mm), got {len(values)}: {values}")
    if not all(np.isfinite(v) and v > 0 for v in values):
        raise InputError(f"{name}: spacing must be positive and finite (mm), got {values}")
    return values  # type: ignore[return-value]


def check_binary_mask(mask: np.ndarray, name: str = "mask", allow_empty: bool = False) -> np.ndarray:
    """Check that ``mask`` is a binary 3D volume and return it as ``bool``.

    Parameters
    ----------
    mask : ndarray, shape (I, J, K), bool or integer or float holding only 0 and 1
    name : str
        What to call it in the error.
    allow_empty : bool
        If False (default) an all-zero mask is an error.

    Returns
    -------
    ndarray of bool, shape (I, J, K)
        A new array when a conversion was needed; the input is never modified.
    """
    mask = check_volume(mask, name)
    if mask.dtype != bool:
        # Elementwise tests instead of np.unique: unique sorts the whole volume (seconds on a
        # 512x512x679 mask); only the offending values are sorted for the message.
        offending = (mask != 0) & (mask != 1)
        if offending.any():
            values = np.unique(mask[offending])
            shown = ", ".join(str(v) for v in values[:6]) + (" ..." if values.size > 6 else "")
            raise InputError(f"{name}: expected a binary mask (0/1), found values {shown}")
        mask = mask != 0
    if not allow_empty and not mask.any():
        raise InputError(f"{name}: the mask is empty (no foreground voxel)")
    return mask


def check_same_grid(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    """Raise :class:`InputError` unless ``a`` and ``b`` have the same shape."""
    if a.shape != b.shape:
        raise InputError(f"{name_b}: shape {b.shape} does not match {name_a} shape {a.shape}")


# --------------------------------------------------------------------------------------------
# plausibility of inputs (README: "When something goes wrong")
# --------------------------------------------------------------------------------------------
#: A chest CT in Hounsfield units has air and lung below this (HU); one without is not in HU.
HU_AIR_BELOW = -500.0

#: A mask of more than this fraction of its volume is no airway mask (an airway fills ~1-3%).
MAX_MASK_FRACTION = 0.5

#: Voxels larger than this along any axis (mm) are too coarse for the 2 mm anatomy rule.
THICK_SLICE_MM = 2.5


class ThickSliceWarning(UserWarning):
    """An input's voxels are larger than :data:`THICK_SLICE_MM` along some axis."""


def check_ct_in_hu(ct: np.ndarray, name: str = "CT") -> np.ndarray:
    """Check that a chest CT is in Hounsfield units and return it unchanged.

    A chest CT holds air and lung, about -1000 and -850 HU. With no voxel below
    :data:`HU_AIR_BELOW` the values are not HU: typically raw detector values stored as
    0..4095 without the rescale slope/intercept, or an image normalised to 0..1. The networks
    would then see every voxel as soft tissue (or every voxel as airway).

    Parameters
    ----------
    ct : ndarray, shape (I, J, K), numeric
    name : str
        The file, for the message.

    Raises
    ------
    InputError
        No voxel below -500 HU, naming the range found and what to do.
    """
    low, high = float(np.min(ct)), float(np.max(ct))
    if low >= HU_AIR_BELOW:
        if high <= 1.0:
            hint = "it looks normalised to 0..1"
        elif low >= 0:
            hint = "it looks like raw scanner values (often 0..4095: subtract 1024, or apply the rescale slope and intercept)"
        else:
            hint = "a chest CT has air and lung near -1000 HU"
        raise InputError(
            f"{name}: not a CT in Hounsfield units: values {low:g}..{high:g}, no voxel below "
            f"{HU_AIR_BELOW:g} HU ({hint}); convert it to HU first"
        )
    return ct


def check_mask_fraction(mask: np.ndarray, name: str = "mask") -> float:
    """Refuse an airway mask that fills most of its volume.

    Parameters
    ----------
    mask : ndarray, shape (I, J, K), bool or 0/1
    name : str
        The file, for the message.

    Returns
    -------
    float
        The fraction of foreground voxels, in [0, :data:`MAX_MASK_FRACTION`].

    Raises
    ------
    InputError
        More than :data:`MAX_MASK_FRACTION` of the voxels are foreground: an inverted mask,
        a lung or body mask, or a mask of all ones (an airway fills a few percent of a chest
        CT at most).
    """
    fraction = float(np.count_nonzero(mask)) / max(int(np.size(mask)), 1)
    if fraction > MAX_MASK_FRACTION:
        raise InputError(
            f"{name}: the mask fills {100 * fraction:.0f}% of its volume; an airway mask fills a "
            "few percent at most (is it inverted, a lung or body mask, or all ones?)"
        )
    return fraction


def warn_thick_slices(spacing, name: str = "volume") -> bool:
    """Warn (:class:`ThickSliceWarning`) when a voxel is larger than :data:`THICK_SLICE_MM`.

    Parameters
    ----------
    spacing : sequence of 3 float
        Voxel size (mm).
    name : str
        The file, for the message.

    Returns
    -------
    bool
        True if it warned.
    """
    if max(float(v) for v in spacing) <= THICK_SLICE_MM:
        return False
    import warnings

    warnings.warn(thick_slice_message(spacing, name), ThickSliceWarning, stacklevel=2)
    return True


def thick_slice_message(spacing, name: str) -> str:
    """The text of the thick-slice warning: the voxel size and what it changes."""
    shown = " x ".join(f"{float(v):g}" for v in spacing)
    return (
        f"{name}: voxels of {shown} mm, thicker than {THICK_SLICE_MM:g} mm: bronchi of 2 mm and "
        "less are under one voxel there, so lumen diameters, the anatomy classes (class 3 = "
        "<= 2 mm) and the small-airway metrics are unreliable; use thin-slice CT (<= 1.25 mm) "
        "where you can"
    )


def check_header_size(path: str | os.PathLike, image=None) -> None:
    """Check, before any voxel is read, that a NIfTI file can hold the data its header claims,
    and that this machine could hold them in memory.

    Parameters
    ----------
    path : path-like
        A ``.nii`` or ``.nii.gz`` file.
    image : nibabel image, optional
        Already loaded (header only) from ``path``.

    Raises
    ------
    InputError
        An uncompressed file shorter than its header's data (truncated, or a wrong header),
        a compressed file too small to hold them at gzip's best ratio, or data larger than
        this machine's memory, naming the shape, dtype and sizes.
    """
    path = Path(path)
    if image is None:
        image = nib.load(str(path))
    header = image.header
    shape = tuple(int(v) for v in image.shape)
    itemsize = np.dtype(header.get_data_dtype()).itemsize
    needed = int(np.prod(shape, dtype=np.float64)) * itemsize
    offset = int(getattr(image.dataobj, "offset", None) or header.get_data_offset())
    on_disk = path.stat().st_size
    shown = " x ".join(str(v) for v in shape)
    what = f"its header declares {shown} voxels of {header.get_data_dtype()} ({_bytes(needed)})"
    if path.name.endswith(".gz"):
        if needed > on_disk * 1100:  # gzip never compresses more than about 1032:1
            raise InputError(
                f"{path}: {what}, more than a compressed file of {_bytes(on_disk)} can hold; "
                "the header does not match the data (a damaged or wrongly written file)"
            )
    elif on_disk < offset + needed:
        raise InputError(
            f"{path}: {what}, but the file holds only {_bytes(max(on_disk - offset, 0))} of "
            "data; it is truncated or its header does not match the data"
        )
    memory = _physical_memory()
    if memory is not None and needed > memory:
        raise InputError(
            f"{path}: {what}, more than this machine's memory ({_bytes(memory)}); crop or "
            "downsample it first, or use a machine with more memory"
        )


def _bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _physical_memory() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


# --------------------------------------------------------------------------------------------
# NIfTI
# --------------------------------------------------------------------------------------------
@dataclass
class Volume:
    """One NIfTI volume.

    Attributes
    ----------
    array : ndarray, shape (I, J, K)
        The voxel data in nibabel's (i, j, k) order, with the dtype on disk.
    affine : ndarray, shape (4, 4), float64
        Voxel to world (RAS, mm) transform from the header.
    spacing : tuple of 3 float
        Voxel size in mm (header zooms).
    path : Path or None
        Where it was read from.
    """

    array: np.ndarray
    affine: np.ndarray
    spacing: tuple[float, float, float]
    path: Path | None = None


def read_nifti(path: str | os.PathLike, *, dtype=None) -> Volume:
    """Read a 3D NIfTI file and validate it.

    Parameters
    ----------
    path : path-like
        A ``.nii`` or ``.nii.gz`` file.
    dtype : numpy dtype, optional
        Cast the data to this dtype (default: the on-disk dtype; scaled data come back
        as float64, as nibabel returns them).

    Returns
    -------
    Volume

    Raises
    ------
    InputError
        Missing file, unreadable or not NIfTI, not 3D (a 4D file with one volume is
        accepted and squeezed), NaN/inf voxels, zero or negative spacing, a header that
        declares more data than the file holds or than this machine's memory
        (:func:`check_header_size`).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        image = nib.load(str(path))
    except Exception as err:  # nibabel raises several exception types for a bad file
        raise InputError(f"{path}: not a readable NIfTI file ({type(err).__name__}: {err})") from err
    if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputError(f"{path}: not a NIfTI file (nibabel read it as {type(image).__name__})")
    shape = image.shape
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise InputError(f"{path}: expected a 3D volume, got {len(image.shape)}D with shape {image.shape}")
    # nibabel silently replaces zero voxel sizes by 1 when it loads a header: check the
    # sizes as stored on disk and the affine's column norms as well.
    check_spacing(_stored_zooms(path, type(image.header)), str(path))
    check_spacing(np.linalg.norm(np.asarray(image.affine)[:3, :3], axis=0), str(path))
    spacing = check_spacing(image.header.get_zooms()[:3], str(path))
    check_header_size(path, image)
    try:
        if image.dataobj.slope not in (None, 1.0) or image.dataobj.inter not in (None, 0.0):
            array = np.asarray(image.get_fdata(dtype=np.float32))
        else:
            array = np.asarray(image.dataobj)
    except Exception as err:
        raise InputError(f"{path}: could not read the voxel data ({type(err).__name__}: {err})") from err
    array = array.reshape(shape)
    if dtype is not None:
        array = array.astype(dtype, copy=False)
    check_volume(array, str(path))
    affine = np.asarray(image.affine, dtype=np.float64)
    if not np.isfinite(affine).all():
        raise InputError(f"{path}: the affine holds NaN or infinite values")
    return Volume(array=array, affine=affine, spacing=spacing, path=path)


def _stored_zooms(path: Path, header_class) -> tuple[float, float, float]:
    """Voxel sizes as written in the file's header, before nibabel's automatic fixes."""
    from nibabel.openers import ImageOpener

    with ImageOpener(str(path)) as fileobj:
        header = header_class.from_fileobj(fileobj, check=False)
    return tuple(float(z) for z in header["pixdim"][1:4])


def _temporary_sibling(path: Path) -> Path:
    """A unique temporary file name in the folder of ``path`` with the same suffixes:
    ``.<name>.<pid>-<random>.tmp<suffix>`` (the process id lets a later run tell an orphan,
    left by a killed process, from the file of a process still writing; see
    :func:`clean_orphan_temporaries`)."""
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.{os.getpid()}-", suffix=f".tmp{suffix}", dir=path.parent
    )
    os.close(fd)
    # mkstemp creates the file with mode 0o600; the output gets the mode an ordinary
    # open(path, "w") would give it
    os.chmod(tmp, 0o666 & ~current_umask())
    return Path(tmp)


def current_umask() -> int:
    """The process's file-mode creation mask (e.g. ``0o022``), read without changing it.

    Returns
    -------
    int
        The umask bits; a new file written with ``open(path, "w")`` gets ``0o666 & ~umask``.
    """
    try:  # Linux: read it, so that no other thread sees a changed umask
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write) -> Path:
    """Write a file through ``write(tmp_path)`` to a temporary name, then rename it.

    Parameters
    ----------
    path : path-like
        Final file name. Its folder is created if missing.
    write : callable
        ``write(tmp_path)`` writes the whole file to ``tmp_path``.

    Returns
    -------
    Path
        ``path``. If ``write`` raises, the temporary file is removed and ``path`` is
        left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_sibling(path)
    try:
        write(tmp)
        _test_kill_point(path, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


#: Test hook (for the kill tests, never for normal use): ``DEEPTREE_TEST_KILL_AT=<file name>``
#: or ``<file name>:<n>`` makes the process kill itself (SIGKILL) during its n-th (default
#: first) :func:`atomic_write` of a file of that name, after the temporary file was written and
#: cut to half its size, before the rename: exactly what a ``kill -9`` in the middle of that
#: write leaves behind, at a deterministic point.
TEST_KILL_ENV = "DEEPTREE_TEST_KILL_AT"

_test_kill_count = 0


def _test_kill_point(path: Path, tmp: Path) -> None:
    """The :data:`TEST_KILL_ENV` hook of :func:`atomic_write` (does nothing when unset)."""
    global _test_kill_count
    spec = os.environ.get(TEST_KILL_ENV)
    if not spec:
        return
    name, _, nth = spec.partition(":")
    if path.name != name:
        return
    _test_kill_count += 1
    if _test_kill_count != (int(nth) if nth else 1):
        return
    import signal

    with open(tmp, "r+b") as f:  # torn: half of the file reached the disk
        f.truncate(os.fstat(f.fileno()).st_size // 2)
    os.kill(os.getpid(), signal.SIGKILL)


#: A temporary file of :func:`atomic_write`: ``.<name>.<pid>-<random>.tmp<suffix>``; group 1 is
#: the pid (absent in the names of earlier versions, ``.<name>.<random>.tmp<suffix>``).
_TEMPORARY = re.compile(r"^\..+?\.(?:(\d+)-)?[A-Za-z0-9_]+\.tmp(?:\.[A-Za-z0-9.]+)?$")

#: A temporary file without a process id is an orphan once it is this old (seconds).
ORPHAN_AGE_S = 3600.0


def _process_alive(pid: int) -> bool:
    """True if a process ``pid`` runs on this machine (or cannot be checked)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # it exists (another user's), or we cannot tell: keep its files
    return True


def clean_orphan_temporaries(folder: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Remove the temporary files that a killed process left in ``folder``.

    A temporary file of :func:`atomic_write` is only ever renamed to its final name when
    whole, so one that is still there belongs either to a process that is writing it now or
    to one that was killed. It is removed when the process id in its name no longer runs
    (or, for a name without a process id, when it is older than :data:`ORPHAN_AGE_S`); a file
    of a running process is left alone. Hidden files are never read as inputs either way.

    Parameters
    ----------
    folder : path-like
        A missing folder is fine (nothing to clean).
    recursive : bool
        Also clean the sub-folders.

    Returns
    -------
    list of Path
        The files removed.
    """
    import time

    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    candidates = folder.rglob(".*") if recursive else folder.glob(".*")
    for path in sorted(candidates):
        match = _TEMPORARY.match(path.name)
        if match is None or not path.is_file():
            continue
        pid = match.group(1)
        if pid is not None:
            if int(pid) == os.getpid() or _process_alive(int(pid)):
                continue
        else:
            try:
                if time.time() - path.stat().st_mtime < ORPHAN_AGE_S:
                    continue
            except FileNotFoundError:
                continue
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        removed.append(path)
    return removed


#: The lock file of an output folder (:class:`FolderLock`).
LOCK_NAME = ".deeptree.lock"


class FolderLocked(InputError):
    """Another running process holds the lock of an output folder."""


class FolderLock:
    """An exclusive lock on an output folder, so that two processes never write one folder.

    ``with FolderLock(folder, "deeptree predict"):`` creates ``folder`` if needed and the lock
    file ``folder/.deeptree.lock`` (holding the process id, host and command), locked with
    ``flock``; it is removed on exit. The kernel releases the lock when a process dies, even
    by ``kill -9``: the stale file of a dead process is then taken over (with a notice). A
    second process refuses at once with :class:`FolderLocked`, naming the folder and the
    process that holds it.

    Parameters
    ----------
    folder : path-like
    command : str
        What this process is, for the other process's message.
    """

    def __init__(self, folder: str | os.PathLike, command: str = "deeptree"):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.command = command
        self._fd: int | None = None
        #: the holder of a stale lock that was taken over (its file's text), or None
        self.taken_over: str | None = None

    def acquire(self) -> FolderLock:
        """Take the lock (see the class). Raises :class:`FolderLocked` if it is held."""
        import json
        import socket

        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(10):  # retried while another process removes the file under us
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                held = not _flock(fd)
                previous = os.read(fd, 4096).decode("utf-8", "replace").strip()
                if held:
                    raise FolderLocked(_locked_message(self.folder, previous))
                if os.fstat(fd).st_ino != os.stat(self.path).st_ino:
                    os.close(fd)  # the holder removed the file as we opened it: again
                    continue
            except FileNotFoundError:
                os.close(fd)
                continue
            except BaseException:
                os.close(fd)
                raise
            if previous and not _flock_supported(fd):
                # no flock on this file system: trust the process id in the file
                holder = _lock_holder(previous)
                if holder.get("pid") not in (None, os.getpid()) and _process_alive(
                    int(holder["pid"])
                ):
                    os.close(fd)
                    raise FolderLocked(_locked_message(self.folder, previous))
            self.taken_over = previous or None
            record = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "command": self.command,
                "since": _now(),
            }
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(record).encode())
            self._fd = fd
            return self
        raise FolderLocked(f"{self.folder}: could not take the lock {self.path}")

    def release(self) -> None:
        """Remove the lock file and release the lock."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)  # closing releases the flock
            self._fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _now() -> str:
    import datetime

    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


_NO_FLOCK: set[int] = set()


def _flock(fd: int) -> bool:
    """Try an exclusive non-blocking ``flock`` on ``fd``: False if another process holds it;
    True if taken, or if this file system has no ``flock`` (then remembered, see
    :func:`_flock_supported`)."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        _NO_FLOCK.add(fd)
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:  # e.g. ENOLCK on some network file systems
        _NO_FLOCK.add(fd)
        return True
    _NO_FLOCK.discard(fd)
    return True


def _flock_supported(fd: int) -> bool:
    return fd not in _NO_FLOCK


def _lock_holder(text: str) -> dict:
    import json

    try:
        holder = json.loads(text)
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def _locked_message(folder: Path, text: str) -> str:
    holder = _lock_holder(text)
    who = (
        f"`{holder.get('command', 'deeptree')}` (process {holder.get('pid', '?')} on "
        f"{holder.get('host', '?')}, since {holder.get('since', '?')})"
        if holder
        else "another process"
    )
    return (
        f"{folder}: {who} is writing to this folder; wait until it has finished, or give "
        f"another output folder (the lock is {folder / LOCK_NAME})"
    )


def write_nifti(
    path: str | os.PathLike,
    array: np.ndarray,
    affine: np.ndarray,
    *,
    dtype=None,
) -> Path:
    """Write a 3D array as NIfTI, atomically (temporary name, then rename).

    Parameters
    ----------
    path : path-like
        ``.nii`` or ``.nii.gz`` file name.
    array : ndarray, shape (I, J, K)
        ``bool`` arrays are written as ``uint8``.
    affine : ndarray, shape (4, 4)
        Written unchanged; the header zooms follow from it.
    dtype : numpy dtype, optional
        On-disk dtype (default: the array's, ``uint8`` for bool).

    Returns
    -------
    Path
    """
    path = Path(path)
    if not (path.name.endswith(".nii.gz") or path.name.endswith(".nii")):
        raise InputError(f"{path}: output name must end with .nii or .nii.gz")
    array = check_volume(np.asarray(array), str(path))
    if dtype is None:
        dtype = np.uint8 if array.dtype == bool else array.dtype
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise InputError(f"{path}: affine must be 4x4, got shape {affine.shape}")
    image = nib.Nifti1Image(np.asarray(array, dtype=dtype), affine)
    image.set_data_dtype(dtype)
    image.header.set_xyzt_units("mm", "sec")
    return atomic_write(path, lambda tmp: nib.save(image, str(tmp)))


# --------------------------------------------------------------------------------------------
# cases and layouts
# --------------------------------------------------------------------------------------------
@dataclass
class Case:
    """A CT with its (optional) airway label, on one grid.

    Attributes
    ----------
    id : str
        Case identifier, e.g. ``"ATM_001"``.
    ct : ndarray, shape (I, J, K), int16 or float32
        Hounsfield units.
    label : ndarray of uint8, shape (I, J, K), or None
        Binary airway mask (1 = lumen).
    spacing : tuple of 3 float
        mm.
    affine : ndarray, shape (4, 4)
    """

    id: str
    ct: np.ndarray | None
    label: np.ndarray | None
    spacing: tuple[float, float, float]
    affine: np.ndarray


def affines_match(a: np.ndarray, b: np.ndarray, tol: float = AFFINE_TOLERANCE_MM) -> bool:
    """True if two 4x4 affines agree to ``tol`` (mm) in every entry."""
    return bool(np.allclose(a, b, atol=tol, rtol=0))


def load_case(
    ct_path: str | os.PathLike | None,
    label_path: str | os.PathLike | None = None,
    case_id: str | None = None,
) -> Case:
    """Read a CT and/or its airway label and check that they share a grid.

    Parameters
    ----------
    ct_path : path-like or None
        CT in HU. None for a label-only case (e.g. ``data/samples/atm_001``).
    label_path : path-like or None
        Binary airway mask.
    case_id : str, optional
        Defaults to the file name without ``_0000`` and ``.nii(.gz)``.

    Raises
    ------
    InputError
        Any problem of :func:`read_nifti`, a CT not in Hounsfield units
        (:func:`check_ct_in_hu`), a label that is not binary or fills most of its volume
        (:func:`check_mask_fraction`), or a label whose shape or affine differs from the CT's.
    """
    if ct_path is None and label_path is None:
        raise InputError("load_case: give a CT path, a label path, or both")
    ct = read_nifti(ct_path) if ct_path is not None else None
    label = read_nifti(label_path) if label_path is not None else None
    label_array = None
    if label is not None:
        label_array = check_binary_mask(label.array, str(label.path), allow_empty=True).astype(np.uint8)
        check_mask_fraction(label_array, str(label.path))
    if ct is not None and label is not None:
        check_same_grid(ct.array, label.array, str(ct.path), str(label.path))
        if not affines_match(ct.affine, label.affine):
            raise InputError(
                f"{label.path}: affine does not match the CT {ct.path} "
                f"(largest difference {np.abs(ct.affine - label.affine).max():.4g} mm)"
            )
    if ct is not None:
        check_ct_in_hu(ct.array, str(ct.path))
    ref = ct if ct is not None else label
    if case_id is None:
        case_id = case_id_from_path(ref.path)
    return Case(
        id=case_id,
        ct=ct.array if ct is not None else None,
        label=label_array,
        spacing=ref.spacing,
        affine=ref.affine,
    )


def case_id_from_path(path: str | os.PathLike) -> str:
    """``imagesTr/ATM_001_0000.nii.gz`` -> ``"ATM_001"``; ``labelsTr/ATM_001.nii.gz`` -> ``"ATM_001"``."""
    name = Path(path).name
    name = re.sub(r"\.nii(\.gz)?$", "", name)
    return re.sub(r"_0000$", "", name)


@dataclass(frozen=True)
class CasePaths:
    """Where one case of a dataset lies. ``image`` or ``label`` is None when absent."""

    id: str
    image: Path | None
    label: Path | None


def list_cases(root: str | os.PathLike, split: str = "Tr") -> list[CasePaths]:
    """List the cases of a dataset in the ATM'22 layout.

    The layout (also used by the synthetic cohort)::

        root/imagesTr/ATM_001_0000.nii.gz   CT, HU
        root/labelsTr/ATM_001.nii.gz        airway mask

    Parameters
    ----------
    root : path-like
        Dataset folder.
    split : str
        ``"Tr"`` or ``"Ts"`` (``imagesTs``/``labelsTs``).

    Returns
    -------
    list of CasePaths
        Sorted by id; one entry per case found in either folder, with ``None`` where
        the other side is missing (callers report these instead of skipping them).

    Raises
    ------
    InputError
        If ``root`` has neither ``images{split}`` nor ``labels{split}``.
    """
    root = Path(root)
    images_dir, labels_dir = root / f"images{split}", root / f"labels{split}"
    if not images_dir.is_dir() and not labels_dir.is_dir():
        raise InputError(
            f"{root}: not a dataset in the ATM'22 layout (no images{split}/ or labels{split}/ folder)"
        )
    images = _nifti_by_id(images_dir)
    labels = _nifti_by_id(labels_dir)
    return [CasePaths(i, images.get(i), labels.get(i)) for i in sorted(set(images) | set(labels))]


def _nifti_by_id(folder: Path) -> dict[str, Path]:
    """The NIfTI files of ``folder`` by case id; two files with one id are an error."""
    if not folder.is_dir():
        return {}
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if not p.name.endswith((".nii.gz", ".nii")) or p.name.startswith("."):
            continue
        check_case_id_unique(found, case_id_from_path(p), p)
        found[case_id_from_path(p)] = p
    return found


def check_case_id_unique(found: dict, case_id: str, path: Path) -> None:
    """Raise :class:`InputError` if ``case_id`` (of ``path``) is already in ``found``, or
    differs from a key of ``found`` only in letter case (one file on a case-insensitive
    file system), naming both files.

    Parameters
    ----------
    found : dict case id -> Path
    case_id : str
    path : Path
    """
    for other_id, other in found.items():
        if other_id.lower() == case_id.lower():
            raise InputError(
                f"{path.parent}: {other.name} and {path.name} both give case id {case_id!r}; "
                "rename one of them (their outputs would overwrite each other)"
            )


def nifti_inputs(path: str | os.PathLike) -> list[Path]:
    """The NIfTI files a command should process: ``path`` itself, or every ``.nii``/``.nii.gz``
    in the folder ``path`` (sorted by name). Hidden and temporary files (names starting with
    ``.``, such as the temporary files of an interrupted write) are ignored.

    Raises
    ------
    InputError
        If ``path`` does not exist or is a folder without NIfTI files.
    """
    source = Path(path)
    if source.is_dir():
        inputs = sorted(
            p
            for p in source.iterdir()
            if p.name.endswith((".nii.gz", ".nii")) and not p.name.startswith(".")
        )
        if not inputs:
            raise InputError(f"{source}: no .nii or .nii.gz files")
        return inputs
    if source.is_file():
        return [source]
    raise InputError(f"{source}: no such file or folder")


def case_file_names(case_id: str) -> tuple[str, str]:
    """File names of a case in the ATM'22 layout: (``ID_0000.nii.gz``, ``ID.nii.gz``)."""
    return f"{case_id}_0000.nii.gz", f"{case_id}.nii.gz"


def iter_cases(root: str | os.PathLike, split: str = "Tr", require_label: bool = True) -> Iterator[Case]:
    """Load the cases of an ATM'22-layout dataset one at a time.

    Raises
    ------
    InputError
        If a case lacks its image, or its label when ``require_label``.
    """
    for paths in list_cases(root, split):
        if paths.image is None:
            raise InputError(f"{root}: case {paths.id} has a label but no image in images{split}/")
        if require_label and paths.label is None:
            raise InputError(f"{root}: case {paths.id} has no label in labels{split}/")
        yield load_case(paths.image, paths.label, paths.id)
