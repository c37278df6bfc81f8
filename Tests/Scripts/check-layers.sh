#!/usr/bin/env bash
# The layer check (`make layers`): every target under ROOT/Sources may import only the project
# modules its row of the layer map in ROOT/README.md allows (the markdown table between
# `<!-- layer-map:begin -->` and `<!-- layer-map:end -->`). A module is the project's own if it is
# a directory under ROOT/Sources or ROOT/Tests or is named anywhere in the map; imports of any other
# module (Glibc, Foundation, ArgumentParser, ...) are always allowed, and so is a target importing
# itself. Only Swift import statements count: comments, string literals and `#if canImport(X)`
# conditions are not imports, and C includes are not checked. ROOT/Tests and the code samples in DocC
# catalogs (`*.docc`, a user's code, not the target's) are not checked.
#
# usage: check-layers.sh [ROOT]    (ROOT defaults to the repository holding this script)
# exit:  0 all allowed; 1 violations, or a target missing from the map; 2 no map or bad usage
set -euo pipefail
export LC_ALL=C

if [ $# -gt 1 ]; then
  echo "usage: check-layers.sh [ROOT]" >&2
  exit 2
fi
ROOT=${1:-$(dirname "${BASH_SOURCE[0]}")/../..}
ROOT=$(cd "$ROOT" 2>/dev/null && pwd) || { echo "layers: no such directory: ${1:-}" >&2; exit 2; }
README=$ROOT/README.md
[ -f "$README" ] || { echo "layers: $README: not found, so no layer map" >&2; exit 2; }
[ -d "$ROOT/Sources" ] || { echo "layers: $ROOT/Sources: not found" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/check-layers.XXXXXX")
trap 'rm -rf "$work"' EXIT

# 1. The map, one line per target: `TARGET<TAB>ALLOWED ALLOWED ...` (ALLOWED in map order).
awk -v readme="$README" '
  function fail(message) { print "layers: " readme ":" FNR ": " message > "/dev/stderr"; bad = 1; exit 2 }
  function trim(s) { gsub(/^[ \t]+|[ \t]+$/, "", s); return s }
  /<!-- layer-map:begin -->/ { if (begun) fail("a second layer-map:begin"); begun = 1; inside = 1; next }
  /<!-- layer-map:end -->/ { if (inside) { inside = 0; ended = 1 }; next }
  !inside { next }
  /^[ \t]*$/ { next }
  !/^[ \t]*\|/ { fail("not a table row inside the layer map (is <!-- layer-map:end --> missing?)") }
  /^[ \t]*\|[-:| \t]+$/ { next }   # the |---|---| line
  {
    line = trim($0); sub(/^\|/, "", line); sub(/\|$/, "", line)
    n = split(line, cell, "|")
    if (n != 2) fail("a layer-map row needs two cells: | target | may import |")
    target = trim(cell[1]); allowed = trim(cell[2])
    if (!rows && target == "target") { rows = 0; next }   # the header
    if (target !~ /^`[A-Za-z_][A-Za-z0-9_]*`$/) fail("the target cell must be one `Name`")
    gsub(/`/, "", target)
    if (target in seen) fail("target " target " is listed twice")
    seen[target] = 1
    list = ""; rest = allowed
    while (match(rest, /`[A-Za-z_][A-Za-z0-9_]*`/)) {
      list = list (list == "" ? "" : " ") substr(rest, RSTART + 1, RLENGTH - 2)
      rest = substr(rest, 1, RSTART - 1) substr(rest, RSTART + RLENGTH)
    }
    gsub(/[ \t,]|—|–|-/, "", rest)
    if (rest != "") fail("the may-import cell must list `Name`s separated by commas, or —")
    print target "\t" list
    rows++
  }
  END {
    if (bad) exit 2
    if (!begun || !ended || !rows) {
      print "layers: " readme ": no layer map (a table between <!-- layer-map:begin --> and <!-- layer-map:end -->)" > "/dev/stderr"
      exit 2
    }
  }
' "$README" > "$work/map" || exit 2

# 2. The targets (directories under Sources) and the project's own modules.
: > "$work/targets"
: > "$work/ours"
for dir in "$ROOT"/Sources/*/; do
  [ -d "$dir" ] || continue
  name=$(basename "$dir")
  echo "$name" >> "$work/targets"
  echo "$name" >> "$work/ours"
done
for dir in "$ROOT"/Tests/*/; do
  [ -d "$dir" ] && basename "$dir" >> "$work/ours"
done
tr ' \t' '\n\n' < "$work/map" | grep -v '^$' >> "$work/ours" || true

# 3. Every import statement of every Swift file under Sources: `FILE<TAB>LINE<TAB>MODULE`, FILE
#    relative to ROOT. Comments (nested /* */ too) and string literals are blanked first.
(cd "$ROOT" && find Sources -name '*.docc' -prune -o -type f -name '*.swift' -print0 | sort -z |
  xargs -0 -r awk '
    FNR == 1 { depth = 0; multiline = 0 }
    {
      text = $0; code = ""; n = length(text); i = 1; quoted = 0
      while (i <= n) {
        c = substr(text, i, 1); two = substr(text, i, 2); three = substr(text, i, 3)
        if (depth > 0) {
          if (two == "/*") { depth++; i += 2 } else if (two == "*/") { depth--; i += 2 } else i++
          if (depth == 0) code = code " "
          continue
        }
        if (multiline) {
          if (c == "\\") i += 2; else if (three == "\"\"\"") { multiline = 0; i += 3 } else i++
          continue
        }
        if (quoted) {
          if (c == "\\") i += 2; else if (c == "\"") { quoted = 0; i++ } else i++
          continue
        }
        if (two == "//") break
        if (two == "/*") { depth = 1; i += 2; continue }
        if (three == "\"\"\"") { multiline = 1; i += 3; code = code " "; continue }
        if (c == "\"") { quoted = 1; i++; code = code " "; continue }
        code = code c; i++
      }
      count = split(code, statement, ";")
      for (k = 1; k <= count; k++) {
        s = statement[k]
        sub(/^[ \t]+/, "", s)
        while (s ~ /^@/) {                                   # @_exported, @preconcurrency, @_spi(X), ...
          sub(/^@[A-Za-z_][A-Za-z0-9_]*/, "", s)
          sub(/^[ \t]*\([^)]*\)/, "", s)
          sub(/^[ \t]+/, "", s)
        }
        sub(/^(public|package|internal|fileprivate|private|open)[ \t]+/, "", s)
        if (s !~ /^import[ \t]/) continue
        sub(/^import[ \t]+/, "", s)
        sub(/^(typealias|struct|class|enum|protocol|let|var|func)[ \t]+/, "", s)
        if (!match(s, /^`?[A-Za-z_][A-Za-z0-9_]*`?/)) continue
        module = substr(s, RSTART, RLENGTH); gsub(/`/, "", module)
        print FILENAME "\t" FNR "\t" module
      }
    }
  ') > "$work/imports"

# 4. The verdict.
awk -F '\t' -v map="$work/map" -v ours="$work/ours" -v targets="$work/targets" -v imports="$work/imports" '
  FILENAME == map { known[$1] = 1; may[$1] = $2; next }
  FILENAME == ours { own[$1] = 1; next }
  FILENAME == targets {
    ntargets++
    if (!($1 in known)) { print "Sources/" $1 ": target " $1 " is not in the layer map in README.md" > "/dev/stderr"; errors++ }
    next
  }
  FILENAME == imports {
    split($1, part, "/"); target = part[2]; module = $3
    if (!(target in known) || module == target || !(module in own)) next
    checked++
    n = split(may[target], list, " "); ok = 0
    for (k = 1; k <= n; k++) if (list[k] == module) ok = 1
    if (ok) next
    allowed = may[target]; gsub(/ /, ", ", allowed); if (allowed == "") allowed = "nothing"
    print $1 ":" $2 ": " target " imports " module ", which the layer map forbids (" target " may import: " allowed ")" > "/dev/stderr"
    errors++
  }
  END {
    if (errors) { print "layers: " errors " error(s)" > "/dev/stderr"; exit 1 }
    print "layers: " ntargets + 0 " targets, " checked + 0 " imports checked, all allowed"
  }
' "$work/map" "$work/ours" "$work/targets" "$work/imports"
