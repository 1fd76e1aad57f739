"""The relay is woken only for outbox rows due now: a row its writer sends at commit
is due later, and the relay takes it then only if it is still pending."""

from django.db import migrations

from sagas.messaging.outbox import outbox_notify_when_due


class Migration(migrations.Migration):
    dependencies = [("orders", "0003_inbox_modes_bookings_and_event_headers")]

    operations = [outbox_notify_when_due("orders_outboxmessage")]
