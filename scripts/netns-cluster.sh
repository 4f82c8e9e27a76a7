#!/usr/bin/env bash
# A multi-host cluster on one machine: network namespaces as hosts, each with its own address,
# joined by veth links to a bridge that lives in a namespace of its own (no traffic touches the
# host's network). The coordinator runs in zt-coord (10.77.0.1), three workers in zt-w1..zt-w3
# (10.77.0.11-13), all with CURVE keys (zerotrain keygen). Three runs of the same job:
#
#   clean    no impairment
#   netem    tc netem: 5 ms delay and 1 % packet loss on every host's link; on a kernel without
#            the netem qdisc, "loss": 1 % of each host's packets dropped by nftables (no delay)
#   linkcut  once training is under way, worker 2's link goes down (ip link set … down) for
#            --cut-seconds, then up again: the coordinator declares it lost, recovers
#            (docs/fault-tolerance.md), and the job finishes
#
# and checks that every run finishes and that netem and linkcut train the clean run's losses step
# for step (the last record of each step). Needs root with CAP_NET_ADMIN and iproute2 (ip, tc);
# nft (nftables) for the loss run where the kernel has no netem.
#
#   scripts/netns-cluster.sh --zerotrain .build/release/zerotrain --config FILE --out DIR [--cut-seconds 4]
#
# Prints one line per event and a last line "netns: ok …" (exit 0) or "netns: FAILED …" (exit 1);
# exit 77 when the privileges are missing (namespaces cannot be created).
set -euo pipefail

zerotrain="" config="" out="" cut=4
while [ $# -gt 0 ]; do
  case "$1" in
    --zerotrain) zerotrain="$2"; shift 2 ;;
    --config) config="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --cut-seconds) cut="$2"; shift 2 ;;
    *) echo "netns: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -x "$zerotrain" ] && [ -f "$config" ] && [ -n "$out" ] || { echo "netns: need --zerotrain BIN --config FILE --out DIR" >&2; exit 2; }
zerotrain=$(readlink -f "$zerotrain")
command -v ip >/dev/null && command -v tc >/dev/null || { echo "netns: SKIPPED: iproute2 (ip, tc) is not installed (apt-get install iproute2)"; exit 77; }
if ! ip netns add "zt-probe-$$" 2>/dev/null; then
  echo "netns: SKIPPED: cannot create a network namespace (ip netns add needs root with CAP_NET_ADMIN and CAP_SYS_ADMIN)"; exit 77
fi
ip netns del "zt-probe-$$"

rm -rf "$out"; mkdir -p "$out"
out=$(readlink -f "$out")
say() { echo "netns: $*"; }
fail() { say "FAILED: $*"; exit 1; }

hosts=(zt-coord zt-w1 zt-w2 zt-w3)
addrs=(10.77.0.1 10.77.0.11 10.77.0.12 10.77.0.13)
pids=()
cleanup() {
  for p in "${pids[@]}"; do pkill -KILL -P "$p" 2>/dev/null || true; kill -KILL "$p" 2>/dev/null || true; done
  for h in "${hosts[@]}" zt-switch; do ip netns del "$h" 2>/dev/null || true; done
}
trap cleanup EXIT
trap "exit 1" TERM INT

# The switch: a namespace with a bridge; every host a namespace with one veth end (eth0) and the
# other end on the bridge.
for h in "${hosts[@]}" zt-switch; do ip netns del "$h" 2>/dev/null || true; ip netns add "$h"; done
ip -n zt-switch link add br0 type bridge
ip -n zt-switch link set br0 up
ip -n zt-switch link set lo up
for i in "${!hosts[@]}"; do
  h=${hosts[$i]}
  ip link add "veth-$h" netns zt-switch type veth peer name eth0 netns "$h"
  ip -n zt-switch link set "veth-$h" master br0 up
  ip -n "$h" addr add "${addrs[$i]}/24" dev eth0
  ip -n "$h" link set eth0 up
  ip -n "$h" link set lo up
done
# Reachability without ping: a TCP connect to a closed port is refused (RST) when the host answers.
probe=$(ip netns exec zt-w1 timeout 3 bash -c '</dev/tcp/10.77.0.1/9' 2>&1 || true)
case "$probe" in *refused*) ;; *) fail "the namespaces cannot reach each other ($probe)" ;; esac
say "hosts: $(for i in "${!hosts[@]}"; do printf '%s=%s ' "${hosts[$i]}" "${addrs[$i]}"; done)"

# Keys: one pair per host; the coordinator admits the three workers' public keys.
keys="$out/keys"
for n in coordinator w1 w2 w3; do "$zerotrain" keygen --out "$keys" --name "$n" >/dev/null; done
{ echo "# the workers of the netns cluster"; for n in w1 w2 w3; do grep -v '^#' "$keys/$n.pub"; done; } > "$keys/allowed"
job="$out/job.yaml"
{ cat "$config"; echo; echo "security: {allowed_workers: $keys/allowed, coordinator_public_key: $keys/coordinator.pub, job_token: netns-job}"; } > "$job"

# "step loss" lines, the last record of every step.
losses() { sed -n 's/.*"loss":\([^,}]*\).*"step":\([0-9]*\).*/\2 \1/p' "$1/metrics.jsonl" | awk '{last[$1]=$2} END {for (s in last) print s, last[s]}' | sort -n; }
steps_done() { [ -f "$1/metrics.jsonl" ] && wc -l < "$1/metrics.jsonl" || echo 0; }

run() {  # run NAME: trains the job once; returns the coordinator's exit status
  local name=$1 dir="$out/$1"
  mkdir -p "$dir"
  ip netns exec zt-coord "$zerotrain" coordinator --config "$job" --secret-key-file "$keys/coordinator.key" \
    --listen tcp://10.77.0.1:5555 --run-dir "$dir/run" --workers 3 > "$dir/coordinator.log" 2>&1 &
  local coordinator=$!
  pids=("$coordinator")
  # Each worker is restarted when it exits 1 while the coordinator runs, as systemd's
  # Restart=on-failure (deploy/systemd) would: a worker whose devices failed leaves with status 1.
  for i in 1 2 3; do
    (
      while true; do
        status=0
        ip netns exec "zt-w$i" "$zerotrain" worker --coordinator tcp://10.77.0.1:5555 --advertise "10.77.0.1$i" \
          --config "$job" --secret-key-file "$keys/w$i.key" --run-dir "$dir/w$i" >> "$dir/worker-$i.log" 2>&1 || status=$?
        [ "$status" -eq 1 ] && kill -0 "$coordinator" 2>/dev/null || break
        echo "netns: $name: worker $i exited with status 1; restarting it (as Restart=on-failure would)"
        sleep 0.5
      done
    ) &
    pids+=("$!")
  done
  if [ "$name" = linkcut ]; then
    local waited=0
    while [ "$(steps_done "$dir/run")" -lt 10 ] && [ $waited -lt 600 ]; do sleep 0.1; waited=$((waited + 1)); done
    say "linkcut: worker 2's link down at step $(steps_done "$dir/run") for ${cut} s"
    ip -n zt-w2 link set eth0 down
    sleep "$cut"
    ip -n zt-w2 link set eth0 up
    say "linkcut: worker 2's link up again"
  fi
  local status=0
  wait "$coordinator" || status=$?
  for p in "${pids[@]:1}"; do wait "$p" 2>/dev/null || true; done
  pids=()
  return $status
}

say "clean: training"
run clean || fail "the clean run failed (exit $?): $(tail -3 "$out/clean/coordinator.log")"
say "clean: $(losses "$out/clean/run" | wc -l) steps, last loss $(losses "$out/clean/run" | tail -1 | cut -d' ' -f2)"

if ip netns exec zt-coord tc qdisc add dev eth0 root netem delay 5ms loss 1% 2>/dev/null; then
  for h in "${hosts[@]:1}"; do ip netns exec "$h" tc qdisc add dev eth0 root netem delay 5ms loss 1%; done
  say "netem: 5 ms delay and 1 % loss on every link"
  run netem || fail "the netem run failed (exit $?): $(tail -3 "$out/netem/coordinator.log")"
  for h in "${hosts[@]}"; do ip netns exec "$h" tc qdisc del dev eth0 root; done
  say "netem: $(losses "$out/netem/run" | wc -l) steps, last loss $(losses "$out/netem/run" | tail -1 | cut -d' ' -f2)"
  [ "$(losses "$out/clean/run")" = "$(losses "$out/netem/run")" ] || fail "netem trained other losses than the clean run"
  netem="netem (5 ms, 1 % loss)"
elif command -v nft >/dev/null && ip netns exec zt-coord nft list tables >/dev/null 2>&1; then
  # No netem qdisc (CONFIG_NET_SCH_NETEM unset): the 1 % loss from nftables instead — every
  # host drops a random 1 % of the packets it sends on its link (numgen random). No qdisc this
  # kernel has delays packets, so there is no 5 ms latency in this run.
  for h in "${hosts[@]}"; do
    ip netns exec "$h" nft -f - <<'NFT'
table inet zt-loss {
  chain out {
    type filter hook output priority 0; policy accept;
    oifname "eth0" numgen random mod 100 < 1 counter drop
  }
}
NFT
  done
  say "netem: no netem qdisc in this kernel (CONFIG_NET_SCH_NETEM is not set): 1 % loss on every link with nftables, no delay"
  run loss || fail "the loss run failed (exit $?): $(tail -3 "$out/loss/coordinator.log")"
  dropped=0
  for h in "${hosts[@]}"; do
    n=$(ip netns exec "$h" nft list chain inet zt-loss out | sed -n 's/.*counter packets \([0-9]*\).*/\1/p')
    dropped=$((dropped + ${n:-0}))
    ip netns exec "$h" nft delete table inet zt-loss
  done
  say "loss: $(losses "$out/loss/run" | wc -l) steps, last loss $(losses "$out/loss/run" | tail -1 | cut -d' ' -f2); $dropped packets dropped"
  [ "$dropped" -gt 0 ] || fail "the loss run dropped no packet"
  [ "$(losses "$out/clean/run")" = "$(losses "$out/loss/run")" ] || fail "the loss run trained other losses than the clean run"
  netem="1 % loss (nftables; no netem, no delay)"
else
  say "netem: SKIPPED: this kernel has no netem qdisc (CONFIG_NET_SCH_NETEM is not set) and nft (nftables) is not installed; no delay or loss run"
  netem="no netem run (the kernel lacks it)"
fi

run linkcut || fail "the linkcut run failed (exit $?): $(tail -5 "$out/linkcut/coordinator.log")"
grep -E "lost|failed|membership [0-9]+ restores|assigned .* \(membership 2\)" "$out/linkcut/coordinator.log" | head -6 | sed 's/^/netns: linkcut: /'
grep -q "(membership 2)" "$out/linkcut/coordinator.log" || fail "no recovery after the link cut"
say "linkcut: $(losses "$out/linkcut/run" | wc -l) steps, last loss $(losses "$out/linkcut/run" | tail -1 | cut -d' ' -f2)"
[ "$(losses "$out/clean/run")" = "$(losses "$out/linkcut/run")" ] || fail "linkcut trained other losses than the clean run"

say "ok: clean, $netem and linkcut runs finished with the same losses ($(losses "$out/clean/run" | wc -l) steps, CURVE on)"
