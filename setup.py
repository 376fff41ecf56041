"""Build script: everything is declared in pyproject.toml except one mapping that its
[tool.setuptools] table cannot combine with package discovery. The real sample files of
``data/samples`` (where a clone keeps them, and where notebooks, tests and the README name them)
are installed as ``deeptree/samples`` inside the package, so that an installed deeptree finds
them too (``deeptree.io.SAMPLES_DIR``)."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["deeptree", "deeptree.*"]), "deeptree.samples"],
    package_dir={"deeptree.samples": "data/samples"},
)
