"""What a setting may hold, declared once: numeric ranges (`Range`) and comma-list options (`ListOption`).

`Range` is the declared range of a number (TrainConfig's fields carry one in their metadata); `ListOption`
is the one parser of every comma-list option (`--seq-len 256,1024`, `--layers 0,2`, `--methods`, `--types`):
items stripped, and an empty item, a duplicate or a value out of range refused with one line
(GatelensError) that says what is valid. `ListOption.typer()` hands the parser to Typer, so a bad value is
refused while the command line is read, before any work.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, field

from .errors import GatelensError


def setting(default=MISSING, *, gt=None, ge=None, lt=None, le=None, choices=(),
            pattern: tuple[str, str] | None = None, help: str = "", factory=None, metavar: str | None = None):
    """A settings field (TrainConfig's, measure's Settings') with what it may hold and what it means, declared in its
    metadata, so range and help are written where the field is defined and the command line makes its option from
    them: a Range for numbers (gt/ge/lt/le), `choices` or a `pattern` (regular expression, and the words that say it)
    for text, the option's `help` (and `metavar`)."""
    bounds = (gt, ge, lt, le)
    meta = {"range": Range(*bounds) if any(b is not None for b in bounds) else None, "choices": tuple(choices),
            "pattern": pattern, "help": help, "metavar": metavar}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Range:
    """The numbers a setting takes: finite, and within the bounds given (gt/ge below, lt/le above)."""

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None

    def __contains__(self, x) -> bool:
        return ((isinstance(x, int) or math.isfinite(x)) and (self.gt is None or x > self.gt) and (self.ge is None or x >= self.ge)
                and (self.lt is None or x < self.lt) and (self.le is None or x <= self.le))

    def __str__(self) -> str:
        def num(x):
            if isinstance(x, int) and x >= 2**32 and x & (x - 1) == 0:
                return f"2^{x.bit_length() - 1}"
            return str(x) if isinstance(x, int) else f"{x:g}"
        low = f"[{num(self.ge)}" if self.ge is not None else f"({num(self.gt)}" if self.gt is not None else None
        high = f"{num(self.le)}]" if self.le is not None else f"{num(self.lt)})" if self.lt is not None else None
        if low and high:
            return f"in {low}, {high}"
        if low:
            return f"{'at least' if low[0] == '[' else 'above'} {low[1:]}"
        return f"{'at most' if high[-1] == ']' else 'below'} {high[:-1]}" if high else "(finite)"


@dataclass(frozen=True)
class ListOption:
    """A comma-list option: integers in `range`, or words (one of `choices` when given); `words` are whole
    values with a meaning of their own (`--layers each`), returned as that word."""

    flag: str                          # "--seq-len", for messages
    kind: type = int                   # int or str
    what: str = "integers"             # what an item is, for messages: "lengths"
    unit: str = ""                     # integers: their unit, for messages: "tokens"
    range: Range | None = None         # integers: the values allowed
    choices: tuple[str, ...] = ()      # words: the values allowed (empty: any word)
    words: tuple[str, ...] = ()        # whole values that stand alone
    example: str = ""                  # a valid value, for messages
    omitted: str = ""                  # what leaving the option out does, for messages: "every type is checked"

    def valid(self) -> str:
        """What a valid value is, for the one-line error."""
        if self.kind is int:
            item = " ".join(x for x in (self.what, f"of {self.range}" if self.range else "", self.unit) if x)
        else:
            item = f"{self.what} among {', '.join(self.choices)}" if self.choices else self.what
        alone = f", or {' or '.join(self.words)}" if self.words else ""
        omit = f"; without {self.flag} {self.omitted}" if self.omitted else ""
        return f"give a comma list of {item}{f' (e.g. {self.example})' if self.example else ''}{alone}{omit}"

    def parse(self, text: str) -> tuple | str:
        """`text` as a tuple of distinct items (or one of `words`), or a GatelensError naming what is valid."""
        def refuse(why: str):
            raise GatelensError(f"{self.flag} {text!r}: {why}; {self.valid()}")

        if text.strip() in self.words:
            return text.strip()
        items = [x.strip() for x in text.split(",")]
        if items == [""]:
            refuse("empty")
        if "" in items:
            refuse(f"item {items.index('') + 1} is empty")
        values = []
        for x in items:
            if self.kind is int:
                try:
                    v = int(x)
                except ValueError:
                    refuse(f"{x!r} is not an integer")
                if self.range is not None and v not in self.range:
                    refuse(f"{v} is out of range")
            else:
                v = x
                if self.choices and v not in self.choices:
                    refuse(f"{v!r} is not a choice")
            if v in values:
                refuse(f"{v!r} is given twice")
            values.append(v)
        return tuple(values)

    def typer(self):
        """The parser Typer calls on the option's text (default included): a bad value is a usage error there,
        printed as this module's one line (cli._Group.main)."""
        def parse(text):
            import typer

            if isinstance(text, tuple):  # already parsed (a default given as a tuple)
                return text
            try:
                return self.parse(str(text))
            except GatelensError as e:
                raise typer.BadParameter(str(e)) from e
        return parse


SEQ_LENS = ListOption("--seq-len", int, "lengths", "tokens", Range(ge=2), example="256,1024")   # BOS and a token
HEADS = ListOption("--heads", int, "head numbers", "", Range(ge=0), example="0,3")
LAYERS = ListOption("--layers", int, "layer numbers", "", Range(ge=0), words=("each", "all"), example="0,2",
                    omitted="each layer alone, then all")
