"""The load test's report folder: every request as CSV and JSON, the summary as JSON,
the plots, and one HTML page that shows them (no script, nothing fetched)."""

import csv
import html
import json
import os
import platform
from pathlib import Path

from orders.reconcile import Report
from shop.loadtest.plan import SCENARIOS
from shop.loadtest.plots import PLOTS, draw_all
from shop.loadtest.rows import COLUMNS
from shop.loadtest.stats import Run


def write_report(
    folder: Path,
    *,
    runs: list[Run],
    summary: list[dict],
    reconciliation: Report,
    meta: dict,
    table: list[tuple[str, ...]],
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    records = [row.as_record() for run in runs for row in run.rows]
    with open(folder / "requests.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(records)
    (folder / "requests.json").write_text(json.dumps(records, indent=1) + "\n")
    machine = {"cpus": os.cpu_count(), "platform": platform.platform()}
    document = {
        **meta,
        "machine": machine,
        "summary": summary,
        "reconciliation": reconciliation.as_dict(),
    }
    (folder / "summary.json").write_text(
        json.dumps(document, indent=1, default=str) + "\n"
    )
    draw_all(folder, runs, summary)
    (folder / "index.html").write_text(_page(document, table, reconciliation))


def _page(document: dict, table: list[tuple[str, ...]], books: Report) -> str:
    e = html.escape
    options = document["options"]
    facts = {
        "started": f"{document['started']} (UTC), finished {document['finished']}",
        "system": options["url"],
        "machine": f"{document['machine']['cpus']} CPUs, "
        f"{document['machine']['platform']}",
        "stages": ", ".join(f"{k} {v}" for k, v in options["stages"].items()),
        "modes": ", ".join(options["modes"])
        + (" (mixed in each stage)" if options["mixed"] else " (in turn)"),
        "scenario mix": ", ".join(
            f"{SCENARIOS[k].label} {v}" for k, v in options["mix"].items()
        ),
        "clients": f"{options['clients']} concurrent, {options['customers']} customers",
        "faults": ", ".join(document["faults"]) or "none",
        "CPU counted for": ", ".join(document["cpu_includes"]) or "nothing found",
    }
    head, *body = table
    rows = "\n".join(
        "<tr>" + "".join(f"<td>{e(cell)}</td>" for cell in row) + "</tr>"
        for row in body
    )
    violations = "".join(f"<li>{e(str(v))}</li>" for v in books.violations)
    figures = "\n".join(
        f'<figure><img src="{name}" alt="{e(caption)}">'
        f"<figcaption>{e(caption)}</figcaption></figure>"
        for name, caption in PLOTS.items()
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>sagashop load test {e(document["started"])}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.85em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right;
  white-space: nowrap; }}
th {{ background: #f0f0f0; }} td:nth-child(-n+2) {{ text-align: left; }}
dt {{ font-weight: bold; float: left; width: 11em; }} dd {{ margin-left: 12em; }}
figure {{ margin: 2em 0; }} img {{ max-width: 100%; }}
.clean {{ color: #2e7d32; }} .dirty {{ color: #c62828; }}
</style></head><body>
<h1>sagashop load test</h1>
<dl>{"".join(f"<dt>{e(k)}</dt><dd>{e(str(v))}</dd>" for k, v in facts.items())}</dl>
<h2>Summary per mode and stage</h2>
<p>Latencies in ms: <em>e2e</em> from the order sent to its saga's end, <em>http</em>
the response to the order. <em>as expected</em>: requests that ended as their
scenario expects; <em>sagas/s</em>: sagas ended per second of the run's wall time;
<em>CPU s/saga</em>: CPU seconds the processes above used during the run, per saga.</p>
<table><tr>{"".join(f"<th>{e(h)}</th>" for h in head)}</tr>
{rows}</table>
<h2>Reconciliation</h2>
<p class="{"dirty" if books.violations else "clean"}">{e(books.summary)}</p>
<ul>{violations}</ul>
<p>Every saga ended on its own: {"yes" if document["every_saga_ended"] else "NO"}.
Every request: <a href="requests.csv">requests.csv</a>,
<a href="requests.json">requests.json</a>; the numbers:
<a href="summary.json">summary.json</a>.</p>
<h2>Plots</h2>
{figures}
</body></html>
"""
