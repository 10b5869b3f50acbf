"""The packages of the distribution, found under their import names (pyproject.toml holds
everything else), so a new subpackage is never left out of the wheel while editable installs
and the tests, which read the folders, would not notice.

The folders are the design's; two are imported under names nothing else owns: serve/ as
`chorus` (next to `ray.serve`, a package named `serve` reads as Ray's) and
operator/voice_operator as `voice_operator` (the standard library owns `operator`).
"""

from setuptools import find_packages, setup

PACKAGE_DIR = {"chorus": "serve", "deployments": "deployments", "voice_operator": "operator/voice_operator"}

setup(
    package_dir=PACKAGE_DIR,
    packages=[f"{name}.{sub}" if sub else name
              for name, folder in PACKAGE_DIR.items() for sub in ["", *find_packages(folder)]],
)
