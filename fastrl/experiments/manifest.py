"""The files of a sweep directory that say what it holds: the manifest (``sweep.json``) and each
run's ``result.json``.

    sweep.json                       algorithm, env, mode, search spec, seeds, configurations
    c00_buffer_size=1000_.../seed0/  one run directory per configuration x seed, as `fastrl train`
                                     writes it, plus result.json (status, error, evaluations)

Both are written atomically (:func:`fastrl._util.write_text_atomic`): a killed sweep leaves the old
file or the new one. A different sweep into a directory that holds one is refused, with the first
difference in the message.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fastrl._util import write_text_atomic
from fastrl.config import ConfigError, to_dict
from fastrl.experiments.plan import SweepPlan, fmt_value, jsonable, preset_entry

FORMAT, VERSION = "fastrl-sweep", 1
MANIFEST = "sweep.json"
RESULT_FILE = "result.json"

Result = dict[str, Any]


# ---------------------------------------------------------------------------- the manifest
def plan_manifest(plan: SweepPlan) -> dict[str, Any]:
    """The manifest of ``plan`` (what ``sweep.json`` holds; a named preset: :func:`preset_entry`)."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "algo": plan.algo,
        "env_id": plan.env_id,
        **preset_entry(plan.preset),
        "mode": plan.mode,
        "keys": plan.keys,
        "spec": plan.spec,
        "seeds": plan.seeds,
        "configs": [
            {"label": lb, "params": jsonable(p), "config": to_dict(c)}
            for lb, p, c in zip(plan.labels, plan.points, plan.configs)
        ],
    }


def plan_digest(plan: SweepPlan) -> str:
    """8 hex digits that name the sweep (its default directory): the same sweep, the same digest."""
    text = json.dumps(plan_manifest(plan), sort_keys=True)
    return hashlib.blake2b(text.encode(), digest_size=4).hexdigest()


def load_manifest(sweep_dir: str | Path) -> dict[str, Any]:
    path = Path(sweep_dir) / MANIFEST
    try:
        m = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{sweep_dir}: not a sweep directory (no {MANIFEST})") from None
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: unreadable ({e})") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT or m.get("version") != VERSION:
        raise ConfigError(f"{path}: not a fastrl sweep manifest (version {VERSION})")
    return m


def describe(m: Mapping[str, Any]) -> str:
    """One line: ``dqn CartPole-v1 buffer_size=1000,10000, 3 seeds``."""
    spec = m["spec"]
    parts = [f"{k}={','.join(map(fmt_value, v))}" for k, v in spec.get("grid", {}).items()]
    if m["mode"] == "random":
        parts = (
            [f"--random {spec['random']}"]
            + parts
            + [
                f"{k}={v if isinstance(v, str) else ','.join(map(fmt_value, v))}"
                for k, v in spec.get("ranges", {}).items()
            ]
        )
    named = f" --preset {m['preset']}" if "preset" in m else ""
    return f"{m['algo']} {m['env_id']}{named} {' '.join(parts) or '(no grid)'}, {len(m['seeds'])} seeds"


def difference(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """The first way two manifests differ, in words."""
    for key in ("algo", "env_id", "preset", "mode", "keys", "spec", "seeds"):
        if old.get(key) != new.get(key):
            return f"it holds {describe(old)}; this is {describe(new)}"
    if len(old["configs"]) != len(new["configs"]):
        return f"it holds {len(old['configs'])} configurations; this sweep has {len(new['configs'])}"
    for a, b in zip(old["configs"], new["configs"]):
        for k in sorted(set(a["config"]) | set(b["config"])):
            if a["config"].get(k) != b["config"].get(k):
                return f"its runs have {k}={a['config'].get(k)!r}, this sweep's {b['config'].get(k)!r}"
    return "its configurations differ"


def prepare_dir(plan: SweepPlan) -> None:
    """Write the manifest, or check that the one there describes this same sweep."""
    new = plan_manifest(plan)
    path = plan.out / MANIFEST
    if path.exists():
        old = load_manifest(plan.out)
        comparable = {k: v for k, v in old.items() if k != "created"}
        if comparable != new:
            raise ConfigError(
                f"{plan.out} holds a different sweep ({difference(old, new)}); "
                "use another --out or delete that directory"
            )
        return
    if plan.out.exists() and any(plan.out.iterdir()):
        raise ConfigError(f"{plan.out} exists and is not a sweep directory; use another --out")
    plan.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(new, indent=1))


# ---------------------------------------------------------------------------- run results
def write_result(run_dir: Path, result: Result) -> None:
    """``run_dir/result.json``, atomically."""
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / RESULT_FILE, json.dumps(result, indent=1))


def read_result(run_dir: Path) -> Result | None:
    """The run's result, or None if it has none (not run yet) or an unreadable one."""
    try:
        data = json.loads((run_dir / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "status" in data else None


__all__ = [
    "MANIFEST",
    "RESULT_FILE",
    "Result",
    "describe",
    "difference",
    "load_manifest",
    "plan_digest",
    "plan_manifest",
    "prepare_dir",
    "read_result",
    "write_result",
]
