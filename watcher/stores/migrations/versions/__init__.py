"""Alembic revisions, oldest first by ``down_revision``; a package so that it ships."""
