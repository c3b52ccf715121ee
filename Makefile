# catalogue-purge: `make demo` runs the job on a generated sample, `make test` runs the tests.
PYTHON ?= python3
# uv is run as a module of the Python it was installed into, so PATH does not matter.
UV ?= $(PYTHON) -m uv
RUN = $(UV) run --frozen

.PHONY: setup demo test lint typecheck bench requirements package-check clean

.venv/.synced: pyproject.toml uv.lock
	$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	$(UV) sync --frozen
	touch $@

setup: .venv/.synced

demo: setup
	$(RUN) catalogue-purge generate --out build/demo/snapshot --rows 200000 --files 2
	$(RUN) catalogue-purge run --local --snapshot build/demo/snapshot \
		--policy policies/crypto-mining-2021.yaml --as-of 2021-10-08 --out build/demo/run

test: setup
	$(RUN) ruff check .
	$(RUN) mypy
	$(RUN) pytest -q

lint: setup
	$(RUN) ruff check .

typecheck: setup
	$(RUN) mypy

bench: setup
	$(RUN) python bench/sweep.py

# The image's requirements, from uv.lock (a test checks they agree).
requirements: setup
	$(UV) export --frozen --no-dev --no-emit-project --format requirements-txt \
		-o deploy/requirements.txt --quiet

# What the image installs, measured against Lambda's limits.
package-check: setup
	$(RUN) python deploy/check_package.py

clean:
	rm -rf build .pytest_cache .ruff_cache .mypy_cache
