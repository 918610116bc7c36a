# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.zoolens-installed

.PHONY: demo test check install clean

# torch first, pinned to the CPU build on this machine's disk, so that pyproject's torch range
# is already met and no CUDA build is pulled; then the package with every extra.
TORCH := torch==2.13.0

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q '$(TORCH)'
	$(PY) -m pip install -q -e '.[all,test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/zoolens quickstart

# pytest's exit status is kept; the wall time is printed whatever it was.
test: $(STAMP)
	@start=$$(date +%s); $(PY) -m pytest -q; status=$$?; \
	echo "make test: $$(( $$(date +%s) - start )) s wall"; exit $$status

check: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) build *.egg-info
