"""``POST /api/v1/auth/token``: username and password (OAuth2 password form) for a JWT."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.security import OAuth2PasswordRequestForm
from starlette.concurrency import run_in_threadpool

from garden.services import auth
from garden.services.auth import TokenView

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


@router.post("/token", summary="Exchange the app's username and password for a bearer token")
async def token(
    request: Request, form: Annotated[OAuth2PasswordRequestForm, Depends()]
) -> TokenView:
    client = request.client.host if request.client else None
    return await run_in_threadpool(auth.issue_token, form.username, form.password, client)
