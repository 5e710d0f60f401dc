#!/usr/bin/env bash
# One-time set-up, idempotent: Debian packages, the cluster user, cargo-pgrx pinned to the pgrx
# version in Cargo.toml, and `cargo pgrx init` against the system pg_config (nothing downloaded).
set -euo pipefail
source "$(dirname "$0")/common.sh"

packages=(postgresql-15 postgresql-server-dev-15 libclang-dev clang pkg-config libssl-dev build-essential python3)
[ "$(id -u)" = 0 ] && packages+=(sudo)   # cargo pgrx test --runas uses sudo
# make bench also needs pg_cron (its baseline), a font for the chart and venv for the Python baselines.
[ "${SETUP_BENCH:-}" = 1 ] && packages+=(postgresql-15-cron fonts-dejavu-core python3-venv)
# make test also drives the web dashboard in headless Chromium and checks /metrics with
# Prometheus's promtool (Debian's prometheus package ships it); the demo check asks with curl;
# pg_regress's plpgsql_check file checks every PL/pgSQL function.
[ "${SETUP_TESTS:-}" = 1 ] && packages+=(chromium prometheus curl postgresql-15-plpgsql-check)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    step "apt packages: ${missing[*]}"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# pgmq's own Python client, which tests/tests/pgmq_clients.rs runs against pageperfect's pgmq.
if ! python3 -c 'import pgmq' 2>/dev/null; then
    step "pip: pgmq (pgmq's Python client)"
    pip_install=(python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore pgmq==1.1.4)
    # Debian's own python3 refuses pip installs unless told (PEP 668); a pyenv one does not.
    "${pip_install[@]}" 2>/dev/null || "${pip_install[@]}" --break-system-packages
fi

if [ "$(id -u)" = 0 ] && ! id "$PG_USER" >/dev/null 2>&1; then
    step "creating OS user $PG_USER to run clusters"
    useradd --system --create-home --shell /bin/bash "$PG_USER"
fi

if ! cargo pgrx --version 2>/dev/null | grep -qx "cargo-pgrx $PGRX_VERSION"; then
    # --debug builds in a third of the time of a release build and works the same; without
    # debug info its build directory and binary take a fraction of the disk.
    step "cargo-pgrx $PGRX_VERSION"
    CARGO_PROFILE_DEV_DEBUG=0 cargo install --locked --force cargo-pgrx --version "$PGRX_VERSION" --debug
fi

# Rewriting config.toml makes pgrx-pg-sys rebuild, so only init when the line is missing.
# Debian's /usr/bin/pg_config is a dispatcher: name the real one, as cargo pgrx records it.
pg_config_path="$("$PG_CONFIG" --bindir)/pg_config"
if ! grep -qxF "pg15 = \"$pg_config_path\"" "$PGRX_HOME/config.toml" 2>/dev/null; then
    step "cargo pgrx init --pg15 $pg_config_path"
    mkdir -p "$PGRX_HOME"
    cargo pgrx init --pg15 "$pg_config_path"
fi
