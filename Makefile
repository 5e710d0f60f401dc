# pageperfect: `make demo` and `make test` are the two commands a newcomer runs. Each does the
# one-time set-up (Debian packages, cargo-pgrx, cargo pgrx init) itself when it is missing.
#
#   make install   build and install into the Postgres of PG_CONFIG (default: pg_config on PATH)
#   make test      every suite: unit, #[pg_test], pg_regress, integration
#   make demo      a throw-away cluster with the extension preloaded and the web dashboard; make demo-stop ends it
#   make setup     only the one-time set-up
#   make bench     pageperfect beside pgmq-style SQL, pg_cron, scikit-learn, scipy and plain-SQL fits (release build)
#   make soak      30 minutes of mixed load and faults (SOAK_MINUTES=N for shorter); needs make install first

PG_CONFIG ?= $(shell command -v pg_config || echo /usr/lib/postgresql/15/bin/pg_config)
export PG_CONFIG

.PHONY: setup install test demo demo-stop bench soak

setup:
	bash scripts/setup.sh

# install.sh writes each file beside its destination and renames it into place: a server that
# has the old library loaded keeps it until it restarts (an in-place copy would crash it).
install: setup
	bash scripts/install.sh

test:
	bash scripts/test.sh

# demo-stop first: never install over a library that the running demo server has loaded.
demo: setup demo-stop
	bash scripts/install.sh --debug
	PATH="$(HOME)/.cargo/bin:$$PATH" cargo build -p pageperfect-it --bin serve-dir
	PATH="$(HOME)/.cargo/bin:$$PATH" cargo build -p pageperfect-web --bin pageperfect-web
	bash scripts/demo.sh

demo-stop:
	bash -c 'source scripts/common.sh; demo_stop "$$WORK/demo"'

# Stops our clusters first, as make test does: never install over a library that a running
# server has loaded. scripts/bench.sh --install builds and installs a release build, then starts
# its own cluster and stops it when it ends.
bench:
	SETUP_BENCH=1 bash scripts/setup.sh
	bash -c 'source scripts/common.sh; for dir in "$$WORK"/*/; do cluster_stop "$$dir"; done'
	bash scripts/bench.sh --install

soak:
	bash scripts/soak.sh --minutes $(or $(SOAK_MINUTES),30)
