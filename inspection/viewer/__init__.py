"""The read-only local web viewer (``aloe view``): a Starlette app with Jinja2
templates over an aloesim database."""

from ._app import create_app, serve_in_thread

__all__ = ["create_app", "serve_in_thread"]
