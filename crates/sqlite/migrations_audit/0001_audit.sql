-- portcullis audit log, version 1: its own database file, apart from the key store.
-- One hash chain per tenant (`_system` for records without one). The columns beside `body` are
-- copies kept for queries; the verifier checks them against the sealed body, which is what the
-- hash covers. Hashes are SHA-256 (BLOB of 32 bytes), signatures Ed25519 (BLOB of 64 bytes).
-- No CHECK constraints on purpose: the store is the only writer and writes typed values; a row
-- changed behind its back must reach the verifier to be named, not be hidden by a constraint.

-- Entries live in a rowid table: every append lands at the right edge of its b-tree, whatever the
-- chains, and the (chain, seq) key is a small unique index beside it. Keyed by (chain, seq)
-- WITHOUT ROWID instead, rows of ~500 bytes went into one insertion point per chain (ten in
-- bench-audit), and appends took about 1.4 times as long (measured with bench-audit).
CREATE TABLE audit_entries (
    chain       TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    time_micros INTEGER NOT NULL,  -- unix microseconds
    kind        TEXT    NOT NULL,  -- request | auth | change | maintenance
    action      TEXT    NOT NULL,
    tenant      TEXT,
    key_id      TEXT,
    decision    TEXT,              -- allow | deny
    prev_hash   BLOB    NOT NULL,
    hash        BLOB    NOT NULL,
    body        TEXT    NOT NULL   -- the record's JSON, the bytes the hash covers
) STRICT;

-- A chain in sequence order: reads, heads, retention (first_seq_since, purge).
CREATE UNIQUE INDEX audit_entries_seq ON audit_entries (chain, seq);

-- Time ranges (search). No index on key_id, on purpose: key ids arrive in random order, so such
-- an index dirties about one page per appended record and cut append throughput to a third
-- (measured with bench-audit); a search by key is bounded by time or scans its chain.
CREATE INDEX audit_entries_time ON audit_entries (chain, time_micros);

CREATE TABLE audit_checkpoints (
    chain      TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    kind       TEXT    NOT NULL,  -- periodic | retention
    time_nanos INTEGER NOT NULL,  -- unix nanoseconds
    hash       BLOB    NOT NULL,
    signer     TEXT    NOT NULL,
    signature  BLOB    NOT NULL,
    PRIMARY KEY (chain, seq, kind)
) STRICT, WITHOUT ROWID;
