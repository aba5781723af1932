"""The decoder a serving simulation runs: a zoo id or a HuggingFace ``config.json`` (path or folder)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from perfforge.core.errors import ConfigError
from perfforge.workload.models.transformer import TransformerConfig

_STAMP = "\x00"


def is_config_path(model: str) -> bool:
    return model.endswith(".json") or Path(model).is_dir()


def model_key(model: str) -> str:
    """The key the serving caches file a model under: a zoo id as it is; a config file with its modification
    time and size, so that a file edited between two runs in one process is read anew."""
    if not is_config_path(model):
        return model
    path = Path(model) / "config.json" if Path(model).is_dir() else Path(model)
    try:
        st = path.stat()
    except OSError:
        return model   # reading it reports the missing file
    return f"{model}{_STAMP}{st.st_mtime_ns}:{st.st_size}"


def model_of(key: str) -> str:
    """The model a ``model_key`` was made from."""
    return key.split(_STAMP, 1)[0]


def decoder_config(model: str) -> TransformerConfig:
    """The decoder's architecture; anything else (an encoder, a CNN, an unknown id) is one ConfigError line."""
    return _decoder_config(model_key(model))


@lru_cache(maxsize=64)
def _decoder_config(key: str) -> TransformerConfig:
    model = model_of(key)
    if is_config_path(model):
        from perfforge.workload.importers.hf_config import load_hf_config

        cfg = load_hf_config(model)
        if cfg.arch != "decoder":
            raise ConfigError(f"serving simulates decoder LLMs; {model} describes an {cfg.arch}")
        return cfg
    from perfforge.workload.zoo import ALIASES, MODELS

    entry = MODELS.get(ALIASES.get(model, model))
    if entry.config is None or entry.kind != "decoder":
        raise ConfigError(f"serving simulates decoder LLMs; '{model}' is a {entry.kind} model")
    return entry.config
