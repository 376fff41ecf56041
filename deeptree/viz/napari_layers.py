"""napari parts of :mod:`deeptree.viz`: label and image layers in the project's colours,
3D renderings returned as pictures, and headless screenshots of a viewer.

Everything here is also reachable as ``deeptree.viz.<name>`` (``viz.render_3d``,
``viz.screenshot``, ...); napari itself is imported only inside the functions, so importing
this module is cheap. A whole case in a viewer (:func:`~deeptree.viz.napari_case.show_case`)
is in :mod:`deeptree.viz.napari_case`, the breakage navigator in :mod:`deeptree.viz.napari_navigator`.
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from deeptree.extras import require
from deeptree.io import InputError, atomic_write
from deeptree.viz.colors import COLORS, COMPARISON_COLORS
from deeptree.viz.planes import comparison_labels


@dataclass
class LabelLayer:
    """A label volume shown as coloured 3D surfaces.

    Attributes
    ----------
    name : str
    labels : ndarray of int, shape (I, J, K)
        0 is background (transparent).
    colors : mapping label -> colour
        Labels missing from the mapping are not shown.
    opacity : float
    """

    name: str
    labels: np.ndarray
    colors: Mapping[int, str] = field(default_factory=lambda: {1: COLORS["airway"]})
    opacity: float = 1.0


def MaskLayer(name: str, mask: np.ndarray, color: str = COLORS["airway"], opacity: float = 1.0):
    """A binary mask as a :class:`LabelLayer` of one colour."""
    return LabelLayer(name, np.asarray(mask).astype(np.uint8), {1: color}, opacity)


@dataclass
class ImageLayer:
    """A scalar volume rendered in 3D (maximum intensity projection by default).

    Attributes
    ----------
    name : str
    volume : ndarray, shape (I, J, K)
    colormap : str
        A napari colormap name.
    contrast_limits : (low, high) or None
    opacity : float
    rendering : str
        napari's 3D rendering mode (``"mip"``, ``"attenuated_mip"``, ``"translucent"``, ...).
    """

    name: str
    volume: np.ndarray
    colormap: str = "gray"
    contrast_limits: tuple[float, float] | None = None
    opacity: float = 0.5
    rendering: str = "mip"


def add_layers(viewer, layers: Sequence[LabelLayer | ImageLayer], spacing: Sequence[float]) -> None:
    """Add :class:`LabelLayer` / :class:`ImageLayer` objects to a napari viewer, with the
    physical spacing (mm) as scale."""
    from napari.utils.colormaps import DirectLabelColormap

    scale = tuple(float(s) for s in spacing)
    for layer in layers:
        if isinstance(layer, LabelLayer):
            color_dict = {None: "transparent", 0: "transparent", **dict(layer.colors)}
            viewer.add_labels(
                np.asarray(layer.labels).astype(np.uint8, copy=False),
                name=layer.name,
                scale=scale,
                opacity=layer.opacity,
                colormap=DirectLabelColormap(color_dict=color_dict),
            )
        elif isinstance(layer, ImageLayer):
            kwargs = {}
            if layer.contrast_limits is not None:
                kwargs["contrast_limits"] = layer.contrast_limits
            viewer.add_image(
                layer.volume,
                name=layer.name,
                scale=scale,
                colormap=layer.colormap,
                opacity=layer.opacity,
                rendering=layer.rendering,
                blending="additive",
                **kwargs,
            )
        else:
            raise TypeError(f"add_layers: unsupported layer {type(layer).__name__}")


#: Camera angles (degrees) of the default view: k (head) up, looking along the j axis
#: (front or back depending on the affine), i across the picture.
FRONTAL_VIEW: tuple[float, float, float] = (90.0, 90.0, 0.0)


def fit_window(viewer, size: tuple[int, int] = (600, 800)) -> None:
    """Hide the viewer's layer docks and resize its (possibly hidden) window so that the
    canvas is ``size`` = (height, width) pixels, then draw it once.

    Call it before :func:`~deeptree.viz.napari_case.show_case` / ``viewer.reset_view()`` so that the view is fitted to
    the final canvas; :func:`screenshot` calls it too. Once the canvas has been drawn at
    this size it does nothing (each draw renders the scene: seconds for a 512^3 volume in
    software OpenGL).

    Parameters
    ----------
    viewer : napari.Viewer
    size : (height, width)
        Canvas size in pixels.
    """
    # napari offers no public hook for these: hide the docks so the canvas fills the window,
    # and grab the hidden window so that the canvas is really drawn (else the first
    # screenshot of a hidden viewer is blank).
    qt_viewer = viewer.window._qt_viewer
    for dock in (qt_viewer.dockLayerList, qt_viewer.dockLayerControls):
        dock.setVisible(False)
    window = viewer.window._qt_window
    height, width = (int(v) for v in size)
    canvas = qt_viewer.canvas.native.size()
    if getattr(window, "_deeptree_grabbed", False) and (canvas.height(), canvas.width()) == (
        height,
        width,
    ):
        return  # already drawn at this size: each grab renders the scene (slow for big volumes)
    window.resize(width, height)
    window.grab()
    # the canvas is smaller than the window (menu bar, dims slider, status bar): grow the
    # window by the difference. (viewer.screenshot(size=...) instead renders the canvas
    # off-size and shows mirrored bits of the window along its top edge.)
    canvas = qt_viewer.canvas.native.size()
    window.resize(2 * width - canvas.width(), 2 * height - canvas.height())
    window.grab()
    window._deeptree_grabbed = True


def fit_view(viewer, margin: float = 0.05) -> None:
    """Centre the camera on all layers and zoom so that they fill the canvas, keeping the
    camera angles.

    napari's own ``reset_view`` fits the *unrotated* 3D view; here the layers' bounding box
    (world, mm) is projected on the camera's up and right directions, so that a rotated view
    (e.g. :data:`FRONTAL_VIEW`) is fitted too. In 2D this is ``reset_view``.

    Parameters
    ----------
    viewer : napari.Viewer
    margin : float
        Fraction of the canvas left free.
    """
    if viewer.dims.ndisplay == 2 or len(viewer.layers) == 0:
        viewer.reset_view(reset_camera_angle=False)
        return
    displayed = list(viewer.dims.displayed)
    extent = np.asarray(viewer.layers.extent.world, dtype=float)[:, displayed]
    corners = np.array(list(itertools.product(*extent.T)))  # the 8 corners of the box
    camera = viewer.scene.camera
    up = np.asarray(camera.up_direction, dtype=float)
    right = np.cross(np.asarray(camera.view_direction, dtype=float), up)
    width = max(float(np.ptp(corners @ right)), 1e-6)
    height = max(float(np.ptp(corners @ up)), 1e-6)
    canvas = viewer.window._qt_viewer.canvas.native.size()
    camera.center = tuple(float(v) for v in extent.mean(axis=0))
    camera.zoom = (1.0 - margin) * min(canvas.width() / width, canvas.height() / height)


def screenshot(viewer, size: tuple[int, int] = (600, 800), *, fit: bool = False) -> np.ndarray:
    """A non-blank screenshot of a (possibly hidden) napari viewer's canvas.

    Parameters
    ----------
    viewer : napari.Viewer
    size : (height, width)
        Size of the canvas, hence of the picture, in pixels (the window is resized so
        that its canvas has this size: :func:`fit_window`).
    fit : bool
        Fit the view to the layers after resizing, keeping the camera angles (else the
        camera is kept as it is: a view fitted to another window size may be cropped).

    Returns
    -------
    ndarray of uint8, shape (height, width, 4)
        RGBA; show it in a notebook with :func:`deeptree.viz.planes.show_image`, save it with
        :func:`save_png`.

    Notes
    -----
    A viewer created with ``show=False`` returns a blank first screenshot unless its Qt window
    has been grabbed once; this function grabs it first.
    """
    fit_window(viewer, size)
    if fit:
        fit_view(viewer)
        viewer.window._qt_window.grab()
    return np.asarray(viewer.screenshot(canvas_only=True, flash=False))


def require_display(run_as: str = "python ...") -> None:
    """Raise a clear error when napari cannot open a window.

    Without an X or Wayland display Qt aborts the whole process (in a notebook: "kernel
    died"; ``deeptree view``: exit 134) instead of raising; check first. ``QT_QPA_PLATFORM``
    set explicitly (e.g. ``offscreen``, which has no 3D) is left to Qt.

    Parameters
    ----------
    run_as : str
        The command line the message suggests under ``xvfb-run``.

    Raises
    ------
    RuntimeError
        On Linux with neither ``DISPLAY`` nor ``WAYLAND_DISPLAY`` set.
    """
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or os.environ.get("QT_QPA_PLATFORM")
    ):
        raise RuntimeError(
            "napari needs a display and none is set (no DISPLAY): run it on a desktop, or "
            f"headless under a virtual X server, e.g. `xvfb-run -a {run_as}` (make test and make "
            "reproduce do this)"
        )


def render_3d(
    layers: Sequence[LabelLayer | ImageLayer],
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    *,
    angles: tuple[float, float, float] = FRONTAL_VIEW,
    zoom: float = 0.95,
    size: tuple[int, int] = (600, 800),
    crop: bool = True,
) -> np.ndarray:
    """Render layers in 3D with napari and return the picture.

    Parameters
    ----------
    layers : sequence of LabelLayer or ImageLayer
    spacing : 3 floats
        mm; every layer is scaled by it.
    angles : 3 floats
        napari camera angles in degrees (default: frontal view, head up).
    zoom : float
        Camera zoom relative to a view that just fits the layers (:func:`fit_view`);
        below 1 leaves a margin.
    size : (height, width)
        Window size in pixels.
    crop : bool
        Crop all layers to the bounding box of the label layers first (default), so that
        the structure fills the picture.

    Returns
    -------
    ndarray of uint8, shape (height, width, 4)
        RGBA; show it with :func:`~deeptree.viz.planes.show_image`.
    """
    napari = require("napari", "napari", "3D rendering (deeptree.viz.render_3d)")
    require_display()
    if crop:
        layers = crop_layers(layers)
    viewer = napari.Viewer(show=False, ndisplay=3)
    try:
        fit_window(viewer, size)  # so that reset_view fits the final canvas
        add_layers(viewer, layers, spacing)
        viewer.reset_view()  # resets the angles: set them afterwards
        viewer.scene.camera.angles = angles
        fit_view(viewer, margin=0.0)  # fits the rotated view to the canvas
        viewer.scene.camera.zoom = viewer.scene.camera.zoom * zoom
        return screenshot(viewer, size)
    finally:
        viewer.close()


def crop_layers(layers: Sequence[LabelLayer | ImageLayer], margin: int = 4) -> list:
    """Crop every layer to the bounding box of all label voxels (plus ``margin`` voxels),
    so that a rendering fills the picture. Layers are returned as new objects; the arrays
    are views of the inputs."""
    masks = [np.asarray(layer.labels) != 0 for layer in layers if isinstance(layer, LabelLayer)]
    if not masks or not any(m.any() for m in masks):
        return list(layers)
    union = np.logical_or.reduce(masks)
    nonzero = np.argwhere(union)
    lo = np.maximum(nonzero.min(axis=0) - margin, 0)
    hi = np.minimum(nonzero.max(axis=0) + margin + 1, union.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    cropped = []
    for layer in layers:
        if isinstance(layer, LabelLayer):
            cropped.append(replace(layer, labels=np.asarray(layer.labels)[box]))
        else:
            cropped.append(replace(layer, volume=np.asarray(layer.volume)[box]))
    return cropped


def render_comparison(
    pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0), **kwargs
) -> np.ndarray:
    """3D rendering of a prediction compared with ground truth: true positive red, false
    negative blue, false positive green (paper Fig. 3).

    Parameters
    ----------
    pred, gt : ndarray of bool/uint8, shape (I, J, K)
    spacing : 3 floats
        mm.
    **kwargs
        Passed to :func:`render_3d` (``angles``, ``zoom``, ``size``, ``crop``).

    Returns
    -------
    ndarray of uint8, shape (height, width, 4)
    """
    labels = comparison_labels(pred, gt)
    return render_3d([LabelLayer("comparison", labels, COMPARISON_COLORS)], spacing, **kwargs)


#: Same as :func:`render_3d` (the name used in the team brief).
napari_screenshot = render_3d


def save_png(image: np.ndarray, path: str | os.PathLike) -> Path:
    """Write an RGB(A) uint8 picture (a :func:`screenshot`) as PNG, atomically.

    Parameters
    ----------
    image : ndarray of uint8, shape (H, W, 3 or 4)
    path : path-like
        Output ``.png``; written to a temporary name first, then renamed.

    Returns
    -------
    Path
    """
    import matplotlib.image as mpimg

    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] not in (3, 4) or image.dtype != np.uint8:
        raise InputError(
            f"save_png: expected an (H, W, 3|4) uint8 picture, got {image.shape} {image.dtype}"
        )
    return atomic_write(path, lambda tmp: mpimg.imsave(str(tmp), image, format="png"))


__all__ = [
    "FRONTAL_VIEW",
    "ImageLayer",
    "LabelLayer",
    "MaskLayer",
    "add_layers",
    "crop_layers",
    "fit_view",
    "fit_window",
    "napari_screenshot",
    "render_3d",
    "render_comparison",
    "save_png",
    "screenshot",
]
