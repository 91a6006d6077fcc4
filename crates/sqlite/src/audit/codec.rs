//! The bytes of a block: a layout byte, then the block's entries.
//!
//! - Layout 1 (plain): each entry of the block in sequence order as `seq` (u64 big-endian),
//!   `prev_hash` (32 bytes), `hash` (32 bytes), the body's length (u32 big-endian) and the body
//!   (the record's body, the bytes the hash covers).
//! - Layout 2 (compressed, what appends write): the length of the plain entries (u32
//!   big-endian), then those entries compressed as one LZ4 block. Request records of a chain
//!   repeat most of their bytes (keys, routes, addresses), so a block shrinks to well under half
//!   (the 64 bytes of hashes per entry do not compress), and with it everything the store does per byte: the copies into SQLite's pages, the WAL
//!   frames and the checkpoints that copy them into the file.
//!
//! The chain is the block's row; the query columns are not stored: they are read back from the
//! body. Blocks of both layouts are read.
use std::{borrow::Cow, collections::HashMap};

use portcullis_audit::{AuditStoreError, Digest, Entry, Record, record::micros};

/// The plain layout's first byte.
pub(super) const VERSION: u8 = 1;
/// The compressed layout's first byte.
pub(super) const VERSION_LZ4: u8 = 2;
/// The largest plain size a compressed block may claim (a block is one append of one chain:
/// at most `batch_max` entries of at most a few KiB each); larger claims are corrupt.
const MAX_PLAIN: usize = 1 << 28;

/// A block's bytes in the compressed layout, from its plain bytes (layout 1, first byte
/// included).
pub fn pack(plain: &[u8]) -> Result<Vec<u8>, AuditStoreError> {
    let mut room = Vec::new();
    pack_with(plain.get(1..).unwrap_or_default(), &mut room)
}

/// [`pack`] of a block's entries (without the layout byte), compressed in `room`, which is
/// grown as needed and kept for the next block: only the compressed bytes are allocated.
fn pack_with(entries: &[u8], room: &mut Vec<u8>) -> Result<Vec<u8>, AuditStoreError> {
    let len = u32::try_from(entries.len())
        .ok()
        .filter(|&n| n as usize <= MAX_PLAIN)
        .ok_or_else(|| AuditStoreError::Backend(format!("block of {} bytes", entries.len())))?;
    let max = lz4_flex::block::get_maximum_output_size(entries.len());
    if room.len() < max {
        room.resize(max, 0);
    }
    let n = lz4_flex::block::compress_into(entries, room)
        .map_err(|e| AuditStoreError::Backend(format!("compressing a block: {e}")))?;
    let mut out = Vec::with_capacity(5 + n);
    out.push(VERSION_LZ4);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&room[..n]);
    Ok(out)
}

/// A block's plain bytes (layout 1, first byte included), from its stored bytes of either
/// layout. `Corrupt` when compressed bytes do not decompress to the length they claim.
pub fn unpack(data: &[u8]) -> Result<Cow<'_, [u8]>, AuditStoreError> {
    if data.first() != Some(&VERSION_LZ4) {
        return Ok(Cow::Borrowed(data));
    }
    let corrupt = |what: &str| AuditStoreError::Corrupt(format!("compressed block: {what}"));
    let len = data
        .get(1..5)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(|b| u32::from_be_bytes(b) as usize)
        .filter(|&n| n <= MAX_PLAIN)
        .ok_or_else(|| corrupt("no valid length"))?;
    let mut plain = vec![0u8; 1 + len];
    plain[0] = VERSION;
    let n = lz4_flex::block::decompress_into(&data[5..], &mut plain[1..])
        .map_err(|e| corrupt(&e.to_string()))?;
    if n != len {
        return Err(corrupt("shorter than it claims"));
    }
    Ok(Cow::Owned(plain))
}

/// Bytes before an entry's body.
const HEADER: usize = 8 + 32 + 32 + 4;

/// Appends an entry to a block's bytes (start a block with [`start`]).
pub(super) fn push(data: &mut Vec<u8>, raw: &Raw<'_>) -> Result<(), AuditStoreError> {
    let len = body_len(raw.seq, raw.body.len())?;
    let start = data.len();
    data.resize(start + HEADER + raw.body.len(), 0);
    write_entry(&mut data[start..], raw, len);
    Ok(())
}

/// A body's length as the block holds it (a u32).
fn body_len(seq: u64, len: usize) -> Result<u32, AuditStoreError> {
    u32::try_from(len)
        .map_err(|_| AuditStoreError::Backend(format!("entry {seq}: body of {len} bytes")))
}

/// A new block's bytes, with room for about `entries` entries of `body` bytes.
pub(super) fn start(entries: usize, body: usize) -> Vec<u8> {
    let mut data = Vec::with_capacity(1 + entries * (HEADER + body));
    data.push(VERSION);
    data
}

/// One entry of a block, its body not yet read as a record.
#[derive(Debug, Clone, Copy)]
pub(super) struct Raw<'a> {
    pub seq: u64,
    pub prev_hash: Digest,
    pub hash: Digest,
    pub body: &'a [u8],
}

impl<'a> Raw<'a> {
    /// The stored parts of `entry`.
    pub(super) fn of(entry: &'a Entry) -> Self {
        Self {
            seq: entry.seq,
            prev_hash: entry.prev_hash,
            hash: entry.hash,
            body: &entry.body,
        }
    }
}

/// The entries of a block's bytes, in stored order; an error (and nothing after it) where the
/// bytes stop making sense.
#[derive(Debug)]
pub(super) struct Entries<'a> {
    chain: &'a str,
    first_seq: u64,
    data: &'a [u8],
    pos: usize,
    last_seq: Option<u64>,
    failed: bool,
}

impl<'a> Entries<'a> {
    /// Reads the block of `chain` stored at `first_seq`.
    pub(super) fn new(chain: &'a str, first_seq: u64, data: &'a [u8]) -> Self {
        Self {
            chain,
            first_seq,
            data,
            pos: 0,
            last_seq: None,
            failed: false,
        }
    }

    fn corrupt(&mut self, what: &str) -> AuditStoreError {
        self.failed = true;
        let after = self
            .last_seq
            .map_or_else(|| "at its start".to_owned(), |s| format!("after entry {s}"));
        AuditStoreError::Corrupt(format!(
            "block {} of chain {}, {after}: {what}",
            self.first_seq, self.chain
        ))
    }

    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let bytes = self.data.get(self.pos..self.pos + N)?.try_into().ok()?;
        self.pos += N;
        Some(bytes)
    }
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<Raw<'a>, AuditStoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if self.pos == 0 {
            match self.data.first() {
                Some(&VERSION) => self.pos = 1,
                Some(v) => return Some(Err(self.corrupt(&format!("unknown layout {v}")))),
                None => return Some(Err(self.corrupt("no bytes"))),
            }
        }
        if self.pos == self.data.len() {
            return None;
        }
        let Some((seq, prev, hash, len)) = (|| {
            Some((
                u64::from_be_bytes(self.take()?),
                Digest(self.take()?),
                Digest(self.take()?),
                u32::from_be_bytes(self.take()?),
            ))
        })() else {
            return Some(Err(self.corrupt("truncated entry header")));
        };
        let data = self.data;
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| self.pos.checked_add(l));
        let Some(body) = end.and_then(|end| data.get(self.pos..end)) else {
            return Some(Err(self.corrupt(&format!(
                "body of entry {seq} runs past the block ({len} bytes)"
            ))));
        };
        self.pos += body.len();
        self.last_seq = Some(seq);
        Some(Ok(Raw {
            seq,
            prev_hash: prev,
            hash,
            body,
        }))
    }
}

/// The body of `raw` as a record: an entry the verifier cannot read is a corrupt row, which it
/// names ([`portcullis_audit::Problem::UnreadableBody`]) at its sequence number.
pub(super) fn record(chain: &str, raw: &Raw<'_>) -> Result<Record, AuditStoreError> {
    Record::from_body(raw.body).map_err(|e| {
        AuditStoreError::Corrupt(format!(
            "entry {} of chain {chain}: the body is not a record: {e}",
            raw.seq
        ))
    })
}

/// `raw` as an entry of `chain`, its time read from the body.
pub(super) fn entry(chain: &str, raw: &Raw<'_>) -> Result<Entry, AuditStoreError> {
    entry_and_record(chain, raw).map(|(e, _)| e)
}

/// `raw` as an entry of `chain`, and the record in its body.
pub(super) fn entry_and_record(
    chain: &str,
    raw: &Raw<'_>,
) -> Result<(Entry, Record), AuditStoreError> {
    let record = record(chain, raw)?;
    let entry = Entry {
        chain: chain.to_owned(),
        seq: raw.seq,
        prev_hash: raw.prev_hash,
        hash: raw.hash,
        time_micros: micros(record.time),
        body: raw.body.to_vec(),
    };
    Ok((entry, record))
}

/// One chain's entries of an append, encoded.
pub(super) struct Block<'a> {
    pub chain: &'a str,
    pub first: u64,
    pub last: u64,
    pub min_time: i64,
    pub max_time: i64,
    pub last_hash: Digest,
    pub data: Vec<u8>,
}

/// Buffers an append encodes its blocks in, kept from one append to the next: a batch's
/// blocks are a few hundred KiB, and memory allocated afresh at that size comes from the
/// system each time, zeroed page by page (measured at about half a percent of the server's
/// core behind the gateway).
#[derive(Debug, Default)]
pub(super) struct Scratch {
    /// The plain entries of every block of the append, one block after the other.
    plain: Vec<u8>,
    /// Where each block is compressed.
    packed: Vec<u8>,
}

impl Scratch {
    /// Above this, the buffers are let go after an append (a rare huge batch does not stay).
    const KEEP: usize = 8 << 20;

    fn trim(&mut self) {
        for buf in [&mut self.plain, &mut self.packed] {
            if buf.capacity() > Self::KEEP {
                *buf = Vec::new();
            }
        }
    }
}

/// Groups `entries` into one block per chain, in the order the chains first come. Each chain's
/// entries must follow each other (seq + 1 each), or the append is refused. A first pass
/// groups them and sums each block's size; the second writes each entry at its place in
/// `scratch`, and each block is compressed from there.
pub(super) fn blocks<'a>(
    entries: &'a [Entry],
    scratch: &mut Scratch,
) -> Result<Vec<Block<'a>>, AuditStoreError> {
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut blocks: Vec<Block<'_>> = Vec::new();
    let mut sizes: Vec<usize> = Vec::new();
    // The block of each entry and its body's length, in order.
    let mut of: Vec<(usize, u32)> = Vec::with_capacity(entries.len());
    // Entries of one chain tend to come in runs: the last block is tried before the index.
    let mut last: Option<usize> = None;
    for e in entries {
        let t = e.time_micros;
        let found = last
            .filter(|&i| blocks[i].chain == e.chain)
            .or_else(|| index.get(e.chain.as_str()).copied());
        let i = found.unwrap_or(blocks.len());
        last = Some(i);
        of.push((i, body_len(e.seq, e.body.len())?));
        match found {
            Some(i) => {
                let b = &mut blocks[i];
                if b.last.checked_add(1) != Some(e.seq) {
                    return Err(AuditStoreError::Backend(format!(
                        "audit sequence conflict: entry {} of chain {} after entry {} in one \
                         append",
                        e.seq, e.chain, b.last
                    )));
                }
                b.last = e.seq;
                b.min_time = b.min_time.min(t);
                b.max_time = b.max_time.max(t);
                b.last_hash = e.hash;
                sizes[i] += HEADER + e.body.len();
            }
            None => {
                index.insert(&e.chain, blocks.len());
                blocks.push(Block {
                    chain: &e.chain,
                    first: e.seq,
                    last: e.seq,
                    min_time: t,
                    max_time: t,
                    last_hash: e.hash,
                    data: Vec::new(),
                });
                sizes.push(HEADER + e.body.len());
            }
        }
    }
    // Where each block's entries go in `scratch.plain` (without the layout byte, which the
    // compressed layout does not hold).
    let mut at: Vec<usize> = Vec::with_capacity(sizes.len());
    let mut total = 0;
    for size in &sizes {
        at.push(total);
        total += size;
    }
    let plain = &mut scratch.plain;
    if plain.len() < total {
        plain.resize(total, 0);
    }
    for (e, &(i, len)) in entries.iter().zip(&of) {
        let start = at[i];
        let end = start + HEADER + e.body.len();
        write_entry(&mut plain[start..end], &Raw::of(e), len);
        at[i] = end;
    }
    let mut start = 0;
    for (b, size) in blocks.iter_mut().zip(&sizes) {
        b.data = pack_with(&plain[start..start + size], &mut scratch.packed)?;
        start += size;
    }
    scratch.trim();
    Ok(blocks)
}

/// Writes an entry's bytes into `out` (exactly their size), its body `len` bytes long.
fn write_entry(out: &mut [u8], raw: &Raw<'_>, len: u32) {
    let (seq, rest) = out.split_at_mut(8);
    seq.copy_from_slice(&raw.seq.to_be_bytes());
    let (prev, rest) = rest.split_at_mut(32);
    prev.copy_from_slice(&raw.prev_hash.0);
    let (hash, rest) = rest.split_at_mut(32);
    hash.copy_from_slice(&raw.hash.0);
    let (len_bytes, body) = rest.split_at_mut(4);
    len_bytes.copy_from_slice(&len.to_be_bytes());
    body.copy_from_slice(raw.body);
}

#[cfg(test)]
mod tests {
    use portcullis_audit::{Chainer, Kind};
    use time::OffsetDateTime;

    use super::*;

    fn block(n: u64) -> (Vec<Entry>, Vec<u8>) {
        let mut chainer = Chainer::default();
        let entries: Vec<Entry> = (0..n)
            .map(|i| {
                let mut r =
                    Record::new(OffsetDateTime::UNIX_EPOCH, Kind::Request, "request").with("i", i);
                r.tenant = Some("acme".into());
                chainer.seal(&r)
            })
            .collect();
        let mut data = start(entries.len(), 100);
        for e in &entries {
            push(&mut data, &Raw::of(e)).unwrap();
        }
        (entries, data)
    }

    fn read(data: &[u8]) -> Vec<Result<Entry, AuditStoreError>> {
        Entries::new("acme", 1, data)
            .map(|r| r.and_then(|raw| entry("acme", &raw)))
            .collect()
    }

    #[test]
    fn entries_round_trip() {
        let (entries, data) = block(5);
        let back: Vec<Entry> = read(&data).into_iter().map(Result::unwrap).collect();
        assert_eq!(back, entries);
        assert!(read(&[VERSION]).is_empty(), "an empty block holds nothing");
    }

    #[test]
    fn compressed_blocks_round_trip_and_refuse_false_lengths() {
        let (entries, plain) = block(50);
        let packed = pack(&plain).unwrap();
        assert_eq!(packed[0], VERSION_LZ4);
        assert!(
            packed.len() * 2 < plain.len(),
            "{} of {}",
            packed.len(),
            plain.len()
        );
        let back = unpack(&packed).unwrap();
        assert_eq!(&back[..], &plain[..]);
        let read: Vec<Entry> = read(&back).into_iter().map(Result::unwrap).collect();
        assert_eq!(read, entries);
        // A plain block is read as it is.
        assert!(matches!(unpack(&plain).unwrap(), Cow::Borrowed(_)));
        // A length claim that does not match, a huge one, a missing one, a cut block.
        let mut longer = packed.clone();
        longer[1..5].copy_from_slice(&(u32::try_from(plain.len()).unwrap()).to_be_bytes());
        let mut huge = packed.clone();
        huge[1..5].copy_from_slice(&u32::MAX.to_be_bytes());
        for bad in [
            longer,
            huge,
            vec![VERSION_LZ4, 0],
            packed[..packed.len() - 5].to_vec(),
        ] {
            assert!(
                matches!(unpack(&bad), Err(AuditStoreError::Corrupt(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn broken_bytes_end_the_block_with_an_error() {
        let (entries, data) = block(3);
        let cut = data.len() - 10;
        let got = read(&data[..cut]);
        assert_eq!(got.len(), 3);
        assert_eq!(got[1].as_ref().unwrap(), &entries[1]);
        let Err(AuditStoreError::Corrupt(why)) = &got[2] else {
            panic!("{:?}", got[2])
        };
        assert!(
            why.contains("block 1 of chain acme, after entry 2"),
            "{why}"
        );

        let header_cut = read(&data[..data.len() - entries[2].body.len() - 3]);
        assert!(matches!(
            header_cut.last(),
            Some(Err(AuditStoreError::Corrupt(_)))
        ));
        assert!(matches!(
            read(&[]).as_slice(),
            [Err(AuditStoreError::Corrupt(_))]
        ));
        let mut other = data.clone();
        other[0] = 9;
        assert!(matches!(
            read(&other).as_slice(),
            [Err(AuditStoreError::Corrupt(_))]
        ));
    }

    #[test]
    fn a_body_that_is_not_a_record_is_corrupt_at_its_seq() {
        let (mut entries, _) = block(2);
        entries[1].body = b"not a record".to_vec();
        let mut data = start(2, 100);
        for e in &entries {
            push(&mut data, &Raw::of(e)).unwrap();
        }
        let got = read(&data);
        let Err(AuditStoreError::Corrupt(why)) = &got[1] else {
            panic!()
        };
        assert!(why.starts_with("entry 2 of chain acme"), "{why}");
    }

    #[test]
    fn blocks_of_interleaved_chains_read_back_in_order_with_the_scratch_reused() {
        let mut scratch = Scratch::default();
        for (n, chains) in [(40u64, 3usize), (5, 2), (70, 1)] {
            let mut chainer = Chainer::default();
            let names = ["acme", "beta", "_system"];
            let entries: Vec<Entry> = (0..n)
                .map(|i| {
                    let mut r = portcullis_audit::Record::new(
                        OffsetDateTime::UNIX_EPOCH,
                        Kind::Request,
                        "gateway.request",
                    )
                    .with("i", i);
                    r.tenant = Some(names[i as usize % chains].to_owned());
                    chainer.seal(&r)
                })
                .collect();
            let blocks = blocks(&entries, &mut scratch).unwrap();
            assert_eq!(blocks.len(), chains);
            for b in &blocks {
                let plain = unpack(&b.data).unwrap();
                let mine: Vec<&Entry> = entries.iter().filter(|e| e.chain == b.chain).collect();
                let mut expected = start(0, 0);
                for e in &mine {
                    push(&mut expected, &Raw::of(e)).unwrap();
                }
                assert_eq!(&plain[..], &expected[..], "chain {}", b.chain);
                assert_eq!((b.first, b.last), (mine[0].seq, mine[mine.len() - 1].seq));
                assert_eq!(b.last_hash, mine[mine.len() - 1].hash);
            }
        }
    }
}
