# The two commands of the README: `make demo` and `make test`. Each sets itself up first.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEBS := xvfb xauth xdotool libjack-jackd2-0 libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 libgl1 libglu1-mesa libegl1 libxkbcommon-x11-0 libasound2 libportaudio2 libsndfile1 fonts-dejavu-core chromium r-base-core r-cran-lme4 r-cran-ordinal postgresql
XVFB := xvfb-run -a -s "-screen 0 1280x800x24"
OUT ?= runs/demo
JSPSYCH := study/online/node_modules/.package-lock.json

.PHONY: demo test setup debs clean-demo bench

setup: debs $(STAMP) $(JSPSYCH)

# Debian packages the GUI tests and PsychoPy need, R with lme4 and ordinal for the mixed-model cross-checks, and
# PostgreSQL for the online server's tests (a throw-away cluster per run), Chromium for the online client's tests;
# installed only when root and only if missing.
debs:
	@missing=$$(for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages: $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "warning: missing Debian packages (run as root or install them): $$missing" >&2; fi; \
	fi

$(VENV)/bin/python:
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip

# torch/torchvision resolve to the releases on this machine's disk through pip's constraint file. The venv takes
# about 7.5 GB (torch's CUDA build alone 5.5 GB): say so in one line before pip fails halfway with ENOSPC.
MIN_FREE_GB ?= 8
$(STAMP): pyproject.toml | $(VENV)/bin/python
	@free=$$(df -Pk $(VENV) | awk 'NR==2 {print int($$4/1048576)}'); \
	if [ "$$free" -lt $(MIN_FREE_GB) ] && ! ls -d $(VENV)/lib/python3*/site-packages/torch >/dev/null 2>&1; then \
	  echo "make: installing needs about $(MIN_FREE_GB) GB free for $(VENV) but $$(df -P $(VENV) | awk 'NR==2 {print $$6}') has $$free GB; free some space (or set MIN_FREE_GB=0 to try anyway)" >&2; \
	  exit 1; \
	fi
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $(STAMP)

# The online study's browser client (jsPsych 8, pinned by study/online/package-lock.json), served under
# /vendor/jspsych/ by `percept serve`; reinstalled only when the lock file changes.
$(JSPSYCH): study/online/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
	  echo "installing the online study's browser client: npm ci in study/online"; \
	  cd study/online && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.package-lock.json; \
	else \
	  echo "warning: node/npm not found: the online study's browser client (jsPsych) is NOT installed, so 'percept serve'" >&2; \
	  echo "         cannot serve it and tests/test_online_browser.py is skipped; install Node.js with npm and run 'make setup'" >&2; \
	fi

demo: setup
	$(VENV)/bin/percept demo --out $(OUT)

test: setup
	$(XVFB) $(PY) -m pytest -q -ra

bench: setup
	$(PY) benchmarks/losses.py
