"""``/api/v1/products``: the device types of the caller's org, addressed by name."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from cloud import products
from cloud.api.deps import CanManageDevices, CanRead, SessionDep
from cloud.api.schemas import ProductCreate, ProductList, ProductPublic, ProductUpdate
from cloud.api.schemas.registry import REGISTRY_NAME_PATTERN

router = APIRouter(prefix="/products", tags=["products"])

ProductName = Annotated[str, Path(pattern=REGISTRY_NAME_PATTERN, description="the product's name")]


@router.get("", response_model=ProductList)
async def list_products(
    session: SessionDep,
    principal: CanRead,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(description="'next' of the previous page")] = None,
) -> ProductList:
    return await products.list_products(session, principal.org_id, limit=limit, cursor=cursor)


@router.post("", response_model=ProductPublic, status_code=status.HTTP_201_CREATED)
async def create_product(
    body: ProductCreate, session: SessionDep, principal: CanManageDevices
) -> ProductPublic:
    return await products.create_product(session, principal, body)


@router.get("/{product}", response_model=ProductPublic)
async def get_product(
    product: ProductName, session: SessionDep, principal: CanRead
) -> ProductPublic:
    return await products.get_product(session, principal.org_id, product)


@router.patch("/{product}", response_model=ProductPublic)
async def update_product(
    product: ProductName, body: ProductUpdate, session: SessionDep, principal: CanManageDevices
) -> ProductPublic:
    """Change the fields sent (``name`` renames; ``attributes`` replaces the object)."""
    return await products.update_product(session, principal, product, body)


@router.delete("/{product}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_product(
    product: ProductName, session: SessionDep, principal: CanManageDevices
) -> Response:
    """Delete a product that no cohort or device refers to any more (409 otherwise)."""
    await products.delete_product(session, principal, product)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
