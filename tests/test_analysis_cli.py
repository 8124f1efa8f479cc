"""End to end: `percept analyze | classify | power | report` on contract files written in tmp_path."""
from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from percept import cli
from percept.contracts.codes import write_codes
from test_analysis_fakestudy import make_study

PERCEPT = Path(sys.executable).parent / "percept"


def _codes(exp: Path) -> None:
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1], 40)
    splits = np.where(np.arange(80) % 4 == 0, "test", "train")
    for run in ("fc-mse-s0", "fc-ms_ssim-s0"):
        codes = rng.normal(size=(80, 6)) + 2.0 * labels[:, None]
        write_codes(exp / "codes" / f"{run}.npz", codes, labels, [f"i{k}" for k in range(80)], splits)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """One study with triplets, rankings and catch trials, an experiment name needing escaping, then every command."""
    exp = tmp_path_factory.mktemp("q<i&")  # run and arch names are safe names; the folder name may be anything
    study = make_study(exp, n_images=8, archs=("fc", "conv"), pairs=(("ms_ssim", "mse"),), ranking=True,
                       n_participants=6, effect=0.8, sd_participant=0.3, sd_image=0.3, bad={5: "fast"})
    _codes(exp)
    assert cli.main(["analyze", "--study", str(study), "--boot", "50"]) == 0
    assert cli.main(["classify", "--codes", str(exp / "codes")]) == 0
    assert cli.main(["power", "--study", str(study), "--participants", "4,8", "--images", "6", "--sims", "20"]) == 0
    assert cli.main(["report", "--out", str(exp)]) == 0
    return exp


@pytest.mark.slow
def test_analyze_writes_every_table_and_a_summary(full_run):
    a = full_run / "analysis"
    for name in ("exclusions", "pairwise", "models", "per_image", "rankings", "friedman", "ranking_posthoc", "scale",
                 "agreement", "classification", "power"):
        assert (a / f"{name}.csv").is_file(), name
    summary = json.loads((a / "summary.json").read_text())
    assert summary["simulated"] is True
    assert summary["participants"] == {"total": 6, "included": 5,
                                       "excluded": [{"participant": "P05", "reasons": summary["participants"]["excluded"][0]["reasons"]}]}
    assert "faster than" in summary["participants"]["excluded"][0]["reasons"]
    assert summary["options"]["n_boot"] == 50 and "statsmodels" in summary["versions"]
    assert any("chose ms_ssim over mse" in line for line in summary["headline"])
    models = pd.read_csv(a / "models.csv")
    assert {"cluster_logit", "bayes_mixed_vb"} <= set(models["estimator"])
    pw = pd.read_csv(a / "pairwise.csv")
    assert set(pw["arch"]) == {"fc", "conv", "all"} and (pw.loc[pw["arch"] != "all", "n"] == 40).all()
    power = pd.read_csv(a / "power.csv")
    assert list(power["participants"]) == [4, 8] and (power["sims"] == 20).all()
    source = json.loads((a / "power.json").read_text())["setting"]["source"]
    # the SDs come from the mixed fit, the effect from the stated SESOI (default 0.60), never from the fit
    assert source.startswith("SDs and side bias from bayes_mixed_vb") and source.endswith("SESOI 0.6")
    for fig in ("preferences", "per_image", "ranks", "scale", "agreement", "classification", "power", "examples"):
        assert (a / "figures" / f"{fig}.png").stat().st_size > 1000, fig


@pytest.mark.slow
def test_report_is_self_contained_escaped_and_bannered(full_run):
    page = (full_run / "analysis" / "report.html").read_text()
    assert 'class="banner">SIMULATED DATA' in page
    assert "q&lt;i&amp;" in page and "q<i&" not in page
    assert not re.search(r'(src|href)="(?!data:)', page), "external resource in report"
    assert "<script" not in page and "http://" not in page and "https://" not in page
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) >= 8
    assert all(base64.b64decode(img)[:8] == b"\x89PNG\r\n\x1a\n" for img in images)
    for text in ("Which estimator gives which number", "cluster_logit", "bayes_mixed_vb", "Kendall",
                 "best on the metric it was trained on", "Methods and software", "Power", "Example triplets"):
        assert text.lower() in page.lower(), text


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["triplets", "rankings"])
def test_analyze_copes_with_one_trial_kind_and_drops_stale_outputs(tmp_path, kind):
    study = make_study(tmp_path, n_images=6, archs=("fc",), ranking=True, triplets=True, n_participants=4)
    assert cli.main(["analyze", "--study", str(study), "--boot", "10", "--no-bayes"]) == 0
    figs = tmp_path / "analysis" / "figures"
    assert (figs / "ranks.png").is_file() and (figs / "preferences.png").is_file()
    only = make_study(tmp_path, n_images=6, archs=("fc",), ranking=kind == "rankings", triplets=kind == "triplets",
                      n_participants=4)
    for p in (only / "responses").glob("P*"):
        if int(p.stem[1:3]) >= 4:
            p.unlink()
    assert cli.main(["analyze", "--study", str(only), "--boot", "10", "--no-bayes"]) == 0
    a = tmp_path / "analysis"
    if kind == "triplets":
        assert not (figs / "ranks.png").exists() and pd.read_csv(a / "rankings.csv").empty
        assert len(pd.read_csv(a / "pairwise.csv")) == 1
    else:
        assert not (figs / "preferences.png").exists() and pd.read_csv(a / "pairwise.csv").empty
        assert len(pd.read_csv(a / "friedman.csv")) == 1
    assert cli.main(["report", "--out", str(tmp_path)]) == 0
    page = (a / "report.html").read_text()
    assert ("no ranking trials" in page) == (kind == "triplets")
    assert ("no triplet trials" in page) == (kind == "rankings")


def test_errors_are_one_line_with_exit_code_2(tmp_path, capsys):
    assert cli.main(["analyze", "--study", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("percept analyze: error:") and "study folder not found" in err and err.count("\n") == 1
    assert cli.main(["report", "--out", str(tmp_path)]) == 2
    assert "run `percept analyze" in capsys.readouterr().err
    assert cli.main(["classify", "--codes", str(tmp_path)]) == 2
    assert "no codes files" in capsys.readouterr().err


def test_bad_list_argument_is_one_line(tmp_path, capsys):
    # Usage errors are one line and exit code 2 like every other expected failure (no usage dump, no SystemExit).
    assert cli.main(["power", "--study", str(tmp_path), "--participants", "ten"]) == 2
    err = capsys.readouterr().err
    assert "--participants: 'ten' is not a comma-separated list of integers" in err and err.count("\n") == 1


@pytest.mark.slow
def test_console_script_runs_analyze(tmp_path):
    study = make_study(tmp_path, n_images=4, archs=("fc",), n_participants=3)
    exe = [str(PERCEPT)] if PERCEPT.exists() else [sys.executable, "-m", "percept"]
    proc = subprocess.run(exe + ["analyze", "--study", str(study), "--no-bayes", "--boot", "0"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "analyze: wrote" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "analysis", "report", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "analysis" / "report.html").is_file()


def test_config_table_sets_defaults_and_flags_override(tmp_path, capsys):
    study = make_study(tmp_path, n_images=4, archs=("fc",), n_participants=3)
    cfg = tmp_path / "analysis.toml"
    cfg.write_text(f'[analyze]\nstudy = "{study}"\nboot = 0\nbayes = false\ncatch-threshold = 0.5\n')
    assert cli.main(["analyze", "--config", str(cfg), "--seed", "3"]) == 0
    summary = json.loads((tmp_path / "analysis" / "summary.json").read_text())
    assert summary["options"]["n_boot"] == 0 and summary["options"]["bayes"] is False
    assert summary["options"]["rules"]["catch_threshold"] == 0.5 and summary["options"]["seed"] == 3
    assert cli.main(["analyze", "--config", str(cfg), "--boot", "5"]) == 0
    assert json.loads((tmp_path / "analysis" / "summary.json").read_text())["options"]["n_boot"] == 5
    cfg.write_text("[analyze]\nbootstrap = 5\n")
    assert cli.main(["analyze", "--config", str(cfg)]) == 2
    assert "unknown key(s) bootstrap" in capsys.readouterr().err


def test_report_of_human_data_has_no_simulation_banner(tmp_path):
    study = make_study(tmp_path, n_images=4, archs=("fc",), n_participants=3, simulated=0)
    assert cli.main(["analyze", "--study", str(study), "--no-bayes", "--boot", "0"]) == 0
    assert cli.main(["report", "--out", str(tmp_path)]) == 0
    page = (tmp_path / "analysis" / "report.html").read_text()
    assert 'class="banner"' not in page and "[simulated observers]" not in page
    assert json.loads((tmp_path / "analysis" / "summary.json").read_text())["simulated"] is False
