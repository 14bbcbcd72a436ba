"""Persistence: engine/session factory, typed models, repositories, Alembic migrations."""
