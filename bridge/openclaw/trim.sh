#!/bin/sh
# Removes from an installed OpenClaw tree (`npm ci` of bridge/openclaw) what the bridge's gateway never reads
# at run time, for the image (bridge/Dockerfile runs it; tests/contract/test_trimmed_tree.py boots the real
# gateway on a trimmed copy). Only deletes files: it never edits one.
#   usage: trim.sh DIR    DIR holds node_modules/openclaw (/opt/openclaw in the image)
set -eu

root=${1:?usage: trim.sh DIR (the folder holding node_modules/openclaw)}
modules="$root/node_modules"
openclaw="$modules/openclaw"
if [ ! -f "$openclaw/openclaw.mjs" ]; then
    echo "trim.sh: no OpenClaw in $modules (run npm ci there first)" >&2
    exit 2
fi

# OpenClaw's docs, except the workspace templates it copies into a new workspace (docs/reference/templates,
# read at run time). Without docs/docs.json the agent's prompt names the online docs instead of a local copy.
find "$openclaw/docs" -mindepth 1 -maxdepth 1 ! -name reference -exec rm -rf {} +
find "$openclaw/docs/reference" -mindepth 1 -maxdepth 1 ! -name templates -exec rm -rf {} +

# The browser Control UI: the bridge's openclaw.json turns it off (gateway.controlUi.enabled: false).
rm -rf "$openclaw/dist/control-ui"

# Source maps, type declarations, TypeScript sources and build info: Node loads none of them.
find "$modules" -type f \( -name '*.map' -o -name '*.ts' -o -name '*.mts' -o -name '*.cts' -o -name '*.tsx' \
    -o -name '*.tsbuildinfo' \) -exec rm -f {} +

# Prebuilt binaries for other operating systems (npm already skips other platforms' packages, not the
# folders some packages carry inside), and musl builds on a glibc system such as the image's Debian.
find "$modules" -type d \( -name 'darwin*' -o -name 'win32*' -o -name 'windows*' -o -name 'android*' \
    -o -name 'freebsd*' -o -name 'openbsd*' \) -prune -exec rm -rf {} +
if getconf GNU_LIBC_VERSION >/dev/null 2>&1; then
    find "$modules" -type d -name '*musl*' -prune -exec rm -rf {} +
fi

# Packages of features a headless task cannot use, each loaded only when its feature is used (a dynamic
# import or require inside that feature, never at boot):
#  - the CUA computer-control driver's native binaries (@trycua/cua-driver-<os>-<arch>, 42 MB): it drives
#    a desktop, and a Fargate task has no display;
#  - Playwright and the Chrome DevTools MCP server: the Browser tool drives a Chromium, and the image has
#    none (the bridge's openclaw.json configures no remote browser either);
#  - TypeScript: OpenClaw compiles with it only the bootstrap bundle of a paired remote node host and
#    TypeScript setup modules of plugins installed at run time; the gateway listens on loopback (no node
#    host can pair) and nothing installs a plugin in the image.
# When one of them is used anyway, that tool call fails with "Cannot find module", the gateway stays up.
rm -rf "$modules"/@trycua/cua-driver-* "$modules/playwright-core" "$modules/typescript" \
    "$openclaw/node_modules/chrome-devtools-mcp" "$modules/chrome-devtools-mcp" "$modules/.bin/tsc" \
    "$modules/.bin/tsserver" "$modules/.bin/playwright-core" "$openclaw"/node_modules/.bin/chrome-devtools*

# The dependencies' read-me and change-log files. OpenClaw's own Markdown stays whole: its skills and
# plugins are Markdown it reads.
for tree in "$modules" "$openclaw/node_modules"; do
    [ -d "$tree" ] || continue
    find "$tree" -path "$openclaw" -prune -o -type f \( -iname 'README*' -o -iname 'CHANGELOG*' \
        -o -iname 'HISTORY*' -o -iname 'CHANGES*' \) -exec rm -f {} +
done
