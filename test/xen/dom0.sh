# Runs in dom0 (from the host share): stock xl against a ckptfs mount.
# Prints one PASS/FAIL line per check and TIME/STORED lines for the report;
# leaves the checkpoints rsynced out of the mount in /mnt/host/out.
H=/mnt/host
STORE=/tmp/store
CK=/ckpt
LOG=/var/log/xen/console/guest-guest.log
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.2f", b-a}'; }
check() { if [ "$1" = 0 ]; then echo "PASS $2"; else echo "FAIL $2"; fi; }
tick() { grep -a '^TICK' $LOG 2>/dev/null | tail -1 | awk '{print $2 + 0}'; }
waitfor() { i=0; until grep -aq "$1" $LOG 2>/dev/null; do i=$((i+1)); [ $i -gt "$2" ] && return 1; sleep 1; done; }
waittick() { i=0; while :; do t=$(tick); [ -n "$t" ] && [ "$t" -gt "$1" ] && return 0; i=$((i+1)); [ $i -gt "$2" ] && return 1; sleep 1; done; }
stored() { echo "STORED $1 $($H/ckptfs stats --json $STORE)"; }

# CKPTFS_E2E_PROFILE=1 on the host: the daemon's CPU profile, for where
# the time of a save goes under emulation.
PROF=; [ -f $H/profile ] && PROF=$H/ckptfs-cpu.prof
CKPTFS_CPUPROFILE=$PROF $H/ckptfs mount $STORE $CK > /tmp/ckptfs.log 2>&1 &
CKPID=$!
i=0; until grep -q ready: /tmp/ckptfs.log; do i=$((i+1)); [ $i -gt 60 ] && break; sleep 1; done
grep -q ready: /tmp/ckptfs.log; check $? "ckptfs-mount"
mkdir -p $CK/guest

xl create -q $H/guest.cfg
waitfor GUEST_FILLED 300 && waittick 2 120; check $? "guest-running (tick $(tick))"

for n in 1 2 3 4; do
  t=$(now); xl save -c guest $CK/guest/c$n; rc=$?
  echo "TIME save-c-mount-$n $(since $t)s"
  check $rc "xl-save-c-into-mount c$n (tick $(tick))"
  stored c$n
  sleep 3
done

# The same guest saved to tmpfs once: the mount-vs-tmpfs time, and a copy
# through the mount compared byte for byte.
t=$(now); xl save -c guest /tmp/ref; rc=$?
echo "TIME save-c-tmpfs $(since $t)s"
check $rc "xl-save-c-into-tmpfs"
cp /tmp/ref $CK/guest/ref-copy && cmp /tmp/ref $CK/guest/ref-copy; check $? "cp-into-mount-byte-identical"
waittick $(( $(tick) + 1 )) 60; check $? "guest-runs-after-save-c (tick $(tick))"

# The same into a passthrough FUSE mount (go-fuse's loopback over tmpfs):
# the FUSE transport's own cost, the baseline ckptfs is measured against.
# A measurement, not a check: without it the ratios are not printed.
mkdir -p /passthru /tmp/passthru-backing
$H/loopback -q -directmountstrict /passthru /tmp/passthru-backing > /tmp/loopback.log 2>&1 &
LBPID=$!
i=0; until grep -q ' /passthru ' /proc/mounts; do i=$((i+1)); [ $i -gt 30 ] && break; sleep 1; done
if grep -q ' /passthru ' /proc/mounts; then
  PASSTHRU=1
  for n in 1 2; do
    t=$(now); xl save -c guest /passthru/p$n; rc=$?
    echo "TIME save-c-passthrough-$n $(since $t)s"
    [ $rc = 0 ] || echo "INFO xl save -c into the passthrough mount failed ($rc)"
    sleep 3
  done
else
  echo "INFO passthrough-unavailable: $(head -3 /tmp/loopback.log)"
fi

before=$(tick)
t=$(now); xl save guest $CK/guest/final; rc=$?
echo "TIME save-mount $(since $t)s"
check $rc "xl-save-into-mount final (tick $before)"
stored final
xl list guest >/dev/null 2>&1; [ $? != 0 ]; check $? "guest-stopped-by-save"

# The newest checkpoint by its stable name: guest/latest, kept by the daemon.
[ "$(readlink $CK/guest/latest)" = final ]; check $? "latest-names-newest-checkpoint ($(readlink $CK/guest/latest))"
t=$(now); xl restore -e $CK/guest/latest; rc=$?
echo "TIME restore-mount $(since $t)s"
check $rc "xl-restore-from-mount"
waittick $(( before + 2 )) 120; check $? "counter-continues-after-restore (before $before, now $(tick))"
xl destroy guest

if [ -n "$PASSTHRU" ]; then
  t=$(now); xl restore -e /passthru/p2; rc=$?
  echo "TIME restore-passthrough $(since $t)s"
  [ $rc = 0 ] || echo "INFO xl restore from the passthrough mount failed ($rc)"
  xl destroy guest 2>/dev/null
  rm -f /passthru/p1 /passthru/p2
fi
umount /passthru 2>/dev/null; kill $LBPID 2>/dev/null; wait $LBPID 2>/dev/null

before=$(tick)
t=$(now); xl restore -e /tmp/ref; rc=$?
echo "TIME restore-tmpfs $(since $t)s"
check $rc "xl-restore-from-tmpfs"
waittick 1 60; check $? "counter-runs-after-tmpfs-restore"
xl destroy guest

# Out of the mount to the host: rsync, and checksums the host compares.
t=$(now); rsync -a $CK/guest/ $H/out/; rc=$?
echo "TIME rsync-out $(since $t)s"
check $rc "rsync-out-of-mount"
(cd $CK/guest && sha256sum c1 c2 c3 c4 final ref-copy) > $H/out.sha256
check $? "sha256-in-mount"
$H/ckptfs fsck $STORE > /tmp/fsck.log 2>&1; rc=$?; cat /tmp/fsck.log
check $rc "ckptfs-fsck"
$H/ckptfs stats $STORE

# Restart elsewhere: the guest's lineage pushed from the live mount to a
# second store (standing in for another host's, as `ckptfs pull` on that
# host would fetch it), mounted, and the last checkpoint restored from it.
t=$(now); $H/ckptfs push --guest guest $CK /tmp/store2 > /tmp/push.log 2>&1; rc=$?
echo "TIME push-lineage $(since $t)s"; cat /tmp/push.log
check $rc "push-lineage-to-another-store"
mkdir -p /tmp/ck2
$H/ckptfs mount /tmp/store2 /tmp/ck2 > /tmp/ckptfs2.log 2>&1 &
CK2PID=$!
i=0; until grep -q ready: /tmp/ckptfs2.log; do i=$((i+1)); [ $i -gt 60 ] && break; sleep 1; done
cmp $CK/guest/final /tmp/ck2/guest/final; check $? "pushed-lineage-byte-identical"
ticks=$(grep -ac '^TICK' $LOG)
t=$(now); xl restore -e /tmp/ck2/guest/final; rc=$?
echo "TIME restore-pushed $(since $t)s"
check $rc "xl-restore-from-pushed-store"
i=0; until [ "$(grep -ac '^TICK' $LOG)" -gt $(( ticks + 1 )) ] || [ $i -gt 120 ]; do i=$((i+1)); sleep 1; done
[ $i -le 120 ]; check $? "counter-runs-after-restore-elsewhere (tick $(tick))"
xl destroy guest
kill -TERM $CK2PID; wait $CK2PID; check $? "second-store-clean-unmount"

echo "INFO guest OOM kills: $(grep -ac 'Out of memory' $LOG)"
kill -TERM $CKPID; wait $CKPID; check $? "ckptfs-clean-unmount"
echo DOM0_DONE
