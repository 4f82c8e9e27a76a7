#!/usr/bin/env bash
# Installs the system libraries ZeroTrain links against (Debian/Ubuntu), if missing.
set -euo pipefail
need=()
# wordnet-base: the WordNet database of `zerotrain data augment` (synonym replacement).
# iproute2 (ip, tc) and nftables (nft: packet loss where the kernel has no netem): scripts/netns-cluster.sh and its test.
for pkg in libzmq3-dev libopenblas-dev libnuma-dev libdnnl-dev zlib1g-dev libzstd-dev pkg-config wordnet-base iproute2 nftables; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
