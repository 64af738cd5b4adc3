"""``aloesim.core`` settings: a schema checks every field on construction,
describes what it allows from its annotation and bounds, and builds from
config nodes naming the full key of any bad value."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, dataclass

import pytest
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError

from aloesim.core import Settings, allowed, config_error, help_of, schema_node, setting, to_settings
from aloesim.core.errors import ConfigError


@dataclass(frozen=True)
class Inner(Settings):
    rate: float = setting(0.5, help="a rate", gt=0, le=1)
    names: tuple[str, ...] = setting(("a",), help="some names", nonempty=True)


@dataclass(frozen=True)
class Outer(Settings):
    count: int = setting(3, help="how many", ge=1, le=10)
    mode: str = setting("fast", help="how", choices=("fast", "slow"))
    label: str | None = setting(None, help="a name", nonempty=True)
    on: bool = setting(False, help="a switch")
    batch: int | str = setting("auto", help="auto or a size", choices=("auto",), ge=1, le=64)
    inner: Inner = setting(help="nested", factory=Inner)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.on and self.label is None:
            raise ConfigError("label", None, "a name when on=true")


@pytest.mark.parametrize(("kwargs", "key", "text"), [
    ({"count": 0}, "count", "an integer in [1, 10]"),
    ({"count": 11}, "count", "an integer in [1, 10]"),
    ({"count": True}, "count", "an integer in [1, 10]"),
    ({"count": 2.0}, "count", "an integer in [1, 10]"),
    ({"mode": "medium"}, "mode", "fast | slow"),
    ({"label": " "}, "label", "null or a non-empty string"),
    ({"on": "yes"}, "on", "true | false"),
    ({"batch": 0}, "batch", "an integer in [1, 64] or auto"),
    ({"batch": "big"}, "batch", "an integer in [1, 64] or auto"),
    ({"on": True}, "label", "a name when on=true"),
])
def test_every_field_is_checked_on_construction(kwargs: dict, key: str, text: str) -> None:
    with pytest.raises(ConfigError) as err:
        Outer(**kwargs)
    assert err.value.key == key and (err.value.allowed == text or text in str(err.value))


def test_allowed_and_help_come_from_the_schema() -> None:
    assert allowed(Inner, "rate") == "a number in (0, 1]"
    assert allowed(Inner, "names") == "a list of non-empty strings"
    assert allowed(Outer, "label") == "null or a non-empty string"
    assert allowed(Outer, "inner").startswith("a mapping of its keys (rate, names)")
    assert help_of(Outer, "count") == "how many" and help_of(Outer, "nope") is None
    assert allowed(Outer, "batch") == "an integer in [1, 64] or auto"
    with pytest.raises(ConfigError):  # NaN is in no range
        Inner(rate=float("nan"))


def test_valid_objects_are_frozen_and_tuples_stay_tuples() -> None:
    o = Outer(batch=8, inner=Inner(names=["x", "y"]))  # type: ignore[arg-type]
    assert o.inner.names == ("x", "y") and o.batch == 8
    with pytest.raises(FrozenInstanceError):
        o.count = 5  # type: ignore[misc]


def test_to_settings_names_the_full_key() -> None:
    with pytest.raises(ConfigError) as err:
        to_settings({"inner": {"rate": 2}}, Outer, "top")
    assert (err.value.key, err.value.value, err.value.allowed) == ("top.inner.rate", 2.0, "a number in (0, 1]")
    with pytest.raises(ConfigError) as err:
        to_settings({"inner": {"rate": "abc"}}, Outer, "top")
    assert err.value.key == "top.inner.rate" and err.value.value == "abc"
    with pytest.raises(ConfigError) as err:
        to_settings({"on": True}, Outer, "top")
    assert err.value.key == "top.label"
    with pytest.raises(ConfigError) as err:
        to_settings({"nope": 1}, Outer, "top")
    assert err.value.key == "top.nope" and "known key" in err.value.allowed
    built = to_settings({"count": 4, "inner": {"names": ["n"]}}, Outer)
    assert built == Outer(count=4, inner=Inner(names=("n",)))


def test_schema_nodes_merge_although_the_dataclasses_are_frozen() -> None:
    node = OmegaConf.merge(schema_node(Outer), {"inner": {"rate": 0.25}, "count": 5})
    assert OmegaConf.get_type(node) is Outer
    assert to_settings(node) == Outer(count=5, inner=Inner(rate=0.25))
    with pytest.raises(ValidationError) as err:
        OmegaConf.merge(schema_node(Outer), {"count": "many"})
    e = config_error(err.value)
    assert (e.key, e.value, e.allowed) == ("count", "many", "an integer in [1, 10]")
    with pytest.raises(ValidationError) as err:
        OmegaConf.merge(schema_node(Outer), {"inner": {"rate": [0.5]}})
    assert config_error(err.value).key == "inner.rate"
    with pytest.raises(ConfigError) as cerr:  # OmegaConf lets a list into a list of strings; the schema does not
        to_settings(OmegaConf.merge(schema_node(Outer), {"inner": {"names": [[1]]}}))
    assert cerr.value.key == "inner.names"


def test_hydra_values_are_left_to_the_job() -> None:
    node = OmegaConf.merge(schema_node(Outer), {"label": "run_${hydra:job.num}", "count": "${hydra:job.num}"})
    built = to_settings(node)  # outside a Hydra job: the text stays, an int falls back to its default
    assert built.label == "run_${hydra:job.num}" and built.count == 3
