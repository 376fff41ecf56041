"""Notebook 00 executes with papermill (smoke profile) and holds a non-blank napari picture."""

from __future__ import annotations

import base64
import io as bytes_io
import os

import matplotlib.image as mpimg
import nbformat
import numpy as np
import pytest

from deeptree.notebooks import NOTEBOOKS_DIR, run_notebooks


@pytest.mark.gui
@pytest.mark.skipif(
    not os.environ.get("DISPLAY"), reason="napari needs a display: run under xvfb-run"
)
def test_overview_notebook_embeds_a_non_blank_napari_screenshot(tmp_path):
    runs = run_notebooks("smoke", tmp_path, [NOTEBOOKS_DIR / "00_overview.ipynb"])
    assert runs[0].ok, runs[0].error
    nb = nbformat.read(tmp_path / "00_overview.ipynb", as_version=4)
    cells = [c for c in nb.cells if "napari-screenshot" in c.metadata.get("tags", [])]
    assert len(cells) == 1
    pngs = [o["data"]["image/png"] for o in cells[0].outputs if "image/png" in o.get("data", {})]
    assert pngs, "the napari cell shows a picture"
    picture = mpimg.imread(bytes_io.BytesIO(base64.b64decode(pngs[0])), format="png")
    rgb = picture[..., :3]
    assert rgb.std() > 0.02, "picture is not blank"
    # the airway is drawn in its colour on a dark background: a visible share of coloured pixels
    coloured = (rgb.max(axis=2) - rgb.min(axis=2)) > 0.2
    assert coloured.mean() > 0.01
    assert (tmp_path / "00_overview.results.json").is_file()
    assert np.isfinite(runs[0].seconds)
