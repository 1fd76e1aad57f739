"""One transition check for every status field: a move is allowed if its map says so."""

from collections.abc import Mapping


class InvalidTransition(Exception):
    def __init__(self, what: str, current: str, new: str):
        super().__init__(f"{what} cannot move from {current} to {new}")
        self.what, self.current, self.new = what, current, new


def transition(
    current: str, new: str, moves: Mapping[str, frozenset], *, what: str
) -> str:
    """Return ``new`` if ``current -> new`` is in ``moves``, else InvalidTransition."""
    if new not in moves.get(current, frozenset()):
        raise InvalidTransition(what, current, new)
    return new
