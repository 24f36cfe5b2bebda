# Runs in dom0 instead of dom0.sh (make e2e-remus: run.sh with
# DOM0=dom0-remus.sh XEN_SHADOW=1): stock `xl remus` of the test guest into
# `ckptfs xen receive` on a ckptfs mount, then `xl restore` of the latest and
# an older published generation. The hypervisor is Debian's Xen 4.17 rebuilt
# with shadow paging, which a PV guest's log-dirty mode needs (see run.sh).
#
# The guest's pausemeter prints "GAP ms" whenever the guest was stopped; the
# pause per checkpoint is compared over three windows of the same run: no
# remus (noise), xl remus -b (checkpoints to /dev/null), and xl remus into
# the receiver. Prints PASS/FAIL per check and INFO lines for the report;
# copies the two restored generations to /mnt/host/out for the host-side
# checks.
#
# Every wait is bounded by the wall clock, and polling is kept sparse: in
# dom0 under TCG each process started costs tens of milliseconds of the
# CPU the receiver and xl need.
H=/mnt/host
STORE=/tmp/store
CK=/ckpt
D=$CK/remus
LOG=/var/log/xen/console/guest-guest.log
INTERVAL=${INTERVAL:-3000} # ms, xl remus -i
WANT=${WANT:-6}            # checkpoints measured once the receiver keeps up
SPAN=${SPAN:-45}           # seconds of xl remus -b measured
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.2f", b-a}'; }
check() { if [ "$1" = 0 ]; then echo "PASS $2"; else echo "FAIL $2"; fi; }
# tick: the guest's latest counter (the log's tail is enough).
tick() { tail -c 8192 $LOG 2>/dev/null | grep -a '^TICK' | tail -n 1 | awk '{print $2 + 0}'; }
lines() { wc -l < $LOG; }
gens() { ls $D 2>/dev/null | grep -c '^[0-9]'; }
suspends() { grep -ac 'Domain now suspended' "$1"; }
# until SECS CMD...: poll CMD every 2 s for at most SECS seconds.
until_() { e=$(( $(date +%s) + $1 )); shift; until "$@"; do [ "$(date +%s)" -ge $e ] && return 1; sleep 2; done; }
# after FROM: the console log past line FROM (all of it, were it reopened).
after() { if [ "$(lines)" -lt "$1" ]; then cat $LOG; else tail -n +"$(( $1 + 1 ))" $LOG; fi 2>/dev/null; }
# guest_up FROM: the guest filled its memory and ticks, after line FROM.
guest_up() { after "$1" | grep -aq '^TICK 2'; }
# firsttick FROM: the first TICK after line FROM.
firsttick() { after "$1" | grep -a '^TICK' | head -1 | awk '{print $2 + 0}'; }
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
        printf "%.0f\n", cps ? sum / cps : 0 > ("/tmp/pause-" name)
      }'
}
# summary FIRST LAST: the receiver's checkpoint lines FIRST..LAST as one
# INFO line (medians; Go durations parsed).
summary() {
  grep -a 'ckptfs: checkpoint [0-9]*:' /tmp/remus.err | awk -v a="$1" -v b="$2" -v iv="$INTERVAL" '
    function dur(s,  v, m) {
      v = 0
      if (s ~ /^[0-9.]+m[0-9]/) { m = s; sub(/m.*/, "", m); v = m * 60; sub(/^[0-9.]+m/, "", s) }
      if (s ~ /ms$/) { sub(/ms$/, "", s); return v + s / 1000 }
      if (s ~ /s$/ && s !~ /[^0-9.]s$/) { sub(/s$/, "", s); return v + s }
      return v + 0.000001
    }
    function num(re, skip,  t) { if (!match($0, re)) return 0; t = substr($0, RSTART + skip, RLENGTH - skip); return t + 0 }
    function str(re, skip, cut) { if (!match($0, re)) return ""; return substr($0, RSTART + skip, RLENGTH - skip - cut) }
    function med(arr, n,  i, j, t) { for (i = 2; i <= n; i++) { t = arr[i]; for (j = i - 1; j >= 1 && arr[j] > t; j--) arr[j + 1] = arr[j]; arr[j + 1] = t } return n ? arr[int((n + 1) / 2)] : 0 }
    {
      c = $3; sub(/:$/, "", c); c += 0
      if (c < a || c > b) next
      n++
      pg[n] = num("[0-9]+ pages received", 0); en[n] = num("[0-9]+ page entries", 0)
      by[n] = num("[(][0-9]+ bytes[)] stored", 1); sum += by[n]; pages += pg[n]
      bt[n] = dur(str("built in [^,]+,", 9, 1)); if (bt[n] > btmax) btmax = bt[n]
      iv2[n] = dur(str(", [^ ]+ since the previous", 2, 19))
    }
    END {
      if (!n) { print "INFO receiver window: no checkpoint lines"; exit }
      printf "INFO receiver window: checkpoints %d-%d: interval median %.2f s at -i %d ms; per checkpoint median %d pages received, %d page entries, %d bytes stored (%.0f bytes per page received over the window); publish (metadata) median %.3f s, max %.3f s\n",
        a, b, med(iv2, n), iv, med(pg, n), med(en, n), med(by, n), pages ? sum / pages : 0, med(bt, n), btmax
    }'
}

$H/ckptfs mount $STORE $CK > /tmp/ckptfs.log 2>&1 &
CKPID=$!
until_ 60 grep -q ready: /tmp/ckptfs.log; check $? "ckptfs-mount"
mkdir -p $D
xl create -q $H/guest.cfg
until_ 300 guest_up 0; check $? "guest-running (tick $(tick))"

# 1. Noise: 30 s with no remus.
l0=$(lines); t=$(now); sleep 30
pauses "no-remus" "$l0" "$(lines)" "$(since $t)" 0

# 2. xl remus -b (checkpoints to /dev/null) for SPAN seconds: the pause xl
# itself costs. Killing xl may leave the guest suspended, so it is
# destroyed and started again for the receiver.
xl remus -F -n -d -b -i $INTERVAL guest blackhole > /tmp/remus-b.out 2> /tmp/remus-b.err &
BP=$!
until_ 300 grep -aq 'Domain now suspended' /tmp/remus-b.err
sleep $(( INTERVAL * 2 / 1000 + 1 ))
kill -0 $BP 2>/dev/null; check $? "xl-remus-b-running"
l3=$(lines); t3=$(now); c3=$(suspends /tmp/remus-b.err)
sleep "$SPAN"
l4=$(lines); s3=$(since $t3); c4=$(suspends /tmp/remus-b.err)
pauses "remus-b" "$l3" "$l4" "$s3" "$(( c4 - c3 ))"
echo "INFO interval remus-b -i $INTERVAL ms: $(( c4 - c3 )) checkpoints in ${s3}s"
kill -9 $BP 2>/dev/null; pkill -9 -f libxl-save-helper; sleep 2
xl destroy guest
l5=$(lines)
xl create -q $H/guest.cfg
until_ 300 guest_up "$l5"; check $? "guest-running-again (tick $(tick))"

# 3. xl remus into the receiver. A background loop records "epoch tick"
# every second, to bound the tick at which each checkpoint was taken.
( while :; do echo "$(date +%s.%N) $(tick)"; sleep 1; done ) >> /tmp/ticks &
TP=$!
echo "INFO tick-at-remus-start $(tick)"
t=$(now)
xl remus -F -n -d -s "" -i $INTERVAL guest "$H/ckptfs xen receive --into $D" > /tmp/remus.out 2> /tmp/remus.err &
RP=$!
has_gen() { [ "$(gens)" -gt 0 ] || ! kill -0 $RP 2>/dev/null; }
until_ 600 has_gen
[ "$(gens)" -gt 0 ]; check $? "xl-remus-first-checkpoint-published ($(since $t)s)"
# Checkpoint 0 (every page, after the live precopy rounds) leaves the store
# a backlog; the window measures once the receiver has caught up with the
# checkpoints xl took.
caught_up() { [ "$(gens)" -ge $(( $(suspends /tmp/remus.err) - 1 )) ] || ! kill -0 $RP 2>/dev/null; }
until_ 300 caught_up; cu=$?
echo "INFO caught up ($cu = yes) after $(since $t)s: $(gens) generations published, $(suspends /tmp/remus.err) checkpoints taken"
l1=$(lines); t1=$(now); g1=$(gens); r1=$(suspends /tmp/remus.err)
enough() { [ "$(gens)" -ge $(( g1 + WANT )) ] || ! kill -0 $RP 2>/dev/null; }
until_ 400 enough
l2=$(lines); secs=$(since $t1); g2=$(gens); r2=$(suspends /tmp/remus.err)
echo "INFO xl took $(( r2 - r1 )) checkpoints while $(( g2 - g1 )) generations were published"
[ "$g2" -ge $(( g1 + WANT )) ]; check $? "xl-remus-into-receive ($g2 generations, $(( g2 - g1 )) in ${secs}s at -i $INTERVAL)"
pauses "receiver" "$l1" "$l2" "$secs" "$(( r2 - r1 ))"
# Keeping up: over the window the receiver published as many generations
# as xl took checkpoints (one in flight at either end), so its backlog did
# not grow; and the lag from a checkpoint's arrival to its publication
# ("N after it arrived") at the window's end is no more than at its start
# plus one interval.
lag() { grep -a "ckptfs: checkpoint $1:" /tmp/remus.err | sed -n 's/.*, \([0-9.]*\)\(m\?s\) after it arrived.*/\1 \2/p' | awk '{print ($2 == "ms") ? $1 / 1000 : $1}'; }
lag1=$(lag "$g1"); lag2=$(lag "$(( g2 - 1 ))")
echo "INFO backlog: $(( r2 - r1 )) checkpoints taken, $(( g2 - g1 )) published in the window; publication lag ${lag1:-?} s at its start, ${lag2:-?} s at its end"
[ $(( (r2 - r1) - (g2 - g1) )) -le 1 ] && awk -v a="${lag1:-0}" -v b="${lag2:-999}" -v iv="$INTERVAL" 'BEGIN { exit !(b <= a + iv / 1000) }'
check $? "receiver-keeps-up (backlog bounded over the window)"
echo "RATIO pause per checkpoint: receiver $(cat /tmp/pause-receiver) ms, xl remus -b $(cat /tmp/pause-remus-b) ms: $(awk -v a="$(cat /tmp/pause-receiver)" -v b="$(cat /tmp/pause-remus-b)" 'BEGIN { printf (b > 0 ? "%.2fx" : "n/a"), a / b }')"
echo "INFO interval receiver -i $INTERVAL ms: $(( r2 - r1 )) checkpoints taken in ${secs}s"
summary "$g1" "$(( g2 - 1 ))"
summary 1 "$(( g2 - 1 ))" | sed 's/receiver window/receiver all after the first/'
grep -a 'ckptfs: checkpoint [0-9]*:' /tmp/remus.err | head -3 | sed 's/^/INFO receiver /'
grep -a 'ckptfs: checkpoint [0-9]*:' /tmp/remus.err | tail -n +"$(( g1 + 1 ))" | head -n "$WANT" | sed 's/^/INFO receiver /'

# 4. The sender dies: the receiver finishes what arrived whole, exits with a
# message, and every generation published stays (nothing half-written).
kill -9 $RP; pkill -9 -f libxl-save-helper
receiver_gone() { ! pgrep -f 'ckptfs xen receive' >/dev/null; }
t=$(now); until_ 600 receiver_gone; check $? "receiver-exits-when-the-sender-dies ($(since $t)s)"
# The guest runs on: record ticks past the last checkpoint's arrival + 1 s,
# which bounds its tick from above (a receiver that keeps up exits within
# a second of it).
sleep 3
kill $TP 2>/dev/null
grep -a 'ckptfs: ' /tmp/remus.err | grep -av 'ckptfs: checkpoint' | tail -3 | sed 's/^/INFO receiver-end /'
grep -aq 'the sender stopped; [0-9]* checkpoints published, intact' /tmp/remus.err; check $? "receiver-says-the-stream-ended"
g3=$(gens)
[ "$g3" -ge "$g2" ] && [ -z "$(ls -A $D | grep -v '^[0-9]')" ]; check $? "generations-intact ($g3 published, none half-written)"
[ "$(readlink $D/latest)" = "$(ls $D | tail -1)" ]; check $? "latest-names-newest-generation ($(readlink $D/latest))"
xl destroy guest

# 5. Restore the latest and an older generation from the mount: the counter
# goes on from where that checkpoint was taken. A generation is named by
# when its checkpoint's end reached the receiver (T): the guest was
# suspended shortly before. So the checkpoint's tick is at least the last
# one seen 3 s before T and at most the first seen 1 s after T.
$H/ckptfs stats $STORE | sed 's/^/INFO stats /' | cut -c1-400
restore() { # restore K NAME
  name=$(ls $D | sed -n "${1}p"); f=$D/$name
  T=$(date -d "${name#*-}" +%s.%N)
  lo=$(awk -v t="$T" '$1 <= t - 3 {v = $2} END {print v + 0}' /tmp/ticks)
  hi=$(awk -v t="$T" '$1 >= t + 1 {print $2; exit}' /tmp/ticks)
  from=$(lines)
  t=$(now); xl restore -e "$f"; rc=$?
  echo "TIME restore-generation-$1 $(since $t)s"
  check $rc "xl-restore-remus-$2 $name"
  ticked() { [ -n "$(firsttick "$from")" ]; }
  until_ 120 ticked
  got=$(firsttick "$from")
  [ -n "$got" ] && [ -n "$hi" ] && [ $(( got - 1 )) -ge "$lo" ] && [ $(( got - 1 )) -le "$hi" ]
  check $? "counter-continues-$2 (checkpoint between ticks $lo and $hi, guest went on at tick $got)"
  xl destroy guest
  # One more read of the generation through the mount (a page-mode read
  # takes minutes under TCG): copied to the host and checksummed on the
  # way; the host compares (rsync out of the mount is e2e-xen's).
  t=$(now); sum=$(cat "$f" | tee $H/out/$2 | sha256sum | cut -d' ' -f1)
  echo "TIME read-generation-$1 $(since $t)s"
  echo "$sum  $2" >> $H/out.sha256
  [ "$(stat -c %s $H/out/$2)" = "$(stat -c %s "$f")" ]; check $? "copy-out-of-mount $2"
}
restore "$g3" latest
restore $(( g2 - WANT / 2 - 1 )) older
grep -a -E '^(PAUSEMETER|MEMINFO)' $LOG | tail -4 | sed 's/^/INFO /'
echo "INFO guest OOM kills: $(grep -ac 'Out of memory' $LOG) (the pause figures need the pausemeter alive)"
cp $LOG $H/guest-console.log
t=$(now); $H/ckptfs fsck $STORE > /tmp/fsck.log 2>&1; check $? "ckptfs-fsck ($(since $t)s)"
kill -TERM $CKPID; wait $CKPID; check $? "ckptfs-clean-unmount"
echo DOM0_DONE
