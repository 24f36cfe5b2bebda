# Runs in dom0 instead of dom0.sh with `DOM0=dom0-remus.sh test/xen/run.sh`:
# stock `xl remus` of the test guest into `ckptfs xen receive` on a ckptfs
# mount, then `xl restore` of the latest and an older published generation.
# On Debian's Xen 4.17 this stops at the first step: the hypervisor is built
# without CONFIG_SHADOW_PAGING, and a PV guest's log-dirty mode (which Remus,
# like live migration, needs) is shadow paging, so libxc's
# XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY fails with EOPNOTSUPP ("Failed to
# enable logdirty: 95,22,0"). The INFO lines carry xl's own messages. The
# host-side checks of run.sh expect dom0.sh's images and fail in this mode.
H=/mnt/host
STORE=/tmp/store
CK=/ckpt
LOG=/var/log/xen/console/guest-guest.log
now() { date +%s.%N; }
check() { if [ "$1" = 0 ]; then echo "PASS $2"; else echo "FAIL $2"; fi; }
tick() { grep -a '^TICK' $LOG 2>/dev/null | tail -1 | awk '{print $2 + 0}'; }
waitfor() { i=0; until grep -aq "$1" $LOG 2>/dev/null; do i=$((i+1)); [ $i -gt "$2" ] && return 1; sleep 1; done; }
waittick() { i=0; while :; do t=$(tick); [ -n "$t" ] && [ "$t" -gt "$1" ] && return 0; i=$((i+1)); [ $i -gt "$2" ] && return 1; sleep 1; done; }

$H/ckptfs mount $STORE $CK > /tmp/ckptfs.log 2>&1 &
CKPID=$!
i=0; until grep -q ready: /tmp/ckptfs.log; do i=$((i+1)); [ $i -gt 60 ] && break; sleep 1; done
grep -q ready: /tmp/ckptfs.log; check $? "ckptfs-mount"
mkdir -p $CK/remus
xl create -q $H/guest.cfg
waitfor GUEST_FILLED 300 && waittick 2 120; check $? "guest-running (tick $(tick))"
echo "INFO tick-at-remus-start $(tick)"
xl remus -F -n -d -s "" -i 3000 guest "$H/ckptfs xen receive --into $CK/remus" > /tmp/remus.out 2> /tmp/remus.err &
RP=$!
sleep 75
[ "$(ls $CK/remus | wc -l)" -gt 0 ]; check $? "xl-remus-into-receive (generations published)"
echo "INFO remus generations: $(ls $CK/remus | wc -l) tick $(tick)"
ls -la $CK/remus | sed 's/^/INFO ls /'
sed 's/^/INFO xl-remus-err /' /tmp/remus.err | head -60
head -c 2000 /tmp/remus.out | sed 's/^/INFO xl-remus-out /'
xl list | sed 's/^/INFO xl-list /'
before=$(tick); echo "INFO tick-before-kill $before"
kill $RP; sleep 3; kill -9 $RP 2>/dev/null
sleep 2
xl list | sed 's/^/INFO xl-list-after-kill /'
xl destroy guest
n=$(ls $CK/remus | wc -l)
if [ "$n" -gt 0 ]; then
  latest=$CK/remus/$(ls $CK/remus | tail -1)
  $H/ckptfs xen inspect $latest | sed 's/^/INFO inspect /'
  xl restore -e $latest; check $? "xl-restore-remus-latest $latest"
  sleep 8; echo "INFO tick-after-restore-latest $(tick)"
  grep -a '^TICK' $LOG | tail -12 | tr '\n' ' ' | sed 's/^/INFO ticks /'; echo
  xl destroy guest
fi
if [ "$n" -gt 2 ]; then
  older=$CK/remus/$(ls $CK/remus | head -2 | tail -1)
  xl restore -e $older; check $? "xl-restore-remus-older $older"
  sleep 8; echo "INFO tick-after-restore-older $(tick)"
  grep -a '^TICK' $LOG | tail -12 | tr '\n' ' ' | sed 's/^/INFO ticks /'; echo
  xl destroy guest
fi
$H/ckptfs fsck $STORE > /tmp/fsck.log 2>&1; check $? "ckptfs-fsck"
kill -TERM $CKPID; wait $CKPID
echo DOM0_DONE
