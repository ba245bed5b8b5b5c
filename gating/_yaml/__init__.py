"""phenoflow's own YAML/JSON strategy format: reading, writing and the shipped presets."""

from gating._yaml._api import (
    StrategyFormatError,
    preset,
    preset_path,
    presets,
    read_strategy_yaml,
    write_strategy_yaml,
)

__all__ = ["StrategyFormatError", "preset", "preset_path", "presets", "read_strategy_yaml", "write_strategy_yaml"]
