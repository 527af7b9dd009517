# Two commands do all the set-up: `make demo` and `make test` (each creates .venv first).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test venv clean

# constraints.txt pins torch==2.13.0 (the local CPU wheel) and the runtime versions tested
# together; without the pin pip would fetch a CUDA build of torch.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[all,dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/levit-bench models
	$(BIN)/levit-bench info
	$(BIN)/levit-bench export --model levit_128s
	$(BIN)/levit-bench sweep --platform xeon --models levit_128s --runtimes torch onnxruntime openvino
	$(BIN)/levit-bench results --platform xeon --model levit_128s

test: $(STAMP)
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) levit-bench-out .pytest_cache *.egg-info
