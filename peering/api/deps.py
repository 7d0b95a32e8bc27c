"""Dependencies: the service of the running app, fetched from `app.state`."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from peering.service import PeeringService


async def get_service(request: Request) -> PeeringService:
    """The service the composition root put on the app."""
    return cast(PeeringService, request.app.state.service)


ServiceDep = Annotated[PeeringService, Depends(get_service)]
