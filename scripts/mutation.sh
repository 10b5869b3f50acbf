#!/usr/bin/env bash
# Mutation testing of the modules whose failure would be a security or correctness incident
# (scripts/mutation/modules.tsv), each against its fast unit tests, with cosmic-ray from the
# lock (the `mutation` extra). Minutes per module, so not part of CI: run it after changing
# one of them, and record the survivors in bench/RESULTS.md.
#   scripts/mutation.sh                    every module
#   scripts/mutation.sh cache-key quotas   only these (names from modules.tsv)
#   scripts/mutation.sh --survivors router  only the last run's survivors, against the tests as
#                                           they are now (after adding tests for them)
#   scripts/mutation.sh --workers 2 ...     N mutants at a time (cosmic-ray's http distributor),
#                                           one copy of the tree and its venv for each
# cosmic-ray writes each mutant into the source file and runs the tests, so this works in a
# copy of the working tree (with its own .venv: scripts/install.sh) under
# $CHORUS_MUTATION_DIR (default /tmp/chorus-mutation), never in the checkout itself.
# Prints, per module, the counts and each surviving mutant's diff.
set -euo pipefail
survivors_only=false workers=1
while [[ "${1:-}" == --* ]]; do
  case "$1" in
    --survivors) survivors_only=true; shift ;;
    --workers) workers="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
[[ "$workers" =~ ^[1-9][0-9]*$ ]] || { echo "--workers takes a positive number, not '$workers'" >&2; exit 2; }
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="${CHORUS_MUTATION_DIR:-${TMPDIR:-/tmp}/chorus-mutation}"
tree="$work/tree"

# The working tree as git sees it (tracked and new files; nothing ignored, so no venvs), once
# per worker: each mutant is written into its tree's source, and each venv imports its own tree.
trees=("$tree")
for ((i = 2; i <= workers; i++)); do trees+=("$work/tree-$i"); done
for t in "${trees[@]}"; do
  mkdir -p "$t"
  find "$t" -mindepth 1 -maxdepth 1 ! -name .venv -exec rm -rf {} +
  # (--ignore-failed-read: a tracked file deleted in the working tree is skipped.)
  (cd "$root" && git ls-files -z --cached --others --exclude-standard \
    | tar --null --ignore-failed-read -cf - -T - 2>/dev/null) | tar -xf - -C "$t"
  "$t/scripts/install.sh" --exact dev,cloud,samples,kubernetes,mutation >/dev/null  # its venv: $t/.venv
done
# The venvs' libraries are compiled once (scripts/locked-sync.sh); nothing else is written: a
# mutant's .pyc could be taken for the next mutant's (same size, same second), so the mutated
# tree is always compiled from its source.
export PYTHONDONTWRITEBYTECODE=1
venv="$tree/.venv"

# With more than one worker, an http worker listens in each tree (the test command runs in
# the worker's directory, so it names the venv relative to it).
distributor='name = "local"'
if ((workers > 1)); then
  urls=()
  pids=()
  trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
  for t in "${trees[@]}"; do
    port="$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    (cd "$t" && exec "$t/.venv/bin/cosmic-ray" http-worker --port "$port" >"$t.worker.log" 2>&1) &
    pids+=($!)
    urls+=("\"http://127.0.0.1:$port\"")
    until "$venv/bin/python" -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' "$port" 2>/dev/null; do
      kill -0 "${pids[-1]}" || { echo "the mutation worker in $t did not start: $(cat "$t.worker.log")" >&2; exit 1; }
      sleep 0.2
    done
  done
  distributor="name = \"http\"

[cosmic-ray.distributor.http]
worker-urls = [$(IFS=,; echo "${urls[*]}")]"
fi

# Operators whose mutants are noise for this code (bit shifts and powers of arithmetic that
# has none) are left out; everything else cosmic-ray has runs.
exclude='"core/ReplaceBinaryOperator_.*_(Pow|RShift|LShift|BitOr|BitAnd|BitXor)", "core/ReplaceBinaryOperator_(Pow|RShift|LShift|BitOr|BitAnd|BitXor)_.*"'
status=0
while IFS=$'\t' read -r name module tests; do
  [[ -z "$name" || "$name" == \#* ]] && continue
  if [ $# -gt 0 ] && [[ " $* " != *" $name "* ]]; then continue; fi
  config="$work/$name.toml" session="$work/$name.sqlite"
  cat > "$config" <<TOML
[cosmic-ray]
module-path = "$module"
timeout = 300.0
excluded-modules = []
test-command = ".venv/bin/python -m pytest -x -q -p no:cacheprovider $tests"

[cosmic-ray.distributor]
$distributor

[cosmic-ray.filters.operators-filter]
exclude-operators = [$exclude]
TOML
  if $survivors_only && [ ! -f "$session" ]; then echo "$name: no earlier run to take survivors from" >&2; status=1; continue; fi
  $survivors_only || rm -f "$session"
  (
    cd "$tree"
    if $survivors_only; then
      # exec runs the mutants that have no result: forget the survivors' results.
      "$venv/bin/python" -c 'import sqlite3, sys; db = sqlite3.connect(sys.argv[1]); db.execute("delete from work_results where test_outcome = ?", ("SURVIVED",)); db.commit()' "$session"
    else
      "$venv/bin/cosmic-ray" init "$config" "$session" >/dev/null
      "$venv/bin/cr-filter-operators" "$session" "$config" >/dev/null
      "$venv/bin/cr-filter-pragma" "$session" >/dev/null
    fi
    # The unmutated module must pass its tests, or every mutant would look killed.
    "$venv/bin/cosmic-ray" baseline "$config" >/dev/null || { echo "$name: the unmutated tests fail" >&2; exit 1; }
    "$venv/bin/cosmic-ray" exec "$config" "$session" >/dev/null
  ) || { status=1; continue; }
  "$venv/bin/python" "$root/scripts/mutation/report.py" "$venv/bin/cosmic-ray" "$session" "$name" | tee "$work/$name.txt"
done < "$root/scripts/mutation/modules.tsv"
exit $status
