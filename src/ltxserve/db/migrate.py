"""Schema migrations (alembic) for SQLite and PostgreSQL, run by ``ltxserve db upgrade`` or at start.

Every process may run ``upgrade`` when it starts (``LTXSERVE_AUTO_MIGRATE``): on PostgreSQL the
upgrade takes a transaction-scoped advisory lock, and DDL is transactional there, so nodes that
start together migrate once and the others find the schema at head. A database made by the old
``create_all`` (no ``alembic_version`` table) is stamped at the first revision, which is that schema.
"""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from ltxserve.logs import get_logger

log = get_logger(__name__)

SCRIPT_LOCATION = "ltxserve.db:migrations"
BASELINE = "0001"  # the schema create_all made before migrations existed
LOCK_KEY = 0x6C7478  # "ltx": pg_advisory_xact_lock key for migrations


class SchemaOutdated(RuntimeError):
    """The database is behind the code and auto-migration is off."""


def alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def _upgrade(conn: Connection, revision: str) -> tuple[str | None, str | None]:
    cfg = alembic_config()
    cfg.attributes["connection"] = conn
    before = current_revision(conn)
    if before is None and inspect(conn).has_table("tasks"):
        command.stamp(cfg, BASELINE)  # made by create_all: that schema is the baseline revision
    command.upgrade(cfg, revision)
    return before, current_revision(conn)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> tuple[str | None, str | None]:
    """Bring the schema to ``revision``; returns (before, after)."""
    async with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOCK_KEY})
        before, after = await conn.run_sync(_upgrade, revision)
        await conn.commit()
    if before != after:
        # One line (alembic's own INFO lines are held at WARNING unless --verbose).
        log.info(f"database migrated to {after} (was {before or 'empty'})")
    return before, after


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    def run(conn: Connection) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)

    async with engine.connect() as conn:
        await conn.run_sync(run)
        await conn.commit()


async def check(engine: AsyncEngine) -> None:
    """Raise ``SchemaOutdated`` unless the database is at the code's head revision."""
    async with engine.connect() as conn:
        current = await conn.run_sync(current_revision)
    head = head_revision()
    if current != head:
        raise SchemaOutdated(
            f"database schema is at {current or 'nothing'}, the code needs {head}: run `ltxserve db upgrade`"
        )
