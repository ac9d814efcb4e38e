//! caretaker's patched chunker (vendor/README.md) must cut data exactly where rustic_core
//! 0.13.0's own chunker cuts it: otherwise a repository written before the patch would not
//! deduplicate against new backups. The reference below is rustic_core 0.13.0's
//! `chunker::rabin::ChunkIter::next`, restated over a slice with `rustic_cdc::Rabin64`.

use caretaker_backup::*;
use rustic_cdc::{Rabin64, RollingHash64};
use rustic_core::repofile::ConfigFile;
use rustic_core::{Credentials, Repository, RepositoryBackends, RepositoryOptions};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

const PASSWORD: &str = "chunk boundaries";

/// rustic_core 0.13.0's chunk lengths for `data` (the upstream algorithm, byte by byte).
fn reference_chunks(config: &ConfigFile, data: &[u8]) -> Vec<usize> {
    let poly = config.poly().unwrap();
    let (min, max) = (config.chunk_min_size(), config.chunk_max_size());
    let mask = config.chunk_size() as u64 - 1;
    let mut rabin = Rabin64::new_with_polynom(6, &poly);
    let mut out = vec![];
    let mut start = 0;
    while start < data.len() {
        if data.len() - start < min {
            out.push(data.len() - start);
            break;
        }
        let mut end = start + min;
        rabin.reset_and_prefill_window(&mut data[end - 64..end].iter().copied());
        while end - start < max && rabin.hash & mask != 0 && end < data.len() {
            rabin.slide(data[end]);
            end += 1;
        }
        out.push(end - start);
        start = end;
    }
    out
}

fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

/// Deterministic data that exercises every way a chunk ends: random bytes (boundaries by
/// hash), SQL-like text, a long run of zeros (boundary right after the minimum size) and
/// repetitive bytes with no boundary at all (the maximum size).
fn mixed_data() -> Vec<u8> {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut data: Vec<u8> = (0..(20 << 20))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    for i in 0..120_000 {
        data.extend_from_slice(
            format!("INSERT INTO orders VALUES ({i}, 'customer {}', {});\n", i % 97, i * 31).as_bytes(),
        );
    }
    data.extend(std::iter::repeat_n(0u8, 3 << 20));
    data.extend((0..(10 << 20)).map(|i| (i % 251) as u8 | 1));
    data.extend_from_slice(b"tail");
    data
}

struct Stream(Vec<u8>);

impl StreamSource for Stream {
    fn name(&self) -> &str {
        "dump.sql"
    }
    fn write_to(&mut self, out: &mut dyn Write) -> std::io::Result<u64> {
        // Odd-sized writes, as a dump tool's pipe gives them.
        for c in self.0.chunks(7001) {
            out.write_all(c)?;
        }
        Ok(self.0.len() as u64)
    }
}

/// The window of rustic_core's first boundary check after the minimum size (position `min`)
/// is odd: it leaves out byte `min - 1`. Returns `min + 1` bytes whose only possible cut is
/// right there (found by solving the hash's low bits, which are linear in the window's
/// bits), so that a chunker with a different first window cuts elsewhere.
fn cut_in_the_odd_window(config: &ConfigFile) -> Vec<u8> {
    let poly = config.poly().unwrap();
    let min = config.chunk_min_size();
    let mask = config.chunk_size() as u64 - 1;
    let fingerprint = |w: &[u8; 64]| {
        let mut rabin = Rabin64::new_with_polynom(6, &poly);
        for &b in w {
            rabin.slide(b);
        }
        rabin.hash
    };
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut data: Vec<u8> = (0..=min)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    // The window checked after byte `min` went in: bytes min-64..=min-2, then byte min.
    let free = [60usize, 61, 62, 63];
    let byte_of = |k: usize| if k == 63 { min } else { min - 64 + k };
    let mut window = [0u8; 64];
    for (k, w) in window.iter_mut().enumerate() {
        *w = if free.contains(&k) { 0 } else { data[byte_of(k)] };
    }
    let target = fingerprint(&window) & mask;
    // Gaussian elimination over GF(2): one column per bit of the free bytes.
    let mut pivots: Vec<Option<(u64, u32)>> = vec![None; 64];
    for (n, &k) in free.iter().enumerate() {
        for bit in 0..8 {
            let mut e = [0u8; 64];
            e[k] = 1 << bit;
            let (mut v, mut combo) = (fingerprint(&e) & mask, 1u32 << (n * 8 + bit));
            for b in (0..64).rev() {
                if v >> b & 1 == 0 {
                    continue;
                }
                match pivots[b] {
                    Some((pv, pc)) => {
                        v ^= pv;
                        combo ^= pc;
                    }
                    None => {
                        pivots[b] = Some((v, combo));
                        break;
                    }
                }
            }
        }
    }
    let (mut rest, mut chosen) = (target, 0u32);
    for b in (0..64).rev() {
        if rest >> b & 1 == 1 {
            let (pv, pc) = pivots[b].expect("the free bytes span the mask's bits");
            rest ^= pv;
            chosen ^= pc;
        }
    }
    for (n, &k) in free.iter().enumerate() {
        data[byte_of(k)] = (chosen >> (n * 8)) as u8;
    }
    data
}

#[test]
fn chunk_boundaries_are_rustic_cores() {
    let dir = tempfile::tempdir().unwrap();
    let repo_dir = dir.path().join("repo");
    let engine = caretaker_backup::location::local(&repo_dir, PASSWORD).unwrap();
    engine.init().unwrap();
    let open = || {
        let be = rustic_backend::local::LocalBackend::new(repo_dir.to_string_lossy(), Vec::<(String, String)>::new())
            .unwrap();
        let mut opts = RepositoryOptions::default();
        opts.no_cache = true;
        Repository::new(&opts, &RepositoryBackends::new(Arc::new(be), None))
            .unwrap()
            .open(&Credentials::password(PASSWORD))
            .unwrap()
            .to_indexed()
            .unwrap()
    };
    let config = open().config().clone();
    let odd = cut_in_the_odd_window(&config);
    assert_eq!(reference_chunks(&config, &odd)[0], config.chunk_min_size() + 1, "the constructed cut");
    let mut data = odd;
    data.extend(mixed_data());

    let tree = dir.path().join("files");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("mixed.bin"), &data).unwrap();
    // A file shorter than the minimum chunk size is one chunk.
    std::fs::write(tree.join("small.txt"), &data[..1000]).unwrap();
    let req = BackupRequest {
        trees: vec![TreeSpec { path: tree.clone(), exclude: vec![] }],
        files: vec![],
        tags: vec![],
        host: Some("testhost".into()),
        policy: SafetyPolicy { allow_empty: vec![], max_shrink_percent: 50 },
    };
    let report = engine.backup(&req, vec![Box::new(Stream(data.clone()))]).unwrap();
    assert!(report.complete);

    let repo = open();
    let snap =
        repo.get_all_snapshots().unwrap().into_iter().find(|s| s.id.to_hex().starts_with(&report.snapshot_id)).unwrap();

    let check = |path: &Path, content: &[u8]| {
        let node = repo.node_from_snapshot_and_path(&snap, &path.to_string_lossy()).unwrap();
        assert_eq!(node.meta.size, content.len() as u64, "{}: node size", path.display());
        let stored: Vec<String> = node.content.unwrap().iter().map(|id| id.to_hex().to_string()).collect();
        let mut expected = vec![];
        let mut at = 0;
        for len in reference_chunks(repo.config(), content) {
            expected.push(sha256_hex(&content[at..at + len]));
            at += len;
        }
        assert!(expected.len() > 10 || content.len() < 4096, "the data should give many chunks");
        assert_eq!(stored, expected, "{}: chunks differ from rustic_core 0.13.0's", path.display());
    };
    check(&tree.join("mixed.bin"), &data);
    check(&tree.join("small.txt"), &data[..1000]);
    check(Path::new("/caretaker-streams/dump.sql"), &data);
}
