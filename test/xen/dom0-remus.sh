# Runs in dom0 instead of dom0.sh (make e2e-remus: run.sh with
# DOM0=dom0-remus.sh XEN_SHADOW=1): stock `xl remus` of the test guest into
# `ckptfs xen receive` on a ckptfs mount, then `xl restore` of the latest and
# an older published generation. The hypervisor is Debian's Xen 4.17 rebuilt
# with shadow paging, which a PV guest's log-dirty mode needs (see run.sh).
#
# The guest's pausemeter prints "GAP ms" whenever the guest was stopped; the
# pause per checkpoint is compared over three windows of the same run: no
# remus (noise), xl remus into the receiver, and xl remus -b (to /dev/null).
# Prints PASS/FAIL per check and INFO lines for the report; rsyncs the two
# restored generations to /mnt/host/out for the host-side checks.
H=/mnt/host
STORE=/tmp/store
CK=/ckpt
D=$CK/remus
LOG=/var/log/xen/console/guest-guest.log
INTERVAL=${INTERVAL:-3000} # ms, xl remus -i
WANT=${WANT:-6}            # checkpoints measured after the first
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.2f", b-a}'; }
check() { if [ "$1" = 0 ]; then echo "PASS $2"; else echo "FAIL $2"; fi; }
tick() { grep -a '^TICK' $LOG 2>/dev/null | tail -1 | awk '{print $2 + 0}'; }
lines() { wc -l < $LOG; }
gens() { ls $D 2>/dev/null | grep -c '^[0-9]'; }
waitfor() { i=0; until grep -aq "$1" $LOG 2>/dev/null; do i=$((i+1)); [ $i -gt "$2" ] && return 1; sleep 1; done; }
waittick() { i=0; while :; do t=$(tick); [ -n "$t" ] && [ "$t" -gt "$1" ] && return 0; i=$((i+1)); [ $i -gt "$2" ] && return 1; sleep 1; done; }
# firsttick FROM: the first TICK after console line FROM (waits up to 120 s).
firsttick() {
  i=0
  while [ $i -lt 120 ]; do
    t=$(tail -n +"$(( $1 + 1 ))" $LOG | grep -a '^TICK' | head -1 | awk '{print $2 + 0}')
    [ -n "$t" ] && { echo "$t"; return 0; }
    i=$((i+1)); sleep 1
  done
  return 1
}
# pauses NAME FROM TO SECONDS CHECKPOINTS: the GAP lines between two console
# line numbers, as one INFO line.
pauses() {
  tail -n +"$(( $2 + 1 ))" $LOG | head -n "$(( $3 - $2 ))" | grep -a '^GAP' | awk '{print $2 + 0}' | sort -n |
    awk -v name="$1" -v secs="$4" -v cps="$5" '
      {v[NR] = $1; sum += $1}
      END {
        n = NR; med = n ? v[int((n + 1) / 2)] : 0; p90 = n ? v[int(n * 0.9 + 0.999)] : 0; max = n ? v[n] : 0
        printf "INFO pause %s: %.0f s, %d checkpoints, %d gaps over 40 ms: median %d ms, p90 %d ms, max %d ms, stopped %.1f%% of the time, %.0f ms per checkpoint\n",
          name, secs, cps, n, med, p90, max, 100 * sum / (secs * 1000), cps ? sum / cps : 0
      }'
}

$H/ckptfs mount $STORE $CK > /tmp/ckptfs.log 2>&1 &
CKPID=$!
i=0; until grep -q ready: /tmp/ckptfs.log; do i=$((i+1)); [ $i -gt 60 ] && break; sleep 1; done
grep -q ready: /tmp/ckptfs.log; check $? "ckptfs-mount"
mkdir -p $D
xl create -q $H/guest.cfg
waitfor GUEST_FILLED 300 && waittick 2 120; check $? "guest-running (tick $(tick))"

# 1. Noise: 30 s with no remus.
l0=$(lines); t=$(now); sleep 30
pauses "no-remus" "$l0" "$(lines)" "$(since $t)" 0

# 2. xl remus into the receiver, until WANT checkpoints after the first.
echo "INFO tick-at-remus-start $(tick)"
t=$(now)
xl remus -F -n -d -s "" -i $INTERVAL guest "$H/ckptfs xen receive --into $D" > /tmp/remus.out 2> /tmp/remus.err &
RP=$!
: > /tmp/pub; : > /tmp/ticks
i=0; while [ "$(gens)" = 0 ] && [ $i -lt 600 ] && kill -0 $RP 2>/dev/null; do echo "$(date +%s.%N) $(tick)" >> /tmp/ticks; i=$((i+1)); sleep 1; done
[ "$(gens)" -gt 0 ]; check $? "xl-remus-first-checkpoint-published ($(since $t)s)"
# Checkpoint 0 (every page, and the precopy rounds) leaves the store a
# backlog; the windows below measure the steady state, once the generations
# published have caught up with the checkpoints xl took.
suspends() { grep -ac 'Domain now suspended' /tmp/remus.err; }
i=0; while [ "$(gens)" -lt $(( $(suspends) - 1 )) ] && [ $i -lt 300 ] && kill -0 $RP 2>/dev/null; do
  echo "$(date +%s.%N) $(tick)" >> /tmp/ticks; i=$((i+1)); sleep 1
done
echo "INFO caught up after $(since $t)s: $(gens) generations, $(suspends) checkpoints taken"
l1=$(lines); t1=$(now); g1=$(gens); r1=$(suspends)
# /tmp/ticks: "epoch tick" every half second while checkpoints are taken,
# to bound the tick at which each checkpoint was taken (see restore).
seen() {
  n=$(gens); tk=$(tick)
  echo "$(date +%s.%N) $tk" >> /tmp/ticks
  while [ "$(wc -l < /tmp/pub)" -lt "$n" ]; do echo "$tk" >> /tmp/pub; echo "INFO published $(wc -l < /tmp/pub) at tick $tk"; done
}
i=0
while [ "$(gens)" -lt $(( g1 + WANT )) ] && [ $i -lt 600 ] && kill -0 $RP 2>/dev/null; do
  seen; i=$((i+1)); sleep 0.5
done
for _ in 1 2 3 4 5 6; do seen; sleep 0.5; done # ticks past the last one
l2=$(lines); secs=$(since $t1); g2=$(gens); r2=$(suspends)
echo "INFO xl reported Domain-now-suspended $(( r2 - r1 )) times while $(( g2 - g1 )) generations were published"
[ "$g2" -ge $(( g1 + WANT )) ]; check $? "xl-remus-into-receive ($g2 generations, $(( g2 - g1 )) in ${secs}s at -i $INTERVAL)"
pauses "receiver" "$l1" "$l2" "$secs" "$(( r2 - r1 ))"
echo "INFO interval -i $INTERVAL ms: $(( r2 - r1 )) checkpoints in ${secs}s"
grep -a 'ckptfs: checkpoint' /tmp/remus.err | sed 's/^/INFO receiver /'

# The receiver dies (as if the backup host went away): xl resumes the guest,
# and every generation published stays.
pkill -f 'ckptfs xen receive'
i=0; while kill -0 $RP 2>/dev/null && [ $i -lt 60 ]; do i=$((i+1)); sleep 1; done
! kill -0 $RP 2>/dev/null; check $? "xl-remus-stops-when-receiver-dies"
grep -a -E 'ckptfs: |Remus|resum|rror' /tmp/remus.err | grep -av 'ckptfs: checkpoint' | tail -8 | sed 's/^/INFO xl-remus-err /'
b=$(tick); waittick $(( b + 1 )) 60; check $? "guest-runs-on-after-receiver-died (tick $b, now $(tick))"

# 3. xl remus -b (checkpoints to /dev/null), the same guest, the same span.
xl remus -F -n -d -b -i $INTERVAL guest blackhole > /tmp/remus-b.out 2> /tmp/remus-b.err &
BP=$!
i=0; until grep -aq 'Domain now suspended' /tmp/remus-b.err || [ $i -gt 600 ] || ! kill -0 $BP 2>/dev/null; do i=$((i+1)); sleep 1; done
sleep $(( INTERVAL * 2 / 1000 + 1 ))
kill -0 $BP 2>/dev/null; check $? "xl-remus-b-running"
# libxc reports "Domain now suspended" once per checkpoint.
cps() { grep -ac 'Domain now suspended' /tmp/remus-b.err; }
l3=$(lines); t3=$(now); c3=$(cps)
sleep "${secs%.*}"
l4=$(lines); s3=$(since $t3); c4=$(cps)
pauses "remus-b" "$l3" "$l4" "$s3" "$(( c4 - c3 ))"
echo "INFO xl-remus-b-err $(wc -l < /tmp/remus-b.err) lines; last: $(tail -8 /tmp/remus-b.err | tr '\n' '|')"
kill -9 $BP 2>/dev/null; sleep 2
xl destroy guest

# 4. Restore the latest and an older generation from the mount: the counter
# goes on from where that checkpoint was taken.
ls -la $D | sed 's/^/INFO ls /'
$H/ckptfs stats $STORE | sed 's/^/INFO stats /'
# A generation is named by when its checkpoint's end reached the receiver
# (T): the guest was suspended shortly before. So the checkpoint's tick is
# at least the last one seen 3 s before T and at most the first seen 1 s
# after T.
restore() { # restore K NAME
  name=$(ls $D | sed -n "${1}p"); f=$D/$name
  T=$(date -d "${name#*-}" +%s.%N)
  lo=$(awk -v t="$T" '$1 <= t - 3 {v = $2} END {print v + 0}' /tmp/ticks)
  hi=$(awk -v t="$T" '$1 >= t + 1 {print $2; exit}' /tmp/ticks); hi=${hi:-$(tick)}
  from=$(lines)
  t=$(now); xl restore -e "$f"; rc=$?
  echo "TIME restore-generation-$1 $(since $t)s"
  check $rc "xl-restore-remus-$2 $(basename "$f")"
  got=$(firsttick "$from")
  [ -n "$got" ] && [ $(( got - 1 )) -ge "$lo" ] && [ $(( got - 1 )) -le "$hi" ]
  check $? "counter-continues-$2 (checkpoint between ticks $lo and $hi, guest went on at tick $got)"
  xl destroy guest
  echo "$(sha256sum < "$f" | cut -d' ' -f1)  $2" >> $H/out.sha256
  rsync "$f" $H/out/$2; check $? "rsync-out-of-mount $2"
}
restore "$g2" latest
restore $(( g2 - WANT / 2 - 1 )) older
grep -a -E '^(PAUSEMETER|MEMINFO)' $LOG | tail -4 | sed 's/^/INFO /'
echo "INFO guest OOM kills: $(grep -ac 'Out of memory' $LOG) (the pause figures need the pausemeter alive)"
cp $LOG $H/guest-console.log
$H/ckptfs fsck $STORE > /tmp/fsck.log 2>&1; check $? "ckptfs-fsck"
kill -TERM $CKPID; wait $CKPID; check $? "ckptfs-clean-unmount"
echo DOM0_DONE
