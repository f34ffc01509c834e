"""Settings for every part of Kantoor: one TOML file plus ``KANTOOR_*`` overrides."""

from kantoor.config.settings import (
    FEATURES,
    TOOLS,
    ConfigError,
    PlanSettings,
    Settings,
    load_settings,
)

__all__ = ["FEATURES", "TOOLS", "ConfigError", "PlanSettings", "Settings", "load_settings"]
