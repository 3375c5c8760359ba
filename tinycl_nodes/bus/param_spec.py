"""ROS 2 parameter descriptors derived from a node's pydantic parameter model (one definition).

Each field becomes one ROS 2 parameter: its type (bool, integer, double, string, or an array of
those), description, integer/floating-point range (from ``ge``/``le``/``gt``/``lt``; ROS 2's ranges include their
ends, so an exclusive bound is the next value inside it, and ``additional_constraints`` says it in words), the
allowed values of a ``Literal`` and read-only unless the model lists it in ``runtime_mutable``. A field
ROS 2 has no type for (``None``-able lists, mappings, tuples, unions) is a string holding YAML, and
``None`` is the empty string, so ``ros2 param get/set/dump`` still show and take every value.
"""

from __future__ import annotations

import array
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

import yaml
from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel

#: the largest value a ROS 2 integer parameter (and an IntegerRange) holds: int64
INT64_MAX = 2**63 - 1

SCALARS = {bool: "bool", int: "integer", float: "double", str: "string"}


@dataclass(frozen=True)
class ParamSpec:
    """One ROS 2 parameter: ``kind`` is a ParameterType name in lower case ('double', 'string_array', …)."""

    name: str
    kind: str
    description: str
    read_only: bool
    lower: int | float | None = None     # as the field gives it: an integer's bound stays exact (2**63 - 1 is no float)
    upper: int | float | None = None
    choices: tuple[str, ...] = ()
    yaml_text: bool = False        # value carried as YAML text in a string parameter
    none_is_empty: bool = False    # an optional value: None is ""
    lower_open: bool = False       # gt: ``lower`` itself is refused
    upper_open: bool = False       # lt: ``upper`` itself is refused
    rule: str = ""                 # a validator's own rule in words (its function's ``words``), which no range shows

    @property
    def constraints(self) -> str:
        """Human-readable constraints (ParameterDescriptor.additional_constraints)."""
        if self.choices:
            return "one of: " + ", ".join(self.choices)
        if self.yaml_text:
            return "YAML text (empty: not set)" if self.none_is_empty else "YAML text"
        words = ([f"greater than {_number(self.lower)}"] if self.lower_open and self.lower is not None else []) + (
            [f"less than {_number(self.upper)}"] if self.upper_open and self.upper is not None else []) + (
            [self.rule] if self.rule else [])
        return ", ".join(words)

    def to_ros(self, value: Any) -> Any:
        """The validated value as the ROS 2 parameter value of ``kind``."""
        if self.yaml_text:   # without the document end ("0\n...") PyYAML writes after a bare scalar
            return "" if value is None else yaml.safe_dump(_plain(value), default_flow_style=True).removesuffix(
                "\n...\n").strip()
        if self.none_is_empty and value is None:
            return ""
        if self.kind == "double":
            return float(value)
        if self.kind == "double_array":
            return [float(v) for v in value]
        if self.kind.endswith("_array"):
            return list(value)
        return value

    def from_ros(self, value: Any) -> Any:
        """A value given through ROS 2 — a parameter file, ``-p`` or ``ros2 param set`` — as the model's field takes
        it (then validated by the model): the one conversion of every route, so what ``ros2 param get/dump`` shows
        (``to_ros``) is taken back as it is. A YAML-text parameter takes its text ("" is not set) or the value itself
        (a mapping or a list written as YAML in a file); text that is not YAML is a ValueError naming the parameter. ""
        is None for an optional value; for another the model says what is wrong with it."""
        if self.yaml_text:
            if value is None or value == "":
                return None if self.none_is_empty else value
            if not isinstance(value, str):
                return list(value) if isinstance(value, (tuple, array.array)) else value
            try:
                return yaml.safe_load(value)
            except yaml.YAMLError as exc:
                raise ValueError(f"parameter {self.name}: not valid YAML text: {str(exc).splitlines()[0]} "
                                 f"(got {value!r})") from None
        if self.none_is_empty and value == "":
            return None
        if isinstance(value, (list, tuple, array.array)):   # rclpy hands arrays back as array.array
            return list(value)
        return value


def from_ros_values(model: type[BaseModel], values: dict[str, Any]) -> dict[str, Any]:
    """``ParamSpec.from_ros`` of every value the model declares (other names are left for the model to refuse)."""
    specs = {s.name: s for s in param_specs(model)}
    return {k: specs[k].from_ros(v) if k in specs else v for k, v in values.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]), True
    return tp, False


def _kind(tp: Any) -> tuple[str, tuple[str, ...]] | None:
    """('double', ()) for a type ROS 2 has, ('string', choices) for a Literal; None otherwise."""
    if tp in SCALARS:
        return SCALARS[tp], ()
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal and all(isinstance(a, str) for a in args):
        return "string", tuple(args)
    if origin is list and len(args) == 1 and args[0] in SCALARS and args[0] is not bool:
        return SCALARS[args[0]] + "_array", ()
    return None


def param_specs(model: type[BaseModel]) -> list[ParamSpec]:
    """The ROS 2 parameters of a node's parameter model, in field order."""
    mutable = set(getattr(model, "runtime_mutable", ()))
    specs = []
    for name, field in model.model_fields.items():
        tp, optional = _unwrap_optional(field.annotation)
        kind = _kind(tp)
        lower = upper = None
        lower_open = upper_open = False
        rule = "; ".join(w for m in field.metadata if (w := getattr(getattr(m, "func", None), "words", "")))
        for m in field.metadata:
            if isinstance(m, (Ge, Gt)):
                lower, lower_open = (m.ge if isinstance(m, Ge) else m.gt), isinstance(m, Gt)
            elif isinstance(m, (Le, Lt)):
                upper, upper_open = (m.le if isinstance(m, Le) else m.lt), isinstance(m, Lt)
        desc = field.description or ""
        if kind is None or (optional and kind[0] != "string"):
            specs.append(ParamSpec(name, "string", desc, name not in mutable, yaml_text=True, none_is_empty=optional))
        else:
            specs.append(ParamSpec(name, kind[0], desc, name not in mutable, lower, upper, kind[1],
                                   none_is_empty=optional, lower_open=lower_open, upper_open=upper_open,
                                   rule=rule))
    return specs


def range_step(spec: ParamSpec) -> tuple[float, float] | tuple[int, int] | None:
    """(from, to) for a ParameterDescriptor range, or None when the field is unbounded. ROS 2's ranges include both
    ends (``ros2 param describe`` shows them as "Min value" / "Max value", and rclpy accepts them): an exclusive bound
    (``gt``/``lt``) is the first value inside it — ``gt=0`` on an integer is 1, on a double the smallest double above
    0 — so that no value the model refuses is shown as allowed (it showed "Min value: 0.0" for ``imu_rate_hz``)."""
    if spec.lower is None and spec.upper is None:
        return None
    if spec.kind == "integer":     # exact, and within the int64 an IntegerRange holds
        big = INT64_MAX
        lo = -big if spec.lower is None else math.floor(spec.lower) + 1 if spec.lower_open else math.ceil(spec.lower)
        hi = big if spec.upper is None else math.ceil(spec.upper) - 1 if spec.upper_open else math.floor(spec.upper)
        return max(lo, -big - 1), min(hi, big)
    lower, upper = (None if b is None else float(b) for b in (spec.lower, spec.upper))
    lo_f = -math.inf if lower is None else math.nextafter(lower, math.inf) if spec.lower_open else lower
    hi_f = math.inf if upper is None else math.nextafter(upper, -math.inf) if spec.upper_open else upper
    return lo_f, hi_f


def _number(value: int | float) -> str:
    """0 rather than 0.0, 0.5 as it is: a bound as a person writes it."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))
