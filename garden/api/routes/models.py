"""Models: the embedded default, local bases, fine-tuned runs and remembered hub ids."""

from __future__ import annotations

from fastapi import APIRouter

from garden.api.errors import ApiError
from garden.api.views import public, public_list
from garden.services import models
from garden.services.models import ModelView

router = APIRouter(prefix="/api/v1/models", tags=["models"])


def find_model(id_or_name: str) -> ModelView:
    """A listed model by id or name; 404 otherwise."""
    for view in models.list_models():
        if id_or_name in (view.id, view.name):
            return view
    raise ApiError(
        404, f"There is no model {id_or_name[:80]!r}.", hint="GET /api/v1/models lists them."
    )


@router.get("", summary="List models")
def list_models() -> list[ModelView]:
    return public_list(models.list_models())


@router.get("/{model_id:path}", summary="Get a model")
def get_model(model_id: str) -> ModelView:
    return public(find_model(model_id))
