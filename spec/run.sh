#!/bin/sh
# Run the busted specs under each VM (Lua 5.4, LuaJIT, Lua 5.3, Lua 5.1); print each VM's result and
# time, every failure with its VM, and one closing "N passed, N failed, N skipped" line.
# Extra arguments go to busted (e.g. a spec file). Environment:
#   EXACTONLINE_VMS="lua5.4 luajit lua5.3 lua5.1"   the VMs, in this order (e.g. EXACTONLINE_VMS=lua5.1)
#   SPEC_JOBS=2        how many VMs run at once; each VM's output is printed whole when it ends
#                      (SPEC_JOBS=1: one after another, output as it comes)
cd "$(dirname "$0")/.." || exit 1
root=$(pwd)
vms=${EXACTONLINE_VMS:-lua5.4 luajit lua5.3 lua5.1}
jobs=${SPEC_JOBS:-2}
tmp=$(mktemp -d /tmp/exactonline-run.XXXXXX) || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

# one VM's whole suite: its output in $tmp/VM.log, busted's exit code and the seconds it took in $tmp/VM.rc
run() {
  vm=$1; shift
  start=$(date +%s)
  EXACTONLINE_VM=$vm \
  LUA_PATH="$root/lua/?.lua;$root/lua/?/init.lua;$root/spec/?.lua;;" \
  LUA_CPATH="$root/build/$vm/?.so;;" LUA_CPATH_5_4="$root/build/lua5.4/?.so;;" \
    "$vm" /usr/bin/busted -o utfTerminal ${BUSTED_ARGS:-} "$@" >"$tmp/$vm.log" 2>&1
  rc=$?
  echo "$rc $(( $(date +%s) - start ))" >"$tmp/$vm.rc.tmp" && mv "$tmp/$vm.rc.tmp" "$tmp/$vm.rc"
}

# busted's summary line of one log --> "passed failed skipped" (nothing when it did not finish)
counts() {
  sed 's/\x1b\[[0-9;]*m//g' "$1" | awk '
    /[0-9]+ success(es)? \/ [0-9]+ failures? \/ [0-9]+ errors? \/ [0-9]+ pending/ {
      for (i = 1; i <= NF; i++) {
        if ($(i+1) ~ /^success/) s += $i
        if ($(i+1) ~ /^failure/) f += $i
        if ($(i+1) ~ /^error/)   e += $i
        if ($(i+1) ~ /^pending/) p += $i
      }
      found = 1
    }
    END { if (found) printf "%d %d %d\n", s, f + e, p }'
}

n=0
for vm in $vms; do
  command -v "$vm" >/dev/null 2>&1 || { echo "spec/run.sh: $vm is not installed (make test installs it)"; exit 1; }
  n=$((n + 1))
done

if [ "$jobs" -le 1 ]; then
  for vm in $vms; do
    echo "== specs under $vm"
    run "$vm" "$@" &
    until [ -e "$tmp/$vm.log" ]; do sleep 0.1; done
    tail -f "$tmp/$vm.log" --pid=$! 2>/dev/null
    wait
  done
else
  # lane i runs VMs i, i+jobs, …, one after another; the lanes run at once
  lane=0
  while [ $lane -lt "$jobs" ]; do
    (
      i=0
      for vm in $vms; do
        [ $((i % jobs)) -eq $lane ] && run "$vm" "$@"
        i=$((i + 1))
      done
    ) &
    lane=$((lane + 1))
  done
  echo "== specs under $(echo $vms | sed 's/ /, /g'), $jobs at a time (each VM's output when it ends)"
  for vm in $vms; do
    until [ -e "$tmp/$vm.rc" ]; do sleep 1; done
    echo "== specs under $vm"
    cat "$tmp/$vm.log"
  done
  wait
fi

# per VM: its counts and time; then every failure, named by its VM
status=0
total_p=0 total_f=0 total_s=0
echo
for vm in $vms; do
  set -- $(cat "$tmp/$vm.rc" 2>/dev/null)
  rc=${1:-1} secs=${2:-0}
  c=$(counts "$tmp/$vm.log")
  if [ -z "$c" ]; then
    echo "$vm: busted did not finish (exit $rc) after ${secs} s"
    status=1
    continue
  fi
  set -- $c
  total_p=$((total_p + $1)) total_f=$((total_f + $2)) total_s=$((total_s + $3))
  [ "$2" -gt 0 ] || [ "$rc" -ne 0 ] && status=1
  echo "$vm: $1 passed, $2 failed, $3 skipped in ${secs} s"
done
for vm in $vms; do
  sed 's/\x1b\[[0-9;]*m//g' "$tmp/$vm.log" | awk -v vm="$vm" '
    /^(Failure|Error) → / { head = $0; getline title; print vm ": " head ": " title }'
done
[ "$total_p" -eq 0 ] && status=1
echo "$total_p passed, $total_f failed, $total_s skipped"
exit $status
