"""napari reader of the project's NIfTI cases (File > Open; manifest ``deeptree/napari.yaml``).

Opens a case folder, an ATM'22-layout dataset (its first case) or one ``.nii``/``.nii.gz``
file, following the case-folder convention of :mod:`deeptree.viz.case_folder`, and returns the
layers of :func:`deeptree.viz.napari_case.case_layer_data`: the physical spacing (mm) from the
headers as scale, the lung window for the CT, the project's colours for masks, anatomy
classes, prediction comparisons and the attention map. Missing or bad files are skipped
with a napari notification.

napari's own "builtins" reader also claims every file, so the first File > Open of a NIfTI
file or case folder asks which reader to use: choose "DeepTree" (and tick "remember" to keep
the choice, stored as napari's ``settings.plugins.extension2reader``). In code:
``viewer.open(path, plugin="deeptree")``. The manifest is registered by the
``napari.manifest`` entry point of ``pyproject.toml`` (installed with the package).
"""

from __future__ import annotations

import os
from pathlib import Path

from deeptree.viz.case_folder import CASE_FILES, is_dataset, load_view_case
from deeptree.viz.napari_case import case_layer_data

_NIFTI_SUFFIXES = (".nii.gz", ".nii")


def _single_path(path) -> Path | None:
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    return Path(path)


def _is_case_folder(path: Path) -> bool:
    if is_dataset(path):
        return True
    stems = [n for names in CASE_FILES.values() for n in names]
    return any((path / f"{s}{suf}").is_file() for s in stems for suf in _NIFTI_SUFFIXES)


def get_reader(path: str | os.PathLike | list):
    """napari reader hook: :func:`read_case` for a case folder, a dataset or a NIfTI file,
    None for anything else (so that napari tries other readers)."""
    path = _single_path(path)
    if path is None:
        return None
    if path.is_dir():
        return read_case if _is_case_folder(path) else None
    if path.is_file() and path.name.endswith(_NIFTI_SUFFIXES):
        return read_case
    return None


def read_case(path: str | os.PathLike | list) -> list[tuple]:
    """Read a case (folder, dataset or file) as napari layer data.

    Parameters
    ----------
    path : path-like, or a list of one path

    Returns
    -------
    list of (data, kwargs, layer_type)
        As :func:`deeptree.viz.napari_case.case_layer_data`, ``scale`` = spacing in mm.
    """

    case = load_view_case(_single_path(path))
    _notify(case.messages)
    return case_layer_data(case, ct_visible=True)


def _notify(messages: list[str]) -> None:
    if not messages:
        return
    try:
        from napari.utils.notifications import show_info
    except ImportError:  # pragma: no cover - napari is a dependency
        return
    show_info("deeptree: " + "\n".join(messages))
