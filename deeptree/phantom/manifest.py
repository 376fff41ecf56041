"""The manifest of a phantom cohort: what was generated, how, and the checksums of its files.

``<root>/cohort.json`` (written by :func:`~deeptree.phantom.cases.generate_cohort` after each
case, atomically) holds the generator (:data:`GENERATOR_VERSION`, the package version), the
profile (its name and every setting), the cohort seed, and for each case the sha256 of its four
files. With it a rerun

* completes a partial cohort: a case is done when the manifest lists it and its files are
  there with the listed checksums; a case not listed (never written, or killed before its
  entry) or with a file missing is generated again (the same bytes: case ``i`` depends only on
  the seed and ``i``);
* refuses clearly what it cannot complete: a cohort made with another profile, seed or
  generator version (the new cases would not match the old ones), or a file changed since it
  was written.

A cohort written before manifests existed is adopted when the trees of its cases
(``treesTr/*.json``) name the same profile, seed and voxel size (other settings of an older
profile cannot be told from its files).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from deeptree import __version__
from deeptree.files import file_sha256
from deeptree.io import InputError, atomic_write
from deeptree.phantom_config import PhantomProfile

#: The manifest's file name in the cohort root.
MANIFEST_NAME = "cohort.json"

#: Format of the manifest file.
MANIFEST_FORMAT = "deeptree-cohort-1"

#: Version of the phantom generator: raise it whenever a change of :mod:`deeptree.phantom`
#: changes the bytes generated for a given profile and seed, so that an old cohort is never
#: extended with cases of the new generator. (A change of a profile's settings is caught
#: without it: they are stored whole.)
GENERATOR_VERSION = 1


class CohortManifest:
    """The manifest of the cohort in ``root`` (see the module), opened for generation.

    Parameters
    ----------
    root : path-like
        The cohort folder.
    profile : PhantomProfile
    seed : int
        The cohort seed.

    Raises
    ------
    InputError
        The folder holds a cohort of another profile, seed or generator version (naming the
        manifest or the tree file and what differs), or an unreadable manifest.
    """

    def __init__(self, root: str | os.PathLike, profile: PhantomProfile, seed: int):
        self.root = Path(root)
        self.path = self.root / MANIFEST_NAME
        self.settings = {
            "generator_version": GENERATOR_VERSION,
            "profile": profile.name,
            "profile_settings": json.loads(json.dumps(asdict(profile), default=str)),
            "seed": int(seed),
        }
        self.package_version = __version__
        self.spacing_mm = float(profile.spacing_mm)
        self.cases: dict[str, dict[str, str]] = {}
        if self.path.is_file():
            self._open_existing()

    def _open_existing(self) -> None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise InputError(
                f"{self.path}: not a readable cohort manifest ({err}); move the cohort away or "
                "give another --out"
            ) from err
        if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
            raise InputError(f"{self.path}: not a DeepTree cohort manifest ({MANIFEST_FORMAT!r})")
        for key, value in self.settings.items():
            if data.get(key) != value:
                shown = "its settings" if key == "profile_settings" else repr(data.get(key))
                raise InputError(
                    f"{self.path}: this cohort was generated with {key} {shown}, this run asks for "
                    f"{'other settings' if key == 'profile_settings' else repr(value)}; new cases "
                    "would not match it: give another --out (or delete the cohort)"
                )
        self.cases = data.get("cases", {})

    def adopt_legacy(self, case_id: str, paths: dict[str, Path]) -> bool:
        """Take a complete case of a cohort without manifest into this one when its tree
        names the same profile and seed; returns True if adopted.

        Raises
        ------
        InputError
            The case was generated with another profile or seed.
        """
        try:
            meta = json.loads(paths["tree"].read_text(encoding="utf-8")).get("meta", {})
        except (OSError, ValueError, AttributeError):
            return False  # unreadable: generated again
        profile, seed = meta.get("profile"), meta.get("seed")
        if profile is None and seed is None:
            return False
        spacing = meta.get("spacing_mm")
        same_spacing = spacing is None or all(
            abs(float(v) - self.spacing_mm) < 1e-6 for v in spacing
        )
        if not same_spacing:
            raise InputError(
                f"{paths['tree']}: case {case_id} of the cohort in {self.root} has voxels of "
                f"{spacing} mm, the {self.settings['profile']!r} profile now makes "
                f"{self.spacing_mm:g} mm; a cohort of both would be mixed: give another --out "
                "(or delete the cohort)"
            )
        if profile != self.settings["profile"] or not (
            isinstance(seed, list) and seed and seed[0] == self.settings["seed"]
        ):
            raise InputError(
                f"{paths['tree']}: case {case_id} of the cohort in {self.root} was generated with "
                f"profile {profile!r} and seed {seed!r}, this run asks for profile "
                f"{self.settings['profile']!r} and seed {self.settings['seed']}; a cohort of "
                "both would be mixed: give another --out (or delete the cohort)"
            )
        self.add(case_id, paths)
        return True

    def is_complete(self, case_id: str, paths: dict[str, Path]) -> bool:
        """True when the manifest lists ``case_id`` and its files are all there.

        Raises
        ------
        InputError
            A listed file is there but differs from its checksum (changed since it was
            written: never overwritten silently).
        """
        listed = self.cases.get(case_id)
        if listed is None:
            return False
        complete = True
        for kind, path in paths.items():
            if not path.is_file():
                complete = False  # removed: generated again
            elif kind not in listed or file_sha256(path) != listed[kind]:
                raise InputError(
                    f"{path}: changed since it was generated (its checksum differs from "
                    f"{self.path}); delete it to generate it again, or give another --out"
                )
        return complete

    def add(self, case_id: str, paths: dict[str, Path]) -> None:
        """List ``case_id`` with the checksums of its files and write the manifest."""
        self.cases[case_id] = {kind: file_sha256(path) for kind, path in paths.items()}
        self.write()

    def write(self) -> None:
        """Write the manifest atomically."""
        data = {
            "format": MANIFEST_FORMAT,
            **self.settings,
            "deeptree_version": self.package_version,
            "cases": dict(sorted(self.cases.items())),
        }
        text = json.dumps(data, indent=1)
        atomic_write(self.path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
