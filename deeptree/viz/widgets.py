"""ipywidgets slice viewers for notebooks (readers without a desktop for napari).

:func:`slice_viewer` moves the axial, coronal and sagittal planes of
:func:`deeptree.viz.planes.show_planes` with three sliders; :func:`slice_slider` scrolls one plane.
Overlays and colours are those of :mod:`deeptree.viz` (see :func:`deeptree.viz.planes.case_overlays`).
Both are also reachable as ``deeptree.viz.slice_viewer`` / ``deeptree.viz.slice_slider``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from deeptree.extras import require
from deeptree.viz.colors import LUNG_WINDOW
from deeptree.viz.planes import (
    _PLANES,
    _aspect,
    _default_index,
    _overlay_rgba,
    _plane,
    show_planes,
)


def slice_slider(
    volume: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    *,
    overlays: Mapping[str, tuple] | None = None,
    plane: str = "axial",
    window: tuple[float, float] = LUNG_WINDOW,
):
    """An ipywidgets slider that scrolls through the slices of a volume in a notebook.

    Parameters
    ----------
    volume : ndarray, shape (I, J, K)
    spacing : 3 floats, mm
    overlays : mapping name -> (mask, colour), optional
    plane : {"axial", "coronal", "sagittal"}
    window : (low, high)
        Display window (HU).

    Returns
    -------
    ipywidgets.VBox
        Slider + output area; display it as the last expression of a cell.
    """
    widgets = require("ipywidgets", "notebooks", "the notebook sliders")

    if plane not in _PLANES:
        raise ValueError(f"slice_slider: plane must be one of {list(_PLANES)}, got {plane!r}")
    axis = _PLANES[plane]
    overlays = dict(overlays or {})
    slider = widgets.IntSlider(
        value=volume.shape[axis] // 2,
        min=0,
        max=volume.shape[axis] - 1,
        description=plane,
        continuous_update=False,
    )
    out = widgets.Output()

    def draw(index: int) -> None:
        with out:
            out.clear_output(wait=True)
            fig, ax = plt.subplots(figsize=(5, 5))
            ax.imshow(
                _plane(volume, plane, index),
                cmap="gray",
                vmin=window[0],
                vmax=window[1],
                origin="lower",
                aspect=_aspect(spacing, plane),
            )
            for mask, color, *_ in overlays.values():
                ax.imshow(
                    _overlay_rgba(_plane(mask, plane, index), color, 0.6),
                    origin="lower",
                    aspect=_aspect(spacing, plane),
                )
            ax.set_axis_off()
            ax.set_title(f"{plane} slice {index}")
            plt.show()

    slider.observe(lambda change: draw(change["new"]), names="value")
    draw(slider.value)
    return widgets.VBox([slider, out])


def slice_viewer(
    volume: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    *,
    overlays: Mapping[str, tuple] | None = None,
    index: Sequence[int] | None = None,
    window: tuple[float, float] | None = LUNG_WINDOW,
    alpha: float = 0.6,
):
    """A three-plane slice viewer for notebooks: axial, coronal and sagittal sliders.

    For readers without a desktop (no napari window): each slider moves one plane of
    :func:`show_planes`, with the same overlays and colours.

    Parameters
    ----------
    volume : ndarray, shape (I, J, K)
        CT in HU (or any scalar volume).
    spacing : 3 floats
        mm, for the aspect ratios.
    overlays : mapping, optional
        As :func:`show_planes` (e.g. from :func:`~deeptree.viz.planes.case_overlays`).
    index : 3 ints, optional
        Start slices (i, j, k); default as :func:`show_planes`.
    window : (low, high) or None
        Display window (HU).
    alpha : float
        Overlay opacity.

    Returns
    -------
    ipywidgets.VBox
        Three sliders (``.children[0].children``: axial k, coronal j, sagittal i) and the
        figure's output area; display it as the last expression of a cell. The sliders'
        ``value`` can also be set from code.
    """
    widgets = require("ipywidgets", "notebooks", "the notebook sliders")

    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ValueError(f"slice_viewer: volume must be 3D, got shape {volume.shape}")
    overlays = dict(overlays or {})
    for name, spec in overlays.items():
        if np.shape(spec[0]) != volume.shape:
            raise ValueError(
                f"slice_viewer: overlay {name!r} shape {np.shape(spec[0])} != volume {volume.shape}"
            )
    start = _default_index(volume, overlays) if index is None else tuple(int(i) for i in index)
    sliders = {
        plane: widgets.IntSlider(
            value=start[axis],
            min=0,
            max=volume.shape[axis] - 1,
            description=plane,
            continuous_update=False,
        )
        for plane, axis in _PLANES.items()
    }
    out = widgets.Output()

    def draw(_change=None) -> None:
        current = [0, 0, 0]
        for plane, axis in _PLANES.items():
            current[axis] = sliders[plane].value
        with out:
            out.clear_output(wait=True)
            show_planes(
                volume, spacing, overlays=overlays, index=current, window=window, alpha=alpha
            )
            plt.show()

    for slider in sliders.values():
        slider.observe(draw, names="value")
    draw()
    return widgets.VBox([widgets.HBox(list(sliders.values())), out])
