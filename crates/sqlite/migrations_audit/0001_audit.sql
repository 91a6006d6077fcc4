-- portcullis audit log, version 1: its own database file, apart from the key store.
-- One hash chain per tenant (`_system` for records without one), stored as blocks: one row per
-- chain per append, `data` holding the chain's entries of that append in sequence order (a
-- version byte, then per entry: seq u64 BE, prev_hash 32 bytes, hash 32 bytes, body length u32
-- BE, body). The query columns of an entry are not stored: they are read from its body, which is
-- what the hash covers. The other columns describe the block for range queries; `data` comes last
-- so that scans of them leave its overflow pages unread.
-- No CHECK constraints on purpose: a block changed behind the store's back must reach the
-- verifier to be named, not be hidden by a constraint.

CREATE TABLE audit_blocks (
    chain           TEXT    NOT NULL,
    first_seq       INTEGER NOT NULL,
    last_seq        INTEGER NOT NULL,
    min_time_micros INTEGER NOT NULL,  -- unix microseconds, of the block's entries
    max_time_micros INTEGER NOT NULL,
    last_hash       BLOB    NOT NULL,  -- the hash of the entry last_seq: the chain head
    data            BLOB    NOT NULL
) STRICT;

-- A rowid table, not WITHOUT ROWID: its rows go to the end of the table in the order they are
-- appended, so an append's blocks (one per chain) fill the same few pages, a block of a few KiB
-- fits in its leaf page, and only this small index has one page per chain to touch.
CREATE UNIQUE INDEX audit_blocks_seq ON audit_blocks (chain, first_seq);

-- A chain grows by whole blocks, each starting right after the chain's last entry: a block that
-- does not (two writers sealing after the same head, an entry stored twice) fails the append as
-- a whole. A chain without blocks takes any first block (after a retention purge it starts past
-- its anchor).
CREATE TRIGGER audit_blocks_follow BEFORE INSERT ON audit_blocks
WHEN NEW.first_seq IS NOT COALESCE(
    (SELECT last_seq + 1 FROM audit_blocks WHERE chain = NEW.chain
     ORDER BY first_seq DESC LIMIT 1),
    NEW.first_seq)
BEGIN
    SELECT RAISE(ABORT, 'audit sequence conflict: the block does not follow the chain head');
END;

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
