"""Task-group helpers shared by every room."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import anyio

from .errors import AloeError

__all__ = ["lone_error", "the_lone_error"]


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def the_lone_error(group: BaseExceptionGroup) -> BaseException | None:
    """The one error behind a task group's failure, or None when there are several.

    That is the group's only leaf, or, when every leaf is an ``AloeError``
    (besides the broken or closed streams of tasks whose peer died of them:
    a full disk fails several writers at once), the first of them."""
    leaves = _leaves(group)
    if len(leaves) == 1:
        return leaves[0]
    errors = [e for e in leaves if not isinstance(e, (anyio.BrokenResourceError, anyio.ClosedResourceError))]
    if errors and all(isinstance(e, AloeError) for e in errors):
        return errors[0]
    return None


@contextmanager
def lone_error() -> Iterator[None]:
    """Re-raise a task group's failure as the error itself when there is one
    (see ``the_lone_error``), so tracebacks stay readable and the CLI can print
    an ``AloeError`` as one line; several unrelated errors stay a group."""
    try:
        yield
    except BaseExceptionGroup as group:
        lone = the_lone_error(group)
        if lone is None:
            raise
        raise lone from lone.__cause__
