"""The hardware catalog: shipped YAML files plus user directories, loaded into validated specs.

Look-up order for an id: the directories in ``$PERFFORGE_CATALOG`` (``os.pathsep``-separated, the
first listed wins), then the catalog shipped under ``perfforge/data/catalog``. Each user directory may
hold ``devices/``, ``nodes/`` and ``networks/`` subfolders; YAML files directly inside it are devices.
A YAML file's ``id`` must equal its file stem. Every problem is a one-line ``ConfigError``.
"""

from __future__ import annotations

import functools
import importlib.resources
import os
from pathlib import Path
from typing import Any, TypeVar, cast

from pydantic import BaseModel, ValidationError

from perfforge.core.errors import ConfigError, suggest
from perfforge.core.files import load_yaml_text
from perfforge.system.device import DeviceSpec
from perfforge.system.network import NetworkSpec, NodeSpec

ENV_VAR = "PERFFORGE_CATALOG"

_M = TypeVar("_M", bound=BaseModel)

# kind -> (subfolder, model, word used in "unknown ... 'x'" messages)
_KINDS: dict[str, tuple[str, type[BaseModel], str]] = {
    "device": ("devices", DeviceSpec, "hardware"),
    "node": ("nodes", NodeSpec, "node"),
    "network": ("networks", NetworkSpec, "network"),
}
_SUFFIXES = (".yaml", ".yml")


# ---- public API ------------------------------------------------------------------------------
def load_device(path: str | Path) -> DeviceSpec:
    """Load one device YAML file (its ``id`` must equal the file stem)."""
    return cast(DeviceSpec, _load_path("device", path))


def load_node(path: str | Path) -> NodeSpec:
    """Load one node YAML file and check that its device and network ids resolve."""
    return cast(NodeSpec, _load_path("node", path))


def load_network(path: str | Path) -> NetworkSpec:
    """Load one network YAML file."""
    return cast(NetworkSpec, _load_path("network", path))


def get_device(id_or_path: str) -> DeviceSpec:
    """A device by catalog id (user directories first, then shipped) or by path to a ``.yaml`` file."""
    return cast(DeviceSpec, _get("device", id_or_path))


def get_node(id_or_path: str) -> NodeSpec:
    """A node preset by catalog id or path."""
    return cast(NodeSpec, _get("node", id_or_path))


def get_network(id_or_path: str) -> NetworkSpec:
    """A network preset by catalog id or path."""
    return cast(NetworkSpec, _get("network", id_or_path))


def list_devices() -> list[str]:
    """Sorted ids of every device visible (shipped and user)."""
    return sorted(_index("device", _user_dirs()))


def list_nodes() -> list[str]:
    return sorted(_index("node", _user_dirs()))


def list_networks() -> list[str]:
    return sorted(_index("network", _user_dirs()))


def clear_cache() -> None:
    """Forget indexed directories and parsed files (for tests, or after editing catalog files)."""
    _index.cache_clear()
    _parse_cached.cache_clear()


# ---- internals -------------------------------------------------------------------------------
def _user_dirs() -> tuple[str, ...]:
    raw = os.environ.get(ENV_VAR, "")
    return tuple(part for part in raw.split(os.pathsep) if part.strip())


def _looks_like_path(text: str) -> bool:
    return text.endswith(_SUFFIXES) or "/" in text or os.sep in text


@functools.lru_cache(maxsize=32)
def _index(kind: str, user_dirs: tuple[str, ...]) -> dict[str, str]:
    """Map id -> file path for one kind; user directories override the shipped catalog."""
    sub = _KINDS[kind][0]
    found: dict[str, str] = {}
    shipped = importlib.resources.files("perfforge") / "data" / "catalog" / sub
    if shipped.is_dir():
        for entry in shipped.iterdir():
            if entry.name.endswith(_SUFFIXES):
                found[_stem(entry.name)] = str(entry)
    for raw in reversed(user_dirs):  # earlier entries win, so apply them last
        root = Path(raw).expanduser()
        if not root.is_dir():
            raise ConfigError(f"{ENV_VAR}: '{raw}' is not a directory")
        candidates = sorted((root / sub).glob("*")) if (root / sub).is_dir() else []
        if kind == "device":
            candidates += sorted(root.glob("*"))
        for path in candidates:
            if path.is_file() and path.name.endswith(_SUFFIXES):
                found[_stem(path.name)] = str(path)
    return found


def _stem(name: str) -> str:
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _get(kind: str, id_or_path: str) -> BaseModel:
    if not isinstance(id_or_path, (str, Path)) or not str(id_or_path).strip():
        raise ConfigError(f"expected a {kind} id or a path to a .yaml file, got {id_or_path!r}")
    text = str(id_or_path).strip()
    index = _index(kind, _user_dirs())
    if text in index:
        return _load_path(kind, index[text])
    if _looks_like_path(text):
        return _load_path(kind, text)
    word = _KINDS[kind][2]
    known = sorted(index)
    raise ConfigError(f"unknown {word} '{text}'{suggest(text, known)} (known: {', '.join(known)})")


def _load_path(kind: str, path: str | Path) -> BaseModel:
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"{kind} file '{path}' does not exist")
    try:
        mtime = p.stat().st_mtime_ns
    except OSError:
        mtime = 0
    spec = _parse_cached(kind, str(p.resolve()), mtime)
    if isinstance(spec, NodeSpec):
        _check_node_refs(spec, p.name)
    return spec


@functools.lru_cache(maxsize=256)
def _parse_cached(kind: str, path: str, mtime: int) -> BaseModel:
    del mtime  # part of the cache key only: an edited file is parsed again
    p = Path(path)
    data = _read_yaml(p)
    stem = _stem(p.name)
    if "id" in data and data["id"] != stem:
        raise ConfigError(f"{p.name}: id: '{data['id']}' must equal the file name stem '{stem}'")
    model = _KINDS[kind][1]
    return _validate(model, data, p.name)


def _read_yaml(p: Path) -> dict[str, Any]:
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p.name}: cannot read file ({exc})") from None
    data = load_yaml_text(text, p.name)
    if not isinstance(data, dict):
        raise ConfigError(f"{p.name}: expected a mapping of fields at the top level, got {type(data).__name__}")
    return data


def _validate(model: type[_M], data: dict[str, Any], fname: str) -> _M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{fname}: {_summarise(exc, model)}") from None
    except ConfigError as exc:  # raised outside pydantic's wrapping (defensive)
        raise ConfigError(f"{fname}: {_one_line(str(exc))}") from None


def _summarise(exc: ValidationError, model: type[BaseModel]) -> str:
    """All failing fields of a pydantic error as ``loc: msg; loc: msg`` on one line."""
    parts: list[str] = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err.get("loc", ()))
        msg = str(err.get("msg", ""))
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        if err.get("type") == "extra_forbidden":
            msg = f"unknown key (allowed: {', '.join(model.model_fields)})"
        elif err.get("type") == "missing":
            msg = "required field is missing"
        parts.append(f"{loc}: {msg}" if loc else msg)
    return _one_line("; ".join(parts))


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _check_node_refs(node: NodeSpec, fname: str) -> None:
    """A node's device and network must themselves be loadable catalog entries."""
    try:
        get_device(node.device)
    except ConfigError as exc:
        raise ConfigError(f"{fname}: device: {exc}") from None
    if node.network is not None:
        try:
            get_network(node.network)
        except ConfigError as exc:
            raise ConfigError(f"{fname}: network: {exc}") from None


__all__ = [
    "ENV_VAR",
    "clear_cache",
    "get_device",
    "get_network",
    "get_node",
    "list_devices",
    "list_networks",
    "list_nodes",
    "load_device",
    "load_network",
    "load_node",
]
