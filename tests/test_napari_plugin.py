"""The napari plugin: manifest, entry point and the reader of the project's NIfTI cases."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import numpy as np
import pytest

from deeptree.io import write_nifti
from deeptree.viz import napari_reader

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "deeptree" / "napari.yaml"
AFFINE = np.diag([0.7, 0.7, 1.25, 1.0])

needs_display = pytest.mark.skipif(
    not os.environ.get("DISPLAY"),
    reason="napari needs a display: run under xvfb-run (make test does)",
)


def _case_folder(folder: Path) -> Path:
    gt = np.zeros((12, 12, 16), np.uint8)
    gt[4:8, 4:8, 2:14] = 1
    pred = gt.copy()
    pred[:, :, 7:9] = 0
    anatomy = gt * 2
    write_nifti(folder / "ct.nii.gz", np.where(gt == 1, -1000, -750).astype(np.int16), AFFINE)
    write_nifti(folder / "gt.nii.gz", gt, AFFINE)
    write_nifti(folder / "stage1.nii.gz", pred, AFFINE)
    write_nifti(folder / "anatomy.nii.gz", anatomy, AFFINE)
    (folder / "centres.csv").write_text("i,j,k,size\n6,6,8,32\n")
    return folder


def test_manifest_is_valid_and_declared_as_the_entry_point():
    npe2 = pytest.importorskip("npe2")
    manifest = npe2.PluginManifest.from_file(MANIFEST)
    assert manifest.name == "deeptree"
    (reader,) = manifest.contributions.readers
    assert reader.accepts_directories and set(reader.filename_patterns) == {"*.nii", "*.nii.gz"}
    (command,) = manifest.contributions.commands
    assert command.id == reader.command
    assert command.python_name == "deeptree.viz.napari_reader:get_reader"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["napari.manifest"] == {
        "deeptree": "deeptree:napari.yaml"
    }
    assert "napari.yaml" in project["tool"]["setuptools"]["package-data"]["deeptree"]


def test_the_installed_package_registers_the_reader_with_napari(tmp_path):
    npe2 = pytest.importorskip("npe2")
    pm = npe2.PluginManager()
    pm.discover()
    manifest = pm.get_manifest("deeptree")  # KeyError when the entry point is not installed
    assert manifest.contributions.readers[0].command == "deeptree.read_case"
    # File > Open offers the reader for NIfTI files and case folders
    folder = _case_folder(tmp_path / "case")
    for path in (folder / "gt.nii.gz", folder):
        readers = [r.plugin_name for r in pm.iter_compatible_readers([str(path)])]
        assert "deeptree" in readers, path


def test_get_reader_accepts_case_folders_datasets_and_nifti_files_only(tmp_path):
    folder = _case_folder(tmp_path / "case")
    assert napari_reader.get_reader(str(folder)) is napari_reader.read_case
    assert napari_reader.get_reader([str(folder / "gt.nii.gz")]) is napari_reader.read_case
    (tmp_path / "imagesTr").mkdir()
    assert napari_reader.get_reader(tmp_path) is napari_reader.read_case  # a dataset
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("x")
    assert napari_reader.get_reader(other) is None
    assert napari_reader.get_reader(other / "notes.txt") is None
    assert napari_reader.get_reader([str(folder), str(other)]) is None


def test_the_reader_returns_the_case_layers_with_spacing_and_colours(tmp_path):
    from matplotlib.colors import to_rgba

    from deeptree import viz

    folder = _case_folder(tmp_path / "case")
    layers = napari_reader.read_case(str(folder))
    names = [kwargs["name"] for _, kwargs, _ in layers]
    assert names == ["CT", "ground truth", "anatomy", "stage1 comparison", "breakage centres"]
    assert [t for _, _, t in layers] == ["image", "labels", "labels", "labels", "points"]
    for _, kwargs, _ in layers:
        assert kwargs["scale"] == pytest.approx((0.7, 0.7, 1.25))
    ct = layers[0]
    assert ct[1]["contrast_limits"] == viz.LUNG_WINDOW and ct[1]["visible"]
    comparison = layers[3]
    assert set(np.unique(comparison[0])) == {0, 1, 2}  # TP and the missed gap (FN)
    colours = comparison[1]["colormap"].color_dict
    assert tuple(colours[2]) == pytest.approx(to_rgba(viz.COLORS["fn"]))
    points = layers[4]
    np.testing.assert_array_equal(points[0], [[6, 6, 8]])
    assert list(points[1]["features"]["size"]) == [32]
    # one file alone: its kind from its name
    (single,) = napari_reader.read_case(str(folder / "anatomy.nii.gz"))
    assert single[1]["name"] == "anatomy" and single[2] == "labels"


def test_the_reader_on_the_real_cip_ct64_sample(cip_ct64_dir):
    layers = napari_reader.read_case(str(cip_ct64_dir))
    assert [kwargs["name"] for _, kwargs, _ in layers] == ["CT", "lung", "ground truth"]
    assert layers[0][0].shape == (64, 64, 79)
    assert layers[0][1]["scale"][0] == pytest.approx(4.17, abs=0.01)


@needs_display
@pytest.mark.gui
def test_napari_file_open_uses_the_deeptree_reader(tmp_path):
    napari = pytest.importorskip("napari")
    folder = _case_folder(tmp_path / "case")
    viewer = napari.Viewer(show=False)
    try:
        viewer.open(str(folder), plugin="deeptree")
        assert [layer.name for layer in viewer.layers] == [
            "CT",
            "ground truth",
            "anatomy",
            "stage1 comparison",
            "breakage centres",
        ]
        np.testing.assert_allclose(viewer.layers["CT"].scale, (0.7, 0.7, 1.25))
    finally:
        viewer.close()


def test_show_case_and_the_reader_take_the_case_object():
    from deeptree.viz.case_folder import ViewCase
    from deeptree.viz.napari_case import case_layer_data

    gt = np.zeros((4, 4, 4), np.uint8)
    gt[1:3, 1:3, :] = 1
    case = ViewCase(gt=gt, spacing=(1.0, 1.0, 2.0))
    layers = case_layer_data(case)
    assert [kwargs["name"] for _, kwargs, _ in layers] == ["ground truth"]
    case.predictions = {"model": gt}
    layers = case_layer_data(case)
    assert [kwargs["name"] for _, kwargs, _ in layers] == ["ground truth", "model comparison"]
    assert all(tuple(kwargs["scale"]) == (1.0, 1.0, 2.0) for _, kwargs, _ in layers)
