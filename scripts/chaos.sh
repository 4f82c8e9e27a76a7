#!/usr/bin/env bash
# Chaos test of recovery: a local cluster trains while workers, and once the coordinator, are
# killed with SIGKILL at random moments (one while a checkpoint is being written, one while the
# in-memory replicas are being exchanged); the job
# must finish with the final loss and weights of an uninterrupted run, every committed checkpoint
# must verify, and no process may be left behind.
#
#   scripts/chaos.sh --zerotrain .build/release/zerotrain --config configs/chaos.yaml --out /tmp/chaos \
#                    [--workers 3] [--kills 4] [--seed 1]
#
# Prints one line per event and a last line "chaos: ok …" (exit 0) or "chaos: FAILED …" (exit 1).
# The reference run (no kills) is made first, in OUT/reference; the chaos run in OUT/chaos.
set -euo pipefail

zerotrain="" config="" out="" workers=3 kills=4 seed=$RANDOM
while [ $# -gt 0 ]; do
  case "$1" in
    --zerotrain) zerotrain="$2"; shift 2 ;;
    --config) config="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --workers) workers="$2"; shift 2 ;;
    --kills) kills="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    *) echo "chaos: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -x "$zerotrain" ] && [ -f "$config" ] && [ -n "$out" ] || { echo "chaos: need --zerotrain BIN --config FILE --out DIR" >&2; exit 2; }
RANDOM=$seed
rm -rf "$out"; mkdir -p "$out"
fail() { echo "chaos: FAILED: $*"; exit 1; }
say() { echo "chaos: $*"; }

# The last record of every step (a step redone after a recovery is logged again; the last wins):
# "step loss" lines, sorted by step.
losses() { sed -n 's/.*"loss":\([^,}]*\).*"step":\([0-9]*\).*/\2 \1/p' "$1/metrics.jsonl" | awk '{last[$1]=$2} END {for (s in last) print s, last[s]}' | sort -n; }
last_step() { local s=""; [ -f "$1/metrics.jsonl" ] && s=$(sed -n 's/.*"step":\([0-9]*\).*/\1/p' "$1/metrics.jsonl" | tail -1); echo "${s:--1}"; }
children() { pgrep -P "$1" 2>/dev/null || true; }
role_pids() {  # launcher-pid role -> pids of its children running that subcommand
  for p in $(children "$1"); do
    tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | grep -q " $2 " && echo "$p"
  done
  return 0
}

say "seed $seed; reference run with $workers workers"
"$zerotrain" local --config "$config" --workers "$workers" --run-dir "$out/reference" > "$out/reference.log" 2>&1 \
  || fail "the reference run failed (see $out/reference.log)"
total=$(losses "$out/reference" | wc -l)
[ "$total" -gt 20 ] || fail "the reference run logged only $total steps"

# Fault-injection hooks that widen two windows for the kills aimed at them: a checkpoint's shard
# write, and the replica exchange after a step whose number is a multiple of replica_interval.
export ZEROTRAIN_FAULT_SLOW_SHARD_WRITE_MS=400 ZEROTRAIN_FAULT_SLOW_REPLICA_MS=200
replica_interval=$(sed -n 's/^ *replica_interval: *\([0-9]*\).*/\1/p' "$config" | head -1)
"$zerotrain" local --config "$config" --workers "$workers" --run-dir "$out/chaos" > "$out/chaos.log" 2>&1 &
launcher=$!
trap 'kill -9 $launcher 2>/dev/null || true' EXIT
# The kinds of kill, in a random order: always one coordinator, one during a checkpoint write and
# (with replicas) one during a replica exchange.
plan=(coordinator checkpoint)
[ "${replica_interval:-0}" -gt 0 ] && plan+=(replica)
while [ ${#plan[@]} -lt "$kills" ]; do plan+=(worker); done
plan=($(printf '%s\n' "${plan[@]}" | awk -v s="$seed" 'BEGIN{srand(s)} {print rand() "\t" $0}' | sort -n | cut -f2))
done_kills=0
for kind in "${plan[@]}"; do
  # Let the job make progress first: a random number of steps past the last one seen.
  target=$(( $(last_step "$out/chaos") + 3 + RANDOM % (total / (kills + 2) + 1) ))
  while [ "$(last_step "$out/chaos")" -lt "$target" ]; do
    kill -0 $launcher 2>/dev/null || break 2
    sleep 0.05
  done
  case "$kind" in
    coordinator)
      victim=$(role_pids $launcher coordinator | head -1) ;;
    checkpoint)
      # Wait until some rank is writing its shard (a pending step folder exists), then kill a worker.
      deadline=$(( $(date +%s) + 60 ))
      until ls -d "$out/chaos/checkpoints/"*.tmp >/dev/null 2>&1; do
        [ "$(date +%s)" -lt $deadline ] || fail "no checkpoint write seen within 60 s"
        sleep 0.01
      done
      victim=$(role_pids $launcher worker | shuf -n 1 --random-source=<(yes $seed)) ;;
    replica)
      # Right after a step that refreshes the replicas: the exchange is in flight for the next 200 ms.
      until [ $(( ($(last_step "$out/chaos") + 1) % replica_interval )) -eq 0 ]; do
        kill -0 $launcher 2>/dev/null || break 2
        sleep 0.005
      done
      victim=$(role_pids $launcher worker | shuf -n 1 --random-source=<(yes $RANDOM)) ;;
    worker)
      victim=$(role_pids $launcher worker | shuf -n 1 --random-source=<(yes $RANDOM)) ;;
  esac
  [ -n "$victim" ] || fail "no $kind process to kill"
  say "kill -9 $victim ($kind) at step $(last_step "$out/chaos")"
  kill -9 "$victim"
  done_kills=$((done_kills + 1))
done
wait $launcher && status=0 || status=$?
trap - EXIT
[ "$status" -eq 0 ] || fail "the job exited $status after $done_kills kills (see $out/chaos.log)"
[ "$done_kills" -eq "$kills" ] || fail "the job finished before all kills were made ($done_kills of $kills)"

# The same losses, step by step (within 1e-5 relative), and the same final weights.
paste <(losses "$out/reference") <(losses "$out/chaos") | awk '
  NF != 4 || $1 != $3 { print "chaos: FAILED: step lists differ at: " $0; bad = 1; exit }
  { d = $2 - $4; if (d < 0) d = -d; r = $2 < 0 ? -$2 : $2; if (d > 1e-5 * r) { print "chaos: FAILED: step " $1 " loss " $4 " vs " $2; bad = 1; exit } }
  END { exit bad }' || exit 1
ref_final=$(cat "$out/reference/checkpoints/latest"); chaos_final=$(cat "$out/chaos/checkpoints/latest")
[ "$ref_final" = "$chaos_final" ] || fail "final checkpoints differ: $ref_final vs $chaos_final"
for f in "$out/reference/checkpoints/$ref_final/"shard-*; do
  cmp -s "$f" "$out/chaos/checkpoints/$chaos_final/$(basename "$f")" || fail "final weights differ in $(basename "$f")"
done
# Every committed checkpoint verifies; no pending folder became one.
verified=0
for d in "$out/chaos/checkpoints/"step-*; do
  case "$d" in *.tmp) continue ;; esac
  "$zerotrain" checkpoint verify "$d" > /dev/null || fail "checkpoint $d does not verify"
  verified=$((verified + 1))
done
# No process of the run is left.
sleep 0.5
left=$(pgrep -af "zerotrain-local-$launcher-" || true)
[ -z "$left" ] || fail "processes left: $left"
say "ok: $done_kills kills (${plan[*]}), $total steps; losses equal the reference's, final weights identical ($chaos_final), $verified checkpoint(s) verified, no process left"
