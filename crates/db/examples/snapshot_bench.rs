//! Times the adapter's snapshot and revert against its dump and restore on one database, for
//! `bench/db-snapshot` (not a test). Usage: `snapshot_bench <postgres-url-of-the-database>`.
//! Prints `name=seconds` lines; the database is left as it was (reverted to an identical copy),
//! the copies and the restored database are dropped.

use caretaker_core::config::{self, DbKind, Redactor, Secret, SecretOrigin};
use caretaker_db::RestoreMode;
use std::time::Instant;

fn open(url: &str) -> Box<dyn caretaker_db::Database> {
    let cfg = config::Database {
        kind: DbKind::Postgres,
        url: Some(Secret::new(url, SecretOrigin::Inline)),
        admin_url: None,
        path: None,
        min_rows: Default::default(),
        compose_service: None,
        dump_routines: true,
    };
    caretaker_db::open(&cfg, &Redactor::default()).expect("open")
}

fn main() {
    let url = std::env::args().nth(1).expect("usage: snapshot_bench <postgres-url>");
    let db = open(&url);
    println!("size_bytes={}", db.size().expect("size"));

    let t = Instant::now();
    let snap = db.snapshot(Some("bench")).expect("snapshot");
    println!("snapshot_seconds={:.3}", t.elapsed().as_secs_f64());

    let t = Instant::now();
    let aside = db.revert(&snap).expect("revert");
    println!("revert_seconds={:.3}", t.elapsed().as_secs_f64());
    for c in db.list_snapshots().expect("list") {
        if c.name == aside {
            db.drop_snapshot(&c).expect("drop the copy kept aside");
        }
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let dump_path = dir.path().join("dump.pgc");
    let t = Instant::now();
    let mut f = std::io::BufWriter::new(std::fs::File::create(&dump_path).expect("create"));
    let bytes = db.dump(&mut f).expect("dump");
    drop(f);
    println!("dump_seconds={:.3}", t.elapsed().as_secs_f64());
    println!("dump_bytes={bytes}");

    let (base, name) = url.rsplit_once('/').expect("URL ends with /database");
    let restored_url = format!("{base}/{name}_restored");
    let target = open(&restored_url);
    let t = Instant::now();
    let mut f = std::io::BufReader::new(std::fs::File::open(&dump_path).expect("open dump"));
    target.restore(&mut f, RestoreMode::IntoEmpty).expect("restore");
    println!("restore_seconds={:.3}", t.elapsed().as_secs_f64());
}
