"""A Di[M]O distillation run (Zhu et al. 2025): a frozen teacher from a model folder, the
student and auxiliary model started from it, the objective of ``training/distill.py``, and
maskgen's one trainer. Only the student is saved, as ``OUT/one-step.{safetensors,json}``
(the EMA weights when EMA is on), with the teacher's sha256.

Presets: ``distill_presets/<NAME>.yaml`` hold the ``distill`` options of the authors' code
where it differs from the printed method (docs/distill.md lists each difference).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from ..checkpoint import load_json
from ..errors import MaskgenError
from ..models.one_step import OneStepStudent
from ..models.transformer import MaskedTransformer
from ..devices import resolve_device
from .distill import ClassLabels, DistillConfig, DistillObjective, DistillPair, distill_presets  # noqa: F401 - distill_presets: with the run, for its callers
from .trainer import Trainer, TrainConfig, check_until

def load_teacher(model_dir: str | Path) -> MaskedTransformer:
    """The generator of ``model_dir`` as a teacher, refused in one line unless it is a
    discrete-token generator: Di[M]O matches token distributions, which a continuous-token
    generator (a diffusion head draws each latent) does not give."""
    model_dir = Path(model_dir)
    if not (model_dir / "generator.json").is_file():
        raise MaskgenError(f"no generator in {model_dir} (missing generator.json)")
    kind = load_json(model_dir / "generator.json").get("kind", "generator")
    if kind == "continuous_generator":
        raise MaskgenError(
            f"{model_dir} holds a continuous-token generator: Di[M]O matches the teacher's token distributions "
            "(softmax over codes), which a diffusion head does not give; distil a discrete-token (VQ) generator"
        )
    if kind != MaskedTransformer.checkpoint_kind:
        raise MaskgenError(f"{model_dir} holds a {kind}: maskgen distils a class-conditional discrete-token generator only")
    return MaskedTransformer.load(model_dir)


def distill(
    model_dir: str | Path,
    out: str | Path,
    config: DistillConfig,
    train: TrainConfig,
    resume: bool = False,
    progress: bool = True,
    until: int | None = None,
) -> tuple[OneStepStudent, dict]:
    """Distil the generator in ``model_dir`` into a one-step student saved in ``out``; return the
    student (the saved weights) and the run's record. The teacher is never modified."""
    check_until(until)
    device = resolve_device(train.device)
    teacher = load_teacher(model_dir).to(device)
    pair = DistillPair.from_teacher(teacher, config)
    c = teacher.config
    record = {
        "teacher": str(model_dir), "teacher_sha256": teacher.sha256, "objective": asdict(config),
        "parameters": {"student": sum(p.numel() for p in pair.student.parameters()), "aux": sum(p.numel() for p in pair.aux.parameters())},
    }
    # labels only: a multiple of the classes, at least a batch, so an epoch is balanced
    size = c.num_classes * max(1, -(-train.batch_size // c.num_classes))
    trainer = Trainer(
        pair, DistillObjective(config, teacher), ClassLabels(c.num_classes, size), train, out,
        save_model=lambda m, folder: m.student.save(folder, **record), record=record, tokens_per_item=c.num_tokens,
    )
    trainer.fit(resume=resume, progress=progress, until=until)
    student = OneStepStudent.load(out, teacher) if trainer.rank == 0 else pair.student
    return student, record


__all__ = ["distill", "distill_presets", "load_teacher"]
