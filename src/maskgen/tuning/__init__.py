"""``maskgen tune``: the sampler settings that give the best FD at each NFE budget. ``search.py``
runs the search (random proposals, local refinement, rescoring, a resumable trial log),
``space.py`` says what it tries on a model (derived from the registry of sampler pieces), and
``report.py`` writes what it leaves in its folder."""

from .report import plot, spec_path, table, write_specs
from .search import BudgetResult, Scorer, TrialLog, check_question, describe, fd_scorer, parse_budgets, parse_seeds, refine_trials, trial_record, tune
from .space import (
    MAX_ATTEMPTS,
    PAPER_SAMPLERS,
    SCHEDULES,
    NFEMeter,
    SearchSpace,
    Trial,
    fill_choices,
    guidance_choices,
    max_step_passes,
    paper_trials,
    propose_trials,
)

__all__ = [
    "plot", "spec_path", "table", "write_specs",
    "BudgetResult", "Scorer", "TrialLog", "check_question", "describe", "fd_scorer", "parse_budgets", "parse_seeds", "refine_trials", "trial_record", "tune",
    "fill_choices", "guidance_choices", "max_step_passes", "MAX_ATTEMPTS", "PAPER_SAMPLERS", "SCHEDULES",
    "NFEMeter", "SearchSpace", "Trial", "paper_trials", "propose_trials",
]
