"""Alembic environment: ltxserve's tables on SQLite (batch mode) and PostgreSQL.

Run through ``ltxserve db upgrade`` or at process start (``LTXSERVE_AUTO_MIGRATE``); both hand a
live connection in ``config.attributes["connection"]``. Plain ``alembic`` with
``-x url=...`` works too.
"""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from ltxserve.db.models import Base

config = context.config
target_metadata = Base.metadata


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Only ltxserve's own tables: the queue library keeps its tables in the same database."""
    if type_ == "table":
        return name is not None and not name.startswith("procrastinate_")
    return True


def run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        include_name=include_name,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_async(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(run)
            await conn.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()
elif (connection := config.attributes.get("connection")) is not None:
    run(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    assert url, "pass -x url=... or set sqlalchemy.url"
    asyncio.run(run_async(url))
