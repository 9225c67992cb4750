"""Learning-rate schedules: `factor(step)` multiplies the optimizer's configured (peak) lr."""
from paragen.lr_schedulers.schedulers import (Constant, Cosine, InverseSquareRoot, LRScheduler,
                                              Polynomial)
from paragen.registry import register_lr_scheduler

__all__ = ["Constant", "Cosine", "InverseSquareRoot", "LRScheduler", "Polynomial",
           "register_lr_scheduler"]
