"""The read-only local web viewer (``aloe view``): a Starlette app with Jinja2
templates over an aloesim database, plus sample databases for tests, demos
and benchmarks."""

from ._app import create_app, serve_in_thread
from ._sample import SAMPLE, write_sample, write_synthetic

__all__ = ["SAMPLE", "create_app", "serve_in_thread", "write_sample", "write_synthetic"]
