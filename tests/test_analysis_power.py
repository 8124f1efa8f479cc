"""Power from a stated smallest effect, simulated on the design's real lists and sides."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from analysis import power as pw
from percept import cli
from percept.contracts.design import read_design
from test_analysis_fakestudy import make_design, make_manifest, make_study


def test_effect_for_proportion_inverts_the_marginal_probability():
    for sesoi, sdp, sdi in ((0.6, 0.5, 0.7), (0.75, 1.0, 0.0), (0.4, 0.3, 0.3)):
        beta = pw.effect_for_proportion(sesoi, sdp, sdi)
        assert pw.marginal_proportion(beta, np.hypot(sdp, sdi)) == pytest.approx(sesoi, abs=1e-9)
        # random intercepts attenuate the population-averaged effect, so β is further from 0 than logit(sesoi)
        assert abs(beta) >= abs(np.log(sesoi / (1 - sesoi))) - 1e-12
    assert pw.effect_for_proportion(0.6, 0.0, 0.0) == pytest.approx(np.log(1.5))
    # the marginal probability agrees with a brute-force Monte Carlo average
    z = np.random.default_rng(0).normal(size=400_000)
    assert pw.marginal_proportion(0.8, 1.2) == pytest.approx(np.mean(1 / (1 + np.exp(-(0.8 + 1.2 * z)))), abs=2e-3)
    with pytest.raises(Exception, match="--sesoi"):
        pw.effect_for_proportion(1.2, 0.5, 0.5)


@pytest.fixture
def design(tmp_path):
    man = make_manifest(tmp_path, 10, archs=("fc",), pngs=False)
    return read_design(make_design(tmp_path, man, pairs=(("ms_ssim", "mse"),), catch=0, practice=0, repeats=2))


def test_design_trials_keep_the_real_sides_and_lists(design):
    t = pw.design_trials(design, "fc", "ms_ssim:mse")
    rows = design[design["kind"] == "triplet"]
    assert len(t) == len(rows) == 20
    assert (t["side"] == np.where(rows["left_loss"] == "ms_ssim", 1.0, -1.0)).all()
    with pytest.raises(Exception, match="no main triplets for arch=conv"):
        pw.design_trials(design, "conv", "ms_ssim:mse")


def test_simulated_participants_answer_list_k_mod_L(design):
    two = pd.concat([design.assign(list_id=0), design.assign(list_id=1, left_loss=design["right_loss"],
                                                             right_loss=design["left_loss"])], ignore_index=True)
    t = pw.design_trials(two, "fc", "ms_ssim:mse")
    sim = pw.simulate_design(t, 3, pw.PowerSetting(0.0, 0.0, 0.0), np.random.default_rng(0))
    sides = sim.groupby("participant")["side"].apply(list)
    assert sides[0] == list(t.loc[t["list_id"] == 0, "side"]) and sides[1] == list(t.loc[t["list_id"] == 1, "side"])
    assert sides[2] == sides[0] and len(sim) == 3 * 20


def test_known_effect_is_detected_and_the_null_holds_its_level(design):
    setting = pw.PowerSetting(pw.effect_for_proportion(0.75, 0.3, 0.3), 0.3, 0.3, sesoi=0.75)
    strong = pw.design_power(design, "fc", "ms_ssim:mse", [30], setting, sims=40, family_size=3, seed=1).iloc[0]
    assert strong["power"] >= 0.85 and strong["power_holm_first"] <= strong["power"]
    assert strong["images"] == 10 and strong["trials"] == 30 * 20 and strong["sesoi"] == 0.75
    null = pw.design_power(design, "fc", "ms_ssim:mse", [20], pw.PowerSetting(0.0, 0.3, 0.3), sims=120, seed=2).iloc[0]
    assert null["power"] <= 0.12  # nominal 5%; Monte Carlo SD ~2 points


def test_power_command_needs_no_responses_when_the_sds_are_given(tmp_path):
    folder = make_study(tmp_path, n_images=6, archs=("fc",), n_participants=2)
    for p in (folder / "responses").iterdir():
        p.unlink()
    assert cli.main(["power", "--study", str(folder), "--participants", "4,8", "--sims", "10", "--sd-participant",
                     "0.5", "--sd-image", "0.7", "--sesoi", "0.65"]) == 0
    a = tmp_path / "analysis"
    table = pd.read_csv(a / "power.csv")
    assert list(table["participants"]) == [4, 8] and set(table["pair"]) == {"ms_ssim:mse"}
    assert (table["design"] == "real lists and sides of design.csv").all() and (table["sesoi"] == 0.65).all()
    setting = json.loads((a / "power.json").read_text())["setting"]
    assert setting["effect"] == pytest.approx(pw.effect_for_proportion(0.65, 0.5, 0.7))
    assert cli.main(["power", "--study", str(folder), "--participants", "4", "--sd-participant", "0.5",
                     "--sd-image", "0.7", "--sesoi", "0.6", "--effect", "0.4"]) == 2
