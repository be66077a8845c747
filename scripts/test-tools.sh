#!/usr/bin/env bash
# Installs what the tests need beyond the Rust toolchain, into git-ignored
# folders of the repo. Safe to run again: it does nothing when it is there.
#
# - ganache (npm, version pinned by tests/evm/package-lock.json): the local
#   EVM node the chain tests send transactions to and mine blocks on.
set -euo pipefail
cd "$(dirname "$0")/.."

want=$(node -e 'console.log(require("./tests/evm/package.json").dependencies.ganache)')
have=$(node -e 'try{console.log(require("./tests/evm/node_modules/ganache/package.json").version)}catch(e){console.log("none")}')
if [ "$have" != "$want" ]; then
    echo "test-tools: installing ganache $want into tests/evm/node_modules"
    npm ci --prefix tests/evm --no-audit --no-fund --loglevel=error
fi
