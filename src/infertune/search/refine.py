"""The refine stage's candidates: variants of the leader (its runtime settings, then inserted passes run with the
best of those settings, then its passes' declared values), the baseline's settings, and one candidate combining
the leader's variants that each beat it."""

from __future__ import annotations

import dataclasses
import json

from infertune.search.recipe import Recipe, with_options
from infertune.search.records import Status, TrialRecord


def tried(finished: list[TrialRecord]) -> set[str]:
    return {json.dumps(r.recipe, sort_keys=True) for r in finished}


def refine_queue(finished: list[TrialRecord], base: Recipe, leader: TrialRecord | None, model_format: str,
                 objective: str, needs: frozenset[str], settings_only: bool = False) -> list[tuple[str, Recipe]]:
    """Variants of the current leader, the likeliest to better the answer, so they come first where the time
    budget ends the stage: its runtime settings (no new build; `settings_only` stops there, and the stage asks
    again once they are measured), then the leader with each `inserted` pass (padding removal, for throughput: a
    rebuild), run with the best of those settings, and the values its passes declare; then setting variants of the
    baseline's recipe (a model as given, run with other threads, can be the fastest candidate). Numbers stay those
    of one list, so a variant has the same id whichever call queues it."""
    from infertune.search.space import insertion_variants, pass_variants, setting_variants

    seen = tried(finished)
    sources = []
    if leader is not None:
        recipe = Recipe.from_dict(leader.recipe)
        variants = setting_variants(recipe)
        if not settings_only:
            variants += insertion_variants(with_best_settings(finished, leader), model_format, objective, needs)
            variants += pass_variants(recipe)
        sources.append((leader.id, variants))
    if not settings_only:
        sources.append(("baseline", setting_variants(base)))
    queue = []
    for source_id, variants in sources:
        for number, variant in enumerate(variants, 1):
            key = json.dumps(variant.to_dict(), sort_keys=True)
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
    source = Recipe.from_dict(leader.recipe)
    settings = [r for r in _winners(finished, leader) if Recipe.from_dict(r.recipe).passes == source.passes]
    return Recipe.from_dict(max(settings, key=lambda r: r.speedup.value).recipe) if settings else source


def _winners(finished: list[TrialRecord], leader: TrialRecord) -> list[TrialRecord]:
    """The leader's refine variants that beat it beyond their spread: a variant's p10 above the leader's median
    speed-up."""
    if leader.speedup is None:
        return []
    return [r for r in finished if r.id.startswith(f"{leader.id}-s") and r.status is Status.OK
            and r.speedup is not None and r.speedup.low > leader.speedup.value]


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
        changed = {k: v for k, v in variant.backend_options.items() if source.backend_options.get(k) != v}
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
