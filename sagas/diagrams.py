"""Saga definitions drawn: one graph per definition, as Mermaid text and as SVG.

The graph is made from the definition itself, so a drawing cannot drift from what
runs. Mermaid text goes in the README (GitHub draws it); the admin shows the SVG,
made here without JavaScript or a CDN, coloured by a saga's step records. A saga's
timeline (sagas.timeline) is drawn with the same palette and document.

Every mode is drawn on the same grid: the work goes down the left column, the undo
work up the right one, from the failure that sets it off to the saga's end.
"""

from dataclasses import dataclass, field
from enum import StrEnum
from html import escape

from sagas.definitions import Mode
from sagas.models import SagaStatus, StepStatus

LEFT, RIGHT = 0, 1  # the work, the undo work


class Part(StrEnum):
    """What a box stands for, which says how a saga's records colour it."""

    START = "start"
    ACTION = "action"  # a step's work (a try, a confirm, a reaction)
    UNDO = "undo"  # a step's compensation (a cancel, an undo reaction)
    COMPLETED = "completed"
    UNDONE = "undone"  # the end of an undone saga


@dataclass(frozen=True)
class Box:
    key: str
    label: str
    row: int
    column: int
    part: Part
    step: int | None = None  # the index of the step whose record colours it


@dataclass(frozen=True)
class Arrow:
    source: str
    target: str
    label: str = ""
    failure: bool = False  # dashed: the way back


@dataclass
class Graph:
    title: str
    boxes: list[Box] = field(default_factory=list)
    arrows: list[Arrow] = field(default_factory=list)

    def box(self, key: str, label: str, row: int, column: int, part: Part, step=None):
        self.boxes.append(Box(key, label, row, column, part, step))

    def arrow(self, source: str, target: str, label: str = "", failure=False):
        self.arrows.append(Arrow(source, target, label, failure))


# GRAPHS ----------------------------------------------------------------------------


def graph(definition) -> Graph:
    """The graph of any registered definition."""
    return _BUILDERS[definition.mode](definition)


def _frame(definition, ending: str) -> Graph:
    g = Graph(f"{definition.name} ({definition.mode})")
    g.box("start", "start", 0, LEFT, Part.START)
    g.box("undone", ending, 0, RIGHT, Part.UNDONE)
    g.box("done", "completed", len(definition.steps) + 1, LEFT, Part.COMPLETED)
    return g


def _orchestration(definition) -> Graph:
    hook = definition.on_compensated
    g = _frame(definition, hook.__name__ if hook else "compensated")
    _steps(g, [step.name for step in definition.steps])
    undoable = [i for i, step in enumerate(definition.steps) if step.compensate]
    for i in undoable:
        g.box(
            f"u{i}", definition.steps[i].compensate.__name__, i + 1, RIGHT, Part.UNDO, i
        )
    _undo_chain(g, undoable)
    # A step that fails sets off the undo of the newest step before it that succeeded.
    pivot = definition.pivot_index
    last_failing = pivot if pivot is not None else len(definition.steps) - 1
    for i in range(last_failing + 1):  # after the pivot, steps are retried instead
        g.arrow(f"s{i}", f"u{i - 1}" if i else "undone", "fails", failure=True)
    return g


def _tcc(definition) -> Graph:
    hook = definition.on_compensated
    g = _frame(definition, hook.__name__ if hook else "cancelled")
    _steps(g, [step.name for step in definition.steps])
    tries = list(range(len(definition.participants)))
    for i, participant in zip(tries, definition.participants, strict=True):
        g.box(f"u{i}", f"cancel_{participant.name}", i + 1, RIGHT, Part.UNDO, i)
    _undo_chain(g, tries)
    # Any try failing cancels every participant, tried or not, newest first.
    for i in tries:
        g.arrow(
            f"s{i}", f"u{tries[-1]}", "any try fails" if i == tries[-1] else "", True
        )
    return g


def _choreography(definition) -> Graph:
    g = _frame(definition, f"{definition.ended_by}: {definition.ends_undone_with}")
    steps = definition.steps
    # Each arrow is named by the event that carries the purchase on.
    events = [*(s.on for s in steps), steps[-1].succeeds]
    _steps(g, [f"{s.by}: {s.name}" for s in steps], events)
    undoable = [i for i, step in enumerate(steps) if step.undone]
    for i in undoable:
        g.box(
            f"u{i}", f"{steps[i].by}: undo {steps[i].name}", i + 1, RIGHT, Part.UNDO, i
        )
    _undo_chain(g, undoable, [steps[i].undone for i in undoable])
    for i, step in enumerate(steps):
        if step.fails:
            g.arrow(f"s{i}", f"u{i - 1}" if i else "undone", step.fails, failure=True)
    return g


def _steps(g: Graph, labels: list[str], into: list[str] | None = None) -> None:
    """The steps down the left column, each arrow named by what sets off its target."""
    into = into or [""] * (len(labels) + 1)
    keys = ["start", *(f"s{i}" for i in range(len(labels))), "done"]
    for i, label in enumerate(labels):
        g.box(f"s{i}", label, i + 1, LEFT, Part.ACTION, i)
    for source, target, label in zip(keys[:-1], keys[1:], into, strict=True):
        g.arrow(source, target, label)


def _undo_chain(g: Graph, undoable: list[int], labels: list[str] | None = None):
    """Undo work newest first, up the right column to the saga's end."""
    labels = labels or [""] * len(undoable)
    keys = ["undone", *(f"u{i}" for i in undoable)]
    for target, source, label in zip(keys[:-1], keys[1:], labels, strict=True):
        g.arrow(source, target, label, failure=True)


_BUILDERS = {
    Mode.ORCHESTRATION: _orchestration,
    Mode.TCC: _tcc,
    Mode.CHOREOGRAPHY: _choreography,
}


# MERMAID ---------------------------------------------------------------------------

_SHAPES = {Part.START: '(["{}"])', Part.COMPLETED: '(["{}"])', Part.UNDONE: '(["{}"])'}


def mermaid(definition) -> str:
    """Mermaid flowchart text of the definition."""
    g = graph(definition)
    lines = ["flowchart TD"]
    for box in g.boxes:
        shape = _SHAPES.get(box.part, '["{}"]')
        lines.append(f"    {box.key}{shape.format(box.label)}")
    for arrow in g.arrows:
        link = "-.->" if arrow.failure else "-->"
        label = f'|"{arrow.label}"|' if arrow.label else ""
        lines.append(f"    {arrow.source} {link}{label} {arrow.target}")
    return "\n".join(lines)


def markdown(definitions) -> str:
    """A heading and a Mermaid block per definition, as the README shows them."""
    sections = [
        f"#### `{d.name}` ({d.mode})\n\n```mermaid\n{mermaid(d)}\n```\n"
        for d in definitions
    ]
    return "\n".join(sections)


# SVG -------------------------------------------------------------------------------

WIDTH, HEIGHT = 210, 36
COLUMN_PITCH, ROW_PITCH = WIDTH + 150, HEIGHT + 34
MARGIN = 12

# (fill, stroke) by what a saga's records say of a box (or, on its timeline, a bar).
DONE, FAILED, ACTIVE, UNDONE, IDLE = (
    ("#e3f1e4", "#2e7d32"),
    ("#fbe3e3", "#ba2121"),
    ("#e1eef6", "#447e9b"),
    ("#ececec", "#666666"),
    ("#ffffff", "#999999"),
)
COMPENSATING = ("#fbeed9", "#c97a00")  # the undo path on a timeline


def document(width: float, height: float, title: str, parts, **attributes) -> str:
    """An SVG drawing of ``width`` x ``height`` units, titled (what a screen reader
    says), made of ``parts``; ``attributes`` (escaped) go on its root element,
    Python's spelling made SVG's (``class_`` is ``class``, ``data_x`` is ``data-x``)."""
    extra = "".join(
        f' {name.rstrip("_").replace("_", "-")}="{escape(str(value))}"'
        for name, value in attributes.items()
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" font-family="sans-serif" '
        f'font-size="12"{extra}><title>{escape(title)}</title>'
        + "".join(parts)
        + "</svg>"
    )


def svg(definition, saga=None, steps=()) -> str:
    """The definition as an SVG drawing, coloured by ``saga`` and its step rows."""
    g = graph(definition)
    at = {box.key: box for box in g.boxes}
    rows = max(box.row for box in g.boxes) + 1
    width = 2 * MARGIN + COLUMN_PITCH + WIDTH
    height = 2 * MARGIN + (rows - 1) * ROW_PITCH + HEIGHT
    by_index = {step.index: step for step in steps}
    parts = [
        '<defs><marker id="tip" viewBox="0 0 10 10" refX="10" refY="5" '
        'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
        '<path d="M 0 0 L 10 5 L 0 10 z" fill="#666"/></marker></defs>',
    ]
    parts += [_svg_arrow(at[a.source], at[a.target], a) for a in g.arrows]
    parts += [_svg_box(box, _colours(box, saga, by_index)) for box in g.boxes]
    return document(width, height, g.title, parts)


def _corner(box: Box) -> tuple[int, int]:
    return MARGIN + box.column * COLUMN_PITCH, MARGIN + box.row * ROW_PITCH


def _svg_box(box: Box, colours: tuple[str, str]) -> str:
    x, y = _corner(box)
    fill, stroke = colours
    rounded = HEIGHT // 2 if box.part in _SHAPES else 4
    return (
        f'<rect x="{x}" y="{y}" width="{WIDTH}" height="{HEIGHT}" rx="{rounded}" '
        f'fill="{fill}" stroke="{stroke}" stroke-width="1.5"/>'
        f'<text x="{x + WIDTH / 2}" y="{y + HEIGHT / 2 + 4}" text-anchor="middle">'
        f"{escape(box.label)}</text>"
    )


def _svg_arrow(source: Box, target: Box, arrow: Arrow) -> str:
    (sx, sy), (tx, ty) = _corner(source), _corner(target)
    if source.column == target.column:
        # Straight down (the work) or straight up (the undo work).
        x1 = x2 = sx + WIDTH / 2
        down = ty > sy
        y1, y2 = (sy + HEIGHT, ty) if down else (sy, ty + HEIGHT)
        label_at = (x1 + 6, (y1 + y2) / 2 + 4, "start")
    else:
        x1, y1 = sx + WIDTH, sy + HEIGHT / 2
        x2, y2 = tx, ty + HEIGHT / 2
        label_at = (x1 + 8, y1 + 14 if y2 <= y1 else y1 - 5, "start")
    dash = ' stroke-dasharray="5 4"' if arrow.failure else ""
    colour = "#ba2121" if arrow.failure else "#666"
    line = (
        f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="{colour}" '
        f'stroke-width="1.2"{dash} marker-end="url(#tip)"/>'
    )
    if not arrow.label:
        return line
    x, y, anchor = label_at
    return (
        f'{line}<text x="{x}" y="{y}" text-anchor="{anchor}" font-size="11" '
        f'fill="{colour}">{escape(arrow.label)}</text>'
    )


def _colours(box: Box, saga, steps: dict) -> tuple[str, str]:
    if saga is None:
        return IDLE
    status = saga.status
    if box.part is Part.START:
        return DONE
    if box.part is Part.COMPLETED:
        return DONE if status == SagaStatus.COMPLETED else IDLE
    if box.part is Part.UNDONE:
        return UNDONE if status == SagaStatus.COMPENSATED else IDLE
    record = steps.get(box.step)
    if record is None:
        return IDLE
    if box.part is Part.UNDO:
        return UNDONE if record.compensated_at else IDLE
    return {
        StepStatus.SUCCEEDED: DONE,
        StepStatus.FAILED: FAILED,
        StepStatus.RUNNING: ACTIVE,
        StepStatus.COMPENSATED: UNDONE,
    }.get(record.status, IDLE)
