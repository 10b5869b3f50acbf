#!/usr/bin/env bash
# Moves Chorus to newer dependencies on purpose: upgrades uv.lock, shows what changed,
# rebuilds every environment from the new lock and runs the whole suite.
#   scripts/update-lock.sh                 upgrade everything pyproject.toml allows
#   scripts/update-lock.sh numpy ray       upgrade only these packages
#   scripts/update-lock.sh --sync          only re-lock after editing pyproject.toml (no upgrades)
# Commit pyproject.toml and uv.lock together once the suite passes. Extra pytest arguments
# can follow `--`, e.g. scripts/update-lock.sh ray -- tests/unit.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
uv="$root/scripts/uv.sh"
python="${CHORUS_PYTHON:-python3.11}"

lock_args=(--upgrade) packages=() test_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --) shift; test_args=("$@"); break ;;
    --sync) lock_args=() ;;
    -*) echo "usage: $0 [--sync | PACKAGE ...] [-- PYTEST-ARGS]" >&2; exit 2 ;;
    *) packages+=(--upgrade-package "$1") ;;
  esac
  shift
done
[ "${#packages[@]}" -eq 0 ] || lock_args=("${packages[@]}")

before="$(mktemp)"; trap 'rm -f "$before"' EXIT
cp "$root/uv.lock" "$before"
"$uv" lock --project "$root" -p "$python" "${lock_args[@]}"

python3 - "$before" "$root/uv.lock" <<'PY'
import sys, tomllib
def versions(path):
    out = {}
    for p in tomllib.load(open(path, "rb"))["package"]:
        out.setdefault(p["name"], set()).add(p.get("version", "?"))
    return out
old, new = versions(sys.argv[1]), versions(sys.argv[2])
changes = [f"  {n}: {', '.join(sorted(old.get(n, {'-'})))} -> {', '.join(sorted(new.get(n, {'-'})))}"
           for n in sorted(old.keys() | new.keys()) if old.get(n) != new.get(n)]
print("uv.lock changes:", *(changes or ["  none"]), sep="\n")
PY

exec "$root/scripts/test.sh" "${test_args[@]}"
