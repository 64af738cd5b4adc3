"""Typed settings: how every config group's schema is written, checked and built.

A schema is a frozen dataclass deriving from ``Settings`` whose fields are
declared with ``setting(default, help=..., ge=..., le=..., choices=...)``, as
TRL's config classes carry a ``help`` per field. ``Settings.__post_init__``
checks every field against its type annotation and those bounds, so a
settings object can only exist with allowed values, however it was built;
a subclass adds its cross-field checks after ``super().__post_init__()``.
Each check raises ``ConfigError(key, value, allowed)``; ``allowed`` is derived
from the annotation and the bounds (``"a number in [0, 2]"``), so the CLI's
one line and the schema cannot disagree.

``to_settings(node, cls, prefix)`` builds the object from a config node (an
OmegaConf node composed by Hydra against the schema, or a plain mapping),
bottom-up, naming the full key (``agents.preferred.temperature``) of any
value that is not allowed. ``config_error`` turns OmegaConf's own type
errors (raised while Hydra applies an override) into the same one line.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import operator
import types
import typing
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, OmegaConfBaseException

from .errors import ConfigError

__all__ = ["Settings", "allowed", "config_error", "help_of", "schema_node", "setting", "to_settings"]

_CHECKS = ("ge", "gt", "le", "lt", "choices", "nonempty")


def setting(default: Any = dataclasses.MISSING, *, help: str, factory: Any = None, ge: float | None = None,
            gt: float | None = None, le: float | None = None, lt: float | None = None,
            choices: tuple[str, ...] | None = None, nonempty: bool = False, allowed: str | None = None) -> Any:
    """A schema field: its default (or ``factory``), its ``help`` line and its
    checks. Bounds apply to numbers (and to each number of a list); ``choices``
    and ``nonempty`` to strings. ``allowed`` replaces the derived description."""
    meta = {"help": help, "ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices, "nonempty": nonempty,
            "allowed": allowed}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


class Settings:
    """Base of every settings dataclass: ``__post_init__`` checks each field."""

    def __post_init__(self) -> None:
        cls = type(self)
        hints = _hints(cls)
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            hint = hints.get(f.name, Any)
            if not _valid(value, hint, f.metadata):
                raise ConfigError(f.name, value, allowed(cls, f.name))
            if isinstance(value, list) and typing.get_origin(_strip_optional(hint)[0]) is tuple:
                object.__setattr__(self, f.name, tuple(value))  # OmegaConf hands tuples over as lists


# -- describing and checking one field ----------------------------------------------

@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _strip_optional(hint: Any) -> tuple[Any, bool]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        return (args[0] if len(args) == 1 else functools.reduce(operator.or_, args)), optional
    return hint, False


def _element(hint: Any) -> Any | None:
    """The element type of a list/tuple annotation, else None."""
    if typing.get_origin(hint) in (list, tuple):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return args[0] if args else Any
    return None


def _valid(value: Any, hint: Any, meta: Mapping[str, Any]) -> bool:
    inner, optional = _strip_optional(hint)
    if value is None:
        return optional or inner is Any
    element = _element(inner)
    if element is not None:
        return isinstance(value, (list, tuple)) and all(_valid(v, element, meta) for v in value)
    if typing.get_origin(inner) in (typing.Union, types.UnionType):
        return any(_valid(value, member, meta) for member in typing.get_args(inner))
    if inner is Any:
        return True
    if dataclasses.is_dataclass(inner):
        return isinstance(value, inner)
    if inner is bool:
        return isinstance(value, bool)
    if inner in (int, float):
        if isinstance(value, bool) or not isinstance(value, int if inner is int else (int, float)):
            return False
        return math.isfinite(value) and _in_bounds(value, meta)
    if inner is str:
        if not isinstance(value, str):
            return False
        if meta.get("nonempty") and not value.strip():
            return False
        return not meta.get("choices") or value in meta["choices"]
    if typing.get_origin(inner) is dict or inner is dict:
        return isinstance(value, Mapping)
    return isinstance(value, inner) if isinstance(inner, type) else True


def _in_bounds(v: float, meta: Mapping[str, Any]) -> bool:
    # operator.ge, not int.__ge__: (120).__ge__(0.5) is NotImplemented, an int against a float bound
    checks = ((meta.get("ge"), operator.ge), (meta.get("gt"), operator.gt), (meta.get("le"), operator.le),
              (meta.get("lt"), operator.lt))
    return all(bound is None or test(v, bound) for bound, test in checks)


def _number(bound: float) -> str:
    return f"{bound:,}".replace(",", "_") if isinstance(bound, int) and abs(bound) >= 100_000 else str(bound)


def _describe(hint: Any, meta: Mapping[str, Any], plural: bool = False) -> str:
    inner, optional = _strip_optional(hint)
    text = _describe_inner(inner, meta, plural)
    return f"null or {text}" if optional else text


def _describe_inner(inner: Any, meta: Mapping[str, Any], plural: bool) -> str:
    element = _element(inner)
    if element is not None:
        return "a list of " + _describe(element, meta, plural=True)
    if typing.get_origin(inner) in (typing.Union, types.UnionType):
        return " or ".join(_describe_inner(member, meta, plural) for member in typing.get_args(inner))
    if inner is bool:
        return "true | false"
    if inner in (int, float):
        noun = ("integers" if plural else "an integer") if inner is int else ("numbers" if plural else "a number")
        lo = meta["ge"] if meta.get("ge") is not None else meta.get("gt")
        hi = meta["le"] if meta.get("le") is not None else meta.get("lt")
        if lo is not None and hi is not None:
            left, right = "[" if meta.get("ge") is not None else "(", "]" if meta.get("le") is not None else ")"
            return f"{noun} in {left}{_number(lo)}, {_number(hi)}{right}"
        if lo is not None:
            return f"{noun} {'>=' if meta.get('ge') is not None else '>'} {_number(lo)}"
        if hi is not None:
            return f"{noun} {'<=' if meta.get('le') is not None else '<'} {_number(hi)}"
        return noun
    if inner is str:
        if meta.get("choices"):
            return " | ".join(meta["choices"])
        return ("non-empty strings" if plural else "a non-empty string") if meta.get("nonempty") else (
            "strings" if plural else "a string")
    if dataclasses.is_dataclass(inner):
        names = [f.name for f in dataclasses.fields(inner)]
        return "a mapping of its keys (" + ", ".join(names[:4]) + (", ...)" if len(names) > 4 else ")")
    return "a value"


def allowed(cls: type, name: str) -> str:
    """What the schema ``cls`` allows for its field ``name``."""
    f = _field(cls, name)
    if f is None:
        return f"a known key of {cls.__name__}"
    return f.metadata.get("allowed") or _describe(_hints(cls).get(name, Any), f.metadata)


def help_of(cls: type, name: str) -> str | None:
    """The ``help`` line of a schema field (None for an unknown field)."""
    f = _field(cls, name)
    return f.metadata.get("help") if f is not None else None


def _field(cls: type, name: str) -> dataclasses.Field | None:
    if not dataclasses.is_dataclass(cls):
        return None
    return next((f for f in dataclasses.fields(cls) if f.name == name), None)


# -- from config nodes to settings objects --------------------------------------------

def schema_node(cls: type, *, open_root: bool = False) -> DictConfig:
    """``cls`` as an OmegaConf node that Hydra can merge into: frozen dataclasses
    make read-only nodes, so the flag is cleared (the built objects stay frozen).
    ``open_root``: the root accepts keys that other schemas add (``schema@key``).
    A fresh copy each call (the caller may change it)."""
    return copy.deepcopy(_schema_template(cls, open_root))


@functools.cache
def _schema_template(cls: type, open_root: bool) -> DictConfig:
    """``schema_node``'s node, built once per schema (``OmegaConf.structured`` costs milliseconds a
    schema, and typed settings are built per role and command). Never changed: ``OmegaConf.merge``
    copies its first argument, and ``schema_node`` hands out copies."""
    node = OmegaConf.structured(cls)
    stack: list[Any] = [node]
    while stack:
        n = stack.pop()
        OmegaConf.set_readonly(n, None)
        if n._is_missing() or n._is_none() or n._is_interpolation():
            continue
        keys = n.keys() if isinstance(n, DictConfig) else range(len(n))
        stack.extend(c for c in (n._get_node(k) for k in keys) if isinstance(c, (DictConfig, ListConfig)))
    if open_root:
        OmegaConf.set_struct(node, False)
    return node


def _join(prefix: str, key: Any) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


def config_error(exc: OmegaConfBaseException, prefix: str = "") -> ConfigError:
    """The one-line ``ConfigError`` for an OmegaConf type error (a value that
    does not fit the schema, a missing mandatory value, an unknown key)."""
    parent = getattr(exc, "parent_node", None)
    key = getattr(exc, "key", None)
    full = str(getattr(exc, "full_key", None) or key or "")
    value = getattr(exc, "value", None)
    if isinstance(parent, ListConfig):  # an element of a list: describe the list
        key, parent, full = parent._key(), parent._get_parent(), full.rsplit("[", 1)[0]
    elif key is None and isinstance(parent, DictConfig) and parent._get_parent() is not None:
        key, parent = parent._key(), parent._get_parent()  # the node itself got a value of another kind
    cls = OmegaConf.get_type(parent) if isinstance(parent, DictConfig) else getattr(exc, "object_type", None)
    if cls is None or not dataclasses.is_dataclass(cls):
        cls = getattr(exc, "object_type", None)
    if cls is not None and dataclasses.is_dataclass(cls) and key is not None:
        text = allowed(cls, str(key))
    else:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=False)
    return ConfigError(_join(prefix, full), value, text)


def to_settings(node: Any, cls: type | None = None, prefix: str = "") -> Any:
    """The settings object of a config ``node``: every schema in it is built
    bottom-up, so each ``__post_init__`` check runs. A node not yet typed as
    ``cls`` (a plain mapping, an untyped node) is first merged into ``cls``'s
    schema. Errors are ``ConfigError`` naming the full key under ``prefix``."""
    if cls is not None and not (isinstance(node, DictConfig) and _typed_as(node, cls)):
        content = {} if node is None else node
        if not isinstance(content, (Mapping, DictConfig)):
            raise ConfigError(prefix or cls.__name__, content, f"a mapping of {cls.__name__} keys")
        try:
            node = OmegaConf.merge(_schema_template(cls, False), content)
        except OmegaConfBaseException as exc:
            raise config_error(exc, prefix) from None
    return _build(node, prefix)


def _typed_as(node: DictConfig, cls: type) -> bool:
    kind = OmegaConf.get_type(node)
    return isinstance(kind, type) and issubclass(kind, cls)


def _build(node: DictConfig | ListConfig, prefix: str) -> Any:
    if isinstance(node, ListConfig):
        return [_value(node, i, f"{prefix}[{i}]", None) for i in range(len(node))]
    cls = OmegaConf.get_type(node)
    if not dataclasses.is_dataclass(cls):
        return {k: _value(node, k, _join(prefix, k), None) for k in node}
    names = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs: dict[str, Any] = {}
    for key in node:
        full = _join(prefix, key)
        value = _value(node, key, full, names.get(str(key)))
        if key in names:
            kwargs[str(key)] = value
        elif not dataclasses.is_dataclass(value):  # a typed node another schema added (schema@key) is kept apart
            raise ConfigError(full, value, f"a known key of {cls.__name__} (see `aloe <command> --help`)")
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        if not prefix:  # its key is already the full key: keep the error as raised (its own wording)
            raise exc from None
        raise ConfigError(_join(prefix, exc.key), exc.value, exc.allowed) from None


def _value(node: DictConfig | ListConfig, key: Any, full: str, f: dataclasses.Field | None) -> Any:
    child = node._get_node(key)
    if OmegaConf.is_missing(node, key):
        owner = OmegaConf.get_type(node)
        text = allowed(owner, str(key)) if dataclasses.is_dataclass(owner) else "a value"
        raise ConfigError(full, None, text + " (this key has no default: set it)")
    if isinstance(child, (DictConfig, ListConfig)) and not child._is_none() and not child._is_interpolation():
        return _build(child, full)
    try:
        value = node[key]
    except InterpolationResolutionError as exc:
        if "HydraConfig was not set" not in str(exc) and "interpolation type hydra" not in str(exc):
            raise ConfigError(full, child._value(), f"a resolvable value ({str(exc).splitlines()[0]})") from None
        # ${hydra:...} resolves inside a launched job, which checks it again
        raw = child._value()
        if f is None or f.default is dataclasses.MISSING:
            return raw
        hint = _strip_optional(_hints(OmegaConf.get_type(node)).get(f.name, Any))[0]
        return raw if hint in (str, Any) else f.default
    except OmegaConfBaseException as exc:
        raise config_error(exc) from None
    if isinstance(value, (DictConfig, ListConfig)):
        return _build(value, full)
    return value
