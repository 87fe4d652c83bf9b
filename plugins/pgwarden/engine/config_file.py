"""Where the config file lives, and reading it (cached by modification time for DAG parsing)."""

from __future__ import annotations

import os
from pathlib import Path

from pgwarden.core.config import ConfigError, ConfigIssue, PgwardenConfig, parse_config

CONFIG_ENV = "PGWARDEN_CONFIG"
# plugins/pgwarden/engine/config_file.py -> the project root holds include/pgwarden.yaml.
PROJECT_ROOT = Path(__file__).resolve().parents[3]

_cache: dict[str, tuple[float, PgwardenConfig]] = {}


def config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV) or PROJECT_ROOT / "include" / "pgwarden.yaml")


def load_config(path: Path | None = None) -> PgwardenConfig:
    """Read and validate the config; ``ConfigError`` when the whole file is unusable."""
    path = path or config_path()
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError as exc:
        raise ConfigError([ConfigIssue(str(path), "(file)",
                                       f"config file not found; create it or set {CONFIG_ENV}")]) from exc
    cached = _cache.get(str(path))
    if cached and cached[0] == mtime:
        return cached[1]
    config = parse_config(path.read_text(), str(path))
    _cache[str(path)] = (mtime, config)
    return config
