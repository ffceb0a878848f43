#!/usr/bin/env bash
# Checks that Cargo.toml's rust-version is at least what every locked
# dependency declares it needs (their own `rust-version`), so the stated
# minimum is never a promise the dependency graph breaks. No toolchain of that
# version can be installed on the CI machine (rustup reaches no server there),
# so this checks the declaration; the code is built with the installed stable.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo metadata --format-version 1 --locked | python3 -c '
import json, re, sys
meta = json.load(sys.stdin)
def version(text):
    return tuple(int(part) for part in text.split(".")) + (0,) * (3 - len(text.split(".")))
ours = {p["name"]: p.get("rust_version") for p in meta["packages"] if p["id"] in meta["workspace_members"]}
need = max(
    ((version(p["rust_version"]), p["name"], p["version"]) for p in meta["packages"]
     if p.get("rust_version") and p["id"] not in meta["workspace_members"]),
)
stated = {name: rv for name, rv in ours.items()}
bad = [name for name, rv in stated.items() if not rv or version(rv) < need[0]]
needed = ".".join(str(n) for n in need[0][:2])
if bad:
    print(f"rust-version too low for {bad}: {need[1]} {need[2]} needs {needed}", file=sys.stderr)
    sys.exit(1)
print(f"rust-version OK: {sorted(set(stated.values()))} >= {needed} ({need[1]} {need[2]})")
'
