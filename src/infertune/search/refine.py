"""The refine stage's candidates: variants of the leader (its runtime settings, then inserted passes run with the
best of those settings, then its passes' declared values), the baseline's settings, and one candidate combining
the leader's variants that each beat it. A settings variant that beats the leader beyond its spread leads in turn:
its own settings are tried, less those that lost before (`next_leader`, `lost_settings`)."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from infertune.search.recipe import Recipe, with_options
from infertune.search.records import Status, TrialRecord
from infertune.search.select import score_of


def tried(finished: list[TrialRecord]) -> set[str]:
    return {json.dumps(r.recipe, sort_keys=True) for r in finished}


def refine_queue(finished: list[TrialRecord], base: Recipe, leader: TrialRecord | None, model_format: str,
                 objective: str, needs: frozenset[str], settings_only: bool = False,
                 skip: frozenset[tuple[str, str]] = frozenset()) -> list[tuple[str, Recipe]]:
    """Variants of the current leader, the likeliest to better the answer, so they come first where the time
    budget ends the stage: its runtime settings (no new build; `settings_only` stops there, and the stage asks
    again once they are measured), then the leader with each `inserted` pass (padding removal, for throughput: a
    rebuild), run with the best of those settings, and the values its passes declare; then setting variants of the
    baseline's recipe (a model as given, run with other threads, can be the fastest candidate). Numbers stay those
    of one list, so a variant has the same id whichever call queues it. A leader's setting variant that changes a
    setting to a value in `skip` (`lost_settings` of an earlier leader) is left out, its number kept."""
    from infertune.search.space import insertion_variants, pass_variants, setting_variants

    seen = tried(finished)
    sources = []
    recipe = Recipe.from_dict(leader.recipe) if leader is not None else None
    if recipe is not None:
        variants = setting_variants(recipe, needs, objective)
        if not settings_only:
            variants += insertion_variants(with_best_settings(finished, leader), model_format, objective, needs)
            variants += pass_variants(recipe)
        sources.append((leader.id, variants))
    if not settings_only:
        sources.append(("baseline", setting_variants(base, needs, objective)))
    queue = []
    for source_id, variants in sources:
        for number, variant in enumerate(variants, 1):
            key = json.dumps(variant.to_dict(), sort_keys=True)
            if source_id != "baseline" and skip and _pairs(_changed_options(recipe, variant)) & skip:
                continue
            if key not in seen:
                seen.add(key)
                queue.append((f"{source_id}-s{number}", variant))
    return queue


def with_best_settings(finished: list[TrialRecord], leader: TrialRecord) -> Recipe:
    """The leader's recipe run with the setting variant of it that beat it by the most beyond its spread (its p10
    above the leader's median speed-up), or as it is. An inserted pass is tried there, as the leader would run:
    padding removal gains on OpenVINO with static shapes (MiniLM NNCF int8 at batch 32, 1329 and 1341 items/s
    against 1022 and 963 for static shapes alone, consecutive sentences), while with dynamic shapes it lost to the
    leader on batches of similar lengths, so the combination of the two was never tried."""
    better = next_leader(finished, leader)
    return Recipe.from_dict(better.recipe) if better is not None else Recipe.from_dict(leader.recipe)


def next_leader(finished: list[TrialRecord], leader: TrialRecord) -> TrialRecord | None:
    """The leader's runtime-settings variant (its passes unchanged) that beat it by the most beyond its spread, or
    None. Refine tries that one's settings in turn: settings add up where one at a time from the first leader would
    never meet (MiniLM NNCF int8 on AMX: static shapes beat the leader, and splitting the batch in two gains again
    on top of static shapes, while on the leader's dynamic shapes it stayed inside the spread)."""
    source = Recipe.from_dict(leader.recipe)
    settings = [r for r in _winners(finished, leader) if Recipe.from_dict(r.recipe).passes == source.passes]
    return max(settings, key=score_of) if settings else None


def lost_settings(finished: list[TrialRecord], leader: TrialRecord) -> frozenset[tuple[str, str]]:
    """The settings that, changed alone on the leader, failed or lost to it beyond their spread (a variant's p90
    below the leader's median speed-up), as (name, value) pairs: a later leader does not try them again, which
    keeps each round of settings short (one thread, or the throughput hint's streams, on a model that wants both
    cores)."""
    if leader.speedup is None:
        return frozenset()
    source, lost = Recipe.from_dict(leader.recipe), set()
    for record in _variants(finished, leader):
        variant = Recipe.from_dict(record.recipe)
        if variant.passes != source.passes or len(changed := _changed_options(source, variant)) != 1:
            continue
        if record.status is Status.FAILED or (record.speedup is not None
                                              and record.speedup.high < leader.speedup.value):
            lost |= _pairs(changed)
    return frozenset(lost)


def _changed_options(source: Recipe, variant: Recipe) -> dict[str, Any]:
    """The backend settings `variant` sets to other values than `source`."""
    return {k: v for k, v in variant.backend_options.items() if source.backend_options.get(k) != v}


def _pairs(options: dict[str, Any]) -> set[tuple[str, str]]:
    return {(k, json.dumps(v)) for k, v in options.items()}


def _variants(finished: list[TrialRecord], leader: TrialRecord) -> list[TrialRecord]:
    """The leader's own refine variants (`c09-s7`, not `c09-s7-s2`, a variant of that variant)."""
    own = re.compile(re.escape(leader.id) + r"-s\d+")
    return [r for r in finished if own.fullmatch(r.id)]


def _winners(finished: list[TrialRecord], leader: TrialRecord) -> list[TrialRecord]:
    """The leader's refine variants that beat it beyond their spread (a variant's p10 above the leader's median
    speed-up) and rank above it (`score_of`, which holds the interleaved figure to the p50 ratio): on MiniLM at
    batch 32, OpenVINO with one stream measured 3.97x interleaved, p10 3.46x against the leader's 3.23x, but 1.16x
    timed alone (score 1.74), and led a refine round of 10 variants of it, ranked far below the leader."""
    if leader.speedup is None:
        return []
    return [r for r in _variants(finished, leader) if r.status is Status.OK and r.speedup is not None
            and r.speedup.low > leader.speedup.value and score_of(r) > score_of(leader)]


def combined_queue(finished: list[TrialRecord], leader: TrialRecord) -> list[tuple[str, Recipe]]:
    """The refine stage tries the leader's settings one at a time, and the leader with an inserted pass; where two
    or more of these each beat the leader beyond their spread (a variant's p10 above the leader's median
    speed-up), one more candidate with all of them (OpenVINO static shapes, a thread count and padding removal can
    each help and add up). It is judged like any candidate."""
    source = Recipe.from_dict(leader.recipe)
    better: dict[str, tuple[float, object]] = {}  # a setting's name (or "passes") -> (speed-up, its value)
    for record in _winners(finished, leader):
        variant = Recipe.from_dict(record.recipe)
        if variant.passes != source.passes:  # an inserted pass (run with the leader's best setting, if one won)
            inserted = len(variant.passes) == len(source.passes) + 1
            if inserted and ("passes" not in better or record.speedup.value > better["passes"][0]):
                better["passes"] = (record.speedup.value, variant.passes)
            continue
        changed = _changed_options(source, variant)
        if len(changed) == 1:
            (name, value), = changed.items()
            if name not in better or record.speedup.value > better[name][0]:
                better[name] = (record.speedup.value, value)
    if len(better) < 2:
        return []
    passes = better.pop("passes", (None, source.passes))[1]
    combined = with_options(dataclasses.replace(source, passes=passes),
                            **{name: value for name, (_, value) in better.items()})
    key = json.dumps(combined.to_dict(), sort_keys=True)
    return [] if key in tried(finished) else [(f"{leader.id}-combined", combined)]
