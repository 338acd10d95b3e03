"""What distinguishes two runs or experiments: settings flattened to dotted keys (`ftgd.lr`,
`models.tiny.ftgd.lr`) and the keys whose values differ. One home for `taskspace exps` (params.yaml per DVC
experiment) and the TUI's compare screen (what the index records per run), so both call the same thing a
difference."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

ABSENT = "\0absent"  # a key one side lacks: a difference (that setting is not there), told apart from null


def flatten(d: Mapping, prefix: str = "") -> dict[str, object]:
    """{"ftgd": {"lr": 1e-4}} → {"ftgd.lr": 1e-4}; lists and empty mappings stay values."""
    out: dict[str, object] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out |= flatten(v, key + ".")
        else:
            out[key] = v
    return out


def canonical(value: object) -> str:
    """A value as compared: JSON with sorted keys, so a tuple equals its list and 1e-4 equals 0.0001."""
    return value if value is ABSENT else json.dumps(value, sort_keys=True, default=str)


def differing(settings: Sequence[Mapping[str, object]]) -> list[str]:
    """The keys (sorted) whose value is not the same in every one of `settings`; a key some lack differs."""
    keys = sorted({k for s in settings for k in s})
    return [k for k in keys if len({canonical(s.get(k, ABSENT)) for s in settings}) > 1]


# ---- one run, as the index records it --------------------------------------------------------------------------

# Which weights a run is: the compare screen names these in its titles, and says when they are all that differs.
IDENTITY = ("model", "revision")


def run_settings(probe: Mapping | None, analysis: Mapping | None, prefix: str | None) -> dict[str, object]:
    """The settings a run was computed with, as its index row records them: probe.json's `ftgd` (the model's own
    overrides applied) and `probing`, the device kind and dtype it ran in, the analysis settings, and the prefix
    put before every sentence. (data.* is not recorded per run: the settings hash covers it.)"""
    probe = probe or {}
    out = flatten({k: probe[k] for k in ("ftgd", "probing") if isinstance(probe.get(k), Mapping)})
    if probe.get("device"):
        out["compute.device"] = str(probe["device"]).split(":")[0]  # cuda:1 and cuda:0 are one kind
    if probe.get("dtype"):
        out["compute.dtype"] = probe["dtype"]
    out |= flatten(dict(analysis or {}), "analysis.")
    out["prefix"] = prefix or ""
    return out


@dataclass(frozen=True)
class RunsDiff:
    """What differs between run A and run B: `settings` as (key, A's value, B's value), `identity` the keys of
    IDENTITY that differ, `unrecorded` when both are one model and their settings hashes differ though no
    recorded setting does (a data.* setting, which only the hash covers), `experiments` A's and B's DVC experiment
    names when they differ ("" for a run of `dvc repro`)."""

    settings: list[tuple[str, object, object]]
    identity: list[str]
    unrecorded: bool = False
    experiments: tuple[str, str] | None = None

    def summary(self) -> str:
        """One line when no setting differs: what does instead (never an empty panel)."""
        if self.settings:
            n = len(self.settings)
            return "1 setting differs" if n == 1 else f"{n} settings differ"
        if self.unrecorded:
            return ("no recorded setting differs, but the settings hashes do: a setting the index does not record "
                    "(data.*); `taskspace exps` lists them")  # fmt: skip
        named = {("model",): "the model differs", ("revision",): "the checkpoint differs"}
        what = named.get(tuple(self.identity), "the model and checkpoint differ")
        return f"same settings: only {what}" if self.identity else "same settings, same model and checkpoint"


def diff_runs(a: Mapping, b: Mapping) -> RunsDiff:
    """Run rows with `settings` (run_settings), the IDENTITY keys, `params_hash` and `experiment`: what differs
    between them."""
    sa, sb = a.get("settings") or {}, b.get("settings") or {}
    # a section only one run records (an older probe.json, a run not analysed yet) is unknown there, not different
    sections = {_section(k) for k in sa} & {_section(k) for k in sb}
    sa, sb = ({k: v for k, v in s.items() if _section(k) in sections} for s in (sa, sb))
    keys = differing([sa, sb])
    rows = [(k, sa.get(k), sb.get(k)) for k in keys]
    identity = [k for k in IDENTITY if a.get(k) != b.get(k)]
    unrecorded = not keys and a.get("model") == b.get("model") and a.get("params_hash") != b.get("params_hash")
    names = (a.get("experiment") or "", b.get("experiment") or "")
    return RunsDiff(rows, identity, unrecorded, names if names[0] != names[1] else None)


def _section(key: str) -> str:
    return key.split(".", 1)[0]
