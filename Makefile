# tinycl — the two set-up commands (`make demo`, `make test`) work on a fresh Debian 12 machine
# with Python 3.11: each creates .venv and installs what it needs; both are safe to run again.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DATA   ?= $(or $(TINYCL_DATA),../shared/data)
SEEDS  ?= 5

.PHONY: demo test bench experiment train-frozen system-deps clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

# The main job: the TinyNDC graph (5 processes over DDS) on MNIST, scored against the in-process run.
demo: $(STAMP)
	TINYCL_DATA=$(DATA) $(PY) -m tinycl_nodes.cli demo --out results/demo.json

# The full experiment of the paper (5 seeds, sweep, every head): results/tinyndc.{json,png}
experiment: $(STAMP)
	$(PY) -m tinycl_nodes.cli experiment tinyndc --data $(DATA) --seeds $(SEEDS) --out results/tinyndc.json

# Debian packages the tests need (Cyclone DDS C library + idlc for the interop check); idempotent.
system-deps:
	@bash tools/install-deps.sh

test: $(STAMP) system-deps
	TINYCL_DATA=$(DATA) $(PY) -m pytest

bench: $(STAMP)
	$(PY) -m tinycl_nodes.cli bench --data $(DATA) --out results/bench.json

# Re-train the frozen extractor (needs the optional PyTorch extra; CPU is enough).
train-frozen: $(STAMP)
	$(PY) -m pip install -q -e '.[train]'
	$(PY) -m tinycl_nodes.training.train_frozen --data $(DATA)

clean:
	rm -rf $(VENV) results build install log *.egg-info
