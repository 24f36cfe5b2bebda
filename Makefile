# ckptfs — see README.md.
# Go as these machines install it (/usr/local/go), also from a shell that has
# not put it on PATH: the tests run the go command themselves.
ifeq ($(shell command -v go),)
export PATH := $(PATH):/usr/local/go/bin
endif
GO      ?= go
BIN     := bin/ckptfs
STORE   ?= var/store
MNT     ?= var/mnt
# Fuzz budget per target in `make test`: a count of executions, about 10 s
# of each target on this 2-core machine. Counts, not durations: with a
# duration, Go 1.26's fuzz coordinator can fail a clean run with "context
# deadline exceeded" as the time runs out (golang/go#75804, fixed in Go
# 1.27); a count has no deadline to race. FUZZTIME=30s (or 1000x) sets every
# target's budget instead.
FUZZTIME ?=
# SeaweedFS, the S3 server the bucket tests start on loopback: built from its
# module by make deps (its go.mod has replace directives, so go install
# refuses it). The tests look for it at CKPTFS_WEED.
WEED_VERSION := v0.0.0-20261109003541-7506e5f91cd6
WEED ?= /var/cache/ckptfs-test/weed
export CKPTFS_WEED := $(WEED)
fuzz1 = $(GO) test -run '^$$' -fuzz '^$(1)$$' -fuzztime $(or $(FUZZTIME),$(3)) $(2)

# make install: where packagers expect things; DESTDIR stages the tree.
# mount -t fuse.ckptfs (and fstab) needs ckptfs in mount.fuse3's PATH
# (/usr/local/bin, /usr/bin, ...): the default PREFIX and PREFIX=/usr are.
PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
UNITDIR ?= $(PREFIX)/lib/systemd/system
DOCDIR  ?= $(PREFIX)/share/doc/ckptfs
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR  ?= $(PREFIX)/share/zsh/site-functions
FISHCOMPDIR ?= $(PREFIX)/share/fish/vendor_completions.d

.PHONY: all build run deps test test-race fuzz bench lint clean e2e-xen e2e-remus install uninstall

all: build

build:
	$(GO) build -buildvcs=auto -o $(BIN) ./cmd/ckptfs

install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(BINDIR)/ckptfs
	for u in ckptfs.service ckpt.mount; do \
	  sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@DOCDIR@|$(DOCDIR)|g' cmd/ckptfs/systemd/$$u > $(BIN).$$u && \
	  install -D -m 0644 $(BIN).$$u $(DESTDIR)$(UNITDIR)/$$u && rm $(BIN).$$u || exit 1; \
	done
	install -D -m 0644 README.md $(DESTDIR)$(DOCDIR)/README.md
	for d in docs/*.md docs/*.png; do install -D -m 0644 $$d $(DESTDIR)$(DOCDIR)/$$d || exit 1; done
	$(BIN) completion bash > $(BIN).bash && install -D -m 0644 $(BIN).bash $(DESTDIR)$(BASHCOMPDIR)/ckptfs && rm $(BIN).bash
	$(BIN) completion zsh > $(BIN).zsh && install -D -m 0644 $(BIN).zsh $(DESTDIR)$(ZSHCOMPDIR)/_ckptfs && rm $(BIN).zsh
	$(BIN) completion fish > $(BIN).fish && install -D -m 0644 $(BIN).fish $(DESTDIR)$(FISHCOMPDIR)/ckptfs.fish && rm $(BIN).fish

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/ckptfs $(DESTDIR)$(UNITDIR)/ckptfs.service $(DESTDIR)$(UNITDIR)/ckpt.mount $(DESTDIR)$(DOCDIR)/README.md
	rm -rf $(DESTDIR)$(DOCDIR)/docs
	rm -f $(DESTDIR)$(BASHCOMPDIR)/ckptfs $(DESTDIR)$(ZSHCOMPDIR)/_ckptfs $(DESTDIR)$(FISHCOMPDIR)/ckptfs.fish

# Build, then mount $(STORE) at $(MNT) in the foreground; Ctrl-C unmounts.
run: build
	mkdir -p $(STORE) $(MNT)
	./$(BIN) mount $(STORE) $(MNT)

# What the tests need besides Go, installed when missing (Debian packages):
# rsync and fuse3 (fusermount3, for the non-root mount tests), setpriv
# and unshare (util-linux), systemd-analyze (systemd, to verify the units
# make install puts in place), script (bsdutils: a terminal for the
# progress tests), pgrep (procps), GNU time (peak RSS of a command in the
# hostile-peer tests), e2fsprogs (mkfs.ext4 for the full-disk test's loop device).
# fusermount3 opens /dev/fuse as the calling user: Debian's udev rule makes
# it 0666, a container may not.
deps:
	@need=; \
	command -v rsync >/dev/null || need="$$need rsync"; \
	command -v fusermount3 >/dev/null || need="$$need fuse3"; \
	command -v setpriv >/dev/null || need="$$need util-linux"; \
	command -v mkfs.ext4 >/dev/null || need="$$need e2fsprogs"; \
	command -v losetup >/dev/null || need="$$need mount"; \
	command -v ssh >/dev/null || need="$$need openssh-client"; \
	test -x /usr/sbin/sshd || need="$$need openssh-server"; \
	command -v systemd-analyze >/dev/null || need="$$need systemd"; \
	command -v script >/dev/null || need="$$need bsdutils"; \
	command -v pgrep >/dev/null || need="$$need procps"; \
	test -x /usr/bin/time || need="$$need time"; \
	if [ -n "$$need" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "make deps: missing$$need; install them (as root: make deps)"; exit 1; fi; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$need || exit 1; \
	fi; \
	for c in go rsync fusermount3 mount.fuse3 setpriv unshare script pgrep mkfs.ext4 losetup systemd-analyze; do \
	  command -v $$c >/dev/null || { echo "make deps: $$c still missing"; exit 1; }; \
	done
	@if [ -e /dev/fuse ] && [ "$$(id -u)" = 0 ]; then chmod 0666 /dev/fuse; fi
	@# Debian starts sshd on install; the tests run their own on loopback.
	@if [ -x /usr/sbin/sshd ] && command -v systemctl >/dev/null; then systemctl disable --now ssh >/dev/null 2>&1 || true; fi
	@test -x $(WEED) || { echo "make deps: building SeaweedFS's weed $(WEED_VERSION) from its module into $(WEED) (about 8 minutes, once)"; \
	  tmp=$$(mktemp -d) && cd $$tmp && \
	  src=$$($(GO) mod download -json github.com/seaweedfs/seaweedfs@$(WEED_VERSION) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p') && \
	  test -n "$$src" && mkdir -p $(dir $(WEED)) && cd $$src && $(GO) build -o $(WEED).tmp ./weed && mv $(WEED).tmp $(WEED) && rm -rf $$tmp; }

# The whole suite under the race detector, then each fuzz target briefly.
test: deps lint
	$(GO) test -race -count=1 -timeout 25m ./...
	$(MAKE) fuzz

test-race: test

fuzz:
	$(call fuzz1,FuzzIngest,./fs/content,1000x)
	$(call fuzz1,FuzzXenPages,./fs/content,700x)
	$(call fuzz1,FuzzDecodeExtent,./index,80000x)
	$(call fuzz1,FuzzDecodeBlock,./xen/lineage,80000x)
	$(call fuzz1,FuzzDecodeInode,./index,80000x)
	$(call fuzz1,FuzzDecodeGenRecord,./xen/lineage,80000x)
	$(call fuzz1,FuzzDecodeXen,./xen/lineage,80000x)
	$(call fuzz1,FuzzDecodePage,./xen/lineage,80000x)
	$(call fuzz1,FuzzDecodeValue,./chunkstore,60000x)
	$(call fuzz1,FuzzDecodeInto,./chunkstore,60000x)
	$(call fuzz1,FuzzDecodeMarker,./chunkstore,80000x)
	$(call fuzz1,FuzzDecodeRecord,./chunkstore,80000x)
	$(call fuzz1,FuzzReadDump,./chunkstore,30000x)
	$(call fuzz1,FuzzScanner,./xen,300000x)
	$(call fuzz1,FuzzRemus,./xen,400000x)
	$(call fuzz1,FuzzDecode,./index/manifest,100000x)
	$(call fuzz1,FuzzParseIndex,./chunkstore/bucket,40000x)
	$(call fuzz1,FuzzParseApply,./fs/transfer,10000x)

# Benchmarks: throughput through the mount vs a plain file and a no-op FUSE
# filesystem in the same run, peak daemon RSS, and the charts in docs/
# (BenchmarkXenSeries: stored bytes, disk footprint and restore speed
# against restic, borg and plain files). See docs/measurements.md.
bench: deps
	@command -v restic >/dev/null && command -v borg >/dev/null && command -v gnuplot >/dev/null || \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q restic borgbackup gnuplot-nox)
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 120m ./test/bench | tee bench.out
	CKPTFS_BENCH=1 $(GO) test -run '^(TestPeakRSS|TestReceiveRSS)$$' -v -count=1 -timeout 30m ./test/bench | tee -a bench.out
	$(GO) test -run '^$$' -bench 'Codec|ValueSeparation' -benchtime 1x ./chunkstore | tee -a bench.out
	$(GO) test -run '^$$' -bench 'Engine|PageIngest' -benchtime 3x ./fs/content | tee -a bench.out
	$(GO) test -run '^$$' -bench 'Receive' -benchtime 3x ./xen/receive | tee -a bench.out
	CKPTFS_MEASURE=1 $(GO) test -run '^TestChunkParams$$' -v -count=1 ./fs/content | tee -a bench.out

# Real Xen: stock xl save/restore against a ckptfs mount, Xen booted in QEMU
# (root; downloads Debian packages; caches in /var/cache/ckptfs-e2e).
e2e-xen:
	test/xen/run.sh

# Real Xen: stock xl remus of the test guest into `ckptfs xen receive`, then
# xl restore of published generations. Debian's Xen 4.17 source rebuilt with
# shadow paging (PV log-dirty), the build cached like the rest.
e2e-remus:
	DOM0=dom0-remus.sh XEN_SHADOW=1 TIMEOUT=2100 test/xen/run.sh

STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2

lint:
	$(GO) vet ./...
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) run $(STATICCHECK) ./...
	$(GO) mod tidy -diff

clean:
	rm -rf bin bench.out
