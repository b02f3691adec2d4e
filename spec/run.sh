#!/bin/sh
# Run the busted specs under Lua 5.4 and LuaJIT; print one closing "N passed, N failed" line.
# Extra arguments go to busted (e.g. a spec file).
cd "$(dirname "$0")/.." || exit 1
root=$(pwd)
log=$(mktemp)
status=0
run() {
  vm=$1; shift
  echo "== specs under $vm"
  EXACTONLINE_VM=$vm \
  LUA_PATH="$root/lua/?.lua;$root/lua/?/init.lua;$root/spec/?.lua;;" \
  LUA_CPATH="$root/build/$vm/?.so;;" LUA_CPATH_5_4="$root/build/lua5.4/?.so;;" \
    "$vm" /usr/bin/busted -o utfTerminal ${BUSTED_ARGS:-} "$@" 2>&1 | tee -a "$log"
  # busted's own exit status is lost in the pipe: read its summary instead
}
run lua5.4 "$@"
run luajit "$@"
summary=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | awk '
  /[0-9]+ success(es)? \/ [0-9]+ failures? \/ [0-9]+ errors? \/ [0-9]+ pending/ {
    for (i = 1; i <= NF; i++) {
      if ($(i+1) ~ /^success/) s += $i
      if ($(i+1) ~ /^failure/) f += $i
      if ($(i+1) ~ /^error/)   e += $i
      if ($(i+1) ~ /^pending/) p += $i
    }
    runs++
  }
  END { printf "%d %d %d %d\n", s, f + e, p, runs }')
rm -f "$log"
set -- $summary
if [ "${4:-0}" -lt 2 ]; then echo "a busted run did not finish"; status=1; fi
[ "${2:-1}" -gt 0 ] && status=1
[ "${1:-0}" -eq 0 ] && status=1
echo "${1:-0} passed, ${2:-0} failed, ${3:-0} skipped"
exit $status
