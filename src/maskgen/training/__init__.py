from .context import Objective, StepContext
from .masking import MaskedObjectiveConfig, MaskedTokenObjective, mask_positions
from .trainer import TrainConfig, Trainer

__all__ = ["Objective", "StepContext", "MaskedObjectiveConfig", "MaskedTokenObjective", "mask_positions", "TrainConfig", "Trainer"]
