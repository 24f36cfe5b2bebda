# ckptfs — see README.md.
GO      ?= go
BIN     := bin/ckptfs
STORE   ?= var/store
MNT     ?= var/mnt
# Fuzz time per target in `make test` (CI runs them briefly).
FUZZTIME ?= 10s

.PHONY: all build run test test-race fuzz bench lint clean e2e-xen e2e-remus

all: build

build:
	$(GO) build -o $(BIN) ./cmd/ckptfs

# Build, then mount $(STORE) at $(MNT) in the foreground; Ctrl-C unmounts.
run: build
	mkdir -p $(STORE) $(MNT)
	./$(BIN) mount $(STORE) $(MNT)

# The whole suite under the race detector, then each fuzz target briefly.
test: lint
	$(GO) test -race -count=1 -timeout 15m ./...
	$(MAKE) fuzz

test-race: test

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzIngest$$' -fuzztime $(FUZZTIME) ./fs/content
	$(GO) test -run '^$$' -fuzz '^FuzzXenPages$$' -fuzztime $(FUZZTIME) ./fs/content
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeExtent$$' -fuzztime $(FUZZTIME) ./index
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeInode$$' -fuzztime $(FUZZTIME) ./index
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeGenRecord$$' -fuzztime $(FUZZTIME) ./index
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeXen$$' -fuzztime $(FUZZTIME) ./index
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeValue$$' -fuzztime $(FUZZTIME) ./chunkstore
	$(GO) test -run '^$$' -fuzz '^FuzzScanner$$' -fuzztime $(FUZZTIME) ./xen
	$(GO) test -run '^$$' -fuzz '^FuzzRemus$$' -fuzztime $(FUZZTIME) ./xen

# Benchmarks: throughput through the mount vs a plain file and a no-op FUSE
# filesystem in the same run, and peak daemon RSS. See README.
bench:
	@command -v restic >/dev/null && command -v borg >/dev/null && command -v gnuplot >/dev/null || \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q restic borgbackup gnuplot-nox)
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 120m ./test/bench | tee bench.out
	CKPTFS_BENCH=1 $(GO) test -run '^TestPeakRSS$$' -v -count=1 -timeout 30m ./test/bench | tee -a bench.out
	$(GO) test -run '^$$' -bench 'Codec|ValueSeparation' -benchtime 1x ./chunkstore | tee -a bench.out
	$(GO) test -run '^$$' -bench 'Engine|Receive' -benchtime 3x ./fs/content | tee -a bench.out
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

lint:
	$(GO) vet ./...
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@cp go.mod /tmp/ckptfs-go.mod.bak; cp go.sum /tmp/ckptfs-go.sum.bak; $(GO) mod tidy; \
	  if ! cmp -s go.mod /tmp/ckptfs-go.mod.bak || ! cmp -s go.sum /tmp/ckptfs-go.sum.bak; then \
	    echo "go mod tidy changed go.mod/go.sum"; exit 1; fi

clean:
	rm -rf bin bench.out
