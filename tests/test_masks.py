"""Tests of deeptree.masks: the binary check, boxes, components and the largest of them."""

from __future__ import annotations

import numpy as np
import pytest

from deeptree.io import InputError
from deeptree.masks import (
    as_binary_mask,
    bounding_box,
    grow_box,
    label_components,
    largest_components,
)


def _two_blobs() -> np.ndarray:
    mask = np.zeros((10, 10, 10), bool)
    mask[1:3, 1:3, 1:3] = True  # 8 voxels
    mask[6:9, 6:9, 6:9] = True  # 27 voxels
    mask[4, 4, 4] = True  # 1 voxel, touches neither
    return mask


def test_as_binary_mask_accepts_0_1_and_refuses_the_rest():
    mask = np.zeros((3, 3, 3), np.uint8)
    mask[1, 1, 1] = 1
    out = as_binary_mask(mask, "m")
    assert out.dtype == bool and out.sum() == 1
    assert as_binary_mask(out) is out  # bool input: no copy
    with pytest.raises(InputError, match="m"):
        as_binary_mask(mask * 2, "m")
    with pytest.raises(InputError):
        as_binary_mask(np.zeros((3, 3, 3), bool), "m")  # empty
    assert not as_binary_mask(np.zeros((3, 3, 3), bool), "m", allow_empty=True).any()


def test_bounding_box_and_grow_box():
    mask = np.zeros((6, 7, 8), bool)
    mask[2, 3, 4] = mask[3, 5, 4] = True
    box = bounding_box(mask)
    assert box == (slice(2, 4), slice(3, 6), slice(4, 5))
    assert grow_box(box, 3, mask.shape) == (slice(0, 6), slice(0, 7), slice(1, 8))
    assert bounding_box(np.zeros((2, 2, 2), bool)) is None


def test_label_components_with_26_and_6_connectivity():
    mask = np.zeros((4, 4, 4), bool)
    mask[1, 1, 1] = mask[2, 2, 2] = True  # corner neighbours
    assert label_components(mask)[1] == 1
    assert label_components(mask, connectivity=6)[1] == 2
    with pytest.raises(InputError, match="connectivity"):
        label_components(mask, connectivity=18)


def test_largest_components_keeps_the_largest_and_counts_the_rest():
    mask = _two_blobs()
    kept, left_out = largest_components(mask, 1)
    assert left_out == 2 and kept.sum() == 27 and kept[7, 7, 7]
    kept, left_out = largest_components(mask, 2)
    assert left_out == 1 and kept.sum() == 35 and not kept[4, 4, 4]
    same, none_left = largest_components(mask, 3)
    assert same is mask and none_left == 0
    assert largest_components(mask, None) == (mask, 0)
    with pytest.raises(InputError):
        largest_components(mask, 0)


def test_largest_components_breaks_ties_in_scan_order():
    mask = np.zeros((5, 5, 5), bool)
    mask[0, 0, 0] = mask[4, 4, 4] = True
    kept, left_out = largest_components(mask, 1)
    assert kept[0, 0, 0] and not kept[4, 4, 4] and left_out == 1
