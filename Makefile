# Dolmen developer entry points. `make run` and `make test` work on a fresh Debian machine:
# they install the system packages RocksDB's bindgen needs (libclang) when missing.
#
# Build artefacts live outside the clone so CI and fresh clones reuse one RocksDB build.
# Always build the whole workspace: building a single package unifies features differently
# and would recompile RocksDB (several minutes).

export CARGO_TARGET_DIR ?= $(HOME)/.cache/dolmen/target
CARGO ?= cargo
DOLMEN := $(CARGO_TARGET_DIR)/debug/dolmen
CHAOS := $(CARGO_TARGET_DIR)/debug/dolmen-chaos
# Fault-injection run folders (history, summary; logs and data when a run fails).
CHAOS_RUNS ?= ./chaos-runs
# `make chaos DURATION=30m [SEED=N]`: a long fault-injection run (docs/RELIABILITY.md).
DURATION ?= 30m
SEED ?=

.PHONY: deps deps-test build run run-standalone test chaos-short chaos chaos-lease chaos-selftest \
	chaos-selftest-fsync chaos-selftest-serializable chaos-sharded chaos-lease-sharded \
	chaos-selftest-sharded lint fmt bench thrift-gen clean-data

deps:
	@bash scripts/install-deps.sh

# What the test suite needs besides the build: a headless Chromium and its driver (the
# console's browser test).
deps-test:
	@bash scripts/install-deps.sh --tests

build: deps
	$(CARGO) build --workspace --all-targets

# A local 3-node cluster (Thrift 127.0.0.1:9090-9092, admin :9190-9192, peers :7090-7092),
# data under ./data/demo; Ctrl-C stops it.
run: build
	$(DOLMEN) demo

# A single standalone node on 127.0.0.1:9090 (admin on :9190), data under ./data.
run-standalone: build
	$(DOLMEN) serve --config dolmen.example.toml

test: deps-test
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) build --workspace --all-targets
	$(CARGO) test --workspace --no-fail-fast
	$(MAKE) --no-print-directory chaos-short chaos-lease chaos-selftest chaos-selftest-fsync \
		chaos-selftest-serializable chaos-sharded chaos-lease-sharded chaos-selftest-sharded

# The fault-injection suite's short profile (~2 minutes, every fault kind including crash-all,
# killed nodes lose what they never fsynced, a random seed that is printed; a failing run keeps
# its folder and prints the replay command).
chaos-short:
	$(CHAOS) run --profile short --dolmen $(DOLMEN) --out $(CHAOS_RUNS)/short-$$(date +%Y%m%dT%H%M%S) \
		$(if $(SEED),--seed $(SEED))

# Lease reads under leader changes: the register checker judges every read as linearizable
# while kills, pauses, partitions and transfers move the leader (the lease is 0.6 of the
# election timeout, docs/replication.md §8.7).
chaos-lease:
	$(CHAOS) run --reads lease --workloads register --faults kill,pause,partition,transfer \
		--duration 45s --dolmen $(DOLMEN) --out $(CHAOS_RUNS)/lease-$$(date +%Y%m%dT%H%M%S) \
		$(if $(SEED),--seed $(SEED))

# The checker must catch a planted bug: followers serving linearizable reads locally.
chaos-selftest:
	$(CHAOS) run --planted-bug stale-reads --faults partition --workloads register --duration 30s \
		--dolmen $(DOLMEN) --expect-violation register \
		--out $(CHAOS_RUNS)/selftest-$$(date +%Y%m%dT%H%M%S) $(if $(SEED),--seed $(SEED))

# The checkers must catch lost acknowledged writes: the Raft log acknowledging before its fsync,
# with power cuts of the whole cluster (every node killed at once loses what it never fsynced).
chaos-selftest-fsync:
	$(CHAOS) run --planted-bug skip-log-fsync --faults crash-all --workloads set --duration 30s \
		--dolmen $(DOLMEN) --expect-violation set \
		--out $(CHAOS_RUNS)/selftest-fsync-$$(date +%Y%m%dT%H%M%S) $(if $(SEED),--seed $(SEED))

# The list-append checker must catch commits that skip the read-conflict check (lost updates,
# write skew): no faults needed, only concurrent transactions on a few keys.
chaos-selftest-serializable:
	$(CHAOS) run --planted-bug skip-conflict-check --faults none --workloads list-append \
		--duration 30s --dolmen $(DOLMEN) --expect-violation list-append \
		--out $(CHAOS_RUNS)/selftest-serializable-$$(date +%Y%m%dT%H%M%S) $(if $(SEED),--seed $(SEED))

# Split points of the sharded runs (docs/RELIABILITY.md, "Sharded clusters"): bank accounts 0-3
# and 4-7 in two groups (transfers across them commit by two-phase commit, every balance read
# spans both); lists la/0-1, la/10-19, la/100-199... in one group, la/2-9, la/20-99... in
# another (compared as text; the workload keeps half its active lists in each); registers
# reg/0-1 and reg/10-19 apart from reg/2-9 and reg/20-99; set elements split at set/5; each
# workload in groups of its own.
CHAOS_SPLIT_KEYS := bank/4,la/,la/2,reg/,reg/2,set/,set/5

# The suite on a sharded cluster: group 0 holds the oracle, eight data groups the ranges above;
# kills, pauses and partitions aimed at group 0's or a data group's leader, transfers of group
# 0's leadership, power cuts of the whole cluster. The run fails unless transfers and
# list-append transactions reaching several ranges committed (the cross-range report), and
# unless every lock of those commits is released after healing (locks-released).
chaos-sharded:
	$(CHAOS) run --split-keys $(CHAOS_SPLIT_KEYS) --workloads register,bank,list-append,set \
		--faults kill,pause,partition,transfer,crash-all --lose-unsynced-writes --duration 45s \
		--dolmen $(DOLMEN) --out $(CHAOS_RUNS)/sharded-$$(date +%Y%m%dT%H%M%S) \
		$(if $(SEED),--seed $(SEED))

# Lease reads on a sharded cluster: group 0's leader confirms oracle grants by its leader lease
# instead of a ReadIndex round each (docs/sharding.md §3.2), so the strict-serializability
# checkers judge versions handed out under the lease while kills, pauses, partitions and
# transfers move group 0's and the data groups' leaders.
chaos-lease-sharded:
	$(CHAOS) run --reads lease --split-keys $(CHAOS_SPLIT_KEYS) --workloads register,bank,list-append \
		--faults kill,pause,partition,transfer --duration 45s --dolmen $(DOLMEN) \
		--out $(CHAOS_RUNS)/lease-sharded-$$(date +%Y%m%dT%H%M%S) $(if $(SEED),--seed $(SEED))

# The list-append checker must catch the planted bug on one shard: data group 3 (the first
# list-append range, la/ to la/2) skips its read-conflict check (fast-path commits and
# two-phase prepares alike), the seven others check, and transactions reaching several ranges
# must commit meanwhile.
chaos-selftest-sharded:
	$(CHAOS) run --planted-bug skip-conflict-check --planted-bug-group 3 \
		--split-keys $(CHAOS_SPLIT_KEYS) \
		--faults none --workloads list-append --duration 30s --dolmen $(DOLMEN) \
		--expect-violation list-append \
		--out $(CHAOS_RUNS)/selftest-sharded-$$(date +%Y%m%dT%H%M%S) $(if $(SEED),--seed $(SEED))

# A long fault-injection run on a release build: `make chaos DURATION=30m [SEED=N]`.
chaos: deps
	$(CARGO) build --workspace --release
	$(CARGO_TARGET_DIR)/release/dolmen-chaos run --profile long --duration $(DURATION) \
		--dolmen $(CARGO_TARGET_DIR)/release/dolmen \
		--out $(CHAOS_RUNS)/long-$$(date +%Y%m%dT%H%M%S) $(if $(SEED),--seed $(SEED))

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

# The load tool against a running node (see docs/PERFORMANCE.md).
bench: build
	$(CARGO) build --workspace --release
	$(CARGO_TARGET_DIR)/release/dolmen bench --addr 127.0.0.1:9090

# Regenerate the stock Apache Thrift client used by the black-box tests.
thrift-gen:
	thrift -out tests/src --gen rs tests/idl/kvstore.thrift

clean-data:
	rm -rf ./data
