//! The config as numbered QR payloads with one XOR parity chunk, and back. Pure: no I/O.
//!
//! A payload is ASCII text, so every QR reader returns it unchanged:
//!
//! ```text
//! CTK1/<index>/<total>/<chunk length>/<config length>/<sha256>/<base64 of the chunk>
//! ```
//!
//! `index` counts from 1; codes `1..total-1` hold, in order, the bytes of the config's SHA-256
//! (32 bytes) followed by the config, and code `total` is the XOR of all of them (each padded
//! with zeros to the chunk size), so any one code can be lost and the full digest still comes
//! back to check the result. `sha256` in the header is the digest's first 12 hex digits, enough
//! to tell two sheets' codes apart. All codes but the last data code have the same size (rqrr
//! misreads a page whose codes differ in size).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The format marker and version at the start of every payload.
pub const FORMAT: &str = "CTK1";
/// Bytes of config per code: with base64 and the header a payload stays under ~330 bytes, a QR
/// code of version 13 or less at error correction M (69×69 modules), which prints at about
/// 1 mm per module in the sheet's layout. (Version 18 codes of 360-byte chunks printed at 0.8 mm
/// and some did not decode from a 150 dpi rendering.)
pub const DEFAULT_CHUNK: usize = 200;
const PREFIX_LEN: usize = 12;
const DIGEST_LEN: usize = 32;

/// One QR code's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Code {
    pub index: u32,
    pub total: u32,
    pub payload: String,
}

impl Code {
    pub fn is_parity(&self) -> bool {
        self.index == self.total
    }
}

/// The config's SHA-256 as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Splits `config` into `chunk`-byte data codes plus one parity code.
pub fn encode(config: &[u8], chunk: usize) -> Vec<Code> {
    assert!(chunk > 0, "chunk size must be positive");
    let sha = sha256_hex(config);
    let prefix = &sha[..PREFIX_LEN];
    let mut stream = Sha256::digest(config).to_vec();
    stream.extend_from_slice(config);
    let data: Vec<&[u8]> = stream.chunks(chunk).collect();
    let total = data.len() as u32 + 1;
    let mut parity = vec![0u8; chunk];
    let mut codes = Vec::with_capacity(total as usize);
    for (i, part) in data.iter().enumerate() {
        for (p, b) in parity.iter_mut().zip(part.iter()) {
            *p ^= b;
        }
        let index = i as u32 + 1;
        codes.push(Code { index, total, payload: payload(index, total, part, config.len(), prefix) });
    }
    codes.push(Code { index: total, total, payload: payload(total, total, &parity, config.len(), prefix) });
    codes
}

fn payload(index: u32, total: u32, bytes: &[u8], config_len: usize, sha: &str) -> String {
    format!("{FORMAT}/{index}/{total}/{}/{config_len}/{sha}/{}", bytes.len(), B64.encode(bytes))
}

/// A payload read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub index: u32,
    pub total: u32,
    pub config_len: usize,
    /// The first 12 hex digits of the config's SHA-256.
    pub sha: String,
    pub data: Vec<u8>,
}

impl Parsed {
    pub fn prefix(&self) -> &str {
        &self.sha[..PREFIX_LEN]
    }
}

/// Why a payload is not one of caretaker's codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a caretaker recovery code: {0}")]
pub struct ParseError(pub String);

pub fn parse(payload: &str) -> Result<Parsed, ParseError> {
    let err = |what: &str| ParseError(what.to_string());
    let parts: Vec<&str> = payload.trim().splitn(7, '/').collect();
    if parts.len() != 7 || parts[0] != FORMAT {
        return Err(err(&format!("it does not start with {FORMAT}/")));
    }
    let num = |s: &str, what: &str| s.parse::<u64>().map_err(|_| err(&format!("bad {what} {s:?}")));
    let index = num(parts[1], "index")? as u32;
    let total = num(parts[2], "total")? as u32;
    let len = num(parts[3], "chunk length")? as usize;
    let config_len = num(parts[4], "config length")? as usize;
    let sha = parts[5].to_ascii_lowercase();
    if sha.len() != PREFIX_LEN || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(err("bad SHA-256 field"));
    }
    if total < 2 || index == 0 || index > total {
        return Err(err(&format!("index {index} of {total} is out of range")));
    }
    let data = B64.decode(parts[6].trim()).map_err(|_| err("its data is not base64"))?;
    if data.len() != len {
        return Err(err(&format!("it holds {} bytes but says {len}", data.len())));
    }
    Ok(Parsed { index, total, config_len, sha, data })
}

/// Why the codes do not give the config back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssembleError {
    #[error("no caretaker recovery codes were found")]
    NoCodes,
    #[error("the codes come from {} different sheets (SHA-256 {})", .0.len(), .0.join(", "))]
    MixedSheets(Vec<String>),
    #[error("the codes disagree about {0}")]
    Inconsistent(String),
    #[error("{} of {total} codes are missing: {}; one missing code can be rebuilt, not more", missing.len(), list(missing))]
    TooManyMissing { missing: Vec<u32>, total: u32 },
    #[error("the rebuilt config's SHA-256 is {actual}, the sheet says {expected}")]
    HashMismatch { expected: String, actual: String },
}

/// "3 and 5", "1, 2 and 7".
pub fn list(indices: &[u32]) -> String {
    let s: Vec<String> = indices.iter().map(|i| i.to_string()).collect();
    match s.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

/// What was put back together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assembled {
    pub config: Vec<u8>,
    pub sha256: String,
    pub total: u32,
    /// The code rebuilt from the others through the parity, if one was missing.
    pub rebuilt: Option<u32>,
}

/// The codes missing from a set (for reporting before [`assemble`] fails or rebuilds).
pub fn missing(codes: &[Parsed]) -> Vec<u32> {
    let Some(total) = codes.first().map(|c| c.total) else { return Vec::new() };
    (1..=total).filter(|i| !codes.iter().any(|c| c.index == *i)).collect()
}

/// Puts the config back together from the codes read (duplicates allowed, any order).
pub fn assemble(codes: &[Parsed]) -> Result<Assembled, AssembleError> {
    if codes.is_empty() {
        return Err(AssembleError::NoCodes);
    }
    let mut prefixes: Vec<String> = codes.iter().map(|c| c.prefix().to_string()).collect();
    prefixes.sort();
    prefixes.dedup();
    if prefixes.len() > 1 {
        return Err(AssembleError::MixedSheets(prefixes));
    }
    let first = &codes[0];
    let (total, config_len) = (first.total, first.config_len);
    if codes.iter().any(|c| c.total != total || c.config_len != config_len) {
        return Err(AssembleError::Inconsistent("how many codes there are or the config's length".into()));
    }
    let mut by_index: BTreeMap<u32, &Parsed> = BTreeMap::new();
    for c in codes {
        if let Some(prev) = by_index.insert(c.index, c) {
            if prev.data != c.data {
                return Err(AssembleError::Inconsistent(format!("the content of code {}", c.index)));
            }
        }
    }
    let data_codes = total - 1;
    let chunk = match by_index.get(&total) {
        Some(p) => p.data.len(),
        None => by_index.values().map(|c| c.data.len()).max().unwrap_or(0),
    };
    let stream_len = DIGEST_LEN + config_len;
    // The length each data chunk must have.
    let expected_len = |i: u32| -> usize {
        if data_codes == 1 {
            return stream_len;
        }
        let start = (i as usize - 1) * chunk;
        stream_len.saturating_sub(start).min(chunk)
    };
    let missing: Vec<u32> = (1..=total).filter(|i| !by_index.contains_key(i)).collect();
    let mut rebuilt = None;
    let mut parts: BTreeMap<u32, Vec<u8>> =
        by_index.iter().filter(|(i, _)| **i < total).map(|(i, c)| (*i, c.data.clone())).collect();
    match missing.as_slice() {
        [] => {}
        [m] if *m == total => {}
        [m] => {
            let mut acc = by_index[&total].data.clone();
            for (_, d) in parts.iter() {
                for (a, b) in acc.iter_mut().zip(d.iter()) {
                    *a ^= b;
                }
            }
            acc.truncate(expected_len(*m));
            parts.insert(*m, acc);
            rebuilt = Some(*m);
        }
        _ => return Err(AssembleError::TooManyMissing { missing, total }),
    }
    for (i, d) in &parts {
        if d.len() != expected_len(*i) {
            return Err(AssembleError::Inconsistent(format!("the length of code {i}")));
        }
    }
    let mut config: Vec<u8> = parts.into_values().flatten().collect();
    let expected: String = config.drain(..DIGEST_LEN).map(|b| format!("{b:02x}")).collect();
    let actual = sha256_hex(&config);
    if actual != expected || !actual.starts_with(&first.sha) {
        return Err(AssembleError::HashMismatch { expected, actual });
    }
    Ok(Assembled { config, sha256: actual, total, rebuilt })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(codes: &[Code]) -> Vec<Parsed> {
        codes.iter().map(|c| parse(&c.payload).unwrap()).collect()
    }

    fn config(len: usize) -> Vec<u8> {
        (0..len).map(|i| b"abcdefghijklmnopqrstuvwxyz:\n 0123456789"[i * 7 % 39]).collect()
    }

    #[test]
    fn any_one_missing_code_is_rebuilt_for_every_size_around_chunk_boundaries() {
        for len in [0, 1, 9, 10, 11, 19, 20, 21, 35, 47, 48, 49] {
            let cfg = config(len);
            let codes = encode(&cfg, 10);
            let all = parsed(&codes);
            assert_eq!(assemble(&all).unwrap().config, cfg, "len {len}");
            for drop in 1..=codes.len() as u32 {
                let some: Vec<Parsed> = all.iter().filter(|c| c.index != drop).cloned().collect();
                let got = assemble(&some).unwrap_or_else(|e| panic!("len {len} drop {drop}: {e}"));
                assert_eq!(got.config, cfg, "len {len} drop {drop}");
                let want_rebuilt = (drop != codes.len() as u32).then_some(drop);
                assert_eq!(got.rebuilt, want_rebuilt);
            }
        }
    }

    #[test]
    fn two_missing_codes_are_named() {
        let codes = encode(&config(13), 10);
        let some: Vec<Parsed> = parsed(&codes).into_iter().filter(|c| c.index != 2 && c.index != 6).collect();
        let err = assemble(&some).unwrap_err();
        assert_eq!(err, AssembleError::TooManyMissing { missing: vec![2, 6], total: 6 });
        assert_eq!(err.to_string(), "2 of 6 codes are missing: 2 and 6; one missing code can be rebuilt, not more");
    }

    #[test]
    fn payloads_are_ascii_and_all_but_the_last_data_code_have_the_same_size() {
        let cfg = "app:\n  name: café\n".repeat(40).into_bytes();
        let codes = encode(&cfg, DEFAULT_CHUNK);
        let sha = sha256_hex(&cfg);
        for c in &codes {
            assert!(c.payload.is_ascii());
            assert_eq!(parse(&c.payload).unwrap().sha, sha[..12]);
        }
        let last_data = codes.len() - 2;
        for (i, c) in codes.iter().enumerate() {
            if i != last_data {
                assert_eq!(c.payload.len(), codes[0].payload.len(), "code {}", c.index);
            }
        }
    }

    #[test]
    fn codes_of_two_sheets_or_a_corrupted_chunk_are_refused() {
        let a = parsed(&encode(&config(30), 10));
        let b = parsed(&encode(&config(31), 10));
        let mixed = vec![a[0].clone(), b[1].clone()];
        assert!(matches!(assemble(&mixed), Err(AssembleError::MixedSheets(_))));
        let mut bad = a.clone();
        bad[1].data[0] ^= 1;
        assert!(matches!(assemble(&bad), Err(AssembleError::HashMismatch { .. })));
        assert!(parse("hello").is_err());
        assert!(parse("CTK1/3/2/1/1/abcdefabcdef/QQ==").is_err());
    }
}
