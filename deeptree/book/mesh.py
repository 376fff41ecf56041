"""A small surface mesh of an airway mask for the book's interactive 3D view.

The mesh is made with marching cubes (scikit-image) on the binary mask, in millimetres of
the scanner's world frame (the affine's rotation and scaling, so that +z points to the head),
coarsened by marching-cubes' ``step_size`` until it fits a triangle budget, quantised to
16 bits and written as a small JavaScript file that the vendored viewer
(``assets/mesh-viewer.js``) draws on a canvas: no kernel, no CDN, no WebGL needed.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deeptree.io import InputError, atomic_write, check_binary_mask, read_nifti

#: Default most triangles of a mesh: about 12 bytes each in the page's JavaScript (the cpu
#: profile's phantoms, about 25,000 triangles at full resolution, make about 300 kB).
MAX_TRIANGLES = 30_000


@dataclass
class Mesh:
    """A triangle mesh.

    Attributes
    ----------
    vertices : ndarray, shape (V, 3), float32
        Vertex positions in mm in the world frame of the affine (x, y, z), centred on the
        mesh's bounding-box centre.
    faces : ndarray, shape (F, 3), int64
        Vertex indices of each triangle.
    step : int
        The marching-cubes step size (voxels) used to meet the triangle budget.
    """

    vertices: np.ndarray
    faces: np.ndarray
    step: int


def airway_mesh(mask: np.ndarray, affine: np.ndarray, *, max_triangles: int = MAX_TRIANGLES,
                name: str = "mask") -> Mesh:
    """Surface mesh of a binary mask, coarsened to at most ``max_triangles`` triangles.

    Parameters
    ----------
    mask : ndarray, shape (I, J, K), bool or 0/1 integers
        The airway mask in nibabel's (i, j, k) order.
    affine : ndarray, shape (4, 4), float
        The voxel-to-world affine (mm); only its 3x3 part (rotation and spacing) is used.
    max_triangles : int
        Triangle budget; marching cubes' step size grows (1, 2, 3, ... voxels) until the mesh
        fits.
    name : str
        What to call the mask in errors (usually its file name).

    Returns
    -------
    Mesh

    Raises
    ------
    InputError
        Not a 3D binary mask, empty mask, bad affine, or no step size fits the budget.
    """
    from skimage.measure import marching_cubes

    mask = check_binary_mask(mask, name)
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.isfinite(affine).all():
        raise InputError(f"{name}: expected a finite 4x4 affine, got shape {affine.shape}")
    if max_triangles < 1:
        raise InputError(f"{name}: max_triangles must be positive, got {max_triangles}")
    # Crop to the mask and pad by one voxel so that the surface is closed at the borders.
    nonzero = np.nonzero(mask)
    lo = np.array([a.min() for a in nonzero])
    hi = np.array([a.max() for a in nonzero]) + 1
    volume = np.pad(mask[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]], 1).astype(np.float32)
    for step in range(1, max(volume.shape)):
        verts, faces, _, _ = marching_cubes(volume, level=0.5, step_size=step,
                                            allow_degenerate=False)
        if len(faces) <= max_triangles:
            break
    else:
        raise InputError(f"{name}: no marching-cubes step fits {max_triangles} triangles")
    world = (verts + lo - 1) @ affine[:3, :3].T
    world -= (world.min(axis=0) + world.max(axis=0)) / 2
    return Mesh(world.astype(np.float32), faces.astype(np.int64), step)


def mesh_payload(mesh: Mesh, title: str) -> dict:
    """The JSON object the viewer reads: quantised vertices and faces in base64.

    Parameters
    ----------
    mesh : Mesh
    title : str
        Shown under the view.

    Returns
    -------
    dict
        ``title``; ``scale`` (3 floats, mm per quantisation step) and ``offset`` (3 floats,
        mm) so that ``position = offset + scale * q`` for the uint16 vertex codes ``q``;
        ``vertices`` (base64 of little-endian uint16, V x 3); ``faces`` (base64 of
        little-endian uint16 when V <= 65536, else uint32, F x 3); ``indexBytes`` (2 or 4);
        ``triangles`` (F).
    """
    vertices = mesh.vertices.astype(np.float64)
    offset = vertices.min(axis=0)
    extent = np.maximum(vertices.max(axis=0) - offset, 1e-6)
    scale = extent / 65535.0
    codes = np.round((vertices - offset) / scale).astype("<u2")
    index_dtype = "<u2" if len(vertices) <= 65536 else "<u4"
    return {
        "title": title,
        "scale": [float(s) for s in scale],
        "offset": [float(o) for o in offset],
        "vertices": base64.b64encode(codes.tobytes()).decode("ascii"),
        "faces": base64.b64encode(mesh.faces.astype(index_dtype).tobytes()).decode("ascii"),
        "indexBytes": np.dtype(index_dtype).itemsize,
        "triangles": int(len(mesh.faces)),
    }


def write_mesh_js(path: str | os.PathLike, key: str, payload: dict) -> Path:
    """Write a mesh payload as a script that registers it under ``key`` (atomically).

    A script file (not JSON fetched at run time) so that the page also works when opened
    from a folder (``file://``), where browsers refuse ``fetch``.

    Parameters
    ----------
    path : path-like
        The ``.js`` file to write.
    key : str
        The name under which the viewer finds the mesh (``data-mesh`` of its element).
    payload : dict
        From :func:`mesh_payload`.

    Returns
    -------
    Path
    """
    text = ("window.deeptreeMeshes = window.deeptreeMeshes || {};\n"
            f"window.deeptreeMeshes[{json.dumps(key)}] = {json.dumps(payload)};\n")
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def mask_file_mesh(path: str | os.PathLike, *, max_triangles: int = MAX_TRIANGLES) -> Mesh:
    """:func:`airway_mesh` of a NIfTI mask file (any nonzero label counts as airway).

    Parameters
    ----------
    path : path-like
        A ``.nii.gz`` airway mask (0/1, or anatomy labels 0-3).
    max_triangles : int

    Returns
    -------
    Mesh
    """
    volume = read_nifti(path)
    return airway_mesh(volume.array != 0, volume.affine, max_triangles=max_triangles,
                       name=str(path))
