#!/usr/bin/env bash
# Installs what the tests need beyond the Rust toolchain, into git-ignored
# folders of the repo. Safe to run again: it does nothing when it is there.
#
# - ganache (npm, version pinned by tests/evm/package-lock.json): the local
#   EVM node the chain tests send transactions to and mine blocks on.
# - solc (npm, pinned likewise): compiles the test ERC-20 contract
#   (tests/evm/contracts) that the token tests deploy on that node.
# - chromium and chromium-driver (Debian's packages, system-wide, so apt-get
#   as root or through sudo): the real browser the console tests drive
#   through /usr/bin/chromedriver (tests/it/browser.rs).
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

browser_pkgs="chromium chromium-driver"
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    if [ "$(id -u)" -eq 0 ]; then
        as_root=()
    elif command -v sudo >/dev/null 2>&1; then
        as_root=(sudo)
    else
        echo "test-tools: the browser tests need Debian's packages $browser_pkgs" \
            "(/usr/bin/chromium, /usr/bin/chromedriver); run as root, or install them:" \
            "apt-get install $browser_pkgs" >&2
        exit 1
    fi
    echo "test-tools: installing $browser_pkgs with apt-get"
    # The list may be stale or absent on a fresh machine: refresh it first.
    "${as_root[@]}" apt-get update -qq
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends $browser_pkgs >/dev/null
    for bin in /usr/bin/chromium /usr/bin/chromedriver; do
        [ -x "$bin" ] || { echo "test-tools: $bin still missing after installing $browser_pkgs" >&2; exit 1; }
    done
fi
