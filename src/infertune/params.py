"""Config fields that carry their default, meaning, valid values and search space together, for pass configs and
backend settings alike (Olive's `PassConfigParam(default_value=..., search_defaults=...)`), and the check that a
config's values are valid, run when the config is built: a bad value in a recipe exits 2 naming the field and its
range, instead of failing inside a trial.

    amount: float = param(0.5, "fraction removed", search=(0.25, 0.5, 0.75), low=0.0, high=1.0, open_high=True)
"""

from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Any

from infertune.errors import ConfigError


def param(default: Any, help: str, *, search: tuple | None = None, candidates: tuple = (),
          choices: tuple | None = None, low: float | None = None, high: float | None = None, open_low: bool = False,
          open_high: bool = False, needs: tuple[str, ...] = (), objectives: tuple[str, ...] = ()) -> Any:
    """A config field: its default, what it means, the values it may take (`choices`, or a range from `low` to
    `high`, bounds included unless `open_low` / `open_high`) and, where the search should try several, its space
    (`search`: a tuple of values, tried one at a time on a built candidate) or, for a value that changes the
    outputs (a backend's bf16 precision), `candidates`: values the search's first stage tries as candidates of
    their own, each judged against the accuracy budget. `needs` (among the pass registry's NEEDS) and
    `objectives` narrow where the search tries the `search` values: only on a model that meets the needs, and only
    for those objectives (all when empty)."""
    if isinstance(default, (list, dict, set)):
        raise TypeError("config defaults must be immutable: use a tuple")
    if search is not None and not callable(search):  # a callable's values depend on the machine (core counts)
        for value in search:
            _check_value("search space", value, choices, low, high, open_low, open_high)
    for value in candidates:
        _check_value("candidate", value, choices, low, high, open_low, open_high)
    return field(default=default, metadata={"help": help, "search": search, "candidates": tuple(candidates),
                                            "choices": choices, "low": low, "high": high, "open_low": open_low,
                                            "open_high": open_high, "needs": tuple(needs),
                                            "objectives": tuple(objectives)})


def check(owner: str, config: Any) -> None:
    """Raise ConfigError naming the first field whose value is outside its choices or range."""
    for f in dataclasses.fields(config):
        m = f.metadata
        if "help" not in m:
            continue
        value = getattr(config, f.name)
        problem = _check_value(f.name, value, m.get("choices"), m.get("low"), m.get("high"), m.get("open_low"),
                               m.get("open_high"), raise_=False)
        if problem:
            raise ConfigError(f"{owner} option {f.name}={value!r} {problem}")


def search_space(cls: type, *, met: frozenset[str] | None = None, objective: str | None = None) -> dict[str, tuple]:
    """Field name -> the values the search should try, for the fields that declare some (a callable space is
    asked now: it depends on the machine), less those whose `needs` are not all in `met` or whose `objectives` leave
    out `objective` (each checked where given). With `objective`, the fields declared for it come first: made for
    that objective, they are the likeliest to pay, and a time budget may end the list."""
    found = {}
    fields = dataclasses.fields(cls)
    if objective is not None:
        fields = sorted(fields, key=lambda f: objective not in f.metadata.get("objectives", ()))
    for f in fields:
        space = f.metadata.get("search")
        if met is not None and not set(f.metadata.get("needs", ())) <= met:
            continue
        if objective is not None and f.metadata.get("objectives") and objective not in f.metadata["objectives"]:
            continue
        if space:
            found[f.name] = tuple(space()) if callable(space) else tuple(space)
    return found


def candidate_values(cls: type) -> dict[str, tuple]:
    """Field name -> the values the search's first stage tries as candidates of their own (`param(candidates=...)`),
    for the fields that declare some."""
    return {f.name: f.metadata["candidates"] for f in dataclasses.fields(cls) if f.metadata.get("candidates")}


def describe(cls: type) -> list[dict[str, Any]]:
    """Each field with its default, meaning, valid values and search space (for `infertune models` and docs)."""
    rows = []
    for f in dataclasses.fields(cls):
        m = f.metadata
        if "help" in m:
            rows.append({"name": f.name, "default": f.default, "help": m["help"], "choices": m.get("choices"),
                         "range": _range_text(m) if m.get("low") is not None or m.get("high") is not None else None,
                         "search": m.get("search")})
    return rows


class Checked:
    """Mixin for frozen config dataclasses: their values are checked as they are built."""

    def __post_init__(self) -> None:
        check(_owner(self), self)


def _owner(config: Any) -> str:
    name = getattr(type(config), "pass_name", None)
    return f"pass '{name}'" if name else type(config).__name__


def _check_value(name, value, choices, low, high, open_low, open_high, raise_=True) -> str | None:
    problem = None
    if choices is not None and value not in choices:
        problem = f"is not one of {', '.join(map(str, choices))}"
    elif low is not None or high is not None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problem = f"is not a number: it takes {_range_text(dict(low=low, high=high, open_low=open_low, open_high=open_high))}"
        elif (low is not None and (value < low or (open_low and value == low))) or \
                (high is not None and (value > high or (open_high and value == high))):
            problem = f"is out of range: it takes {_range_text(dict(low=low, high=high, open_low=open_low, open_high=open_high))}"
    if problem and raise_:
        raise ValueError(f"{name} value {value!r} {problem}")
    return problem


def _range_text(m: dict) -> str:
    low, high = m.get("low"), m.get("high")
    if high is None:
        return f"a number {'above' if m.get('open_low') else 'of at least'} {low}"
    if low is None:
        return f"a number {'below' if m.get('open_high') else 'of at most'} {high}"
    return f"a number in {'(' if m.get('open_low') else '['}{low}, {high}{')' if m.get('open_high') else ']'}"
