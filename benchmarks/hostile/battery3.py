import os, shutil, subprocess, sys
from pathlib import Path
sys.path.insert(0, os.environ.get("WT", str(Path(__file__).resolve().parents[2])) + "/tests")
from test_study_support import make_manifest
from test_safety import human_file, snapshot
from study.design import DesignConfig, build_design
from study.observers import simulate
ENV = {**os.environ, "PYTHONPATH": os.environ.get("WT", str(Path(__file__).resolve().parents[2])), "OMP_NUM_THREADS": "1"}
root = Path(sys.argv[1]); shutil.rmtree(root, ignore_errors=True); root.mkdir()
mnt = root / "mnt"; mnt.mkdir()
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], check=True)
try:
    exp = mnt / "exp"
    m = make_manifest(exp, n_images=4)
    build_design(m, exp, DesignConfig(lists=1, practice=1, catch=0.0, seed=1))
    simulate(exp / "study" / "design.csv", 3, observer="mse", seed=0)
    human_file(exp / "study")
    subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
    before = snapshot(exp)
    S, D, M = str(exp / "study"), str(exp / "study" / "design.csv"), str(m)
    for name, args in {"analyze": ["analyze", "--study", S, "--no-bayes", "--boot", "0"],
                       "simulate": ["simulate", "--design", D, "--participants", "2"],
                       "design --overwrite": ["design", "--manifest", M, "--out", str(exp), "--overwrite"],
                       "reconstruct --overwrite": ["reconstruct", "--out", str(exp), "--overwrite"],
                       "report": ["report", "--out", str(exp)]}.items():
        r = subprocess.run([sys.executable, "-m", "percept", *args], env=ENV, capture_output=True, text=True)
        lines = [l for l in r.stderr.splitlines() if l.strip()]
        print(f"RO  {name}: rc={r.returncode} lines={len(lines)} tb={'Traceback' in r.stderr} same={snapshot(exp) == before} :: {lines[-1] if lines else ''}")
finally:
    subprocess.run(["umount", "-l", str(mnt)])
