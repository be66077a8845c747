#!/usr/bin/env bash
# Installs what the tests need beyond the Rust toolchain, into git-ignored
# folders of the repo. Safe to run again: it does nothing when it is there.
#
# - ganache (npm, version pinned by tests/evm/package-lock.json): the local
#   EVM node the chain tests send transactions to and mine blocks on.
# - solc (npm, pinned likewise): compiles the test ERC-20 contract
#   (tests/evm/contracts) that the token tests deploy on that node.
set -euo pipefail
cd "$(dirname "$0")/.."

installed() {
    node -e "try{console.log(require('./tests/evm/node_modules/$1/package.json').version)}catch(e){console.log('none')}"
}
wanted() {
    node -e "console.log(require('./tests/evm/package.json').dependencies['$1'])"
}
for pkg in ganache solc; do
    if [ "$(installed $pkg)" != "$(wanted $pkg)" ]; then
        echo "test-tools: installing ganache $(wanted ganache) and solc $(wanted solc) into tests/evm/node_modules"
        npm ci --prefix tests/evm --no-audit --no-fund --loglevel=error
        break
    fi
done
