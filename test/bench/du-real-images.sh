#!/bin/bash
# du -sb of a store after a clean unmount: the 6 real xl save images of the
# last e2e-xen run copied in with cp, old (21db9ce) and new binary, CDC and
# page mode, same run.
IM=${IMAGES:-/var/cache/ckptfs-e2e/last-run/images}
declare -A BIN=([old]="${1:?usage: du-real-images.sh OLD_BINARY NEW_BINARY}" [new]="${2:?usage}")
W=$(mktemp -d)
for mode in cdc pages; do for v in old new; do
  d=$W/$v-$mode; rm -rf $d; mkdir -p $d/mnt
  flag=; [ $mode = pages ] && flag=--xen-pages
  ${BIN[$v]} mount $flag $d/store $d/mnt > $d/log 2>&1 &
  for i in $(seq 50); do grep -q ready: $d/log && break; sleep 0.1; done
  t0=$(date +%s.%N)
  for f in $IM/*; do cp $f $d/mnt/; done
  t1=$(date +%s.%N)
  umount $d/mnt; wait
  stored=$(${BIN[$v]} stats --json $d/store | python3 -c 'import json,sys; print(json.load(sys.stdin)["stored_bytes"])')
  all=$(du -sb $d/store | cut -f1)
  res=$(stat -c %s $d/store/CKPTFS-RESERVE 2>/dev/null || echo 0)
  wal=$(cat $d/store/*.log 2>/dev/null | wc -c)
  echo "$mode $v du=$all reserve=$res du-without-reserve=$((all-res)) wal=$wal stored=$stored cp=$(echo "$t1-$t0" | bc)s"
done; done
