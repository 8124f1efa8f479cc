"""study.experiment without a window: list assignment, pilot ids, resume bookkeeping and refusals."""
from __future__ import annotations

import pytest

from percept.contracts import InputError
from study import responses as log
from study.design import DesignConfig, build_design
from study.experiment import RunConfig, Session, choose_list, layout, participant_id
from study.observers import simulate
from test_study_support import make_manifest


@pytest.fixture()
def design(tmp_path):
    return build_design(make_manifest(tmp_path, n_images=4), tmp_path, DesignConfig(lists=3, practice=1, seed=0))


def _record(design, pid, **kw):
    rec = {"participant": pid, "session": "1", "simulated": False, "completed": False, "list_id": 0, **kw}
    log.write_record(design.parent / "responses" / f"{pid}-1.json", rec)


def test_auto_list_rotates_over_human_sessions_only(design):
    df, rdir = Session(RunConfig(design=design, participant="A")).design, design.parent / "responses"
    assert choose_list(df, rdir, "auto", rdir / "A-1.csv") == 0
    _record(design, "H1")
    _record(design, "H2")
    simulate(design, 2, "random")  # simulated and pilot sessions do not count
    _record(design, "pilot-H3", pilot=True)
    assert choose_list(df, rdir, "auto", rdir / "A-1.csv") == 2
    assert choose_list(df, rdir, "auto", rdir / "H1-1.csv") == 1  # its own record is not counted
    assert choose_list(df, rdir, "1", rdir / "A-1.csv") == 1
    with pytest.raises(InputError, match="--list: 'x' is not 'auto' or a list number"):
        choose_list(df, rdir, "x", rdir / "A-1.csv")


def test_pilot_prefixes_the_participant_id():
    assert participant_id(RunConfig(design=None, participant="P01", pilot=True)) == "pilot-P01"
    assert participant_id(RunConfig(design=None, participant="P01")) == "P01"


def test_resume_state_and_refusals(design):
    trial0 = Session(RunConfig(design=design, participant="R1", list_choice="1")).trials.iloc[0]
    with log.ResponseLog(design.parent / "responses" / "R1-1.csv") as rlog:
        rlog.append(log.response_row(trial0, "R1", "1", key="left", choice=trial0["left_run"], rt=1.0, onset=2.0,
                                     wallclock=log.now_iso(), simulated=False))
    _record(design, "R1", list_id=1)
    s = Session(RunConfig(design=design, participant="R1"))
    assert s.list_id == 1 and s.n_done == 1 and s.remaining["trial"].iloc[0] == 1
    assert len(s.remaining) == len(s.trials) - 1
    with pytest.raises(InputError, match="was started with list 1"):
        Session(RunConfig(design=design, participant="R1", list_choice="2"))
    _record(design, "R1", list_id=1, completed=True)
    with pytest.raises(InputError, match="already complete; use a new --session"):
        Session(RunConfig(design=design, participant="R1"))
    assert Session(RunConfig(design=design, participant="R1", session="2")).n_done == 0  # a new session starts fresh
    simulate(design, 1, "random")
    with pytest.raises(InputError, match="belongs to a simulated observer"):
        Session(RunConfig(design=design, participant="sim01"))
    with pytest.raises(InputError, match="--scale: 0"):
        Session(RunConfig(design=design, participant="Z", scale=0))


def test_mixed_image_sizes_are_refused_before_the_window(design):
    from PIL import Image

    s = Session(RunConfig(design=design, participant="S1", list_choice="0"))
    assert s.image_px == 96
    Image.new("RGB", (64, 64)).save(design.parent / s.trials["left_path"].iloc[-1])
    with pytest.raises(InputError, match="image is 64×64 pixels, expected 96×96"):  # the design contract's check_png
        Session(RunConfig(design=design, participant="S1", list_choice="0"))


def test_layout_keeps_images_on_whole_pixels():
    for scale in (1, 2, 3):
        lay = layout(scale)
        assert lay["image"] == 96 * scale and lay["width"] % 2 == 0 and lay["height"] % 2 == 0
        assert lay["width"] >= 3 * lay["image"] + 2 * lay["gap"]
