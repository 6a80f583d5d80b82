"""The Fine-tune form's side of training: presets and their values, GRPO rewards written as
lines (and the endpoints their judge may call), the objectives that fit a dataset, and the models
and datasets a run may start from."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field

from garden.config import Settings
from garden.data.kinds import OBJECTIVES_BY_KIND
from garden.engine.training import PRESETS, JobSpec, parse_spec
from garden.engine.training.judge_reward import default_judge, judge_target
from garden.engine.training.rewards import RewardSpec, parse_reward_option, reward_option
from garden.engine.training.spec import OBJECTIVES, preset_objective
from garden.errors import GardenError, JobError
from garden.services.base import View, resolve
from garden.services.endpoints import Endpoint, check_endpoint

SettingValue = float | int | str | list[dict[str, Any]] | None  # a list: GRPO's rewards
# The words for a tri-state spec switch (assistant_only_loss, torch_compile, int8_matmuls) in the
# tab and the CLI.
SWITCH_CHOICES: dict[str, bool | None] = {"auto": None, "on": True, "off": False}


class PresetView(View):
    """A named set of training settings (a partial ``JobSpec``)."""

    name: str
    settings: dict[str, SettingValue]


class ObjectiveChoices(View):
    """What a dataset can train: its kind of rows, the objectives and presets that fit it."""

    kind: str | None = Field(None, description="chat, text, preference or feedback")
    objectives: list[str]
    presets: list[str]


def presets() -> list[PresetView]:
    return [PresetView(name=name, settings=dict(values)) for name, values in PRESETS.items()]


def preset_values(name: str) -> dict[str, Any]:
    """Every setting a form shows for preset ``name``: the ``JobSpec`` defaults, overlaid with
    the preset's values (the objective included), so a form filled from it submits the preset."""
    if name not in PRESETS:
        raise JobError(f"Unknown preset {name!r}.", hint="Use one of: " + ", ".join(PRESETS))
    defaults = {
        key: field.get_default(call_default_factory=True)
        for key, field in JobSpec.model_fields.items()
        if not field.is_required()
    }
    return {**defaults, **PRESETS[name]}


def parse_rewards(text: str) -> list[dict[str, Any]]:
    """GRPO rewards written one per line, ``KIND[=ARG][*WEIGHT]`` (the Fine-tune form's field and
    the CLI's ``--reward``); ``JobError`` names a bad line."""
    return [
        parse_reward_option(line).model_dump(exclude_none=True)
        for line in text.splitlines()
        if line.strip()
    ]


def rewards_text(rewards: list[Any]) -> str:
    """The inverse of ``parse_rewards``."""
    return "\n".join(reward_option(RewardSpec.model_validate(r)) for r in rewards)


def check_judges(spec: JobSpec, settings: Settings, from_web: bool = False) -> None:
    """A GRPO judge reward needs an endpoint (its own, or ``EVAL_JUDGE_URL``): ``JobError``
    otherwise. One named from the web must pass the remote-endpoint rules, as the evaluation's
    judge does (``ServingError``, one line)."""
    if spec.objective != "grpo":
        return
    for reward in spec.rewards:
        if reward.kind != "judge":
            continue
        if reward.judge_url is None:
            judge_target(None, None, default_judge(settings))
        elif from_web:
            check_endpoint(Endpoint(base_url=reward.judge_url), settings=settings)


def build_spec(values: Mapping[str, object], preset: str | None = None) -> JobSpec:
    """A checked ``JobSpec`` from ``values`` over ``preset``; ``JobError`` names bad fields."""
    return parse_spec(values, preset)


def objectives_for(dataset: str, *, settings: Settings | None = None) -> ObjectiveChoices:
    """The objectives and presets that fit ``dataset`` (an imported id or name, or a folder).

    Every objective is offered when the dataset cannot be read (the plan then says why)."""
    from garden.engine.training.plan import dataset_kind, resolve_dataset

    kind = None
    objectives: tuple[str, ...] = OBJECTIVES
    if dataset and not Path(dataset).is_file():
        try:
            kind = dataset_kind(resolve_dataset(dataset, resolve(settings)))
            objectives = OBJECTIVES_BY_KIND[kind]
        except (GardenError, OSError, ValueError):
            kind = None
    return ObjectiveChoices(
        kind=kind,
        objectives=list(objectives),
        presets=[name for name in PRESETS if preset_objective(name) in objectives],
    )


def base_model_choices(*, settings: Settings | None = None) -> list[str]:
    """Ids of the models a run can start from (empty when listing them fails)."""
    from garden.models import list_models

    try:
        return [model.id for model in list_models(resolve(settings))]
    except GardenError:
        return []


def dataset_choices(*, settings: Settings | None = None) -> list[tuple[str, str]]:
    """``(label, id)`` of the imported datasets, newest first (empty when that fails)."""
    from garden.data import dataset_choices as imported_choices

    try:
        return imported_choices(resolve(settings))
    except GardenError:
        return []
