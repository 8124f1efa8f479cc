"""study.responses: durable appends, torn-tail repair, key → choice mapping, atomic session records."""
from __future__ import annotations

import json

import pytest

from percept.contracts import ContractError, InputError
from percept.contracts import responses as responses_c
from study import responses as log

TRIAL = dict(list_id=0, trial=3, block="main", kind="ranking", image_id="img:1", arch="conv",
             left_run="conv-mse-s0", left_loss="mse", right_run="conv-mae-s0", right_loss="mae",
             third_run="conv-ms_ssim-s0", third_loss="ms_ssim")


def _row(trial: int, kind: str = "triplet", key: str = "left") -> dict:
    t = dict(TRIAL, trial=trial, kind=kind, third_run="" if kind != "ranking" else TRIAL["third_run"],
             third_loss="" if kind != "ranking" else "ms_ssim")
    if kind == "ranking":
        key, choice = log.ranking_choice(t, ["3", "1"])
    else:
        choice = log.triplet_choice(t, key)
    return log.response_row(t, "P01", "1", key=key, choice=choice, rt=0.5, onset=1.0 + trial,
                            wallclock=f"2026-11-23T10:00:{trial:02d}.000+00:00", simulated=False)


def test_ranking_keys_map_through_screen_order():
    # Screen positions 1, 2, 3 show the slots left, third, right (the contract's RANKING_SCREEN_ORDER).
    key, choice = log.ranking_choice(TRIAL, ["3", "1"])
    assert key == "3,1"
    assert choice == "conv-mae-s0>conv-mse-s0>conv-ms_ssim-s0"
    assert log.ranking_choice(TRIAL, ["2", "3"])[1] == "conv-ms_ssim-s0>conv-mae-s0>conv-mse-s0"
    assert log.triplet_choice(TRIAL, "right") == "conv-mae-s0"
    with pytest.raises(ValueError, match="two different presses"):
        log.ranking_choice(TRIAL, ["1", "1"])


def test_log_appends_and_reads_back_through_the_contract(tmp_path):
    path = tmp_path / "P01-1.csv"
    with log.ResponseLog(path) as rlog:
        rlog.append(_row(0))
        rlog.append(_row(1, kind="ranking"))
    with log.ResponseLog(path) as rlog:  # reopening appends, never rewrites the header
        rlog.append(_row(2, key="right"))
    df = responses_c.read_responses(path)
    assert df["trial"].tolist() == [0, 1, 2]
    assert df["key"].tolist() == ["left", "3,1", "right"]
    assert df["choice"].tolist()[1] == "conv-mae-s0>conv-mse-s0>conv-ms_ssim-s0"
    assert path.read_text().count("participant,") == 1


def test_torn_last_line_is_cut_and_only_that_trial_is_lost(tmp_path):
    path = tmp_path / "P01-1.csv"
    with log.ResponseLog(path) as rlog:
        rlog.append(_row(0))
        rlog.append(_row(1))
    whole = path.read_bytes()
    path.write_bytes(whole[:-25])  # a crash in the middle of writing trial 1
    answered = log.read_answered(path)
    assert answered["trial"].tolist() == [0]
    with log.ResponseLog(path) as rlog:
        rlog.append(_row(1))
    assert path.read_bytes() == whole


def test_torn_header_and_bad_header(tmp_path):
    path = tmp_path / "P01-1.csv"
    path.write_text("participant,sess")
    assert log.read_answered(path).empty
    with log.ResponseLog(path) as rlog:
        rlog.append(_row(0))
    assert log.read_answered(path)["trial"].tolist() == [0]
    other = tmp_path / "P02-1.csv"
    other.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(ContractError, match="P02-1.csv: header"):
        log.read_answered(other)


def test_row_missing_a_column_is_refused(tmp_path):
    row = _row(0)
    del row["rt"]
    with log.ResponseLog(tmp_path / "P01-1.csv") as rlog, pytest.raises(ContractError, match="lacks rt"):
        rlog.append(row)


def test_record_written_atomically(tmp_path):
    path = tmp_path / "P01-1.json"
    log.write_record(path, {"participant": "P01", "session": "1", "simulated": False, "completed": False})
    log.write_record(path, {"participant": "P01", "session": "1", "simulated": False, "completed": True})
    assert json.loads(path.read_text())["completed"] is True
    assert log.existing_record(path)["participant"] == "P01"
    assert list(tmp_path.iterdir()) == [path]  # no temp files left behind
    assert log.now_iso()[-6] in "+-"  # the wallclock carries its UTC offset


def test_session_lock_refuses_a_second_holder(tmp_path):
    csv = tmp_path / "responses" / "P01-1.csv"
    with log.session_lock(csv):
        with pytest.raises(InputError, match="another `percept run` is using"):
            with log.session_lock(csv):
                pass
    with log.session_lock(csv):  # released on exit
        pass
