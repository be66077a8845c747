# One target per README command. Everything the tests need is installed or
# started by the project's own scripts.
CARGO ?= cargo
BIN := target/release/payhook

.PHONY: build demo test run bench lint

build:
	$(CARGO) build --release

# Secrets are sealed at rest under secrets.key: `make demo` and `make run`
# keep one in .secrets-key (git-ignored, 0600) unless PAYHOOK__SECRETS__KEY is set.
SECRETS_KEY = test -n "$$PAYHOOK__SECRETS__KEY" || test -s .secrets-key || \
	(umask 077; head -c 32 /dev/urandom | base64 > .secrets-key && echo "secrets key written to .secrets-key (mode 0600)")
WITH_KEY = PAYHOOK__SECRETS__KEY="$${PAYHOOK__SECRETS__KEY:-$$(cat .secrets-key)}"

demo: build
	@$(SECRETS_KEY)
	$(WITH_KEY) ./$(BIN) demo

# The whole suite: unit tests, property tests, integration tests (real HTTP
# receivers on 127.0.0.1, real SQLite files, a real `payhook serve` killed -9),
# a real EVM node (ganache, installed by scripts/test-tools.sh), and the bench
# run small (N = 200) as a smoke test of itself. The integration tests run
# twice: on SQLite files, then on a throwaway PostgreSQL server started from
# the machine's own binaries by scripts/with-postgres.sh (the outage test,
# which stops that server, gets a server of its own).
test:
	bash scripts/test-tools.sh
	$(CARGO) test --benches
	$(CARGO) test --lib --bins --tests -- --test-threads=4
	bash scripts/with-postgres.sh $(CARGO) test --tests -- --test-threads=4 --skip database_outage
	bash scripts/with-postgres.sh $(CARGO) test --test it database_outage

# `payhook serve` with config.toml. The committed config has no admin token:
# one is generated into .admin-token (git-ignored) unless PAYHOOK__ADMIN__TOKEN is set.
run: build
	@test -n "$$PAYHOOK__ADMIN__TOKEN" || test -s .admin-token || \
		(umask 077; head -c 32 /dev/urandom | base64 | tr -d '/+=\n' > .admin-token && echo "admin token written to .admin-token (mode 0600)")
	@$(SECRETS_KEY)
	PAYHOOK__ADMIN__TOKEN="$${PAYHOOK__ADMIN__TOKEN:-$$(cat .admin-token)}" $(WITH_KEY) ./$(BIN) serve --config config.toml

bench:
	$(CARGO) bench --bench pipeline
	PAYHOOK_PG_DURABLE=1 bash scripts/with-postgres.sh $(CARGO) bench --bench pipeline

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
