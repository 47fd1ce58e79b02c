"""Training: recipes (stave.training.recipe), data (stave.training.data), what each stage trains
(stave.training.stages), sealed checkpoints (stave.training.checkpoints) and the Trainer run
(stave.training.run)."""

from .checkpoints import CheckpointError
from .data import DataError
from .recipe import Recipe, RecipeError, load_recipe
from .run import train

__all__ = ["CheckpointError", "DataError", "Recipe", "RecipeError", "load_recipe", "train"]
