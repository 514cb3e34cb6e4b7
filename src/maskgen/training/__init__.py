"""Training: the objectives (masked tokens or latents, the tokenizers', self-guidance's, the
Token-Critic's, Di[M]O's distillation, the classifier's), the one ``Trainer`` they share, and a
function per run that trains one thing from data and a folder (what each training verb calls)."""

from .classification import train_classifier
from .context import Objective, StepContext
from .critic import train_critic
from .distill_run import distill
from .generator import token_dataset, train_generator, training_data
from .masking import MaskedObjectiveConfig, MaskedTokenObjective, mask_positions
from .self_guidance import finetune_self_guidance
from .tokenizer import encode, train_tokenizer
from .trainer import TrainConfig, Trainer

__all__ = [
    "Objective", "StepContext", "MaskedObjectiveConfig", "MaskedTokenObjective", "mask_positions", "TrainConfig", "Trainer",
    "train_tokenizer", "encode", "train_generator", "token_dataset", "training_data", "finetune_self_guidance", "train_critic",
    "train_classifier", "distill",
]
