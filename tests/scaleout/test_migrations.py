"""Alembic migrations: the migrated schema is exactly the models' metadata, on both backends."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ltxserve.db import migrate
from ltxserve.db.models import Base
from ltxserve.db.repository import Store
from tests.scaleout.conftest import sqlalchemy_url

OURS = {"api_keys", "tasks", "results", "uploads", "deliveries"}


def _diff(conn: Connection) -> list[object]:
    ctx = MigrationContext.configure(
        conn,
        opts={
            "compare_type": True,
            "include_name": lambda name, type_, _parents: (
                type_ != "table" or not name.startswith("procrastinate_")
            ),
        },
    )
    return list(compare_metadata(ctx, Base.metadata))


async def _check_roundtrip(engine: AsyncEngine) -> None:
    before, after = await migrate.upgrade(engine)
    assert (before, after) == (None, migrate.head_revision())
    async with engine.connect() as conn:
        assert await conn.run_sync(_diff) == []  # migrated schema == models, nothing missing or extra
        tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    assert tables >= OURS
    assert await migrate.upgrade(engine) == (after, after)  # idempotent: a second node starting
    await migrate.check(engine)
    await migrate.downgrade(engine, "base")
    async with engine.connect() as conn:
        left = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    assert left <= {"alembic_version"}  # procrastinate's tables went too
    assert (await migrate.upgrade(engine))[1] == after


async def test_sqlite_migrations_match_models(tmp_path: Path) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")
    try:
        await _check_roundtrip(engine)
    finally:
        await engine.dispose()


async def test_postgres_migrations_match_models(pg_url: str) -> None:
    engine = create_async_engine(sqlalchemy_url(pg_url))
    try:
        await _check_roundtrip(engine)
        async with engine.connect() as conn:
            tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
        assert "procrastinate_jobs" in tables  # the queue's schema is a migration too
    finally:
        await engine.dispose()


async def test_nodes_starting_together_migrate_once(pg_url: str) -> None:
    """Three processes' worth of engines upgrade a fresh database at once: the advisory lock
    serialises them, one migrates, the others find it at head."""
    engines = [create_async_engine(sqlalchemy_url(pg_url)) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate.upgrade(e) for e in engines))
        head = migrate.head_revision()
        assert sorted(results, key=str) == sorted([(None, head), (head, head), (head, head)], key=str)
    finally:
        for e in engines:
            await e.dispose()


async def test_database_made_by_create_all_is_adopted(tmp_path: Path) -> None:
    """A data dir from before migrations: stamped at the baseline, then upgraded, data kept."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    store = Store(url)
    # what create_all made then: the baseline schema (0001) without alembic's version table
    await migrate.upgrade(store.engine, migrate.BASELINE)
    async with store.engine.begin() as conn:
        await conn.execute(text("DROP TABLE alembic_version"))
    _, key, _ = await store.keys.create("old")
    await store.migrate()
    assert await store.keys.authenticate(key) is not None
    await migrate.check(store.engine)
    await store.close()


async def test_out_of_date_schema_is_refused_without_auto_migrate(tmp_path: Path) -> None:
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    await migrate.upgrade(store.engine, "0001")
    with pytest.raises(migrate.SchemaOutdated, match="ltxserve db upgrade"):
        await store.migrate(auto=False)
    await store.close()


def test_cli_db_upgrade_on_postgres(pg_url: str) -> None:
    env = {**os.environ, "LTXSERVE_DATABASE_URL": pg_url}
    cli = [sys.executable, "-m", "ltxserve.cli", "db"]
    out = subprocess.run([*cli, "upgrade"], env=env, check=True, capture_output=True, text=True).stdout
    assert f"database at {migrate.head_revision()} (was empty)" in out
    out = subprocess.run([*cli, "current"], env=env, check=True, capture_output=True, text=True).stdout
    assert out.split() == ["database:", migrate.head_revision(), "code:", migrate.head_revision()]
