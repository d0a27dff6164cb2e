"""A stage command declared once: its typed config dataclass is the command's options.

Each field becomes `--field-name` (or the flag in its metadata), with the field's type, its default (a field
without one, or marked required, must be given) and, as help, the field's entry in the class docstring's
`Attributes:` section; a `Literal[...]` type gives the choices, or `metadata={"choices": f}` where a registry holds
them (`f()` is called only when a command checks its value, so building the parser imports no registry). Every such command also takes `--config FILE.yaml`
(the same fields by name; the command line overrides the file), and `to_yaml` writes a config that `--config` reads
back.
"""
from __future__ import annotations

import argparse
import dataclasses
import re
import types
from pathlib import Path
from typing import Any, Callable, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from xmgie.errors import UserError

T = TypeVar("T")


def field_docs(cls: type) -> dict[str, str]:
    """{field: its description} from the `Attributes:` section of `cls`'s docstring (and its bases')."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        text = klass.__dict__.get("__doc__") or ""
        section = text.split("Attributes:", 1)[1] if "Attributes:" in text else ""
        name = None
        for line in section.splitlines():
            entry = re.match(r"^\s{4,8}(\w+):\s*(.*)$", line)
            if entry and not line.startswith(" " * 12):
                name, docs[entry.group(1)] = entry.group(1), entry.group(2).strip()
            elif name and line.strip():
                docs[name] += " " + line.strip()
            elif not line.strip():
                name = None
    return docs


def required(field: dataclasses.Field) -> bool:
    """No default, or `metadata={"required": True}` (a subclass's field after its base's defaulted ones)."""
    return field.metadata.get("required", False) or (field.default is dataclasses.MISSING and
                                                      field.default_factory is dataclasses.MISSING)


def flag(field: dataclasses.Field) -> str:
    return field.metadata.get("flag", "--" + field.name.replace("_", "-"))


class LazyChoices:
    """The choices `read()` returns, read the first time argparse or a check asks (a registry's import is paid by
    the command that uses it, not by every parser built)."""

    def __init__(self, read: Callable[[], Any]):
        self._read, self._values = read, None

    def _all(self) -> tuple:
        if self._values is None:
            self._values = tuple(self._read())
        return self._values

    def __contains__(self, value: object) -> bool:
        return value in self._all()

    def __iter__(self):
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


def _scalar(hint: Any, field: dataclasses.Field) -> tuple[Any, tuple | LazyChoices | None]:
    """(the parsing type, choices) of a field of type `hint`: `int | None` parses as int; a Literal or the field's
    `metadata["choices"]` gives choices."""
    if get_origin(hint) in (Union, types.UnionType):
        hint = next(a for a in get_args(hint) if a is not type(None))
    if "choices" in field.metadata:
        return hint, LazyChoices(field.metadata["choices"])
    if get_origin(hint) is Literal:
        choices = get_args(hint)
        return type(choices[0]), choices
    return hint, None


def add_config_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """The options of config class `cls` on `parser` (values arrive only when given: `config_from` merges them)."""
    hints, docs = get_type_hints(cls), field_docs(cls)
    parser.add_argument("--config", dest="_config", default=argparse.SUPPRESS, metavar="FILE",
                        help="a YAML file of these options by field name (the command line overrides it)")
    for field in dataclasses.fields(cls):
        kind, choices = _scalar(hints[field.name], field)
        shown = " (required)" if required(field) else "" if field.default is None else f" (default: {field.default})"
        text = docs.get(field.name, "") + shown
        if kind is bool:
            parser.add_argument(flag(field), dest=field.name, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=text)
        else:
            lazy = isinstance(choices, LazyChoices)  # argparse would read them to list them: named in help instead
            parser.add_argument(flag(field), dest=field.name, type=kind, choices=choices, default=argparse.SUPPRESS,
                                help=text + (" (the registry's; a wrong one is refused with the list)" if lazy else ""),
                                metavar=None if choices is not None and not lazy else field.name.upper())


def config_from(cls: type[T], args: argparse.Namespace | dict[str, Any]) -> T:
    """`cls` from its defaults, then the `--config` file, then the options given; a required field left out,
    an unknown key in the file or a value `cls` refuses is a one-line UserError."""
    given = dict(vars(args) if isinstance(args, argparse.Namespace) else args)
    names = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    if "_config" in given:
        path = Path(given.pop("_config"))
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise UserError(f"--config {path}: not a readable YAML file ({err})") from None
        if not isinstance(loaded, dict):
            raise UserError(f"--config {path}: expected a mapping of option names to values")
        unknown = sorted(set(loaded) - set(names))
        if unknown:
            raise UserError(f"--config {path}: unknown option(s) {', '.join(unknown)}; known: {', '.join(names)}")
        values.update(loaded)
    values.update({k: v for k, v in given.items() if k in names})
    for name, value in values.items():  # a file's value of the wrong type (a command line's was parsed)
        _check_type(cls, names[name], value, "")
    missing = [flag(f) for f in names.values() if required(f) and values.get(f.name) is None]
    if missing:
        raise UserError(f"{', '.join(missing)} required (on the command line or in --config)")
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:
        raise UserError(str(err)) from None


def _check_type(cls: type, field: dataclasses.Field, value: Any, where: str) -> None:
    """A one-line UserError unless `value` fits the field's scalar type and choices (None passes)."""
    kind, choices = _scalar(get_type_hints(cls)[field.name], field)
    if value is None or kind not in (int, float, str, bool):
        return
    fits = (kind is bool) == isinstance(value, bool) and (isinstance(value, kind) or
                                                           kind is float and isinstance(value, int))
    if not fits:
        raise UserError(f"{where}{flag(field)}: expected {kind.__name__}, got {value!r}")
    if choices and value not in choices:
        raise UserError(f"{where}{flag(field)}: expected one of {', '.join(map(str, choices))}, got {value!r}")


def to_argv(cls: type, settings: dict[str, Any], where: str) -> list[str]:
    """Settings by field name as the command's options: `{steps: 1000, inception: false}` → `--steps 1000
    --no-inception`. An unknown field or a value of the wrong type is a one-line UserError naming `where`."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(settings) - set(fields))
    if unknown:
        raise UserError(f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(fields)}")
    argv: list[str] = []
    for name, value in settings.items():
        _check_type(cls, fields[name], value, f"{where}: ")
        option = flag(fields[name])
        argv += [option if value else "--no-" + option[2:]] if isinstance(value, bool) else [option, str(value)]
    return argv


def to_yaml(config: Any) -> str:
    """The config as YAML that `--config` reads back to an equal config."""
    return yaml.safe_dump(dataclasses.asdict(config), sort_keys=False)
