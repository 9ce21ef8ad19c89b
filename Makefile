# Every target builds .venv first; nothing needs installing by hand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: venv demo test bench lint translations clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(BIN)/newsletter demo

# Tests run in PYTEST_WORKERS processes (pytest-xdist); each claims its own Redis database
# and PostgreSQL database, so they never touch each other. PYTEST_WORKERS=0 runs them in one.
PYTEST_WORKERS ?= 2

test: venv
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

bench: venv
	$(BIN)/python bench/signup.py
	$(BIN)/python bench/digest.py

translations: venv
	bash scripts/translations.sh

clean:
	rm -rf $(VENV) instance .pytest_cache
