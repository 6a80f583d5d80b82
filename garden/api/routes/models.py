"""Models: the embedded default, local bases, fine-tuned runs and remembered hub ids."""

from __future__ import annotations

from fastapi import APIRouter

from garden.api.views import find, public, public_list
from garden.services import models
from garden.services.models import ModelView

router = APIRouter(prefix="/api/v1/models", tags=["models"])


def find_model(id_or_name: str) -> ModelView:
    return find(models.list_models(), id_or_name, "model", "/api/v1/models")


@router.get("", summary="List models")
def list_models() -> list[ModelView]:
    return public_list(models.list_models())


@router.get("/{model_id:path}", summary="Get a model")
def get_model(model_id: str) -> ModelView:
    return public(find_model(model_id))
