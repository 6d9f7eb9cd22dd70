#!/bin/sh
# Checks the user units without a running systemd (CI, containers):
#   1. `systemd-analyze --user verify` on both units; any warning fails the check (verify itself
#      exits 0 on unknown keys or bad values, it only prints them);
#   2. `systemd-analyze --user security --offline=true`: prints the exposure score of each unit
#      and fails if it gets worse than $KITED_MAX_EXPOSURE (default 2.5, on systemd's 0-10 scale).
#
# %h, %t, %E and %S resolve from HOME, XDG_RUNTIME_DIR and XDG_*_HOME, so they point into a
# scratch directory where ExecStart=%h/.cargo/bin/kited exists. Documentation=man:kitectl(1) is
# not checked (--man=no): the page is installed by the user (`kitectl man`), not by a build.
#
# Usage: systemd/verify.sh            (from anywhere; needs systemd-analyze, i.e. systemd >= 250)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
max_exposure=${KITED_MAX_EXPOSURE:-2.5}

if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "verify.sh: systemd-analyze not found (apt-get install systemd)" >&2
    exit 1
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/home/.cargo/bin" "$scratch/run" "$scratch/config" "$scratch/state"
chmod 700 "$scratch/run"
# verify only needs ExecStart to be an executable file.
printf '#!/bin/sh\nexit 0\n' > "$scratch/home/.cargo/bin/kited"
chmod 755 "$scratch/home/.cargo/bin/kited"

export HOME="$scratch/home" XDG_RUNTIME_DIR="$scratch/run" \
    XDG_CONFIG_HOME="$scratch/config" XDG_STATE_HOME="$scratch/state"
# `security` is pinned to this threshold: systemd scores 0-100 internally, shown as 0.0-10.0.
threshold=$(echo "$max_exposure" | awk '{ printf "%d", $1 * 10 + 0.5 }')

status=0
for unit in kited.service kited@.service; do
    out=$(systemd-analyze --user verify --man=no "$here/$unit" 2>&1) || status=1
    if [ -n "$out" ]; then
        printf '%s\n' "$out" >&2
        status=1
    fi
    if report=$(systemd-analyze --user security --offline=true --threshold="$threshold" \
        --no-pager "$here/$unit" 2>&1); then
        printf '%s: %s\n' "$unit" "$(printf '%s\n' "$report" | grep 'Overall exposure level')"
    else
        printf '%s\n' "$report" | grep -E '✗|Overall' >&2 || printf '%s\n' "$report" >&2
        echo "$unit: exposure above $max_exposure" >&2
        status=1
    fi
done
[ "$status" -eq 0 ] && echo "systemd units OK"
exit "$status"
