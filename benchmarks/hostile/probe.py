"""Hostile/careless inputs through the commands: count one-line errors, accepted inputs and tracebacks.

Usage: .venv/bin/python benchmarks/hostile/probe.py [WORKDIR]   (prints one line per input, then the counts)
"""
import json, os, shutil, subprocess, sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from test_study_support import make_manifest
from test_analysis_fakestudy import make_study

root = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/percept-probe"); shutil.rmtree(root, ignore_errors=True); root.mkdir(parents=True)
env = dict(os.environ, OMP_NUM_THREADS="1")
def run(*argv):
    p = subprocess.run([sys.executable, "-m", "percept", *map(str, argv)], capture_output=True, text=True, env=env)
    return p
results = []
def case(name, setup, argv):
    setup()
    p = run(*argv)
    lines = p.stderr.strip().splitlines()
    kind = ("traceback" if "Traceback" in p.stderr else "one-line" if p.returncode == 2 and len(lines) == 1
            else f"rc={p.returncode} lines={len(lines)}")
    results.append((name, kind, (lines[-1] if lines else "")[:160]))

exp = root / "s"; make_manifest(exp, n_images=4)
assert run("design", "--out", exp).returncode == 0
dj = exp / "study" / "design.json"; good = dj.read_text()
def put(path, text): return lambda: Path(path).write_text(text)
meta = json.loads(good)
for key in list(meta)[:8]:
    bad = dict(meta); bad[key] = [1, {"x": None}]
    case(f"design.json {key}=list", put(dj, json.dumps(bad)), ["simulate", "--out", exp, "--participants", "1"])
case("design.json truncated", put(dj, good[: len(good) // 2]), ["simulate", "--out", exp, "--participants", "1"])
case("design.json empty", put(dj, ""), ["simulate", "--out", exp, "--participants", "1"])
dj.write_text(good)
an = root / "a"; make_study(an, n_images=4, archs=("fc",), n_participants=3)
assert run("analyze", "--out", an, "--boot", "0", "--no-bayes").returncode == 0
sj = an / "analysis" / "summary.json"; sgood = sj.read_text(); s = json.loads(sgood)
for key in list(s):
    for val in (5, "x", None):
        bad = dict(s); bad[key] = val
        case(f"summary.json {key}={val!r}", put(sj, json.dumps(bad)), ["report", "--out", an])
sj.write_text(sgood)
codes = root / "c" / "codes"; codes.mkdir(parents=True)
for name, data in (("empty", b""), ("garbage", b"\x00" * 100), ("pk-header", b"PK\x03\x04" + b"\x00" * 60)):
    case(f"codes npz {name}", lambda d=data: (codes / "fc-mse-s0.npz").write_bytes(d), ["classify", "--out", codes.parent])
for name, text in (("bool-for-int", "[train]\nepochs = true\n"), ("array-for-str", "[train]\narch = [1]\n"),
                   ("table-for-float", "[train]\nlr = {a = 1}\n"), ("binary", "\x00\x01"), ("unknown-table", "[foo]\n")):
    cfg = root / "cfg.toml"
    case(f"toml {name}", lambda t=text: cfg.write_text(t), ["train", "--config", cfg])
for name, argv in (("nan lr", ["train", "--lr", "nan", "--out", root / "t"]), ("neg n", ["reconstruct", "--out", root, "--n", "-3"]),
                   ("empty kinds", ["design", "--out", exp, "--kinds", ","]), ("pairs a:a", ["design", "--out", exp, "--pairs", "mse:mse"]),
                   ("size 0x0", ["run", "--out", exp, "--participant", "P", "--size", "0x0"]),
                   ("participants 0", ["simulate", "--out", exp, "--participants", "0"]),
                   ("alpha 2", ["power", "--out", an, "--alpha", "2"]), ("C -1", ["classify", "--out", an, "--C", "-1"])):
    case(f"flag {name}", lambda: None, argv)
for r in results: print(f"{r[1]:<12} {r[0]:<40} {r[2]}")
from collections import Counter; print(Counter(r[1] for r in results))
