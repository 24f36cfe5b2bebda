#!/bin/bash
# make e2e-xen: stock Xen 4.17 (Debian) booted under QEMU (TCG), a PV dom0
# running this checkout's static ckptfs, and stock `xl save -c` / `xl save` /
# `xl restore` of a small PV guest into and out of a ckptfs mount.
# Host side: fetch and build (cached in $CACHE), boot, then check what dom0
# left in the share (verify-stream-v2, checksums) and print a summary.
# Every check prints one PASS/FAIL line; any FAIL or timeout fails the run.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
CACHE=${CACHE:-/var/cache/ckptfs-e2e}
RUN=$CACHE/last-run            # the real images of the last run stay here
[ "${DOM0:-dom0.sh}" = dom0.sh ] || RUN=$CACHE/last-run-${DOM0%.sh}
TIMEOUT=${TIMEOUT:-900}        # QEMU phase, seconds
t0=$(date +%s)
log() { echo "e2e-xen: $*"; }
mkdir -p "$CACHE/debs"
cd "$CACHE"

# 1. Host packages, the hypervisor and kernel (unpacked, not installed).
need=()
for c in qemu-system-x86_64:qemu-system-x86 debootstrap:debootstrap cpio:cpio depmod:kmod rsync:rsync; do
  command -v "${c%%:*}" >/dev/null || need+=("${c#*:}")
done
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi
if [ ! -e xen ] || [ ! -e vmlinuz ]; then
  KPKG=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  (cd debs && apt-get download -q xen-hypervisor-4.17-amd64 "$KPKG" >/dev/null)
  rm -rf x k; mkdir -p x k
  dpkg -x debs/xen-hypervisor-4.17-amd64_*.deb x
  dpkg -x debs/"$KPKG"_*.deb k
  zcat x/boot/xen-4.17-amd64.gz > xen.tmp && mv xen.tmp xen
  cp k/boot/vmlinuz-* vmlinuz
  depmod -b "$CACHE/k" "$(ls k/lib/modules)"
fi
# XEN_SHADOW=1 (make e2e-remus): the same Xen 4.17 from Debian's source
# package, built with CONFIG_SHADOW_PAGING=y on top of Debian's own config.
# Debian's binary has no shadow paging, and a PV guest's log-dirty mode (which
# xl remus and live migration need) is shadow paging: with the stock binary
# libxc fails with "Failed to enable logdirty: 95" (EOPNOTSUPP).
XEN=$CACHE/xen
if [ "${XEN_SHADOW:-0}" = 1 ]; then
  XEN=$CACHE/xen-shadow
  if [ ! -e "$XEN" ]; then
    need=()
    for c in gcc:gcc make:make flex:flex bison:bison python3:python3 xz:xz-utils; do
      command -v "${c%%:*}" >/dev/null || need+=("${c#*:}")
    done
    if [ ${#need[@]} -gt 0 ]; then
      log "installing ${need[*]}"
      apt-get update -q >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
    fi
    # Source lists of their own: the host's deb lines turned into deb-src.
    A=$CACHE/apt; rm -rf "$A"; mkdir -p "$A/parts" "$A/lists/partial" "$A/src"
    for f in /etc/apt/sources.list.d/*.sources; do
      [ -e "$f" ] && sed 's/^Types: deb$/Types: deb-src/' "$f" > "$A/parts/$(basename "$f")"
    done
    [ -e /etc/apt/sources.list ] && sed -n 's/^deb /deb-src /p' /etc/apt/sources.list > "$A/src.list"
    touch "$A/src.list"
    aopt=(-o "Dir::Etc::SourceList=$A/src.list" -o "Dir::Etc::SourceParts=$A/parts" -o "Dir::State::Lists=$A/lists")
    apt-get "${aopt[@]}" update -q >/dev/null
    # Newest first; a mirror may list a version whose files it lacks.
    got=
    for v in $(apt-cache "${aopt[@]}" showsrc xen | awk '/^Version: 4\.17\./{print $2}' | sort -rV | uniq); do
      if (cd "$A/src" && apt-get "${aopt[@]}" source -q --download-only "xen=$v" >/dev/null 2>&1); then got=$v; break; fi
    done
    [ -n "$got" ] || { log "no Xen 4.17 source package could be fetched"; exit 1; }
    log "building Xen $got with CONFIG_SHADOW_PAGING=y"
    (cd "$A/src" && tar xf xen_*.orig.tar.*)
    XS=$(ls -d "$A"/src/xen-*/xen)
    sed 's/^# CONFIG_SHADOW_PAGING is not set/CONFIG_SHADOW_PAGING=y/' x/boot/xen-4.17-amd64.config > "$XS/.config"
    make -C "$XS" olddefconfig > "$A/build.log" 2>&1
    grep -q '^CONFIG_SHADOW_PAGING=y' "$XS/.config" || { log "shadow paging did not stay enabled"; exit 1; }
    make -C "$XS" -j"$(nproc)" >> "$A/build.log" 2>&1 || { tail -30 "$A/build.log"; exit 1; }
    cp "$XS/xen" "$XEN.tmp" && mv "$XEN.tmp" "$XEN"
    rm -rf "$A/src"
  fi
fi
log "host ready ($(( $(date +%s) - t0 ))s)"

# 2. dom0: Debian minbase + Xen tools + rsync, kept in an initramfs (cached).
R=$CACHE/rootfs
if [ ! -e "$R/.done" ]; then
  rm -rf "$R"
  debootstrap --variant=minbase bookworm "$R" >/dev/null
  # Tools must match the hypervisor, which may come from bookworm-security.
  cp /etc/apt/sources.list.d/*.sources "$R/etc/apt/sources.list.d/" 2>/dev/null || true
  [ -e /etc/apt/sources.list ] && cp /etc/apt/sources.list "$R/etc/apt/"
  mount --bind /proc "$R/proc"
  chroot "$R" apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive chroot "$R" apt-get install -y -q --no-install-recommends \
    xen-utils-4.17 xen-utils-common xenstore-utils busybox kmod procps rsync >/dev/null
  umount "$R/proc"
  rm -rf "$R"/var/cache/apt/* "$R"/var/lib/apt/lists/* "$R"/usr/share/doc "$R"/usr/share/locale "$R"/usr/share/man
  touch "$R/.done"
fi
if [ ! -e dom0.cpio ] || [ "$HERE/dom0-init" -nt dom0.cpio ]; then
  KV=$(ls k/lib/modules); M=k/lib/modules/$KV
  rm -rf "$R/lib/modules"; mkdir -p "$R/lib/modules/$KV"
  cp "$M"/modules.order "$M"/modules.builtin* "$R/lib/modules/$KV/"
  for w in xenfs xen_evtchn xen_gntdev xen_gntalloc xen_privcmd 9pnet_virtio 9p fuse virtio_pci; do
    f=$(awk -F: -v n="$w" '{b=$1; sub(/.*\//,"",b); sub(/\.ko$/,"",b); gsub(/-/,"_",b); if (b==n) {print; exit}}' "$M/modules.dep")
    [ -n "$f" ] || { log "module $w not found"; exit 1; }
    for p in ${f%%:*} ${f#*:}; do install -D -m 644 "$M/$p" "$R/lib/modules/$KV/$p"; done
  done
  depmod -b "$R" "$KV"
  install -m 755 "$HERE/dom0-init" "$R/init"
  (cd "$R" && find . -path './proc/*' -prune -o -print | cpio -H newc -o --quiet) > dom0.cpio.tmp
  mv dom0.cpio.tmp dom0.cpio
fi
log "dom0 ready ($(( $(date +%s) - t0 ))s)"

# 3. The share: guest kernel + busybox initramfs, ckptfs, the dom0 script.
S=$CACHE/share
rm -rf "$S"; mkdir -p "$S/out"
G=$CACHE/guest-root; rm -rf "$G"; mkdir -p "$G"/{bin,proc,sys,dev,shm}
cp /bin/busybox "$G/bin/busybox"
for a in $("$G/bin/busybox" --list); do [ "$a" = busybox ] || ln -sf busybox "$G/bin/$a"; done
install -m 755 "$HERE/guest-init" "$G/init"
if [ "${DOM0:-dom0.sh}" = dom0-remus.sh ]; then # the guest measures its pauses
  (cd "$TOP" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$G/bin/pausemeter" ./test/xen/pausemeter)
fi
(cd "$G" && find . | cpio -H newc -o --quiet | gzip -1) > "$S/guest.cpio.gz"
cp vmlinuz "$S/vmlinuz"
cp "$HERE/guest.cfg" "$S/"
cp "$HERE/${DOM0:-dom0.sh}" "$S/dom0.sh" # DOM0=dom0-remus.sh: the xl remus probe
[ -n "${CKPTFS_E2E_PROFILE:-}" ] && touch "$S/profile" # dom0.sh profiles the daemon
(cd "$TOP" && CGO_ENABLED=0 go build -trimpath -o "$S/ckptfs" ./cmd/ckptfs)
# The passthrough FUSE baseline: go-fuse's own loopback example, from the
# module graph (what the FUSE transport costs with no storage work).
(cd "$TOP" && CGO_ENABLED=0 go build -trimpath -o "$S/loopback" github.com/hanwen/go-fuse/v2/example/loopback)
log "share ready ($(( $(date +%s) - t0 ))s)"

# 4. Boot. QEMU is killed on every exit path.
QPID=
cleanup() { [ -n "$QPID" ] && kill "$QPID" 2>/dev/null; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
tq=$(date +%s)
qemu-system-x86_64 -accel tcg,thread=multi -cpu "${QEMU_CPU:-qemu64,+svm}" -smp 2 -m 4G \
  -nographic -monitor none -serial "file:$CACHE/serial.log" -no-reboot -nic none \
  -kernel "$XEN" \
  -append "console=com1 com1=115200 dom0_mem=2560M,max:2560M dom0_max_vcpus=2 noreboot" \
  -initrd "$CACHE/vmlinuz console=hvc0,$CACHE/dom0.cpio" \
  -virtfs "local,path=$S,mount_tag=host,security_model=none,id=host" &
QPID=$!
qrc=0
while kill -0 "$QPID" 2>/dev/null; do
  if [ $(( $(date +%s) - tq )) -gt "$TIMEOUT" ]; then
    echo "FAIL qemu-timeout after ${TIMEOUT}s"; qrc=124; kill "$QPID"; break
  fi
  sleep 2
done
wait "$QPID" 2>/dev/null || true
QPID=
log "QEMU phase $(( $(date +%s) - tq ))s"

# 5. Host-side checks on what dom0 rsynced out of the mount.
out=$S/run.log
[ -e "$out" ] || { echo "FAIL dom0-ran (no run.log; see $CACHE/serial.log)"; tail -40 "$CACHE/serial.log"; exit 1; }
host=()
if [ -s "$S/out.sha256" ] && (cd "$S/out" && sha256sum --quiet -c ../out.sha256); then
  host+=("PASS host-checksums $(wc -l < "$S/out.sha256") files rsynced out of the mount match dom0's sums")
else
  host+=("FAIL host-checksums")
fi
V="$R/usr/lib/xen-4.17"
for f in "$S"/out/*; do
  if PYTHONPATH="$V/lib/python" python3 "$V/bin/verify-stream-v2" -f xl -q -i "$f"; then
    host+=("PASS verify-stream-v2 $(basename "$f")")
  else
    host+=("FAIL verify-stream-v2 $(basename "$f")")
  fi
done
# Page mode and gc on the real images, natively on the host: copy them into
# a --xen-pages mount, compare each, delete the first, gc, compare the rest.
P=$(mktemp -d); mkdir "$P/mnt"
"$S/ckptfs" mount --xen-pages "$P/store" "$P/mnt" > "$P/mount.log" 2>&1 &
MP=$!
for _ in $(seq 100); do grep -q " $P/mnt " /proc/mounts && break; sleep 0.2; done
imgs=("$S"/out/*)
ok=1
for f in "${imgs[@]}"; do cp "$f" "$P/mnt/" && cmp -s "$f" "$P/mnt/$(basename "$f")" || ok=0; done
stored=$("$S/ckptfs" stats --json "$P/store" | sed -n 's/.*"stored_bytes":\([0-9]*\).*/\1/p')
rm -f "$P/mnt/$(basename "${imgs[0]}")"
"$S/ckptfs" gc "$P/store" > "$P/gc.log" 2>&1 || ok=0
for f in "${imgs[@]:1}"; do cmp -s "$f" "$P/mnt/$(basename "$f")" || ok=0; done
"$S/ckptfs" fsck "$P/store" > "$P/fsck.log" 2>&1 || ok=0
after=$("$S/ckptfs" stats --json "$P/store" | sed -n 's/.*"stored_bytes":\([0-9]*\).*/\1/p')
umount "$P/mnt" || ok=0
wait "$MP" || ok=0
if [ "$ok" = 1 ]; then
  host+=("PASS host-pages ${#imgs[@]} real images byte-exact through a --xen-pages mount (stored $stored bytes), $(( ${#imgs[@]} - 1 )) still exact after deleting the first and gc (stored $after bytes), fsck clean")
else
  host+=("FAIL host-pages (see $P)"); cat "$P"/*.log
fi
[ "$ok" = 1 ] && rm -rf "$P"
rm -rf "$RUN"; mkdir -p "$RUN"
mv "$S/out" "$RUN/images"; cp "$out" "$CACHE/serial.log" "$RUN/"
[ -f "$S/ckptfs-cpu.prof" ] && cp "$S/ckptfs-cpu.prof" "$RUN/" && echo "daemon CPU profile: $RUN/ckptfs-cpu.prof"

echo "=========================== e2e-xen summary ==========================="
grep -a -E '^(PASS|FAIL|TIME|STORED|INFO|RATIO)' "$out" || true
printf '%s\n' "${host[@]}"
# ckptfs against the passthrough FUSE mount and tmpfs, same run.
awk '$1 == "TIME" { sub(/s$/, "", $3); t[$2] = $3 }
  function r(a, b) { return (a != "" && b != "" && b > 0) ? sprintf("%.2fx", a / b) : "n/a" }
  END {
    if (!("save-c-mount-1" in t)) exit # the remus run saves no images
    later = (t["save-c-mount-2"] + t["save-c-mount-3"] + t["save-c-mount-4"]) / 3
    printf "RATIO xl save -c first: ckptfs %s s, passthrough FUSE %s s, tmpfs %s s: %s passthrough, %s tmpfs\n", t["save-c-mount-1"], t["save-c-passthrough-1"], t["save-c-tmpfs"], r(t["save-c-mount-1"], t["save-c-passthrough-1"]), r(t["save-c-mount-1"], t["save-c-tmpfs"])
    printf "RATIO xl save -c later (mean of 2-4): ckptfs %.2f s, passthrough FUSE %s s: %s passthrough, %s tmpfs\n", later, t["save-c-passthrough-2"], r(later, t["save-c-passthrough-2"]), r(later, t["save-c-tmpfs"])
    printf "RATIO xl restore: ckptfs %s s, passthrough FUSE %s s, tmpfs %s s: %s passthrough, %s tmpfs\n", t["restore-mount"], t["restore-passthrough"], t["restore-tmpfs"], r(t["restore-mount"], t["restore-passthrough"]), r(t["restore-mount"], t["restore-tmpfs"])
  }' "$out" || true
echo "real images of this run: $RUN/images"
echo "total $(( $(date +%s) - t0 ))s"
count() { { grep -a "^$1" "$out"; printf '%s\n' "${host[@]}"; } | grep -c "^$1" || true; }
nfail=$(count FAIL)
npass=$(count PASS)
grep -aq '^DOM0_DONE' "$out" || { echo "FAIL dom0-finished"; nfail=$((nfail + 1)); }
echo "e2e-xen: $npass passed, $nfail failed"
[ "$nfail" = 0 ] && [ "$qrc" = 0 ] && [ "$npass" -gt 0 ]
