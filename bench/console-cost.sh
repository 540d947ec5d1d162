#!/usr/bin/env bash
# What the web console costs a member (docs/console.md, "Cost"): a local
# three-member cluster of bin/kvd, and `kvctl bench put` with 1000 clients
# over 100 connections, in pairs of runs with the console closed and open
# on the leader, alternating which comes first. "Open" is what a page does:
# the cluster view polled every second and the activity charts streamed;
# VARIANT=watch adds a watch of the whole key space, streamed to the page.
# Each run prints requests/s and the members' CPU ticks per 1000 requests.
#
#   make build && PAIRS=10 DUR=6s bench/console-cost.sh
#   VARIANT=watch PAIRS=8 DUR=6s RESULTS=/tmp/watch.txt bench/console-cost.sh
#
# Ports 47379-47402 must be free. Not part of any test: it measures.
set -u
B=${KVD_BIN:-$(cd "$(dirname "$0")/.." && pwd)/bin}
D=$(mktemp -d)
CL=n1=127.0.0.1:47380,n2=127.0.0.1:47390,n3=127.0.0.1:47400
PIDS=()
for i in 1 2 3; do
  p=$((47369 + i*10)); r=$((p+1)); h=$((p+2))
  $B/kvd --name n$i --data-dir $D/n$i --client-addr 127.0.0.1:$p --raft-addr 127.0.0.1:$r --http-addr 127.0.0.1:$h --initial-cluster $CL --log-level warn > $D/n$i.log 2>&1 &
  PIDS+=($!)
done
trap 'kill ${PIDS[@]} 2>/dev/null; wait; rm -rf $D' EXIT
EPS=127.0.0.1:47379,127.0.0.1:47389,127.0.0.1:47399
for i in $(seq 1 50); do $B/kvctl --endpoints $EPS endpoint status -w table >/dev/null 2>&1 && break; sleep 0.3; done
for try in $(seq 1 30); do
LEADER_HTTP=$($B/kvctl --endpoints $EPS endpoint status -w json 2>/dev/null | python3 -c '
import json,sys
for s in json.load(sys.stdin):
    if s["is_leader"]:
        h,p=s["endpoint"].rsplit(":",1); print(h+":"+str(int(p)+2))
')
if [ -z "$LEADER_HTTP" ]; then sleep 1; continue; fi; break; done
[ -n "$LEADER_HTTP" ] || { echo "no leader found"; exit 1; }
echo "console on the leader: $LEADER_HTTP"
open_console() { # a page: cluster polled every second, activity streamed, optional watch
  ( while true; do curl -s -o /dev/null http://$LEADER_HTTP/ui/api/cluster; sleep 1; done ) & CPIDS=($!)
  curl -s -N -o /dev/null http://$LEADER_HTTP/ui/api/activity & CPIDS+=($!)
  if [ "$1" = watch ]; then curl -s -N -o /dev/null "http://$LEADER_HTTP/ui/api/watch?prefix=" & CPIDS+=($!); fi
  sleep 1
  curl -s http://$LEADER_HTTP/ui/api/session >/dev/null || echo "console not reachable"
}
close_console() { kill ${CPIDS[@]} 2>/dev/null; wait ${CPIDS[@]} 2>/dev/null; }
cpu() { local t=0; for p in ${PIDS[@]}; do t=$((t + $(awk '{print $14+$15}' /proc/$p/stat))); done; echo $t; }
# One run: "requests/s cpu-ticks-per-1000-requests" (the members' CPU, all three).
bench() {
  local a b out
  a=$(cpu)
  out=$($B/kvctl --endpoints $EPS bench put --clients 1000 --conns 100 --key-space 10000 --duration ${DUR:-10s} -w json 2>/dev/null)
  b=$(cpu)
  echo "$out" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(round(d["requests_per_sec"]), round(('$b'-'$a')*1000/max(d["total"],1),2))'
}
$B/kvctl --endpoints $EPS bench put --clients 1000 --conns 100 --key-space 10000 --duration 5s >/dev/null 2>&1  # warm up
for pair in $(seq 1 ${PAIRS:-4}); do
  # Which comes first alternates, so that a drift of the machine's load
  # does not favour either.
  if [ $((pair % 2)) = 1 ]; then
    c=$(bench); open_console ${VARIANT:-live}; o=$(bench); close_console
  else
    open_console ${VARIANT:-live}; o=$(bench); close_console; c=$(bench)
  fi
  echo "pair $pair closed $c open $o" | tee -a ${RESULTS:-/dev/null}
done
