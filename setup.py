"""Package layout: each top-level folder of the repository is one room of
aloesim, installed as ``aloesim.<folder>`` (``aloesim`` itself is a namespace
package), so nothing generic such as ``agents`` lands at the top of
site-packages.  Metadata lives in pyproject.toml."""

from setuptools import find_packages, setup

ROOMS = ("agents", "environment", "orchestration", "training", "evaluation", "conf")

packages: list[str] = []
package_dir: dict[str, str] = {}
for room in ROOMS:
    package_dir[f"aloesim.{room}"] = room
    packages.append(f"aloesim.{room}")
    packages += [f"aloesim.{room}.{sub}" for sub in find_packages(room)]

setup(
    packages=packages,
    package_dir=package_dir,
    package_data={"": ["*.yaml", "**/*.yaml", "*.jsonl", "**/*.jsonl", "*.html", "**/*.html", "*.css", "**/*.css", "*.js", "**/*.js"]},
)
