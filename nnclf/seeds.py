"""The random streams a run draws from, each derived from the config's ``seed`` alone.

Two independent streams, so that changing the model (its size, dropout, shuffling) never moves
the data split, and changing the split never changes the initial weights:

- ``split_rng(seed)``: the train / validation / test split of the rows;
- ``model_rng(seed)``: the initial weights, then every epoch's shuffle and dropout mask, in
  that order (the trainer's state_dict keeps its position, so a resumed run continues it).
"""

from __future__ import annotations

import numpy as np

SPLIT_STREAM = 0
MODEL_STREAM = 1


def split_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, SPLIT_STREAM])


def model_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, MODEL_STREAM])
