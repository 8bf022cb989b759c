"""`search trials --limit N [--newest]`: a page of a large study's trials instead of all of them."""
from __future__ import annotations

import json

import pytest

from search.cli import main


def _study(url: str) -> None:
    from storage import open_storage

    with open_storage(url) as st:
        sid = st.create_study("many", metrics=["loss"], directions=["minimize"], spec={"name": "many"}).id
        for i in range(7):
            t = st.create_trial(sid, {"x": i})
            st.finish_trial(t.id, 0, state="COMPLETE" if i % 2 == 0 else "PRUNED", values=[float(i)] if i % 2 == 0
                            else None, metrics={"loss": float(i)}, last_step=3)


def _numbers(capsys, argv) -> list[int]:
    assert main(argv) == 0
    return [t["number"] for t in json.loads(capsys.readouterr().out)]


def test_limit_takes_the_first_or_the_newest_trials_in_number_order(sqlite_url, capsys):
    _study(sqlite_url)
    base = ["trials", "many", "--storage", sqlite_url, "--json"]
    assert _numbers(capsys, base) == list(range(7))
    assert _numbers(capsys, base + ["--limit", "3"]) == [0, 1, 2]
    assert _numbers(capsys, base + ["--limit", "3", "--newest"]) == [4, 5, 6]
    assert _numbers(capsys, base + ["--limit", "2", "--newest", "--state", "pruned"]) == [3, 5]
    assert main(["trials", "many", "--storage", sqlite_url, "--limit", "2", "--newest"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[1].split()[0] == "5" and "(pruned at step 3)" in lines[1]


@pytest.mark.parametrize("bad", ["0", "-1", "x"])
def test_limit_must_be_positive(sqlite_url, capsys, bad):
    _study(sqlite_url)
    with pytest.raises(SystemExit) as exc:
        main(["trials", "many", "--storage", sqlite_url, "--limit", bad])
    assert exc.value.code == 2 and "expected a whole number >= 1" in capsys.readouterr().err
