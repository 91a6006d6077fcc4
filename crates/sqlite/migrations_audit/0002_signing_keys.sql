-- The chain of checkpoint signing keys: link 1 holds the log's first (root) public key signed by
-- itself; each later link a hand-over, the next public key signed by the key before it (see
-- portcullis_audit::keys). Append-only: a key is never replaced, only handed over.
-- No CHECK constraints on purpose, as for the blocks: a changed link must reach the verifier.
CREATE TABLE audit_signing_keys (
    seq        INTEGER NOT NULL PRIMARY KEY,
    public_key BLOB    NOT NULL,  -- 32 bytes, Ed25519
    time_nanos INTEGER NOT NULL,  -- unix nanoseconds
    signature  BLOB    NOT NULL   -- 64 bytes, by the previous key (link 1: by itself)
) STRICT;
