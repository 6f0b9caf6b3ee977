"""Optimizers with torch.optim's names and numbers, written to compile into one training step."""
from . import lr_scheduler
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .optimizer import Optimizer, ParamGroup
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["Optimizer", "ParamGroup", "SGD", "Adam", "AdamW", "Adagrad", "RMSprop", "lr_scheduler"]
