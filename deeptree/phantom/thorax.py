"""The procedural thorax of the phantom: lungs, mediastinum, heart, aorta, bones, body wall.

Coordinates are world millimetres in RAS+ (x towards the patient's right, y anterior,
z superior), the same frame as the affine of a phantom case. Every shape is an implicit
function evaluated on broadcast coordinate arrays, so a whole volume is rasterised
without Python loops over voxels. Lengths below are for an adult (``scale = 1``); a
:class:`ThoraxGeometry` multiplies them by its ``scale`` (the ``cpu`` and ``smoke``
profiles use a smaller chest so that it fits a small grid).

Sizes follow textbook adult anatomy (lung height about 24 cm, hemithorax width about
12 cm, carina at the level of T4-T5 about 7 cm below the lung apex, heart on the left
resting on the diaphragm, right dome of the diaphragm higher than the left).

Every tissue is also a label (:data:`TISSUES`, :meth:`ThoraxGeometry.tissue_labels`): the
run profiles' phantoms give each label one HU value (:data:`DEFAULT_HU`), the domain-randomised
images of :mod:`deeptree.phantom.synth` draw one per image. A geometry with
:class:`ChestExtras` also draws what those phantoms leave out (great veins to the thoracic
inlet, thyroid, clavicles, arms, the table, air in the oesophagus, the body's fat thickness).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Lung shapes at scale 1 (mm): ellipse centre (cx, cy) and half-axes (ax, ay) of the
#: cross-section, apex height, and height of the diaphragm dome (right is higher: liver).
_LUNGS = {
    +1: dict(cx=72.0, cy=-8.0, ax=64.0, ay=82.0, z_top=235.0, z_dome=80.0),  # right
    -1: dict(cx=-72.0, cy=-8.0, ax=60.0, ay=80.0, z_top=230.0, z_dome=68.0),  # left
}
_Z_APEX_TAPER = 135.0  # above this height the lung narrows into its rounded apex
_DOME_DEPTH = 62.0  # the costophrenic recess lies this much lower than the dome top
_DOME_FORWARD = 20.0  # the dome top lies anterior to the lung's centre (posterior recess)
_CARINA = np.array([0.0, -12.0, 165.0])
_BODY = dict(cy=-15.0, ax=162.0, ay=118.0)  # body cross-section (ellipse)
_FAT_MM = 11.0  # subcutaneous fat
_HEART = dict(c=np.array([-20.0, 22.0, 60.0]), r=np.array([60.0, 55.0, 55.0]))
#: Aorta as capsules (start, end, radius): ascending, arch to the left of the trachea,
#: descending beside the spine.
_AORTA = (
    ((12.0, 22.0, 100.0), (10.0, 14.0, 185.0), 14.0),
    ((10.0, 14.0, 185.0), (-30.0, -12.0, 192.0), 13.0),
    ((-30.0, -12.0, 192.0), (-24.0, -62.0, 182.0), 12.0),
    ((-24.0, -62.0, 182.0), (-22.0, -64.0, -40.0), 12.0),
)
#: Pulmonary trunk and arteries from the heart to each hilum (start, end, radius).
_PULMONARY_ARTERIES = (
    ((-5.0, 30.0, 105.0), (-12.0, 15.0, 135.0), 13.0),
    ((-12.0, 15.0, 135.0), (28.0, 0.0, 140.0), 10.0),
    ((-12.0, 15.0, 135.0), (-38.0, -5.0, 150.0), 10.0),
)
_ESOPHAGUS = dict(x=-6.0, y=-40.0, r=8.0)
_SPINE = dict(y=-100.0, rx=20.0, ry=17.0, canal_y=-126.0, canal_r=7.5, pitch=26.0, disc=5.0)
_STERNUM = dict(y=92.0, rx=16.0, ry=6.0)
_RIB = dict(pitch=24.0, thickness=8.0, radius=4.5, slope=0.3, gap=4.0)

#: Field of view at scale 1 (mm): x, y, z ranges.
_FOV = ((-168.0, 168.0), (-138.0, 108.0), (-22.0, 255.0))

#: The tissues of the chest label map; a tissue's label (uint8) is its index. The first 17 are
#: those of the run profiles' phantoms; the rest are drawn only by a geometry with
#: :class:`ChestExtras`.
TISSUES = (
    "outside_air",
    "subcutaneous_fat",
    "muscle",
    "mediastinal_fat",
    "heart",
    "aorta",
    "pulmonary_artery",
    "oesophagus",
    "liver",
    "spleen_stomach",
    "cortical_bone",
    "trabecular_bone",
    "disc",
    "spinal_canal",
    "sternum",
    "rib",
    "lung",
    "vein",
    "thyroid",
    "clavicle",
    "humerus",
    "table",
    "oesophagus_air",
)
#: Label of each tissue name.
LABEL = {name: i for i, name in enumerate(TISSUES)}

#: HU of each tissue in the phantoms of the run profiles (blood without contrast; the lung is
#: NaN: its voxels are filled by the parenchyma model of :mod:`deeptree.phantom.ct`).
DEFAULT_HU = {
    "outside_air": -1000.0,
    "subcutaneous_fat": -100.0,
    "muscle": 45.0,
    "mediastinal_fat": -90.0,
    "heart": 40.0,
    "aorta": 40.0,
    "pulmonary_artery": 40.0,
    "oesophagus": 35.0,
    "liver": 58.0,
    "spleen_stomach": 42.0,
    "cortical_bone": 700.0,
    "trabecular_bone": 230.0,
    "disc": 85.0,
    "spinal_canal": 15.0,
    "sternum": 350.0,
    "rib": 520.0,
    "lung": float("nan"),
    "vein": 40.0,
    "thyroid": 110.0,  # iodine-rich: brighter than muscle without contrast
    "clavicle": 520.0,
    "humerus": 520.0,
    "table": -300.0,
    "oesophagus_air": -1000.0,
}

#: Great veins at scale 1 (start, end, radius mm): superior vena cava, brachiocephalic veins
#: from the thoracic inlet (the left one crosses in front of the aortic arch), subclavian veins.
_VEINS = (
    ((32.0, 14.0, 118.0), (34.0, 10.0, 205.0), 10.0),
    ((34.0, 10.0, 205.0), (62.0, 6.0, 240.0), 8.0),
    ((34.0, 10.0, 205.0), (-62.0, 16.0, 232.0), 7.0),
    ((62.0, 6.0, 240.0), (140.0, 20.0, 246.0), 7.0),
    ((-62.0, 16.0, 232.0), (-140.0, 20.0, 242.0), 7.0),
)
#: Thyroid lobes (centre, half-axes mm) beside the trachea above the thoracic inlet, and the
#: isthmus in front of it (start, end, radius).
_THYROID_LOBES = (
    (np.array([21.0, -6.0, 238.0]), np.array([9.0, 9.0, 22.0])),
    (np.array([-21.0, -6.0, 238.0]), np.array([9.0, 9.0, 22.0])),
)
_THYROID_ISTHMUS = ((-20.0, 6.0, 228.0), (20.0, 6.0, 228.0), 5.0)
#: Clavicles from the sternum to the shoulders (start, end, radius).
_CLAVICLES = (
    ((18.0, 88.0, 205.0), (125.0, 40.0, 235.0), 7.0),
    ((-18.0, 88.0, 205.0), (-125.0, 40.0, 235.0), 7.0),
)
_ARM = dict(radius=45.0, fat=8.0, humerus=11.0)
_TABLE_MM = 14.0  # thickness of the table top


@dataclass(frozen=True)
class ChestExtras:
    """What a whole-chest label map adds to the run profiles' thorax (lengths at scale 1, mm).

    Attributes
    ----------
    fat_mm : float
        Subcutaneous fat thickness (the run profiles' thorax: 11 mm).
    veins, thyroid, clavicles : bool
        Draw the great veins (:data:`_VEINS`; they are part of the mediastinum: the lungs
        give way), the thyroid, the clavicles.
    arms : bool
        Arms down beside the chest (most chest CTs are taken with the arms up, out of view).
    arm_gap_mm : float
        Gap between the chest wall and each arm.
    table : bool
        The table top under the patient's back.
    table_gap_mm : float
        Gap between the back and the table top.
    oesophagus_air : (float, float, float) or None
        Air in the oesophagus: lowest and highest height (mm, scale-1 frame) and radius (mm).
    """

    fat_mm: float = _FAT_MM
    veins: bool = True
    thyroid: bool = True
    clavicles: bool = True
    arms: bool = False
    arm_gap_mm: float = 8.0
    table: bool = True
    table_gap_mm: float = 4.0
    oesophagus_air: tuple[float, float, float] | None = None


@dataclass(frozen=True)
class ThoraxGeometry:
    """An adult thorax scaled by ``scale`` and shifted by ``offset_mm``.

    Attributes
    ----------
    scale : float
        Multiplies every length (1 = adult).
    offset_mm : tuple of 3 float
        Added to every position (mm), e.g. to place the thorax around a given airway.
    extras : ChestExtras or None
        None: the thorax of the run profiles' phantoms (their bytes do not change).
    """

    scale: float = 1.0
    offset_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    extras: ChestExtras | None = None

    # --- points and sizes -------------------------------------------------------------------
    def point(self, xyz) -> np.ndarray:
        """World position (mm) of a point given at scale 1 in the thorax frame."""
        return np.asarray(xyz, dtype=float) * self.scale + np.asarray(self.offset_mm)

    @property
    def carina_mm(self) -> np.ndarray:
        """World position of the carina (mm)."""
        return self.point(_CARINA)

    def fov_mm(self) -> np.ndarray:
        """Field of view ``[[xmin, xmax], [ymin, ymax], [zmin, zmax]]`` in world mm."""
        lo = self.point([r[0] for r in _FOV])
        hi = self.point([r[1] for r in _FOV])
        return np.stack([lo, hi], axis=1)

    def lung_box_mm(self) -> np.ndarray:
        """Bounding box of both lungs, ``(2, 3)``: min and max corner in world mm."""
        lo = [min(p["cx"] - p["ax"] for p in _LUNGS.values()), -90.0, -12.0]
        hi = [max(p["cx"] + p["ax"] for p in _LUNGS.values()), 74.0, 235.0]
        return np.stack([self.point(lo), self.point(hi)])

    def _local(self, x, y, z):
        """World mm -> thorax frame at scale 1 (broadcast arrays)."""
        s, o = self.scale, self.offset_mm
        return (x - o[0]) / s, (y - o[1]) / s, (z - o[2]) / s

    # --- shapes -----------------------------------------------------------------------------
    def lung_side(self, x, y, z) -> np.ndarray:
        """Which lung contains each point: +1 right, -1 left, 0 none.

        Parameters
        ----------
        x, y, z : ndarray, broadcastable
            World coordinates (mm).

        Returns
        -------
        ndarray of int8, the broadcast shape
        """
        x, y, z = self._local(x, y, z)
        return self._lung_side_local(x, y, z, self._mediastinum(x, y, z))

    def _lung_side_local(self, x, y, z, excluded):
        out = np.zeros(np.broadcast_shapes(np.shape(x), np.shape(y), np.shape(z)), dtype=np.int8)
        for side, p in _LUNGS.items():
            q = ((x - p["cx"]) / p["ax"]) ** 2 + ((y - p["cy"]) / p["ay"]) ** 2
            # rounded apex: the cross-section shrinks above _Z_APEX_TAPER
            h = np.clip((z - _Z_APEX_TAPER) / (p["z_top"] - _Z_APEX_TAPER), 0.0, None)
            taper = 1.0 - h**2
            base = _diaphragm_z(x, y, p)
            inside = (q <= taper) & (z >= base) & (side * x > 0) & ~excluded
            out[inside] = side
        return out

    def _mediastinum(self, x, y, z):
        """Points (scale-1 frame) that belong to the mediastinum, never to a lung."""
        carina_z = _CARINA[2]
        # a wide band above the carina (trachea, great vessels), narrow below it
        half_width = np.where(z > carina_z - 8.0, 24.0, 10.0)
        out = np.abs(x) < half_width
        hc, hr = _HEART["c"], _HEART["r"] + 6.0  # heart and pericardial fat
        out = out | (
            ((x - hc[0]) / hr[0]) ** 2 + ((y - hc[1]) / hr[1]) ** 2 + ((z - hc[2]) / hr[2]) ** 2
            <= 1
        )
        for a, b, r in _AORTA:
            out = out | _in_capsule(x, y, z, a, b, r + 4.0)
        extras = self.extras
        if extras is not None and extras.veins:
            for a, b, r in _VEINS:
                out = out | _in_capsule(x, y, z, a, b, r + 3.0)
        if extras is not None and extras.thyroid:
            out = out | _in_thyroid(x, y, z, grow_mm=3.0)
        return out

    def tissue_hu(self, x, y, z) -> tuple[np.ndarray, np.ndarray]:
        """Hounsfield units of everything except lung parenchyma, airways and lung vessels.

        :data:`DEFAULT_HU` of :meth:`tissue_labels`.

        Parameters
        ----------
        x, y, z : ndarray, broadcastable
            World coordinates (mm).

        Returns
        -------
        hu : ndarray of float32
            Outside air -1000, subcutaneous fat -100, muscle 45, mediastinal fat -90,
            heart and great vessels 40 (blood without contrast), bone 250-700, liver 58;
            NaN in the lungs.
        lung : ndarray of int8
            :meth:`lung_side` of each point (0 outside the lungs).
        """
        labels, lung = self.tissue_labels(x, y, z)
        table = np.array([DEFAULT_HU[name] for name in TISSUES], dtype=np.float32)
        return table[labels], lung

    def tissue_labels(self, x, y, z) -> tuple[np.ndarray, np.ndarray]:
        """The tissue of each point: the chest label map.

        Parameters
        ----------
        x, y, z : ndarray, broadcastable
            World coordinates (mm).

        Returns
        -------
        labels : ndarray of uint8
            Index into :data:`TISSUES` (``LABEL["lung"]`` inside the lungs). Airways and lung
            vessels are not in it: they are drawn with partial volume on top
            (:mod:`deeptree.phantom.ct`).
        lung : ndarray of int8
            :meth:`lung_side` of each point (0 outside the lungs).
        """
        x, y, z = self._local(x, y, z)
        extras = self.extras
        fat_mm = _FAT_MM if extras is None else extras.fat_mm
        mediastinum = self._mediastinum(x, y, z)
        lung = self._lung_side_local(x, y, z, mediastinum)
        shape = lung.shape
        lab = np.full(shape, LABEL["outside_air"], dtype=np.uint8)

        def paint(where, name: str) -> None:
            lab[np.broadcast_to(where, shape)] = LABEL[name]

        # body wall: fat under the skin, muscle inside
        qb = ((x / _BODY["ax"]) ** 2 + ((y - _BODY["cy"]) / _BODY["ay"]) ** 2) * np.ones(shape)
        body = qb <= 1.0
        inner = (x / (_BODY["ax"] - fat_mm)) ** 2 + (
            (y - _BODY["cy"]) / (_BODY["ay"] - fat_mm)
        ) ** 2 <= 1.0
        paint(body, "subcutaneous_fat")
        paint(body & inner, "muscle")
        if extras is not None:
            self._paint_outside_body(x, y, z, paint, extras)
        # mediastinal fat between the lungs
        med = mediastinum & body & inner & (np.abs(x) < 60) & (z > 0)
        paint(med, "mediastinal_fat")
        hc, hr = _HEART["c"], _HEART["r"]
        heart = ((x - hc[0]) / hr[0]) ** 2 + ((y - hc[1]) / hr[1]) ** 2 + (
            (z - hc[2]) / hr[2]
        ) ** 2 <= 1
        paint(heart, "heart")
        for a, b, r in _AORTA:
            paint(_in_capsule(x, y, z, a, b, r), "aorta")
        for a, b, r in _PULMONARY_ARTERIES:
            paint(_in_capsule(x, y, z, a, b, r), "pulmonary_artery")
        if extras is not None and extras.veins:
            for a, b, r in _VEINS:
                paint(_in_capsule(x, y, z, a, b, r) & body, "vein")
        eso = (x - _ESOPHAGUS["x"]) ** 2 + (y - _ESOPHAGUS["y"]) ** 2 <= _ESOPHAGUS["r"] ** 2
        paint(eso & (z > 0) & body, "oesophagus")
        if extras is not None and extras.oesophagus_air is not None:
            z0, z1, r_air = extras.oesophagus_air
            air = (x - _ESOPHAGUS["x"]) ** 2 + (y - _ESOPHAGUS["y"]) ** 2 <= r_air**2
            paint(air & (z >= z0) & (z <= z1) & body, "oesophagus_air")
        if extras is not None and extras.thyroid:
            paint(_in_thyroid(x, y, z) & body, "thyroid")
        # below the diaphragm: liver on the right, spleen and stomach on the left
        for side, p in _LUNGS.items():
            below = (z < _diaphragm_z(x, y, p)) & (side * x > 0) & inner
            paint(below & ~heart, "liver" if side > 0 else "spleen_stomach")
        # spine: vertebral bodies with a cortical rim, discs every pitch, spinal canal
        sp = _SPINE
        qv = (x / sp["rx"]) ** 2 + ((y - sp["y"]) / sp["ry"]) ** 2
        disc = np.mod(z, sp["pitch"]) < sp["disc"]
        paint((qv <= 1.0) & ~disc, "cortical_bone")
        paint((qv <= 0.72) & ~disc, "trabecular_bone")
        paint((qv <= 1.0) & disc, "disc")
        paint(x**2 + (y - sp["canal_y"]) ** 2 <= sp["canal_r"] ** 2, "spinal_canal")
        # sternum
        st = (x / _STERNUM["rx"]) ** 2 + ((y - _STERNUM["y"]) / _STERNUM["ry"]) ** 2 <= 1.0
        paint(st & (z > 60) & (z < 200), "sternum")
        # ribs: tilted rings just outside the lungs, one every pitch, sloping down anteriorly
        rb = _RIB
        rho = np.sqrt(qb) * 0.5 * (_BODY["ax"] + _BODY["ay"])  # ~ distance from the body axis
        rib_ring = np.abs(rho - (0.5 * (_BODY["ax"] + _BODY["ay"]) - fat_mm - 14.0)) < rb["radius"]
        phase = np.mod(z + rb["slope"] * (y - _BODY["cy"]), rb["pitch"])
        ribs = (
            rib_ring
            & (phase < rb["thickness"])
            & ~((np.abs(x) < 35) & (y > 40))
            & (z > 20)
            & (z < 240)
        )
        paint(ribs, "rib")
        if extras is not None and extras.clavicles:
            for a, b, r in _CLAVICLES:
                paint(_in_capsule(x, y, z, a, b, r), "clavicle")
        # the lungs last: their voxels are filled by the parenchyma model
        paint(lung != 0, "lung")
        return lab, lung

    @staticmethod
    def _paint_outside_body(x, y, z, paint, extras: ChestExtras) -> None:
        """Arms beside the chest and the table under it (scale-1 frame)."""
        if extras.arms:
            arm = _ARM
            for side in (1.0, -1.0):
                cx = side * (_BODY["ax"] + extras.arm_gap_mm + arm["radius"])
                d2 = (x - cx) ** 2 + (y - _BODY["cy"]) ** 2
                paint(d2 <= arm["radius"] ** 2, "subcutaneous_fat")
                paint(d2 <= (arm["radius"] - arm["fat"]) ** 2, "muscle")
                paint(d2 <= arm["humerus"] ** 2, "humerus")
        if extras.table:
            top = _BODY["cy"] - _BODY["ay"] - extras.table_gap_mm
            paint((y <= top) & (y > top - _TABLE_MM) & (np.abs(x) < 230.0), "table")


def _diaphragm_z(x, y, p: dict):
    """Height of the diaphragm under a lung (scale-1 frame): a dome whose top lies in front
    of the lung's centre, so that the posterior costophrenic recess reaches lowest."""
    q = ((x - p["cx"]) / p["ax"]) ** 2 + ((y - p["cy"] - _DOME_FORWARD) / p["ay"]) ** 2
    return p["z_dome"] - _DOME_DEPTH * np.minimum(q, 1.25)


def _set(hu: np.ndarray, where, value) -> None:
    """``hu[where] = value`` with ``where`` broadcast to the shape of ``hu``."""
    hu[np.broadcast_to(where, hu.shape)] = value


def _capsule_distance(x, y, z, a, b) -> np.ndarray:
    """Distance (same unit as the inputs) from points to the segment ``a``-``b``."""
    a = np.asarray(a, dtype=float)
    d = np.asarray(b, dtype=float) - a
    dx, dy, dz = x - a[0], y - a[1], z - a[2]
    t = np.clip((dx * d[0] + dy * d[1] + dz * d[2]) / float(d @ d), 0.0, 1.0)
    return np.sqrt((dx - t * d[0]) ** 2 + (dy - t * d[1]) ** 2 + (dz - t * d[2]) ** 2)


def _in_capsule(x, y, z, a, b, r) -> np.ndarray:
    """Points within ``r`` of the segment ``a``-``b``, as a bool array of the broadcast shape.

    On grid axes (x of shape (I, 1, 1), y (1, J, 1), z (1, 1, K)) only the capsule's
    bounding box is computed, which is what makes a large volume fast.
    """
    shape = np.broadcast_shapes(np.shape(x), np.shape(y), np.shape(z))
    axes = (np.asarray(x), np.asarray(y), np.asarray(z))
    on_grid = all(v.ndim == 3 and v.size == v.shape[i] for i, v in enumerate(axes))
    if not on_grid:
        return _capsule_distance(x, y, z, a, b) <= r
    out = np.zeros(shape, dtype=bool)
    lo, hi = np.minimum(a, b) - r, np.maximum(a, b) + r
    sl = []
    for i, v in enumerate(axes):
        idx = np.flatnonzero((v.ravel() >= lo[i]) & (v.ravel() <= hi[i]))
        if idx.size == 0:
            return out
        sl.append(slice(int(idx[0]), int(idx[-1]) + 1))
    xs, ys, zs = axes[0][sl[0]], axes[1][:, sl[1]], axes[2][:, :, sl[2]]
    out[tuple(sl)] = _capsule_distance(xs, ys, zs, a, b) <= r
    return out


def _in_thyroid(x, y, z, grow_mm: float = 0.0) -> np.ndarray:
    """Points (scale-1 frame) in the thyroid's lobes or isthmus, grown by ``grow_mm``."""
    out = _in_capsule(x, y, z, *_THYROID_ISTHMUS[:2], _THYROID_ISTHMUS[2] + grow_mm)
    for c, r in _THYROID_LOBES:
        r = r + grow_mm
        out = out | (
            ((x - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((z - c[2]) / r[2]) ** 2 <= 1
        )
    return out


def hilum_vessels(geom: ThoraxGeometry) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Pulmonary arteries from the heart to the hila as world capsules (start, end, radius mm)."""
    return [(geom.point(a), geom.point(b), r * geom.scale) for a, b, r in _PULMONARY_ARTERIES]
