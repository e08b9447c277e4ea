"""Alembic environment: runs on the engine monitor hands over, or on MONITOR_DATABASE_URL."""

from __future__ import annotations

from alembic import context
from monitor.config import load_settings
from monitor.storage.engine import make_engine
from monitor.storage.models import metadata

engine = context.config.attributes.get("engine") or make_engine(load_settings().database_url)

with engine.connect() as connection:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:  # batch mode rebuilds tables; foreign keys would block dropping a referenced one
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.commit()
    context.configure(
        connection=connection, target_metadata=metadata, render_as_batch=True, compare_type=True
    )
    with context.begin_transaction():
        context.run_migrations()
    if sqlite:
        connection.commit()
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")
