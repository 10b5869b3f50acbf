"""Summarises one cosmic-ray session (scripts/mutation.sh): counts by outcome, and each
surviving mutant as operator, line and diff, so a survivor can be killed or named."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter


def main(cosmic_ray: str, session: str, name: str) -> None:
    dump = subprocess.run([cosmic_ray, "dump", session], check=True, capture_output=True, text=True).stdout
    outcomes: Counter[str] = Counter()
    survivors = []
    for line in filter(None, dump.splitlines()):
        item, result = json.loads(line)
        if result is None:
            outcomes["pending"] += 1
            continue
        if result["worker_outcome"] == "skipped":
            outcomes["skipped"] += 1
            continue
        if result["worker_outcome"] != "normal":
            outcomes[result["worker_outcome"]] += 1  # exception, abnormal (timeouts count as killed below)
            continue
        outcomes[result["test_outcome"]] += 1
        if result["test_outcome"] == "survived":
            survivors.append((item["mutations"][0], result.get("diff", "")))
    tested = outcomes["killed"] + outcomes["survived"] + outcomes["incompetent"]
    print(f"{name}: {tested} mutants, {outcomes['killed']} killed, {outcomes['survived']} survived"
          f" ({', '.join(f'{k} {v}' for k, v in sorted(outcomes.items()) if k not in ('killed', 'survived'))})")
    for mutation, diff in survivors:
        print(f"  SURVIVED {mutation['operator_name']} #{mutation['occurrence']} at line {mutation['start_pos'][0]}")
        print("    " + "\n    ".join(line for line in diff.splitlines() if line.startswith(("+", "-"))
                                      and not line.startswith(("+++", "---"))))


if __name__ == "__main__":
    main(*sys.argv[1:4])
