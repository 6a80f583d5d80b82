"""The Fine-tune tab's charts of a run: loss (reward margins for a preference run) and learning
rate, by step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from garden.services.training import MetricPoint


def _figure(title: str, series: dict[str, tuple[list[int], list[float]]]) -> Any:
    import plotly.graph_objects as go

    figure = go.Figure()
    for name, (steps, values) in series.items():
        if steps:
            figure.add_trace(go.Scatter(x=steps, y=values, name=name, mode="lines+markers"))
    figure.update_layout(
        title=title, xaxis_title="step", height=300, margin={"l": 40, "r": 10, "t": 40, "b": 30}
    )
    return figure


def _series(points: list[MetricPoint], value: Callable[[MetricPoint], float | None]) -> Any:
    known = [(point.step, value(point)) for point in points if value(point) is not None]
    return [step for step, _ in known], [v for _, v in known]


def _reward_of(name: str) -> Callable[[MetricPoint], float | None]:
    return lambda point: (point.rewards_by_function or {}).get(name)


def curves(points: list[MetricPoint]) -> tuple[Any, Any]:
    """Plotly figures by step: train/eval loss (reward margins for a preference run, each
    reward function's mean for a GRPO run), and learning rate."""
    lr = _figure("Learning rate", {"lr": _series(points, lambda p: p.learning_rate)})
    if any(point.rewards_by_function for point in points):
        names = sorted({name for p in points for name in p.rewards_by_function or {}})
        rewards = {"mean reward": _series(points, lambda p: p.reward_mean)}
        for name in names:
            rewards[name] = _series(points, _reward_of(name))
        return _figure("Rewards", rewards), lr
    if any(point.reward_margin is not None for point in points):
        rewards = {
            "margin": _series(points, lambda p: p.reward_margin),
            "eval margin": _series(points, lambda p: p.eval_reward_margin),
            "chosen": _series(points, lambda p: p.reward_chosen),
            "rejected": _series(points, lambda p: p.reward_rejected),
        }
        return _figure("Rewards", rewards), lr
    loss = _figure(
        "Loss",
        {
            "train": _series(points, lambda p: p.loss),
            "eval": _series(points, lambda p: p.eval_loss),
        },
    )
    return loss, lr
