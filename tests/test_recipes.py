"""Every shipped recipe parses against the verb its first line names."""

from pathlib import Path

import pytest

from maskgen.cli import build_parser, load_recipe, pick
from maskgen.models.transformer import GeneratorConfig
from maskgen.training.masking import MaskedObjectiveConfig

RECIPES = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_parses(path):
    words = path.read_text().splitlines()[0].split()  # "# maskgen VERB ..." or "# torchrun ... -m maskgen.cli VERB ..."
    verb = words[next(i for i, w in enumerate(words) if w in ("maskgen", "maskgen.cli")) + 1]
    parser, verbs = build_parser()
    recipe = load_recipe(str(path), verbs[verb])
    verbs[verb].set_defaults(**recipe)
    args = parser.parse_args([verb])
    for key, value in recipe.items():
        assert getattr(args, key) == value
    if verb == "train":
        pick(GeneratorConfig, args)
        pick(MaskedObjectiveConfig, args)
