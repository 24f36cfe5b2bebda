#!/bin/bash
# save-loop.sh BIN: a cron's save loop through a ckptfs mount. Two guests'
# images (512 MiB each, different contents) are written with dd bs=4M one
# right after the other, as `for g in a b; do xl save -c $g ...; done`
# does, then the second is read back (which waits for its commit); three
# rounds, each with new guests. Prints each close's time (the guests'
# pauses) and the time until both were committed.
set -e
B=${1:?usage: save-loop.sh CKPTFS-BINARY}
D=$(mktemp -d /tmp/save-loop.XXXXXX)
trap 'umount $D/mnt 2>/dev/null; sleep 1; rm -rf $D' EXIT
for s in 11 12 13 14 15 16; do "$B" xen synth --pages 131072 --seed $s --name s$s $D/s$s.xl; done
mkdir -p $D/mnt
"$B" mount --quiet $D/store $D/mnt > $D/log 2>&1 &
sleep 2
mkdir -p $D/mnt/a $D/mnt/b
for i in 1 2 3; do
  s1=$((9 + 2 * i)); s2=$((10 + 2 * i))
  s=$(date +%s.%N); dd if=$D/s$s1.xl of=$D/mnt/a/g$i.xl bs=4M 2>/dev/null; m=$(date +%s.%N)
  dd if=$D/s$s2.xl of=$D/mnt/b/g$i.xl bs=4M 2>/dev/null; e=$(date +%s.%N)
  cat $D/mnt/b/g$i.xl > /dev/null; c=$(date +%s.%N)
  echo "first close $(echo "$m - $s" | bc) s, second close $(echo "$e - $m" | bc) s, both committed $(echo "$c - $s" | bc) s"
  sleep 5
done
