#!/usr/bin/env bash
# Fails when the repository cites a document it does not have.
#
#   scripts/check-doc-links.sh
#
# Scans README.md, Dockerfile and every text file under src/, crates/, tests/,
# scripts/, fuzz/, examples/, config/ and docs/ (not build output, installed
# SDKs, lock files or the fuzz corpus) for:
#
#  (a) citations of documents that live outside the repository: the word SPEC
#      in capitals (the contract document: `SPEC §2`, `SPEC.md`, `the SPEC`,
#      `a SPEC code`), STACK.md, gemini-api.md, STYLE.md, DEVELOPERS.md;
#  (b) relative paths to Markdown files that do not exist: bare mentions such
#      as `docs/upstream.md` or `README.md` (read from the repository root, or
#      from the file's own directory when they start with ./ or ../), and
#      Markdown link targets `](…)` (read from the linking file's directory;
#      in .md files every relative target is checked, elsewhere only .md ones);
#  (c) `#anchors` on those paths (and `](#anchor)` links) that match no heading
#      of the target file, with headings turned into anchors as GitHub does
#      (lower case, punctuation dropped, spaces to hyphens, -1, -2 … for
#      repeats; non-ASCII letters are dropped here, so keep headings ASCII).
#
# URLs (scheme://…) are never checked. Prints each offending file:line and
# exits 1, or prints one line and exits 0. Needs bash 4, grep, sed and awk.
set -euo pipefail
cd "$(dirname "$0")/.."

SELF="scripts/check-doc-links.sh"
EXTERNAL='\bSPEC\b|STACK\.md|gemini-api\.md|STYLE\.md|DEVELOPERS\.md'
EXTERNAL_NAMES=" SPEC.md STACK.md gemini-api.md STYLE.md DEVELOPERS.md "

# The files to scan, one per line.
list_files() {
  local dir
  for file in README.md Dockerfile; do
    if [ -f "$file" ]; then echo "$file"; fi
  done
  for dir in src crates tests scripts fuzz examples config docs; do
    [ -d "$dir" ] || continue
    find "$dir" \( -name target -o -name node_modules -o -name .venv -o -name __pycache__ \
      -o -path fuzz/corpus -o -path fuzz/artifacts \) -prune -o -type f -print
  done
}
mapfile -t FILES < <(list_files | grep -v -x -F "$SELF" \
  | grep -v -E '(^|/)(Cargo\.lock|package-lock\.json)$' | LC_ALL=C sort)

FAILURES=0
report() {
  echo "$1"
  FAILURES=$((FAILURES + 1))
}

# GitHub's anchor for a heading's text.
slug() {
  printf '%s' "$1" | LC_ALL=C tr '[:upper:]' '[:lower:]' \
    | LC_ALL=C sed -E 's/[^a-z0-9 _-]//g; s/ /-/g'
}

# The anchors of a Markdown file, one per line (cached).
declare -A ANCHORS
anchors_of() {
  local file=$1 heading
  if [ -z "${ANCHORS[$file]+set}" ]; then
    ANCHORS[$file]=$(
      awk '/^[[:space:]]*(```|~~~)/ { fence = !fence; next }
           !fence && /^##*[[:space:]]/ { sub(/^##*[[:space:]]+/, ""); sub(/[[:space:]]+##*[[:space:]]*$/, ""); print }' "$file" \
        | while IFS= read -r heading; do slug "$heading"; echo; done \
        | awk '{ n = seen[$0]++; print (n ? $0 "-" n : $0) }'
      grep -o -E '(name|id)="[^"]+"' "$file" | sed -E 's/^(name|id)="//; s/"$//' || true
    )
  fi
  printf '%s\n' "${ANCHORS[$file]}"
}

# The lines of Markdown files that are inside fenced code blocks, as file:line.
declare -A FENCED
for file in "${FILES[@]}"; do
  [[ "$file" == *.md ]] || continue
  while IFS= read -r line; do FENCED["$file:$line"]=1; done < <(
    awk '/^[[:space:]]*(```|~~~)/ { fence = !fence; next } fence { print NR }' "$file")
done

# Checks one cited path (with an optional #anchor), resolved from `base`.
check_target() {
  local where=$1 base=$2 target=$3 path anchor resolved anchors
  path=${target%%#*}
  anchor=""
  if [ "$path" != "$target" ]; then anchor=${target#*#}; fi
  if [ -n "$path" ]; then
    case "$EXTERNAL_NAMES" in *" ${path##*/} "*) return ;; esac  # reported by (a)
  fi
  if [ -z "$path" ]; then
    resolved=${where%%:*}
  elif [ "${path#/}" != "$path" ]; then
    resolved=".$path"
  else
    resolved="$base/$path"
  fi
  if [ ! -e "$resolved" ]; then
    report "$where: cites $path, which the repository does not have"
    return
  fi
  if [ -n "$anchor" ] && [ -f "$resolved" ] && [[ "$resolved" == *.md ]]; then
    anchors=$(anchors_of "$resolved")
    if ! grep -q -x -F -- "$anchor" <<<"$anchors"; then
      report "$where: cites ${path}#$anchor, but no heading there has that anchor"
    fi
  fi
}

# (a) documents outside the repository.
while IFS= read -r hit; do
  file=${hit%%:*}
  rest=${hit#*:}
  line=${rest%%:*}
  text=${rest#*:}
  what=$(grep -o -E "$EXTERNAL" <<<"$text" | LC_ALL=C sort -u | paste -sd, - | sed 's/,/, /g')
  report "$file:$line: cites $what, a document outside the repository"
done < <(grep -I -n -H -E "$EXTERNAL" -- "${FILES[@]}" || true)

# (b) and (c) paths to Markdown files, and their anchors.
URL='[A-Za-z][A-Za-z0-9+.-]*://[^[:space:])>"'"'"'`]*'
while IFS= read -r hit; do
  file=${hit%%:*}
  rest=${hit#*:}
  line=${rest%%:*}
  text=${rest#*:}
  dir=$(dirname "$file")
  text=$(sed -E "s#$URL##g" <<<"$text")
  # Markdown link targets, from the linking file's directory; not in code.
  links=""
  if [ -z "${FENCED[$file:$line]+set}" ]; then
    links=$(sed -E 's/`[^`]*`//g' <<<"$text" | grep -o -E '\]\([^)[:space:]]+\)' | sed -E 's/^\]\(//; s/\)$//' || true)
  fi
  while IFS= read -r target; do
    [ -n "$target" ] || continue
    case "$target" in
      *:*) continue ;;  # mailto: and the like
    esac
    if [[ "$file" == *.md ]] || [[ "${target%%#*}" == *.md ]] || [[ "$target" == "#"* && "$file" == *.md ]]; then
      check_target "$file:$line" "$dir" "$target"
    fi
  done <<<"$links"
  # Bare mentions, outside links (a link's text is only its label).
  bare=$(sed -E 's/\[[^]]*\]\([^)]*\)/[]/g; s/\]\([^)]*\)/]/g' <<<"$text")
  while IFS= read -r target; do
    [ -n "$target" ] || continue
    case "$target" in
      ./* | ../*) check_target "$file:$line" "$dir" "$target" ;;
      *) check_target "$file:$line" "." "$target" ;;
    esac
  done < <(grep -o -E '(^|[^A-Za-z0-9_./-])[A-Za-z0-9_.][A-Za-z0-9_./-]*\.md(#[A-Za-z0-9_-]+)?([^A-Za-z0-9_]|$)' <<<"$bare" \
    | sed -E 's/^[^A-Za-z0-9_.]//; s/[^A-Za-z0-9_-]$//' || true)
done < <(grep -I -n -H -E '\.md|\]\(' -- "${FILES[@]}" || true)

if [ "$FAILURES" -gt 0 ]; then
  echo "check-doc-links: $FAILURES citation(s) of documents the repository does not have" >&2
  exit 1
fi
echo "check-doc-links: OK (${#FILES[@]} files; every cited document, path and anchor is in the repository)"
