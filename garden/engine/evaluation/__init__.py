"""Evaluation of a fine-tuned run: held-out loss and perplexity, generation metrics (ROUGE-L,
exact and contains match), base versus tuned answers side by side, and an optional LLM judge.

Nothing here imports torch at import time: ``run.evaluate`` loads the model in the process that
calls it (the training worker, or a worker process started by ``garden.services.evaluation``).
"""

from garden.engine.evaluation.records import EvalRequest, EvaluationResult, JudgeConfig, SidePair
from garden.engine.evaluation.storage import latest_evaluation, save_evaluation

__all__ = [
    "EvalRequest",
    "EvaluationResult",
    "JudgeConfig",
    "SidePair",
    "latest_evaluation",
    "save_evaluation",
]
