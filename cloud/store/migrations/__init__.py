"""Alembic migrations of the cloud store (a package so that wheels ship them)."""
