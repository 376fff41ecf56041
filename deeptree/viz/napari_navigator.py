"""A breakage navigator for napari: step the camera through breakage centres.

Researchers inspecting a stage-1 prediction want to visit each gap between its pieces in
turn: :class:`BreakageNavigator` centres the camera (and the 2D slices) on each breakage
centre, zooms in, selects the centre's point and shows its index and the gap's size;
:func:`add_breakage_navigator` binds the keys '.' (next) and ',' (previous) and adds a small
dock widget with the same buttons. Reachable as ``deeptree.viz.napari_navigator.BreakageNavigator``.
"""

from __future__ import annotations

import numpy as np

from deeptree.io import InputError, check_spacing

#: Name of the points layer of breakage centres made by deeptree.viz.napari_case.show_case.
CENTRES_LAYER = "breakage centres"


class BreakageNavigator:
    """Step the camera of a napari viewer through breakage centres (previous / next).

    Each step centres the camera on a breakage centre (in world coordinates: voxel index x
    spacing, mm), moves the 2D slice there, zooms in, selects the centre's point and shows
    "breakage i/n, gap of s voxels" in the canvas's text overlay and the dock widget.

    Parameters
    ----------
    viewer : napari.Viewer
    centres : ndarray, shape (n, 3)
        Voxel (i, j, k).
    spacing : 3 floats
        mm.
    sizes : sequence of n ints, optional
        Gap sizes in voxels (negative = unknown).
    zoom : float
        Zoom relative to the viewer's zoom when the navigator is made (the whole-case
        view); 1 keeps the zoom.
    points_layer : napari Points layer, optional
        Whose point is selected at each step.

    Attributes
    ----------
    index : int
        The current centre (0-based), -1 before the first step.
    """

    def __init__(
        self, viewer, centres, spacing, sizes=None, *, zoom: float = 3.0, points_layer=None
    ):
        self.viewer = viewer
        self.centres = np.asarray(centres, dtype=np.float64).reshape(-1, 3)
        self.spacing = np.asarray(check_spacing(spacing, "BreakageNavigator spacing"))
        self.sizes = None if sizes is None else np.asarray(sizes, dtype=np.int64).reshape(-1)
        if self.sizes is not None and len(self.sizes) != len(self.centres):
            raise InputError(
                f"BreakageNavigator: {len(self.sizes)} sizes for {len(self.centres)} centres"
            )
        self.zoom = float(zoom)
        self.points_layer = points_layer
        self.index = -1
        self._base_zoom = viewer.scene.camera.zoom
        self._label = None

    def __len__(self) -> int:
        return len(self.centres)

    def world(self, index: int) -> np.ndarray:
        """Centre ``index`` in world coordinates (mm, axes i, j, k), shape (3,)."""
        return self.centres[index] * self.spacing

    def text(self) -> str:
        """What the overlay shows: index and gap size of the current centre."""
        if len(self) == 0:
            return "no breakage centre"
        if self.index < 0:
            return f"{len(self)} breakage centres: press '.' (next) or ',' (previous)"
        size = None if self.sizes is None else int(self.sizes[self.index])
        gap = f"gap of {size} voxels" if size is not None and size >= 0 else "gap size unknown"
        i, j, k = (int(v) for v in self.centres[self.index])
        return f"breakage {self.index + 1}/{len(self)} at voxel ({i}, {j}, {k}): {gap}"

    def go(self, index: int) -> int:
        """Move to centre ``index`` (wrapping around); returns the new index."""
        if len(self) == 0:
            self._show_text()
            return self.index
        self.index = int(index) % len(self)
        world = self.world(self.index)
        camera = self.viewer.scene.camera
        self.viewer.dims.point = tuple(float(v) for v in world)
        # the camera centre is given in the order of the displayed axes (dims.order may be
        # permuted), with a leading 0 in 2D
        centre = [float(world[axis]) for axis in self.viewer.dims.displayed]
        camera.center = tuple([0.0] * (3 - len(centre)) + centre)
        camera.zoom = self._base_zoom * self.zoom
        if self.points_layer is not None:
            self.points_layer.selected_data = {self.index}
        self._show_text()
        return self.index

    def next(self) -> int:
        """Move to the next centre (the first after the last); returns the index."""
        return self.go(self.index + 1)

    def previous(self) -> int:
        """Move to the previous centre (the last before the first); returns the index."""
        return self.go(self.index - 1 if self.index >= 0 else -1)

    def _show_text(self) -> None:
        text = self.text()
        overlay = self.viewer.canvas.overlays.text
        overlay.text = text
        overlay.visible = True
        self.viewer.status = text
        if self._label is not None:
            self._label.setText(text)

    def bind_keys(self, next_key: str = ".", previous_key: str = ",") -> None:
        """Bind keys of the viewer to :meth:`next` and :meth:`previous`."""
        self.viewer.bind_key(next_key, lambda _viewer: self.next(), overwrite=True)
        self.viewer.bind_key(previous_key, lambda _viewer: self.previous(), overwrite=True)

    def widget(self):
        """A small Qt widget: the current text and previous / next buttons."""
        from qtpy.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

        root = QWidget()
        layout = QVBoxLayout(root)
        self._label = QLabel(self.text())
        self._label.setWordWrap(True)
        buttons = QHBoxLayout()
        for title, step in (("< previous (,)", self.previous), ("next (.) >", self.next)):
            button = QPushButton(title)
            button.clicked.connect(lambda _checked=False, step=step: step())
            buttons.addWidget(button)
        layout.addWidget(self._label)
        layout.addLayout(buttons)
        return root


def add_breakage_navigator(
    viewer, centres, spacing, sizes=None, *, zoom: float = 3.0, dock: bool = True, points_layer=None
) -> BreakageNavigator:
    """Make a :class:`BreakageNavigator`, bind '.' / ',' to next / previous and (``dock``)
    add its widget as a dock of the viewer's window."""
    if points_layer is None and CENTRES_LAYER in viewer.layers:
        points_layer = viewer.layers[CENTRES_LAYER]
    navigator = BreakageNavigator(
        viewer, centres, spacing, sizes, zoom=zoom, points_layer=points_layer
    )
    navigator.bind_keys()
    if dock:
        viewer.window.add_dock_widget(navigator.widget(), name="breakage navigator", area="right")
    navigator._show_text()
    return navigator
