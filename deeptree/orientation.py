"""One canonical voxel order for everything a model reads: RAS.

A network learns anatomy in voxel order: one trained on RAS volumes (the phantoms are written
RAS: the voxel index i increases towards the patient's Right, j towards Anterior, k towards
Superior) sees an LPS CT (most DICOM-derived files, the real samples) mirrored left-right and
front-back. So every volume a model reads,
in training and at inference, is first brought to the closest canonical (RAS) voxel order
with nibabel (``io_orientation``, ``apply_orientation``: axis flips and permutations only,
no interpolation, as ``nibabel.as_closest_canonical``), and every result goes back to the
input's own voxel order by the exact inverse (:class:`Reorientation`). The affine of the
reoriented volume describes the same world positions, so an oblique affine stays oblique.

Checkpoints record the orientation they were trained in (``meta["orientation"]``,
:data:`CANONICAL`); one without the record was trained on RAS phantoms
(:func:`check_orientation`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from nibabel.orientations import (
    apply_orientation,
    axcodes2ornt,
    inv_ornt_aff,
    io_orientation,
    ornt2axcodes,
    ornt_transform,
)

from deeptree.io import Case, InputError
from deeptree.io_checks import check_affine

#: The voxel order every model is trained and run in.
CANONICAL = "RAS"

_RAS_ORNT = axcodes2ornt(tuple(CANONICAL))


@dataclass(frozen=True)
class Reorientation:
    """How a volume's voxel order maps to RAS and back.

    Attributes
    ----------
    shape : tuple of 3 int
        The input's shape.
    affine : ndarray (4, 4), float64
        The input's voxel-to-world affine (mm).
    ornt : ndarray (3, 2)
        nibabel orientation transform from the input's voxel order to RAS.
    ras_affine : ndarray (4, 4), float64
        The affine of the reoriented (RAS) volume: same world positions.
    """

    shape: tuple[int, int, int]
    affine: np.ndarray
    ornt: np.ndarray
    ras_affine: np.ndarray

    @property
    def identity(self) -> bool:
        """True when the input already is in RAS voxel order (nothing is flipped or permuted)."""
        return bool(np.array_equal(self.ornt, _RAS_ORNT))

    @property
    def codes(self) -> str:
        """The input's closest voxel-axis codes, e.g. ``"LPS"``."""
        return "".join(ornt2axcodes(io_orientation(self.affine)))

    @property
    def ras_shape(self) -> tuple[int, int, int]:
        """The shape of the reoriented volume."""
        return tuple(int(self.shape[int(a)]) for a in np.argsort(self.ornt[:, 0]))

    def to_ras(self, array: np.ndarray) -> np.ndarray:
        """The array in RAS voxel order.

        Parameters
        ----------
        array : ndarray, shape ``shape``, any dtype

        Returns
        -------
        ndarray, shape ``ras_shape``, same dtype
            ``array`` itself when :attr:`identity`, else a C-contiguous copy (flips and axis
            permutations only: the voxel values are unchanged).
        """
        array = np.asarray(array)
        if tuple(array.shape) != tuple(self.shape):
            raise InputError(f"reorientation: array of shape {array.shape}, expected {self.shape}")
        if self.identity:
            return array
        return np.ascontiguousarray(apply_orientation(array, self.ornt))

    def from_ras(self, array: np.ndarray) -> np.ndarray:
        """Bring an array in RAS voxel order back to the input's voxel order (exact inverse).

        Parameters
        ----------
        array : ndarray, shape ``ras_shape``, any dtype

        Returns
        -------
        ndarray, shape ``shape``, same dtype
            ``array`` itself when :attr:`identity`, else a C-contiguous copy.
        """
        array = np.asarray(array)
        if tuple(array.shape) != self.ras_shape:
            raise InputError(
                f"reorientation: array of shape {array.shape}, expected {self.ras_shape}"
            )
        if self.identity:
            return array
        back = ornt_transform(_RAS_ORNT, self.ornt)
        return np.ascontiguousarray(apply_orientation(array, back))


def reorientation(affine: np.ndarray, shape, name: str = "volume") -> Reorientation:
    """The :class:`Reorientation` of a volume of ``shape`` with ``affine`` to RAS.

    Parameters
    ----------
    affine : ndarray (4, 4)
        Voxel-to-world affine (mm); must be finite and invertible.
    shape : 3 ints
    name : str
        What to call the volume in errors.

    Raises
    ------
    InputError
        A non-finite or singular affine (:func:`deeptree.io_checks.check_affine`).
    """
    affine = check_affine(affine, name)
    shape = tuple(int(n) for n in shape)
    ornt = io_orientation(affine)
    return Reorientation(shape, affine, ornt, affine @ inv_ornt_aff(ornt, shape))


def to_ras(array: np.ndarray, affine: np.ndarray, name: str = "volume") -> tuple[np.ndarray, np.ndarray]:
    """A volume in RAS voxel order and its affine.

    Parameters
    ----------
    array : ndarray, shape (I, J, K)
    affine : ndarray (4, 4)
        Its voxel-to-world affine (mm).
    name : str
        What to call the volume in errors.

    Returns
    -------
    array : ndarray, shape permuted from (I, J, K), same dtype
        ``array`` itself when already RAS.
    affine : ndarray (4, 4), float64
        The reoriented volume's affine (the same world positions).
    """
    r = reorientation(affine, np.shape(array), name)
    return r.to_ras(array), r.ras_affine


def case_to_ras(case: Case) -> Case:
    """A :class:`deeptree.io.Case` in RAS voxel order: CT, label, spacing (permuted to the new
    axes) and affine; the case itself when it already is RAS.

    Parameters
    ----------
    case : deeptree.io.Case

    Returns
    -------
    deeptree.io.Case
        ``spacing`` is the reoriented affine's column norms (mm).
    """
    ref = case.ct if case.ct is not None else case.label
    r = reorientation(case.affine, np.shape(ref), case.id)
    if r.identity:
        return case
    spacing = tuple(float(v) for v in np.linalg.norm(r.ras_affine[:3, :3], axis=0))
    return Case(
        id=case.id,
        ct=r.to_ras(case.ct) if case.ct is not None else None,
        label=r.to_ras(case.label) if case.label is not None else None,
        spacing=spacing,
        affine=r.ras_affine,
    )


def orientation_record() -> dict:
    """The ``orientation`` entry of a checkpoint's metadata: ``{"orientation": "RAS"}``."""
    return {"orientation": CANONICAL}


def check_orientation(meta: dict, name: str = "checkpoint") -> str:
    """The voxel order a checkpoint was trained in, refusing one this code cannot run.

    Parameters
    ----------
    meta : dict
        A checkpoint's metadata. Without ``"orientation"`` (the shipped demo weights and every
        checkpoint written before the record): trained on the RAS phantoms, so RAS.
    name : str
        What to call the checkpoint in the error.

    Returns
    -------
    str
        :data:`CANONICAL`.

    Raises
    ------
    InputError
        A recorded orientation other than :data:`CANONICAL`.
    """
    recorded = meta.get("orientation", CANONICAL)
    if recorded != CANONICAL:
        raise InputError(
            f"{name}: trained in voxel orientation {recorded!r}; this version runs models in "
            f"{CANONICAL!r} only"
        )
    return CANONICAL
