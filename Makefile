# Two commands do all the set-up: `make demo` and `make test` (each creates .venv first).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test venv browser clean

# Debian packages the tests need: headless Chromium renders the HTML report.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# constraints.txt pins torch==2.13.0 (the local CPU wheel) and the runtime versions tested
# together; without the pin pip would fetch a CUDA build of torch.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[all,dev]'
	touch $(STAMP)

venv: $(STAMP)

browser:
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium; }

demo: $(STAMP)
	$(BIN)/levit-bench models
	$(BIN)/levit-bench info
	$(BIN)/levit-bench export --model levit_128s
	$(BIN)/levit-bench sweep --platform xeon --models levit_128s --runtimes torch onnxruntime openvino
	$(BIN)/levit-bench results --platform xeon --model levit_128s
	$(BIN)/levit-bench report --platform xeon

# The browser test saves its screenshot under test-artifacts/.
test: $(STAMP) browser
	LEVIT_BENCH_ARTIFACTS=test-artifacts $(BIN)/python -m pytest

clean:
	rm -rf $(VENV) levit-bench-out test-artifacts .pytest_cache *.egg-info
