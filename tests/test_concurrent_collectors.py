"""Configuration claims: how collectors writing one dataset at once share a grid (the
three-process test is in test_faults.py)."""

from __future__ import annotations

from perfscope.store_locks import Claim, ConfigClaims


def test_a_configuration_claimed_elsewhere_is_busy_then_done(tmp_path):
    mine, theirs = ConfigClaims(tmp_path, "cpu-x"), ConfigClaims(tmp_path, "cpu-x")
    claim = mine.claim("ab12")
    assert isinstance(claim, Claim)
    assert theirs.claim("ab12") == ConfigClaims.BUSY
    assert theirs.claim("ab99") == ConfigClaims.BUSY  # same slot (first two hex digits)
    claim.release(done=True)
    assert theirs.claim("ab12") == ConfigClaims.DONE
    dropped = theirs.claim("cd34")
    dropped.release(done=False)  # not stored (the measurement failed): free for anyone
    assert isinstance(again := mine.claim("cd34"), Claim)
    again.release(done=False)


def test_what_was_recorded_before_a_sweep_started_is_not_counted_as_done(tmp_path):
    first = ConfigClaims(tmp_path, "cpu-x")
    first.claim("ab12").release(done=True)
    later = ConfigClaims(tmp_path, "cpu-x")  # a later sweep judges old rows from the data itself
    claim = later.claim("ab12")
    assert isinstance(claim, Claim)
    claim.release(done=False)
