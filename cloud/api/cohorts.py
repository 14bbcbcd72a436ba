"""``/api/v1/cohorts``: groups of devices of one product, addressed by name."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from cloud import cohorts
from cloud.api.deps import CanManageDevices, CanRead, SessionDep
from cloud.api.schemas import CohortCreate, CohortList, CohortPublic, CohortUpdate
from cloud.api.schemas.registry import REGISTRY_NAME_PATTERN

router = APIRouter(prefix="/cohorts", tags=["cohorts"])

CohortName = Annotated[str, Path(pattern=REGISTRY_NAME_PATTERN, description="the cohort's name")]


@router.get("", response_model=CohortList)
async def list_cohorts(
    session: SessionDep,
    principal: CanRead,
    product: Annotated[
        str | None,
        Query(pattern=REGISTRY_NAME_PATTERN, description="only the cohorts of this product"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(description="'next' of the previous page")] = None,
) -> CohortList:
    return await cohorts.list_cohorts(
        session, principal.org_id, product=product, limit=limit, cursor=cursor
    )


@router.post("", response_model=CohortPublic, status_code=status.HTTP_201_CREATED)
async def create_cohort(
    body: CohortCreate, session: SessionDep, principal: CanManageDevices
) -> CohortPublic:
    return await cohorts.create_cohort(session, principal, body)


@router.get("/{cohort}", response_model=CohortPublic)
async def get_cohort(cohort: CohortName, session: SessionDep, principal: CanRead) -> CohortPublic:
    return await cohorts.get_cohort(session, principal.org_id, cohort)


@router.patch("/{cohort}", response_model=CohortPublic)
async def update_cohort(
    cohort: CohortName, body: CohortUpdate, session: SessionDep, principal: CanManageDevices
) -> CohortPublic:
    """Change the fields sent; the product only while the cohort has no devices (409)."""
    return await cohorts.update_cohort(session, principal, cohort, body)


@router.delete("/{cohort}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_cohort(
    cohort: CohortName, session: SessionDep, principal: CanManageDevices
) -> Response:
    """Delete the cohort; its devices stay, in no cohort."""
    await cohorts.delete_cohort(session, principal, cohort)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
