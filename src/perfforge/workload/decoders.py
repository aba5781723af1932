"""A decoder LLM's architecture from a zoo id or a HuggingFace ``config.json`` (path or folder): what serving and
the tensor/pipeline-parallel training model take."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from perfforge.core.errors import ConfigError
from perfforge.workload.models.transformer import TransformerConfig

_STAMP = "\x00"


def is_config_path(model: str) -> bool:
    return model.endswith(".json") or Path(model).is_dir()


def model_key(model: str) -> str:
    """The key caches file a model under: a zoo id as it is; a config file with its modification time and size,
    so that a file edited between two runs in one process is read anew."""
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


def decoder_config(model: str, *, needs: str = "serving simulates decoder LLMs") -> TransformerConfig:
    """The decoder's architecture; anything else (an encoder, a CNN) is one ConfigError line starting ``needs``,
    an unknown id the zoo's own error."""
    kind, cfg = _architecture(model_key(model))
    if cfg is None or kind != "decoder":
        what = f"{model} describes an {kind}" if is_config_path(model) else f"'{model}' is a {kind} model"
        raise ConfigError(f"{needs}; {what}")
    return cfg


@lru_cache(maxsize=64)
def _architecture(key: str) -> tuple[str, TransformerConfig | None]:
    model = model_of(key)
    if is_config_path(model):
        from perfforge.workload.importers.hf_config import load_hf_config

        cfg = load_hf_config(model)
        return cfg.arch, cfg
    from perfforge.workload.zoo import ALIASES, MODELS

    entry = MODELS.get(ALIASES.get(model, model))
    return entry.kind, entry.config
