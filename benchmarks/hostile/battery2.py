"""Disk full (tmpfs) and SIGKILL through the CLI for commands the tests do not kill."""
import os, random, shutil, signal, subprocess, sys, time
from pathlib import Path
sys.path.insert(0, os.environ.get("WT", str(Path(__file__).resolve().parents[2])) + "/tests")
from test_study_support import make_manifest
from test_safety import human_file, snapshot, save, restore
from study.design import DesignConfig, build_design
from study.observers import simulate
from percept.contracts.staging import recover
ENV = {**os.environ, "PYTHONPATH": os.environ.get("WT", str(Path(__file__).resolve().parents[2])), "OMP_NUM_THREADS": "1"}
root = Path(sys.argv[1]); shutil.rmtree(root, ignore_errors=True); root.mkdir()
mnt = root / "mnt"; mnt.mkdir()
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], check=True)
try:
    exp = mnt / "exp"
    m = make_manifest(exp, n_images=4)
    build_design(m, exp, DesignConfig(lists=1, practice=1, catch=0.0, seed=1))
    simulate(exp / "study" / "design.csv", 3, observer="mse", seed=0)
    human_file(exp / "study")
    subprocess.run([sys.executable, "-m", "percept", "analyze", "--study", str(exp / "study"), "--no-bayes", "--boot", "0"], env=ENV, check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "percept", "report", "--out", str(exp)], env=ENV, check=True, capture_output=True)
    S, D, M = str(exp / "study"), str(exp / "study" / "design.csv"), str(m)
    cmds = {"analyze": ["analyze", "--study", S, "--no-bayes", "--boot", "0", "--seed", "3"],
            "report": ["report", "--out", str(exp)],
            "design --overwrite": ["design", "--manifest", M, "--out", str(exp), "--overwrite", "--seed", "5"],
            "simulate": ["simulate", "--design", D, "--participants", "30", "--observer", "random"],
            "power": ["power", "--study", S, "--participants", "4,8", "--images", "4", "--sims", "5"]}
    saved = save(exp)
    for name, args in cmds.items():
        restore(exp, saved); before = snapshot(exp)
        free = shutil.disk_usage(mnt).free
        (mnt / "filler").write_bytes(b"\0" * max(0, free - 8 * 1024))
        r = subprocess.run([sys.executable, "-m", "percept", *args], env=ENV, capture_output=True, text=True)
        (mnt / "filler").unlink()
        lines = [l for l in r.stderr.splitlines() if l.strip()]
        print(f"FULL  {name}: rc={r.returncode} lines={len(lines)} tb={'Traceback' in r.stderr} same={snapshot(exp) == before} :: {lines[-1] if lines else ''}")
    rng = random.Random(1)
    for name, args in cmds.items():
        restore(exp, saved); before = snapshot(exp)
        t0 = time.monotonic(); subprocess.run([sys.executable, "-m", "percept", *args], env=ENV, capture_output=True); span = time.monotonic() - t0
        after = snapshot(exp)
        res = []
        for k in range(3):
            restore(exp, saved)
            p = subprocess.Popen([sys.executable, "-m", "percept", *args], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.5, 1.0) * span); p.send_signal(signal.SIGKILL); p.wait()
            now = snapshot(exp)
            if now == before: res.append("old")
            elif now == after: res.append("new")
            else:
                # timestamps differ between runs: compare file sets and check P01 intact
                diff_names = set(now) ^ set(after)
                p01 = sorted(h for k2, h in now.items() if k2.endswith("P01-1.csv")) == sorted(h for k2, h in before.items() if k2.endswith("P01-1.csv"))
                res.append(f"other(names_differ={len(diff_names)},P01_ok={p01})")
        print(f"KILL  {name}: {res}")
finally:
    subprocess.run(["umount", "-l", str(mnt)])
