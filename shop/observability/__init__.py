"""What operators read: structured, correlated logs of every process (``logs``) and
the metrics endpoint (``metrics``). The saga engine's own counts and log events are
in sagas.telemetry; its headers travel through Celery by sagas.messaging.tracing."""
