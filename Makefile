# Every target works from a fresh clone: the venv is created and filled on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
export PYTHONPATH := $(CURDIR):$(CURDIR)/layer

.PHONY: run test up down status venv lint retry trigger invoke bench bench-scale clean migrate topics tools build scan retries reopen \
	token screenshots deploy-web chaos

# SAM CLI and checkov each pin boto3 exactly, to versions other than ours: each gets its own venv here
# (requirements-sam.txt, requirements-checkov.txt), made on first use like .venv.
TOOLS := .local/tools
SAM := $(TOOLS)/sam/bin/sam
CHECKOV := $(TOOLS)/checkov/bin/checkov
export SAM_CLI_TELEMETRY := 0

$(VENV)/.installed: requirements.txt requirements-dev.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip<26.3"  # chalice 1.34 requires pip<26.3
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

$(TOOLS)/%/.installed: requirements-%.txt
	python3 -m venv $(TOOLS)/$*
	$(TOOLS)/$*/bin/pip install -q -r $<
	touch $@

tools:  ## both tool venvs, installed side by side (each is mostly download and unpacking)
	@$(MAKE) -s -j2 $(TOOLS)/sam/.installed $(TOOLS)/checkov/.installed

run: venv  ## the local stack in the foreground (Ctrl-C stops all it started)
	$(PY) -m infra.local.stack run --demo

test: venv tools  ## the whole suite against real services
	$(PY) -m pytest $(PYTEST_ARGS)

screenshots: venv  ## the browser tests, writing their screenshots into docs/screenshots (normally .local/screenshots)
	UPDATE_SCREENSHOTS=1 $(PY) -m pytest tests/browser -q

up: venv
	$(PY) -m infra.local.stack up

down: venv
	$(PY) -m infra.local.stack down

status: venv
	$(PY) -m infra.local.stack status

lint: venv  ## ruff, mypy, the import contracts, and the transformed SAM template through cfn-lint
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m infra.sam_lint

token: venv  ## an ID token for curl: make token USER=user3@example.com [PASSWORD=...] (demo password by default)
	@$(PY) -m infra.local.token "$(USER)" --password "$(PASSWORD)"

retry: venv  ## re-drive the retry table now against the running stack; prints the summary
	$(PY) -m infra.local.scheduler --trigger RetryFunction

trigger: venv  ## run one function's schedule now: make trigger FN=RetryFunction
	$(PY) -m infra.local.scheduler --trigger $(FN)

invoke: venv  ## like `sam local invoke`: make invoke FN=PaymentFunction EVENT=infra/events/payment_fn/msk.json
	$(PY) -m infra.local.invoke $(FN) -e $(EVENT)

reconcile: venv  ## rebuild/verify the whole Redis read model from MySQL and report what was repaired
	$(PY) -m replication_fn.reconcile

retries: venv  ## the retry table by status with each row's reason and last error (no SQL needed)
	$(PY) -m infra.retries

reopen: venv  ## re-open a dead retry row: make reopen KEY=<booking key> (the next retry run re-drives it)
	@test -n "$(KEY)" || { echo "usage: make reopen KEY=<booking key>  (make retries lists the dead rows)" >&2; exit 2; }
	$(PY) -m infra.retries reopen "$(KEY)"

migrate: venv  ## apply pending migrations to the database the environment names (MYSQL_*, or DB_SECRET_ARN)
	$(PY) -m infra.migrate

topics: venv  ## create the booking topics on the broker the environment names (KAFKA_BOOTSTRAP_SERVERS, KAFKA_AUTH)
	$(PY) -m infra.topics

build: $(TOOLS)/sam/.installed  ## sam build into .aws-sam/build (needs python3.11, the template's runtime)
	$(SAM) build --cached

deploy-web: venv  ## web/ to a deployed stack: make deploy-web STACK=<stack name> [REGION=...] (needs AWS credentials)
	@test -n "$(STACK)" || { echo "usage: make deploy-web STACK=<stack name> [REGION=<its region>]" >&2; exit 2; }
	$(PY) -m infra.deploy_web --stack "$(STACK)" $(if $(REGION),--region "$(REGION)")

scan: $(TOOLS)/checkov/.installed  ## checkov on template.yaml (each suppression carries its reason in the template)
	$(CHECKOV) -f template.yaml --framework cloudformation --compact --quiet

chaos: venv  ## faults under load on a stack of its own (private MariaDB/Redis/broker), then the guarantees checked
	$(PY) -m infra.chaos

bench: venv  ## benchmarks against a running stack (make up first); prints the table, writes bench/results/
	$(PY) -m pip install -q -r bench/requirements.txt
	$(PY) -m bench.run

bench-scale: venv  ## the read side at 5k/50k/500k listings on a stack of its own (BENCH_SCALE_SIZES=5000,50000 for fewer)
	$(PY) -m pip install -q -r bench/requirements.txt
	$(PY) -m bench.scale

clean:
	rm -rf .local .pytest_cache .ruff_cache
