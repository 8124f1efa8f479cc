"""Careless/hostile inputs against the safety layer through the `percept` CLI; one row per try."""
import hashlib, json, os, shutil, subprocess, sys, time, textwrap
from pathlib import Path
sys.path.insert(0, os.environ.get("WT", str(Path(__file__).resolve().parents[2])) + "/tests")
from test_study_support import make_manifest
from test_safety import human_file, snapshot
from study.design import DesignConfig, build_design
from study.observers import simulate

ENV = {**os.environ, "PYTHONPATH": os.environ.get("WT", str(Path(__file__).resolve().parents[2])), "OMP_NUM_THREADS": "1"}
root = Path(sys.argv[1]); shutil.rmtree(root, ignore_errors=True); root.mkdir()
exp = root / "exp"
m = make_manifest(exp, n_images=4)
build_design(m, exp, DesignConfig(lists=1, practice=1, catch=0.0, seed=1))
simulate(exp / "study" / "design.csv", 3, observer="mse", seed=0)
person = human_file(exp / "study")
person_bytes = person.read_bytes()
rows = []

def humans_ok():
    found = [p for p in exp.rglob("P01-1.csv")]
    return any(p.read_bytes() == person_bytes for p in found)

def tryit(name, args, expect_change=False, env=None):
    before = snapshot(exp)
    r = subprocess.run([sys.executable, "-m", "percept", *args], env=env or ENV, capture_output=True, text=True, timeout=300)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    tb = "Traceback" in r.stderr
    same = snapshot(exp) == before
    rows.append((name, r.returncode, len(lines), tb, same, humans_ok(), (lines[-1] if lines else r.stdout.strip().splitlines()[-1:])))

S = str(exp / "study"); D = str(exp / "study" / "design.csv"); M = str(m)
tryit("design over responses", ["design", "--manifest", M, "--out", str(exp)])
tryit("design, other settings, over responses", ["design", "--manifest", M, "--out", str(exp), "--lists", "2", "--seed", "9"])
tryit("reconstruct over a used manifest", ["reconstruct", "--out", str(exp)])
tryit("reconstruct --n 1 over a used manifest", ["reconstruct", "--out", str(exp), "--n", "1"])
(exp / "models" / "conv-mse-s0").mkdir(parents=True); (exp / "models" / "conv-mse-s0" / "config.json").write_text("{}")
tryit("train --overwrite of a run the design shows", ["train", "--data", "photos", "--arch", "conv", "--loss", "mse", "--out", str(exp), "--overwrite", "--epochs", "1"])
shutil.rmtree(exp / "models")
(exp / "demo.json").write_text(json.dumps({"config": {}, "done": []}))
tryit("demo, settings changed, over people's responses", ["demo", "--out", str(exp), "--epochs", "1"])
tryit("demo --fresh over people's responses", ["demo", "--out", str(exp), "--fresh"])
(exp / "demo.json").unlink()
tryit("demo over a foreign folder", ["demo", "--out", str(exp)])
# a leftover swap folder holding the only copy of a person's file
(exp / ".study.swap-77").mkdir(); shutil.copytree(exp / "study" / "responses", exp / ".study.swap-77" / "responses")
(exp / ".study.swap-77" / "responses" / "P02-1.csv").write_bytes(person_bytes.replace(b"P01", b"P02"))
tryit("simulate with a crashed run's leftover holding a person's file", ["simulate", "--design", D, "--participants", "2", "--observer", "random"])
p2 = list(exp.rglob("P02-1.csv")); rows.append(("  ...P02 rescued to", 0, 0, False, True, True, [str(p.relative_to(exp)) for p in p2]))
# lock held by another writer
holder = subprocess.Popen([sys.executable, "-c", f"from percept.contracts.staging import stage_lock\nimport time\nwith stage_lock({S!r}, 'percept simulate --x'):\n print('h', flush=True); time.sleep(60)"], env=ENV, stdout=subprocess.PIPE, text=True)
holder.stdout.readline()
tryit("simulate while another simulate writes", ["simulate", "--design", D, "--participants", "2"])
tryit("design --overwrite while simulate writes", ["design", "--manifest", M, "--out", str(exp), "--overwrite"])
holder.kill(); holder.wait()
ah = subprocess.Popen([sys.executable, "-c", f"from percept.contracts.staging import stage_lock\nimport time\nwith stage_lock({str(exp / 'analysis')!r}, 'percept analyze --y'):\n print('h', flush=True); time.sleep(60)"], env=ENV, stdout=subprocess.PIPE, text=True)
ah.stdout.readline()
tryit("analyze while another analyze writes", ["analyze", "--study", S, "--no-bayes", "--boot", "0"])
tryit("power while analyze writes", ["power", "--study", S, "--participants", "4", "--images", "4", "--sims", "5", "--effect", "0.5", "--sd-participant", "0.1", "--sd-image", "0.1"])
tryit("report while analyze writes", ["report", "--out", str(exp)])
ah.kill(); ah.wait()
(exp / "analysis").write_text("notes")
tryit("analyze where analysis/ is a file", ["analyze", "--study", S, "--no-bayes", "--boot", "0"])
(exp / "analysis").unlink()
(exp / ".analysis.lock").unlink(missing_ok=True); os.mkdir(exp / ".analysis.lock")
tryit("analyze with a folder where its lock file goes", ["analyze", "--study", S, "--no-bayes", "--boot", "0"])
os.rmdir(exp / ".analysis.lock")
tryit("design --overwrite (allowed: people's files archived)", ["design", "--manifest", M, "--out", str(exp), "--overwrite"])
for r in rows:
    print(" | ".join(str(x) for x in r))
