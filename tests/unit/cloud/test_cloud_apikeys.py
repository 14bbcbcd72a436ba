"""API key format, hashing and roles (no database)."""

from __future__ import annotations

import hashlib

import pytest

from cloud.auth.apikeys import PREFIX_LENGTH, generate_key, hash_key
from cloud.auth.principal import ActorType, Principal
from cloud.errors import Forbidden
from cloud.store.models import Role


def test_keys_are_prefixed_random_and_hashed() -> None:
    keys = {generate_key() for _ in range(100)}
    assert len(keys) == 100
    for key in keys:
        assert key.startswith("fgk_") and len(key) == 4 + 43
        assert hash_key(key) == hashlib.sha256(key.encode()).hexdigest()
    assert len({key[:PREFIX_LENGTH] for key in keys}) == 100


def test_roles_are_ordered() -> None:
    assert [r.rank for r in (Role.VIEWER, Role.OPERATOR, Role.ADMIN, Role.OWNER)] == [0, 1, 2, 3]
    admin = Principal(
        org_id=1, role=Role.ADMIN, actor_type=ActorType.API_KEY, actor_id="1", actor_name="k"
    )
    admin.require(Role.OPERATOR)
    with pytest.raises(Forbidden, match="needs role 'owner'"):
        admin.require(Role.OWNER)
