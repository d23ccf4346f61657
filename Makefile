# Two commands on a fresh machine:  `make demo`  and  `make test`.
# Each creates .venv and installs what it needs first.
#
# torch: on a CPU machine `pip install torch==2.13.0` takes the local CPU wheel.
# GPU users: install your CUDA torch into .venv first (or set PYTHON to an
# environment that has it); an importable torch is never replaced.
PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE ?= 1
export PYTHONUNBUFFERED := 1
# Python caches compiled modules (this project's and the tests') even where the environment says not
# to: the suite starts a few hundred Python processes, and each would compile every module it imports.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: install demo test bench clean constraints

install: $(VENV)/.installed

# pip would compile the ~27,000 installed modules one at a time (75 s here); compileall uses every core.
# A few files are for other Python versions and do not compile (pip skips them too): not an error.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q --no-compile torch==$(TORCH_VERSION)
	$(PY) -m pip install -q --no-compile -e '.[dev]'
	$(PY) -m compileall -q -j 0 $$($(PY) -c "import sysconfig; print(sysconfig.get_path('purelib'))") > /dev/null || true
	touch $@

demo: install
	$(VENV)/bin/synthgen demo

# Four workers, each taking whole test files (module fixtures run once): most tests wait on real
# processes and servers, so four share two cores well (1049 tests: 14 min on a quiet 2-core machine;
# serially, session 7's 931 tests took 16 min).
test: install
	$(PY) -m pytest -q -n 4 --dist loadfile

bench: install
	$(PY) bench/bench_demo.py
	$(PY) bench/bench_throughput.py
	$(PY) bench/bench_generator.py
	$(PY) bench/bench_embedder.py
	$(PY) bench/bench_quality_sweep.py
	$(PY) bench/bench_real_guidance.py

# The Dockerfile's pins: what .venv holds once `make test` passed (torch and synthgen left out).
constraints: install
	{ echo "# The versions the test suite last passed with (\`make constraints\` writes this from .venv): the image"; \
	  echo "# installs synthgen's dependencies within them (Dockerfile), so a build resolves at once and runs what was tested."; \
	  echo "# torch is left out: the image takes the build for its hardware (TORCH_INDEX)."; \
	  $(PY) -m pip freeze --exclude-editable \
	    | grep -viE "^((torch|torchvision|torchaudio|triton|synthgen)([=<>~ ]|$$)|nvidia-)" \
	    | grep -v -e "^-e " -e " @ " | LC_ALL=C sort -f; } > constraints.txt

clean:
	rm -rf synthgen-data
