"""The cache table the throttles count in, shared by every web process.

``createcachetable`` makes a table for each DatabaseCache in CACHES as they are when
this runs (and none if CACHE_URL names another kind of cache); it is idempotent, so a
table named later is made by running it again by hand.
"""

from django.core.management import call_command
from django.db import migrations


def create_cache_tables(apps, schema_editor):
    call_command("createcachetable", database=schema_editor.connection.alias)


class Migration(migrations.Migration):
    dependencies = []

    operations = [
        migrations.RunPython(create_cache_tables, migrations.RunPython.noop),
    ]
