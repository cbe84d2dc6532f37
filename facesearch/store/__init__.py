"""Storage: SQLAlchemy models and repositories, Alembic migrations, the encrypted blob store."""
