"""The TOML configuration, in Dovecot's vocabulary: ``global``, ``exporter``, ``metric`` and
``source`` blocks.

An exporter says how events are written (format, time format and precision) and where
they go (a destination with its driver's settings, queue, batch and retry settings); a
metric selects events with a filter and feeds one exporter, writing the parts its include
set and field list name; a source says where events come from. :func:`load_config` checks
everything in one pass and reports every problem at once, each with the file, the line
where it can be found, the key's path and what is allowed; an unknown key is a problem
too, with the nearest known key suggested.

The modules: :mod:`.model` (what a configuration is), :mod:`.settings` (every setting,
declared once, with :mod:`.kinds` of values), :mod:`.sections` (one reader per block),
:mod:`.toml` (reading tables with each problem at its line).
"""

from exporter.config.model import (
    DEFAULT_DEAD_LETTER,
    SOURCE_TYPES,
    Config,
    DriverSettings,
    ExporterConfig,
    GlobalConfig,
    MetricConfig,
    SourceConfig,
)
from exporter.config.sections import load_config, parse_config
from exporter.config.toml import ConfigError, Problem

__all__ = [
    "DEFAULT_DEAD_LETTER",
    "SOURCE_TYPES",
    "Config",
    "ConfigError",
    "DriverSettings",
    "ExporterConfig",
    "GlobalConfig",
    "MetricConfig",
    "Problem",
    "SourceConfig",
    "load_config",
    "parse_config",
]
