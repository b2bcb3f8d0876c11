"""The field limit of the core: at most 64 fields in all, the computed episode-return fields
(`returns`, `has_return`) included, checked in one place (ReplayBuffer's constructor) for the
uniform and the prioritized core alike.

Every sampling path is run exactly at the limit, so the sanitizer job (.ci/sanitize runs
tests/test_limits*.py) sees any output array written past its end. One field more is a ValueError
naming `fields`.
"""

from __future__ import annotations

import numpy as np
import pytest

from fastrl import _core

MAX_FIELDS = 64
STANDARD = [("observations", [2], "float32"), ("actions", [], "int64"), ("rewards", [], "float32"),
            ("next_observations", [2], "float32"), ("terminated", [], "bool"), ("truncated", [], "bool")]
KINDS = ["uniform", "prioritized"]


def _fields(n: int) -> list[tuple[str, list[int], str]]:
    """The standard fields, then scalar int32 extras x6, x7, ... up to n fields."""
    return STANDARD + [(f"x{i}", [], "int32") for i in range(len(STANDARD), n)]


def _make(kind: str, n: int, returns: bool):
    kwargs = {"episode_returns_gamma": 0.9} if returns else {}
    if kind == "prioritized":
        p = _core.PrioritizedReplayBuffer(_fields(n), 16, 1, 3, 0.6, 1e-3, **kwargs)
        return p, p.base
    b = _core.ReplayBuffer(_fields(n), 16, 1, 3, **kwargs)
    return b, b


def _rows(n_fields: int, rows: int, start: int) -> tuple[np.ndarray, ...]:
    k = np.arange(start, start + rows)
    obs = np.stack([k, -k], axis=1).astype(np.float32)
    return (obs, k.astype(np.int64), k.astype(np.float32), obs + 1, k % 5 == 4, np.zeros(rows, bool)) + tuple(
        (k * 100 + f).astype(np.int32) for f in range(len(STANDARD), n_fields))


def _fill(base, n_fields: int) -> None:
    base.extend(_rows(n_fields, 10, 0))


def _outs(base, batch: int, nstep: bool) -> tuple[np.ndarray, ...]:
    outs = []
    for i in range(base.num_written_fields + (2 if base.episode_returns_gamma >= 0 else 0)):
        a = base.gather(i, np.zeros(0, np.int64))  # an empty batch gives each field's dtype and shape
        dtype = np.float32 if nstep and i == 2 else a.dtype
        outs.append(np.zeros((batch,) + a.shape[1:], dtype))
    return tuple(outs)


@pytest.mark.parametrize("returns", [False, True], ids=["plain", "returns"])
@pytest.mark.parametrize("kind", KINDS)
def test_field_limit_exactly_at_the_limit_works(kind, returns):
    n = MAX_FIELDS - (2 if returns else 0)
    core, base = _make(kind, n, returns)
    _fill(base, n)
    total = MAX_FIELDS
    assert base.num_written_fields == n
    assert len(base.gather(total - 1, np.array([9]))) == 1  # the last field exists
    ids = np.arange(10)
    last = base.gather(n - 1, ids)  # the last written field reads back what was written
    np.testing.assert_array_equal(last, ids * 100 + n - 1)
    for gamma in (None, 0.5):
        nstep = gamma is not None
        if kind == "prioritized":
            r = core.sample(8, 0.4, 3 if nstep else 1, gamma)
            assert len(r) == total + 3 and r[1].dtype == np.float32
            sampled, fields = r[0], r[2:-1]
            outs = _outs(base, 8, nstep)
            core.sample_into(8, 0.4, np.zeros(8, np.int64), np.zeros(8, np.float32), outs, 3 if nstep else 1, gamma,
                             np.zeros(8, np.float32) if nstep else None)
        else:
            r = base.sample_ex(8, True, returns, 3 if nstep else 1, gamma)
            assert len(r) == total + 2
            sampled, fields = r[0], r[1:-1]
            outs = _outs(base, 8, nstep)
            base.sample_into_ex(8, True, returns, 3 if nstep else 1, gamma, np.zeros(8, np.int64), outs,
                                np.zeros(8, np.float32) if nstep else None)
        assert len(fields) == total
        np.testing.assert_array_equal(fields[n - 1], sampled * 100 + n - 1)
        assert (r[-1] is None) == (not nstep)
    if kind == "uniform":
        r = base.sample(8, False)
        assert len(r) == total + 1
        base.sample_into(8, True, np.zeros(8, np.int64), _outs(base, 8, False))
    nstep = base.gather_nstep(ids, 2, 0.5)
    assert len(nstep) == total + 1
    np.testing.assert_array_equal(nstep[n - 1], ids * 100 + n - 1)


@pytest.mark.parametrize("returns", [False, True], ids=["plain", "returns"])
@pytest.mark.parametrize("kind", KINDS)
def test_field_limit_one_past_is_a_value_error(kind, returns):
    n = MAX_FIELDS - (2 if returns else 0) + 1
    with pytest.raises(ValueError, match=rf"fields: at most {n - 1} fields are supported.*got {n}"):
        _make(kind, n, returns)
    core, base = _make(kind, n - 1, returns)  # still fine one below
    assert base.num_written_fields == n - 1


@pytest.mark.parametrize("returns", [False, True], ids=["plain", "returns"])
@pytest.mark.parametrize("kind", KINDS)
def test_field_limit_one_output_too_many_changes_nothing(kind, returns):
    n = MAX_FIELDS - (2 if returns else 0)
    core, base = _make(kind, n, returns)
    _fill(base, n)
    before = (base.rng_state(), base.total, base.size, base.episode_starts())
    outs = _outs(base, 4, False) + (np.zeros(4, np.int32),)  # 65 outputs
    with pytest.raises(ValueError, match="expected 64 field outputs, got 65"):
        if kind == "prioritized":
            core.sample_into(4, 0.4, np.zeros(4, np.int64), np.zeros(4, np.float32), outs)
        else:
            base.sample_into(4, True, np.zeros(4, np.int64), outs)
    with pytest.raises(ValueError, match="expected 64 field outputs, got 65"):
        base.sample_into_ex(4, True, False, 1, None, np.zeros(4, np.int64), outs, None)
    with pytest.raises(ValueError, match="expected .* field values, got"):
        base.extend(_rows(n, 2, 10) + (np.zeros(2, np.int32),))
    assert (base.rng_state(), base.total, base.size, base.episode_starts()) == before
