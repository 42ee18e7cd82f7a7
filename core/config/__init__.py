"""Config models: the strict base and the paper's settings as defaults."""

from neckkit.config.base import NeckkitConfig, parse_override
from neckkit.config.paper import (
    PAPER_FIGURES,
    DataConfig,
    ElicConfig,
    LossPhase,
    LossScheduleConfig,
    NeckConfig,
    OptimConfig,
    PaperFigures,
    ScenarioConfig,
    TicConfig,
)

__all__ = [
    "PAPER_FIGURES",
    "DataConfig",
    "ElicConfig",
    "LossPhase",
    "LossScheduleConfig",
    "NeckConfig",
    "NeckkitConfig",
    "OptimConfig",
    "PaperFigures",
    "ScenarioConfig",
    "TicConfig",
    "parse_override",
]
