"""Learning-rate schedules: `factor(step)` multiplies the optimizer's configured (peak) lr."""
from paragen.lr_schedulers.schedulers import (Constant, Cosine, InverseSquareRoot, LRScheduler,
                                              Polynomial)

__all__ = ["Constant", "Cosine", "InverseSquareRoot", "LRScheduler", "Polynomial"]
