# Two entry points: `make demo` and `make test`. Each creates .venv and installs what it needs when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean-venv

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) benchmarks/demo.py

test: $(STAMP)
	$(VENV)/bin/ruff check .
	HYPOTHESIS_PROFILE=ci $(PY) -m pytest -n 2 -q

# The maxent benchmark also compares the `maxentropy` package when it is there. It goes in with
# --no-deps: it declares the retired `sklearn` package, which no longer installs (scikit-learn
# comes with the dev extra), and needs `six`, which it does not declare. The sampling benchmark
# compares blackjax's NUTS when it is there (its dependencies, optax and absl-py, are small and
# leave jax as it is). A failure of either install is ignored.
bench: $(STAMP)
	-@$(PY) -c "import maxentropy" 2>/dev/null || $(PY) -m pip install --quiet --disable-pip-version-check --no-deps maxentropy==0.3.0 six
	-@$(PY) -c "import blackjax" 2>/dev/null || $(PY) -m pip install --quiet --disable-pip-version-check blackjax==1.7.1
	$(PY) benchmarks/run.py

clean-venv:
	rm -rf $(VENV)
