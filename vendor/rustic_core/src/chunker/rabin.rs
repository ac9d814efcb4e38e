use std::io::{self, Read};
use std::sync::{Arc, Mutex};

use rand::{RngExt, rng};
use rustic_cdc::{Polynom, Polynom64, Rabin64};

use crate::error::{ErrorKind, RusticError, RusticResult};

pub(super) mod constants {
    /// The size of a kilobyte.
    pub(super) const KB: usize = 1024;
    /// Random polynomial maximum tries.
    pub(super) const RAND_POLY_MAX_TRIES: i32 = 1_000_000;
}

pub(crate) fn check_rabin_params(
    chunk_size: usize,
    chunk_min_size: usize,
    chunk_max_size: usize,
) -> RusticResult<()> {
    if (chunk_size & (chunk_size - 1)) != 0 {
        return Err(RusticError::new(
            ErrorKind::Unsupported,
            "Chunk size must be a power of 2 for the rabin chunker. chunk size = {chunk_size}.",
        )
        .attach_context("chunk_size", chunk_size.to_string()));
    }
    if chunk_min_size > chunk_size {
        return Err(RusticError::new(
            ErrorKind::Unsupported,
            "Chunk min size must be smaller or equal than the chunk size.",
        ));
    }
    if chunk_max_size < chunk_size {
        return Err(RusticError::new(
            ErrorKind::Unsupported,
            "Chunk max size must be larger or equal than the chunk size.",
        ));
    }
    Ok(())
}

// caretaker patch (see vendor/README.md): the chunk loop below works on slices of a large
// read buffer and searches for boundaries in four interleaved lanes, instead of pushing and
// hashing byte by byte through `rustic_cdc::Rabin64` (44 % of a stream backup's time in
// caretaker's profile). The chunk boundaries are exactly those of rustic_core 0.13.0's
// chunker: caretaker's test `chunk_boundaries_are_rustic_cores` compares both on random,
// text, zero and boundary-less data.

/// Size of the rolling hash window (restic's: 64 bytes).
const WINDOW: usize = 64;

/// Read buffer: large reads, few system calls.
const READ_BUF_SIZE: usize = 256 * constants::KB;

/// Bytes searched for a boundary at a time (a boundary is found ~1 MiB after the minimum).
const SCAN_BLOCK: usize = 64 * constants::KB;

/// The tables of the rolling hash for one polynomial, as `rustic_cdc::Rabin64` computes them.
struct Tables {
    poly: Polynom64,
    out_table: [Polynom64; 256],
    mod_table: [Polynom64; 256],
    shift: i32,
}

impl Tables {
    /// The tables for `poly`. Computing them takes ~100 µs, which upstream spent on every file
    /// (a quarter of a first backup of many small files); they are kept for the last
    /// polynomial used (a repository has one).
    fn get(poly: Polynom64) -> Arc<Self> {
        static LAST: Mutex<Option<Arc<Tables>>> = Mutex::new(None);
        let mut last = LAST.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(t) = last.as_ref().filter(|t| t.poly == poly) {
            return t.clone();
        }
        let t = Arc::new(Self {
            poly,
            out_table: Rabin64::calculate_out_table(WINDOW, &poly),
            mod_table: Rabin64::calculate_mod_table(&poly),
            shift: poly.degree() - 8,
        });
        *last = Some(t.clone());
        t
    }
}

impl Tables {
    /// One step of the rolling hash: `out` leaves the window, `b` enters it.
    #[inline(always)]
    fn roll(&self, hash: Polynom64, out: u8, b: u8) -> Polynom64 {
        let hash = hash ^ self.out_table[out as usize];
        let mod_index = (hash >> self.shift) & 255;
        ((hash << 8) | Polynom64::from(b)) ^ self.mod_table[mod_index as usize]
    }

    /// The hash of a window holding exactly `bytes` (`WINDOW` of them).
    fn fingerprint(&self, bytes: &[u8]) -> Polynom64 {
        bytes.iter().fold(0, |hash, &b| self.roll(hash, 0, b))
    }

    /// The first position `i` in `from..to` where the window `data[i + 1 - WINDOW..=i]` is a
    /// chunk boundary (`hash & mask == 0`); needs `from >= WINDOW`.
    ///
    /// The hash of a window depends on its bytes only (it is their polynomial modulo
    /// `poly`), so the range is split into lanes whose rolling hashes run interleaved: four
    /// independent dependency chains instead of one, which is what limits a byte-by-byte
    /// chunker.
    fn first_boundary(&self, data: &[u8], from: usize, to: usize, mask: Polynom64) -> Option<usize> {
        const LANES: usize = 4;
        debug_assert!(from >= WINDOW && to <= data.len());
        let lane_len = (to - from) / LANES;
        let mut rest = from;
        if lane_len >= 4 * WINDOW {
            let starts: [usize; LANES] = std::array::from_fn(|j| from + j * lane_len);
            // Each lane's bytes with the window before them: lane[j][k] leaves, lane[j][k + WINDOW] enters.
            let lanes: [&[u8]; LANES] =
                std::array::from_fn(|j| &data[starts[j] - WINDOW..starts[j] + lane_len]);
            let mut hashes: [Polynom64; LANES] =
                std::array::from_fn(|j| self.fingerprint(&lanes[j][..WINDOW]));
            let mut hits = [usize::MAX; LANES];
            for k in 0..lane_len {
                let mut any = false;
                for j in 0..LANES {
                    hashes[j] = self.roll(hashes[j], lanes[j][k], lanes[j][k + WINDOW]);
                    any |= hashes[j] & mask == 0;
                }
                if any {
                    for j in 0..LANES {
                        if hits[j] == usize::MAX && hashes[j] & mask == 0 {
                            hits[j] = starts[j] + k;
                        }
                    }
                    if hits[0] != usize::MAX {
                        return Some(hits[0]);
                    }
                }
            }
            if let Some(&hit) = hits.iter().find(|&&h| h != usize::MAX) {
                return Some(hit);
            }
            rest = from + LANES * lane_len;
        }
        let mut hash = self.fingerprint(&data[rest - WINDOW..rest]);
        for i in rest..to {
            hash = self.roll(hash, data[i - WINDOW], data[i]);
            if hash & mask == 0 {
                return Some(i);
            }
        }
        None
    }
}

/// The Rabin fingerprint over the last [`WINDOW`] bytes, with the same tables and the same
/// arithmetic as `rustic_cdc::Rabin64` (window size 2^6), but a fixed-size window so that the
/// scanning loop has no bounds checks and keeps its state in registers.
struct Window {
    tables: Arc<Tables>,
    data: [u8; WINDOW],
    index: usize,
    hash: Polynom64,
}

impl Window {
    fn new(tables: Arc<Tables>) -> Self {
        Self {
            tables,
            data: [0; WINDOW],
            index: 0,
            hash: 0,
        }
    }

    /// What `Rabin64::reset_and_prefill_window` does with `WINDOW - 1` bytes: the hash of
    /// `bytes` with the window's remaining slot zero.
    fn reset_and_prefill(&mut self, bytes: &[u8]) {
        let t = &*self.tables;
        self.hash = 0;
        self.data = [0; WINDOW];
        self.index = 0;
        for &b in bytes.iter().take(WINDOW - 1) {
            self.data[self.index] = b;
            let mod_index = (self.hash >> t.shift) & 255;
            self.hash <<= 8;
            self.hash |= Polynom64::from(b);
            self.hash ^= t.mod_table[mod_index as usize];
            self.index = (self.index + 1) & (WINDOW - 1);
        }
    }

    /// Slides `bytes` into the window one by one (as `Rabin64::slide`) until the hash has no
    /// bit of `mask` set; returns how many bytes went in.
    #[inline]
    fn scan(&mut self, bytes: &[u8], mask: Polynom64) -> usize {
        let t = &*self.tables;
        let (mut hash, mut index) = (self.hash, self.index);
        let mut n = 0;
        for &b in bytes {
            hash ^= t.out_table[self.data[index] as usize];
            self.data[index] = b;
            let mod_index = (hash >> t.shift) & 255;
            hash = (hash << 8) | Polynom64::from(b);
            hash ^= t.mod_table[mod_index as usize];
            index = (index + 1) & (WINDOW - 1);
            n += 1;
            if hash & mask == 0 {
                break;
            }
        }
        self.hash = hash;
        self.index = index;
        n
    }
}

/// `ChunkIter` is an iterator that chunks data.
pub(crate) struct ChunkIter<R: Read + Send> {
    /// The buffer used for reading; `buf[pos..end]` is read but not yet chunked. Allocated
    /// when first needed: a file smaller than the minimum chunk size never needs it.
    buf: Vec<u8>,

    /// The position in the buffer.
    pos: usize,

    /// The end of the data in the buffer.
    end: usize,

    /// The reader.
    reader: R,

    /// The split mask used to determine if a chunk is a chunk boundary.
    split_mask: u64,

    /// The polynomial of the rolling hash.
    poly: Polynom64,

    /// The tables of the rolling hash, fetched when first needed (as the buffer).
    tables: Option<Arc<Tables>>,

    /// The size hint is used to optimize memory allocation; this should be an upper bound on the size.
    size_hint: usize,

    /// The minimum size of a chunk.
    min_size: usize,

    /// The maximum size of a chunk.
    max_size: usize,

    /// If the iterator is finished.
    finished: bool,
}

impl<R: Read + Send> ChunkIter<R> {
    /// Creates a new `ChunkIter`.
    ///
    /// # Arguments
    ///
    /// * `poly` - The polynomial of the rolling hash.
    /// * `reader` - The reader to read from.
    /// * `size_hint` - The size hint is used to optimize memory allocation; this should be an upper bound on the size.
    pub(crate) fn new(
        poly: Polynom64,
        chunk_size: usize,
        chunk_min_size: usize,
        chunk_max_size: usize,
        reader: R,
        size_hint: usize,
    ) -> RusticResult<Self> {
        check_rabin_params(chunk_size, chunk_min_size, chunk_max_size)?;
        let chunk_size: u64 = chunk_size.try_into().unwrap();
        let split_mask: u64 = chunk_size - 1;
        Ok(Self {
            buf: Vec::new(),
            pos: 0,
            end: 0,
            reader,
            split_mask,
            poly,
            tables: None,
            size_hint, // size hint is used to optimize memory allocation; this should be an upper bound on the size
            min_size: chunk_min_size,
            max_size: chunk_max_size,
            finished: false,
        })
    }
}

impl<R: Read + Send> ChunkIter<R> {
    /// Makes sure the buffer holds unchunked data; `false` at the end of the reader.
    fn fill(&mut self) -> RusticResult<bool> {
        while self.pos == self.end {
            match self.reader.read(&mut self.buf[..]) {
                Ok(0) => return Ok(false),
                Ok(size) => {
                    self.pos = 0;
                    self.end = size;
                }
                Err(ref e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    return Err(RusticError::with_source(
                        ErrorKind::InputOutput,
                        "Failed to read from reader in iterator",
                        err,
                    ));
                }
            }
        }
        Ok(true)
    }
}

impl<R: Read + Send> Iterator for ChunkIter<R> {
    type Item = RusticResult<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }

        // Room for a chunk of the average size; larger ones grow.
        let typical = self.min_size + usize::try_from(self.split_mask).unwrap_or(0) + 1;
        let mut vec = Vec::with_capacity(self.size_hint.min(typical));

        // The first `min_size` bytes are never a boundary: take them unhashed, first from
        // the buffer, then from the reader.
        let buffered = (self.end - self.pos).min(self.min_size);
        vec.extend_from_slice(&self.buf[self.pos..self.pos + buffered]);
        self.pos += buffered;
        let missing = self.min_size - buffered;
        let size = match (&mut self.reader)
            .take(missing as u64)
            .read_to_end(&mut vec)
        {
            Ok(size) => size,
            Err(err) => {
                return Some(Err(RusticError::with_source(
                    ErrorKind::InputOutput,
                    "Failed to read from reader in iterator",
                    err,
                )));
            }
        };

        // If self.min_size is not reached, we are done.
        if size < missing {
            self.finished = true;
            return if vec.is_empty() { None } else { Some(Ok(vec)) };
        }

        let len = vec.len();
        let poly = self.poly;
        let tables = self.tables.get_or_insert_with(|| Tables::get(poly)).clone();
        let mut window = Window::new(tables.clone());
        window.reset_and_prefill(&vec[len.saturating_sub(WINDOW)..len]);
        if self.buf.is_empty() {
            self.buf = vec![0; READ_BUF_SIZE];
        }

        // Upstream's window right after the minimum size is not the last `WINDOW` bytes (it
        // leaves out the last byte of the minimum and starts with a zero): the first `WINDOW`
        // bytes are hashed one by one through that window, as upstream does.
        let mut odd_window_left = WINDOW;
        loop {
            if vec.len() >= self.max_size || (window.hash & self.split_mask) == 0 {
                break;
            }
            match self.fill() {
                Ok(true) => {}
                Ok(false) => {
                    self.finished = true;
                    break;
                }
                Err(err) => return Some(Err(err)),
            }
            if odd_window_left == 0 {
                // From here on the window is the last `WINDOW` bytes: a block at a time.
                // (`window.hash` is no longer updated; it stays the last odd window's, which
                // was no boundary.)
                let limit = (self.end - self.pos)
                    .min(self.max_size - vec.len())
                    .min(SCAN_BLOCK);
                let from = vec.len();
                vec.extend_from_slice(&self.buf[self.pos..self.pos + limit]);
                if let Some(at) = tables.first_boundary(&vec, from, from + limit, self.split_mask) {
                    vec.truncate(at + 1);
                    self.pos += at + 1 - from;
                    break;
                }
                self.pos += limit;
                continue;
            }
            let limit = (self.end - self.pos)
                .min(self.max_size - vec.len())
                .min(odd_window_left);
            let taken = window.scan(&self.buf[self.pos..self.pos + limit], self.split_mask);
            vec.extend_from_slice(&self.buf[self.pos..self.pos + taken]);
            self.pos += taken;
            odd_window_left -= taken;
        }
        self.size_hint = self.size_hint.saturating_sub(vec.len()); // size_hint can be too small!
        Some(Ok(vec))
    }
}

/// [`random_poly`] returns an random irreducible polynomial of degree 53
/// (largest prime number below 64-8)
/// There are (2^53-2/53) irreducible polynomials of degree 53 in
/// `F_2[X]`, c.f. Michael O. Rabin (1981): "Fingerprinting by Random
/// Polynomials", page 4.
///
/// # Errors
///
/// * If no polynomial could be found in one million tries.
pub fn random_poly() -> RusticResult<u64> {
    for _ in 0..constants::RAND_POLY_MAX_TRIES {
        let mut poly: u64 = rng().random();

        // mask away bits above bit 53
        poly &= (1 << 54) - 1;

        // set highest and lowest bit so that the degree is 53 and the
        // polynomial is not trivially reducible
        poly |= (1 << 53) | 1;

        if poly.irreducible() {
            return Ok(poly);
        }
    }

    Err(RusticError::new(
        ErrorKind::Internal,
        "No suitable polynomial found, this should essentially never happen. Please try again.",
    )
    .ask_report())
}

/// A trait for extending polynomials.
pub(crate) trait PolynomExtend {
    /// Returns true IFF x is irreducible over `F_2`.
    fn irreducible(&self) -> bool;

    /// Returns the degree of the polynomial.
    fn gcd(self, other: Self) -> Self;

    /// Adds two polynomials.
    fn add(self, other: Self) -> Self;

    /// Multiplies two polynomials modulo another polynomial.
    fn mulmod(self, other: Self, modulo: Self) -> Self;
}

// implementation goes along the lines of
// https://github.com/restic/chunker/blob/master/polynomials.go
impl PolynomExtend for Polynom64 {
    // Irreducible returns true IFF x is irreducible over F_2. This function
    // uses Ben Or's reducibility test.
    //
    // For details see "Tests and Constructions of Irreducible Polynomials over
    // Finite Fields".
    fn irreducible(&self) -> bool {
        for i in 1..=self.degree() / 2 {
            if self.gcd(qp(i, *self)) != 1 {
                return false;
            }
        }
        true
    }

    fn gcd(self, other: Self) -> Self {
        if other == 0 {
            return self;
        }

        if self == 0 {
            return other;
        }

        if self.degree() < other.degree() {
            self.gcd(other.modulo(&self))
        } else {
            other.gcd(self.modulo(&other))
        }
    }

    fn add(self, other: Self) -> Self {
        self ^ other
    }

    fn mulmod(self, other: Self, modulo: Self) -> Self {
        if self == 0 || other == 0 {
            return 0;
        }

        let mut res: Self = 0;
        let mut a = self;
        let mut b = other;

        if b & 1 > 0 {
            res = res.add(a).modulo(&modulo);
        }

        while b != 0 {
            a = (a << 1).modulo(&modulo);
            b >>= 1;
            if b & 1 > 0 {
                res = res.add(a).modulo(&modulo);
            }
        }

        res
    }
}

// qp computes the polynomial (x^(2^p)-x) mod g. This is needed for the
// reducibility test.
fn qp(p: i32, g: Polynom64) -> Polynom64 {
    // start with x
    let mut res: Polynom64 = 2;

    for _ in 0..p {
        // repeatedly square res
        res = res.mulmod(res, g);
    }

    // add x
    res.add(2).modulo(&g)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::hasher::hash;
    use insta::assert_ron_snapshot;
    use rand::prelude::*;
    use std::io::{Cursor, repeat};

    /// The Splitmask is used to determine if a chunk is a chunk boundary.
    const SIZE: usize = 1 << 20;
    /// The size of a megabyte.
    const MB: usize = 1024 * constants::KB;
    /// The minimum size of a chunk.
    const MIN_SIZE: usize = 512 * constants::KB;
    /// The maximum size of a chunk.
    const MAX_SIZE: usize = 8 * MB;

    fn chunker<R: Read + Send>(reader: R, size_hint: usize) -> ChunkIter<R> {
        let poly = 0x003D_A335_8B4D_C173;
        ChunkIter::new(poly, SIZE, MIN_SIZE, MAX_SIZE, reader, size_hint).unwrap()
    }

    #[test]
    fn chunk_random() {
        const RANDOM_DATA_SIZE: usize = 32 * 1024 * 1024;
        const SEED: u64 = 23;
        let mut rng = StdRng::seed_from_u64(SEED);
        let mut data = vec![0u8; RANDOM_DATA_SIZE];
        rng.fill_bytes(&mut data);
        let mut reader = Cursor::new(data);
        let chunker = chunker(&mut reader, 0);
        let chunks: Vec<_> = chunker
            .map(|chunk| {
                let chunk = chunk.unwrap();
                (chunk.len(), hash(&chunk))
            })
            .collect();

        assert_ron_snapshot!(chunks);
    }

    #[test]
    fn chunk_empty() {
        let empty: Vec<u8> = vec![];
        let mut reader = Cursor::new(empty);
        let chunker = chunker(&mut reader, 0);

        assert_eq!(0, chunker.into_iter().count());
    }

    #[test]
    fn chunk_empty_wrong_hint() {
        let empty: Vec<u8> = vec![];
        let mut reader = Cursor::new(empty);
        let chunker = chunker(&mut reader, 100);

        assert_eq!(0, chunker.into_iter().count());
    }

    #[test]
    fn chunk_zeros() {
        let mut reader = repeat(0u8);
        let mut chunker = chunker(&mut reader, usize::MAX);

        let chunk = chunker.next().unwrap().unwrap();
        assert_eq!(MIN_SIZE, chunk.len());
    }
}
