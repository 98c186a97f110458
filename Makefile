.PHONY: run test setup setup-test lint bench

# Set up and run Shipmate with the embedded defaults on http://127.0.0.1:8000.
run: setup
	scripts/run.sh

# Set up and run the whole test suite against real services.
test: setup-test
	scripts/test.sh $(PYTEST_ARGS)

setup:
	scripts/bootstrap.sh run

setup-test:
	scripts/bootstrap.sh test

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

bench: setup-test
	scripts/bench.sh
