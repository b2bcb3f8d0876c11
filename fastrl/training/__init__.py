"""The training layer: the loop (``trainer.py``), its run state, sampler and triggers, the
concurrent learner and its collector process, envs, evaluation, checkpoints, logging and plots."""

from fastrl.training.trainer import Trainer, TrainResult, train

__all__ = ["TrainResult", "Trainer", "train"]
