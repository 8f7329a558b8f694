"""Tagged moments are stored with who, which model at which batch, a note, later a replay file."""

from __future__ import annotations

import pytest

from engine.records.moments import MAX_NOTE_CHARS, Moments


def test_a_tagged_moment_is_stored_and_listed_per_version(tmp_path):
    moments = Moments(tmp_path)
    first = moments.tag(version="line_v1", batch=120, note="  into   the pond ", user="viewer42")
    moments.tag(version="line_v2", batch=5, note="water", user="mod", name="water")
    moments.set_replay(first.id, "replays/pond.mkv")
    [stored] = Moments(tmp_path).list(version="line_v1")
    assert (stored.user, stored.batch, stored.note) == ("viewer42", 120, "into the pond")
    assert stored.replay == "replays/pond.mkv"
    assert [m.name for m in moments.list()] == [None, "water"]


def test_a_long_note_is_cut_and_a_negative_batch_refused(tmp_path):
    moments = Moments(tmp_path)
    assert len(moments.tag(version="v", batch=0, note="x" * 5000, user="u").note) == MAX_NOTE_CHARS
    with pytest.raises(ValueError, match="batch must be >= 0, got -1"):
        moments.tag(version="v", batch=-1, note="", user="u")
