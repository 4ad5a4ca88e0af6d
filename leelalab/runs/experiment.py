"""The shape every experiment shares: settings → run → results, with one run record.

An experiment is three things:

- a **settings** class: a frozen dataclass deriving from :class:`Settings`, each field made
  with :func:`setting` (default, help text, allowed range or choices). Construction
  validates every field, so an out-of-range value is one :class:`SettingsError` line that
  names the option, before any input is read or output touched. The command-line options
  are generated from the fields (:func:`add_settings_options`), so help text and defaults
  live in one place;
- a ``run(settings, …)`` function that takes the settings object and the experiment's
  inputs (networks, datasets — chess objects and paths at the boundary) and returns
- a **results** object: a dataclass deriving from :class:`Results`, which saves itself as
  one JSON file of a versioned format (``leelalab.<kind>/<version>``) and loads back to an
  equal object; :class:`~leelalab.stats.Estimate` fields round-trip.

Plots take results objects; the CLI maps options → settings → ``run`` → ``results.save``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from leelalab.errors import LeelaLabError
from leelalab.runs.records import read_json, write_text_atomically
from leelalab.stats import Estimate

S = TypeVar("S", bound="Settings")
R = TypeVar("R", bound="Results")


class SettingsError(LeelaLabError, ValueError):
    """A setting is out of range, of the wrong type, or inconsistent with another."""


def setting(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    choices: Sequence[Any] | None = None,
    option: str | None = None,
    metavar: str | None = None,
    exclusive_minimum: bool = False,
) -> Any:
    """A settings field: its default, help text and the values it accepts.

    ``option`` overrides the generated option name (``--kebab-field``); ``minimum`` /
    ``maximum`` bound numbers (and every element of a tuple of numbers).
    """
    metadata = {
        "help": help,
        "minimum": minimum,
        "maximum": maximum,
        "choices": tuple(choices) if choices is not None else None,
        "option": option,
        "metavar": metavar,
        "exclusive_minimum": exclusive_minimum,
    }
    if isinstance(default, list | dict | set):
        raise TypeError("settings are immutable: use a tuple default")
    return dataclasses.field(default=default, metadata=metadata)


def option_name(field: dataclasses.Field[Any]) -> str:
    return field.metadata.get("option") or "--" + field.name.replace("_", "-")


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _base_type(annotation: Any) -> tuple[Any, bool]:
    """The non-None type of an annotation, and whether None is allowed."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        arguments = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(arguments) == 1:
            return arguments[0], True
    return annotation, False


def _check_number(name: str, value: float, meta: Mapping[str, Any]) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise SettingsError(f"{name} must be a finite number (got {value})")
    low, high = meta.get("minimum"), meta.get("maximum")
    if low is not None:
        if meta.get("exclusive_minimum") and not value > low:
            raise SettingsError(f"{name} must be greater than {low} (got {value})")
        if value < low:
            raise SettingsError(f"{name} must be at least {low} (got {value})")
    if high is not None and value > high:
        raise SettingsError(f"{name} must be at most {high} (got {value})")


@dataclasses.dataclass(frozen=True)
class Settings:
    """Base of every experiment's settings: a frozen dataclass validated on construction.

    Subclasses add fields with :func:`setting` and may override :meth:`check` for rules
    that relate several fields (raise :class:`SettingsError`).
    """

    def __post_init__(self) -> None:
        hints = _field_types(type(self))
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            name = option_name(field)
            base, optional = _base_type(hints[field.name])
            if value is None:
                if not optional:
                    raise SettingsError(f"{name} is required")
                continue
            choices = field.metadata.get("choices")
            values = value if isinstance(value, tuple) else (value,)
            for element in values:
                if choices is not None and element not in choices:
                    allowed = ", ".join(str(c) for c in choices)
                    raise SettingsError(f"{name} must be one of {allowed} (got {element})")
                if isinstance(element, int | float) and not isinstance(element, bool):
                    _check_number(name, element, field.metadata)
        self.check()

    def check(self) -> None:
        """Rules between fields; the default has none."""

    def to_json(self) -> dict[str, Any]:
        """The settings as JSON values (paths as strings, tuples as lists)."""
        return {
            field.name: _to_json(getattr(self, field.name)) for field in dataclasses.fields(self)
        }

    @classmethod
    def from_json(cls: type[S], data: Mapping[str, Any]) -> S:
        """Settings read back from :meth:`to_json` (unknown keys are an error)."""
        hints = _field_types(cls)
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise SettingsError(f"unknown settings for {cls.__name__}: {', '.join(unknown)}")
        return cls(**{key: _from_json(value, hints[key]) for key, value in data.items()})

    def replace(self: S, **changes: Any) -> S:
        return dataclasses.replace(self, **changes)


def _to_json(value: Any) -> Any:
    if isinstance(value, Estimate):
        return {"estimate": value.to_json()}
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(key): _to_json(item) for key, item in value.items()}
    if isinstance(value, tuple | list):
        return [_to_json(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _from_json(value: Any, annotation: Any) -> Any:
    """A JSON value as the annotated type (tuples, paths, estimates, nested dataclasses)."""
    if value is None:
        return None
    base, _ = _base_type(annotation)
    origin = typing.get_origin(base)
    arguments = typing.get_args(base)
    if base is Estimate:
        return Estimate.from_json(value["estimate"] if "estimate" in value else value)
    if base is Path:
        return Path(value)
    if base is float:
        return float(value)
    if origin is tuple:
        item = arguments[0] if arguments else Any
        return tuple(_from_json(element, item) for element in value)
    if origin is list:
        item = arguments[0] if arguments else Any
        return [_from_json(element, item) for element in value]
    if origin is dict:
        item = arguments[1] if len(arguments) == 2 else Any
        return {key: _from_json(element, item) for key, element in value.items()}
    if isinstance(base, type) and dataclasses.is_dataclass(base):
        hints = _field_types(base)
        return base(**{key: _from_json(item, hints[key]) for key, item in value.items()})
    if base is Any and isinstance(value, dict) and set(value) == {"estimate"}:
        return Estimate.from_json(value["estimate"])
    return value


@dataclasses.dataclass
class Results:
    """Base of every experiment's results: saved as one versioned JSON file.

    Subclasses set ``FORMAT`` (``leelalab.<kind>/<version>``, see
    :func:`~leelalab.runs.records.format_name`) and ``FILE`` (the file name inside a run
    directory), and declare their fields as a dataclass.
    """

    FORMAT: ClassVar[str] = ""
    FILE: ClassVar[str] = "results.json"
    HINT: ClassVar[str] = ""

    def to_json(self) -> dict[str, Any]:
        data = {
            field.name: _to_json(getattr(self, field.name)) for field in dataclasses.fields(self)
        }
        return {"format": self.FORMAT, **data}

    @classmethod
    def from_json(cls: type[R], data: Mapping[str, Any]) -> R:
        hints = _field_types(cls)
        values = {
            field.name: _from_json(data.get(field.name), hints[field.name])
            for field in dataclasses.fields(cls)
            if field.name in data
        }
        return cls(**values)

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``directory/FILE`` atomically; returns the path."""
        path = Path(directory) / self.FILE
        write_text_atomically(path, json.dumps(self.to_json(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls: type[R], path: str | os.PathLike[str]) -> R:
        """Read results from a run directory or its results file; one line when wrong."""
        path = Path(path)
        if path.is_dir():
            path = path / cls.FILE
        data = read_json(path, expect_format=cls.FORMAT, hint=cls.HINT, what="results file")
        try:
            return cls.from_json(data)
        except (KeyError, TypeError, ValueError) as error:
            raise SettingsError(f"{path}: malformed {cls.FORMAT} results ({error})") from None


def _cli_type(base: Any) -> Callable[[str], Any] | None:
    if base in (int, float, str):
        return base
    if base is Path:
        return Path
    return None


def add_settings_options(
    parser: argparse.ArgumentParser,
    settings: type[Settings],
    *,
    exclude: Iterable[str] = (),
    defaults: Mapping[str, Any] | None = None,
) -> None:
    """One option per settings field: name, type, default, help and choices from the field.

    Booleans become flags (``--name`` / ``--no-name``); tuples take several values.
    ``defaults`` overrides a field's default for this command only.
    """
    skipped = set(exclude)
    hints = _field_types(settings)
    overrides = dict(defaults or {})
    for field in dataclasses.fields(settings):
        if field.name in skipped:
            continue
        base, _ = _base_type(hints[field.name])
        default = overrides.get(field.name, field.default)
        if default is dataclasses.MISSING:
            default = None
        help_text = field.metadata.get("help", "")
        name = option_name(field)
        keywords: dict[str, Any] = {"dest": field.name, "default": default, "help": help_text}
        if field.metadata.get("metavar"):
            keywords["metavar"] = field.metadata["metavar"]
        if base is bool:
            keywords.pop("metavar", None)
            parser.add_argument(name, action=argparse.BooleanOptionalAction, **keywords)
            continue
        if typing.get_origin(base) is tuple:
            item = typing.get_args(base)[0]
            keywords["nargs"] = "+"
            keywords["type"] = _cli_type(item)
        else:
            keywords["type"] = _cli_type(base)
        if field.metadata.get("choices") is not None:
            keywords["choices"] = field.metadata["choices"]
        parser.add_argument(name, **keywords)


def settings_from_args(settings: type[S], args: argparse.Namespace, **fixed: Any) -> S:
    """The settings object from parsed options (``fixed`` values for excluded fields)."""
    values: dict[str, Any] = {}
    for field in dataclasses.fields(settings):
        if field.name in fixed:
            values[field.name] = fixed[field.name]
        elif hasattr(args, field.name):
            value = getattr(args, field.name)
            values[field.name] = tuple(value) if isinstance(value, list) else value
    return settings(**values)
