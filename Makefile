# Two commands do all the set-up: `make demo` and `make test` (each creates .venv first).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test venv system-packages clean

# Debian packages the tests need: headless Chromium renders the HTML report; the aarch64
# cross compilers (C for TVM's libraries, C++ for the ExecuTorch runner), QEMU user mode and
# debootstrap build and run ARM code without a board; PostgreSQL's server binaries run the
# throwaway servers of the store tests (never the system service).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
SYSTEM_COMMANDS := chromium aarch64-linux-gnu-gcc aarch64-linux-gnu-g++ qemu-aarch64-static debootstrap \
	pg_ctlcluster
SYSTEM_PACKAGES := chromium gcc-aarch64-linux-gnu g++-aarch64-linux-gnu qemu-user-static debootstrap \
	postgresql

# constraints.txt pins torch==2.13.0 (the local CPU wheel) and the runtime versions tested
# together; without the pin pip would fetch a CUDA build of torch.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[all,dev]'
	touch $(STAMP)

venv: $(STAMP)

system-packages:
	@missing=; for c in $(SYSTEM_COMMANDS); do PATH="$$PATH:/usr/sbin:/sbin" command -v $$c >/dev/null || missing=1; done; \
	if [ -n "$$missing" ]; then $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(SYSTEM_PACKAGES); fi

demo: $(STAMP)
	$(BIN)/levit-bench models
	$(BIN)/levit-bench info
	$(BIN)/levit-bench export --model levit_128s
	$(BIN)/levit-bench sweep --platform xeon --models levit_128s --runtimes torch onnxruntime openvino
	$(BIN)/levit-bench results --platform xeon --model levit_128s
	$(BIN)/levit-bench report --platform xeon

# The browser test saves its screenshot under test-artifacts/.
test: $(STAMP) system-packages
	LEVIT_BENCH_ARTIFACTS=test-artifacts $(BIN)/python -m pytest --durations=15

clean:
	rm -rf $(VENV) levit-bench-out test-artifacts .pytest_cache *.egg-info
