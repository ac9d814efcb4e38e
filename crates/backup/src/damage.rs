//! What damaged packs mean for the snapshots: `check` names the packs (rustic_core's
//! findings); this names the snapshots and files whose data is in them, so that an operator
//! knows which restores are affected and which snapshots are still whole.

use crate::error::{as_rustic, rustic_text};
use rustic_core::repofile::SnapshotFile;
use rustic_core::{IndexedFullStatus, LsOptions, Repository};
use std::collections::BTreeSet;

/// Files listed per snapshot; the rest are counted.
const FILES_LISTED: usize = 10;

/// A check finding as one line: rustic_core's text of its cause (many lines, with a
/// backtrace) made concise.
pub(crate) fn finding_text(e: &(dyn std::error::Error + 'static)) -> String {
    let text = e.to_string();
    let text = match e.source().and_then(as_rustic) {
        Some(cause) => text.replace(&cause.to_string(), &rustic_text(cause)),
        None => text,
    };
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The pack ids (8-character prefixes, as rustic_core names packs) named by `findings`.
fn named_packs(findings: &[String]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for f in findings {
        let lower = f.to_lowercase();
        for (at, _) in lower.match_indices("pack") {
            let rest = lower[at + 4..].trim_start_matches([' ', ':']);
            let hex: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
            if hex.len() >= 8 {
                out.insert(hex[..8].to_string());
            }
        }
    }
    out
}

/// One line per snapshot with data in a pack named by `findings` or missing from the index:
/// its id and time, and the files (including streams) whose contents are damaged or missing.
pub(crate) fn affected(
    repo: &Repository<IndexedFullStatus>,
    snaps: &[SnapshotFile],
    findings: &[String],
) -> Vec<String> {
    let packs = named_packs(findings);
    let in_damaged_pack =
        |id: &rustic_core::DataId| repo.get_index_entry(id).map_or(true, |e| packs.contains(&e.pack.to_hex()[..8]));
    let mut out = vec![];
    for snap in snaps {
        let short: String = snap.id.to_hex().chars().take(8).collect();
        let when = snap.time.strftime("%Y-%m-%d %H:%M:%S");
        let files = (|| -> rustic_core::RusticResult<Vec<String>> {
            let root = repo.node_from_snapshot_and_path(snap, "")?;
            let mut files = vec![];
            for entry in repo.ls(&root, &LsOptions::default().recursive(true))? {
                let (path, node) = entry?;
                if node.is_file() && node.content.iter().flatten().any(in_damaged_pack) {
                    files.push(format!("/{}", path.display()));
                }
            }
            Ok(files)
        })();
        match files {
            Ok(files) if files.is_empty() => {}
            Ok(files) => {
                let n = files.len();
                let mut listed: Vec<String> = files.into_iter().take(FILES_LISTED).collect();
                if n > FILES_LISTED {
                    listed.push(format!("and {} more", n - FILES_LISTED));
                }
                out.push(format!(
                    "snapshot {short} ({when}) is damaged: {n} file(s) have data in a damaged or missing pack: {}",
                    listed.join(", ")
                ));
            }
            Err(e) => out.push(format!(
                "snapshot {short} ({when}) is damaged: its list of files cannot be read ({})",
                rustic_text(&e)
            )),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_are_read_from_rustics_findings() {
        let findings = [
            "error checking pack 4286bbdc : Data decryption failed, MAC check failed.: aead::Error".to_string(),
            "pack 0123abcd: Hash mismatch. Computed hash: 99999999".to_string(),
            "pack A66F6B82 marked to-delete: false is referenced by the index with size 5 but not present!".into(),
            "error processing Pack:173b69ea at BlobLocation { offset: 0 }".into(),
            "file \"/x\" blob 1234abcd is missing in index".into(),
            "packs are fine; pack 12 is too short".into(),
        ];
        let got: Vec<String> = named_packs(&findings).into_iter().collect();
        assert_eq!(got, ["0123abcd", "173b69ea", "4286bbdc", "a66f6b82"]);
    }
}
