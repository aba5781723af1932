"""Reading user files (YAML) and turning validation failures into one-line errors."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from perfforge.core.errors import ConfigError

_M = TypeVar("_M", bound=BaseModel)
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available: about 10x faster


def load_yaml_text(text: str, where: str) -> Any:
    try:
        return yaml.load(text, Loader=LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: malformed YAML{at}: {problem}") from None


def read_yaml(path: str | Path, what: str) -> Any:
    """Parse a YAML file; a missing file or bad syntax is a ConfigError naming the file (and line)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {p}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read {what} ({exc})") from None
    return load_yaml_text(text, str(p))


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write to a temporary file beside ``path`` and rename: a crash never leaves a half-written file."""
    target = Path(path)
    if target.is_dir():
        raise ConfigError(f"{target} is a folder; give a file name to write")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"cannot write {target}: {target.parent} is a file, not a folder") from None
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
        # mkstemp creates 0600; give the file the mode a plain open() would (0666 less the umask)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float (NaN, inf: an empty percentile, an unbounded capacity) as None, so the
    JSON it becomes is valid for strict parsers (jq, JSON.parse)."""
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def dumps_json(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` that writes valid JSON: non-finite floats become null (``json_safe``)."""
    default = kwargs.pop("default", None)
    if default is not None:   # let the default turn objects into plain data first, then sanitise that
        obj = json.loads(json.dumps(obj, default=default))
    return json.dumps(json_safe(obj), allow_nan=False, **kwargs)


def read_json_object(path: str | Path, what: str) -> dict[str, Any]:
    """Parse a JSON file that must hold one object; errors name the file, line and problem."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {p}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{p}: malformed JSON at line {exc.lineno}: {exc.msg}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a JSON object")
    return data


def first_error(exc: ValidationError, where: str) -> str:
    """``where: field.path: message`` for the first failing field of a pydantic error."""
    err = exc.errors()[0]
    loc = ".".join(str(x) for x in err["loc"]) or "(root)"
    return f"{where}: {loc}: {err['msg'].removeprefix('Value error, ')}"


def packaged_yaml_names(folder: str) -> list[str]:
    """Names (without ``.yaml``) of the YAML files in a folder of perfforge's package data, sorted."""
    from importlib import resources

    root = resources.files("perfforge").joinpath(folder)
    return sorted(p.name.removesuffix(".yaml") for p in root.iterdir() if p.name.endswith(".yaml"))


def load_packaged(folder: str, name: str, model: type[_M], what: str) -> _M:
    """Validate ``<folder>/<name>.yaml`` of perfforge's package data as ``model`` (a pydantic model with an
    ``id`` field that must equal the file name). Unknown names and bad fields are one-line ConfigErrors."""
    from importlib import resources

    from perfforge.core.errors import suggest

    known = packaged_yaml_names(folder)
    if name not in known:
        raise ConfigError(f"unknown {what} '{name}' (known: {', '.join(known)}){suggest(name, known)}")
    where = f"{what} {name}.yaml"
    text = resources.files("perfforge").joinpath(f"{folder}/{name}.yaml").read_text(encoding="utf-8")
    try:
        obj = model.model_validate(load_yaml_text(text, where))
    except ValidationError as exc:
        raise ConfigError(first_error(exc, where)) from None
    if obj.id != name:  # type: ignore[attr-defined]
        raise ConfigError(f"{where}: id '{obj.id}' must equal the file name '{name}'")  # type: ignore[attr-defined]
    return obj
