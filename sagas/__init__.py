"""The saga engine: definitions as data, run as Celery chains, state in PostgreSQL."""
