//! `caretaker deps`: fixture lockfiles and freezes against a small OSV export the test writes
//! (covering several `fixed` events, `last_affected`, withdrawn advisories, aliases, PEP 503
//! names, pre-releases, other ecosystems and GIT ranges), an agreement check with the Python
//! reference (tests/fixtures/deps/osv_reference.py), the outdated check against a local
//! index, and failures that are reported without breaking anything else.

use crate::Scratch;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/deps");

fn eco(name: &str, events: Value) -> Value {
    json!({"package": {"ecosystem": "PyPI", "name": name}, "ranges": [{"type": "ECOSYSTEM", "events": events}]})
}

/// The small OSV export: each record exercises one trap.
fn records() -> Vec<Value> {
    let django_multi = json!([{"introduced": "0"}, {"fixed": "3.2.25"}, {"introduced": "4.0"}, {"fixed": "4.2.11"},
                              {"introduced": "5.0"}, {"fixed": "5.0.3"}]);
    vec![
        // Several fixed events in one range; the same vulnerability under two IDs + a CVE.
        json!({"id": "PYSEC-2024-1", "aliases": ["CVE-2024-1001", "GHSA-aaaa-aaaa-aaaa"], "modified": "2026-11-30T10:00:00Z",
               "summary": "SQL injection in QuerySet.extra", "affected": [eco("Django", django_multi.clone())]}),
        json!({"id": "GHSA-aaaa-aaaa-aaaa", "aliases": ["CVE-2024-1001"], "modified": "2026-11-29T10:00:00Z",
               "affected": [eco("django", django_multi)]}),
        // Several ranges in several affected entries.
        json!({"id": "GHSA-bbbb-bbbb-bbbb", "modified": "2026-12-01T08:00:00Z", "summary": "DoS in the template engine",
               "affected": [eco("django", json!([{"introduced": "5.2"}, {"fixed": "5.2.20"}])),
                            eco("django", json!([{"introduced": "4.2"}, {"fixed": "4.2.22"}]))]}),
        // The same name in another ecosystem, and a GIT range: neither counts.
        json!({"id": "GHSA-npm0-npm0-npm0", "affected": [{"package": {"ecosystem": "npm", "name": "django"}, "versions": ["5.2.19", "4.2.10"]}]}),
        json!({"id": "PYSEC-GIT-1", "affected": [{"package": {"ecosystem": "PyPI", "name": "django"},
               "ranges": [{"type": "GIT", "repo": "https://example.invalid/django", "events": [{"introduced": "0"}, {"fixed": "abc123"}]}]}]}),
        // last_affected closes the range inclusively.
        json!({"id": "PYSEC-2023-LA", "affected": [eco("Jinja2", json!([{"introduced": "3.0"}, {"last_affected": "3.1.2"}]))]}),
        // Withdrawn: skipped although it matches every requests.
        json!({"id": "GHSA-wwww-wwww-wwww", "withdrawn": "2026-10-01T00:00:00Z", "affected": [eco("requests", json!([{"introduced": "0"}]))]}),
        json!({"id": "PYSEC-2023-REQ", "affected": [eco("requests", json!([{"introduced": "2.0"}, {"fixed": "2.31.0"}]))]}),
        // A name written unlike the lockfiles (PEP 503).
        json!({"id": "PYSEC-ZOPE-1", "affected": [eco("Zope_Interface", json!([{"introduced": "0"}, {"fixed": "5.1"}]))]}),
        // Explicit versions only.
        json!({"id": "GHSA-guni-guni-guni", "affected": [{"package": {"ecosystem": "PyPI", "name": "gunicorn"}, "versions": ["21.2.0", "22.0.0"]}]}),
        // Aliases linking transitively: PYSEC-P1 → GHSA-P1 → CVE-P ← PYSEC-P2.
        json!({"id": "GHSA-pppp-pppp-pppp", "aliases": ["CVE-2025-3003"], "affected": [eco("psycopg", json!([{"introduced": "3.3.0"}, {"fixed": "3.3.10"}]))]}),
        json!({"id": "PYSEC-2025-P1", "aliases": ["GHSA-pppp-pppp-pppp"], "affected": [eco("psycopg", json!([{"introduced": "3.3.0"}, {"fixed": "3.3.10"}]))]}),
        json!({"id": "PYSEC-2025-P2", "aliases": ["CVE-2025-3003"], "affected": [eco("psycopg", json!([{"introduced": "3.0"}, {"fixed": "3.3.10"}]))]}),
        // Pre-releases order before their release.
        json!({"id": "PYSEC-PIL-1", "affected": [eco("pillow", json!([{"introduced": "0"}, {"fixed": "10.0.0"}]))]}),
    ]
}

/// Writes the export as OSV ships it: one JSON file per record in a zip.
fn write_osv_zip(path: &Path) {
    let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for r in records() {
        z.start_file(format!("{}.json", r["id"].as_str().unwrap()), opts).unwrap();
        z.write_all(r.to_string().as_bytes()).unwrap();
    }
    z.finish().unwrap();
}

/// What each package version is affected by (ID sets), per the export above.
fn expected_for(pkg: &str, version: &str) -> Vec<Vec<&'static str>> {
    let merged = vec!["CVE-2024-1001", "GHSA-aaaa-aaaa-aaaa", "PYSEC-2024-1"];
    let b = vec!["GHSA-bbbb-bbbb-bbbb"];
    match (pkg, version) {
        ("django", "3.2.24") | ("django", "5.0.2") => vec![merged],
        ("django", "4.2.10") => vec![merged, b],
        ("django", "4.2.11") | ("django", "5.2.19") => vec![b],
        ("jinja2", "3.0") | ("jinja2", "3.1.2") => vec![vec!["PYSEC-2023-LA"]],
        ("requests", "2.28.0") => vec![vec!["PYSEC-2023-REQ"]],
        ("zope-interface", "5.0") => vec![vec!["PYSEC-ZOPE-1"]],
        ("gunicorn", "22.0.0") => vec![vec!["GHSA-guni-guni-guni"]],
        ("psycopg", "3.3.9") => {
            vec![vec!["CVE-2025-3003", "GHSA-pppp-pppp-pppp", "PYSEC-2025-P1", "PYSEC-2025-P2"]]
        }
        ("pillow", "10.0.0rc1") => vec![vec!["PYSEC-PIL-1"]],
        _ => vec![],
    }
}

const HASHES: &str = "    --hash=sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// One fixture: (directory, file name, content, the packages and versions it pins).
type Fixture = (&'static str, &'static str, String, Vec<(&'static str, &'static str)>);

/// ≥ 20 fixtures.
fn fixtures() -> Vec<Fixture> {
    let uv = |pkgs: &[(&str, &str)]| {
        let mut s = "version = 1\nrequires-python = \">=3.10\"\n\n[[package]]\nname = \"notes\"\nversion = \"0.1.0\"\nsource = { editable = \".\" }\n".to_string();
        for (n, v) in pkgs {
            s += &format!("\n[[package]]\nname = \"{n}\"\nversion = \"{v}\"\nsource = {{ registry = \"https://pypi.org/simple\" }}\n");
        }
        s
    };
    let poetry = |pkgs: &[(&str, &str)]| {
        let mut s = String::new();
        for (n, v) in pkgs {
            s += &format!("[[package]]\nname = \"{n}\"\nversion = \"{v}\"\ndescription = \"\"\noptional = false\npython-versions = \">=3.8\"\nfiles = []\n\n");
        }
        s + "[metadata]\nlock-version = \"2.0\"\npython-versions = \"^3.10\"\ncontent-hash = \"x\"\n"
    };
    let pipfile = |default: &[(&str, &str)], develop: &[(&str, &str)]| {
        let m = |p: &[(&str, &str)]| {
            p.iter()
                .map(|(n, v)| (n.to_string(), json!({"version": format!("=={v}"), "hashes": []})))
                .collect::<serde_json::Map<_, _>>()
        };
        serde_json::to_string_pretty(
            &json!({"_meta": {"hash": {"sha256": "x"}}, "default": m(default), "develop": m(develop)}),
        )
        .unwrap()
    };
    let django_real = std::fs::read_to_string(Path::new(FIXTURES).join("django-app-requirements.txt")).unwrap();
    vec![
        ("django-app", "requirements.txt", django_real, vec![("django", "5.2.19"), ("gunicorn", "27.0.1"), ("psycopg", "3.3.9")]),
        ("lts-old", "requirements.txt", "Django==4.2.10\n".into(), vec![("django", "4.2.10")]),
        ("lts-first-fix", "requirements.txt", "Django==4.2.11\n".into(), vec![("django", "4.2.11")]),
        ("clean", "requirements.txt", "Django==4.2.22\nrequests==2.31.0\n".into(), vec![("django", "4.2.22"), ("requests", "2.31.0")]),
        ("hashes", "requirements.txt", format!("requests==2.28.0 \\\n{HASHES} \\\n{HASHES}\n"), vec![("requests", "2.28.0")]),
        ("markers", "requirements.txt", "psycopg[binary]==3.3.9 ; python_version >= \"3.8\"  # driver\n".into(), vec![("psycopg", "3.3.9")]),
        ("names", "requirements.txt", "Zope.Interface==5.0\nJINJA2==3.1.2\n".into(), vec![("zope-interface", "5.0"), ("jinja2", "3.1.2")]),
        ("unpinned", "requirements.txt", "requests>=2\nJinja2==3.1.3\n".into(), vec![("jinja2", "3.1.3")]),
        ("freeze-venv", "freeze.txt", "-e git+https://example.invalid/notes.git@abc#egg=notes\nDjango==3.2.24\nlocalpkg @ file:///srv/pkgs/localpkg-1.0.tar.gz\npillow==10.0.0rc1\n".into(), vec![("django", "3.2.24"), ("pillow", "10.0.0rc1")]),
        ("freeze-clean", "freeze.txt", "gunicorn==27.0.1\npillow==10.0.0\n".into(), vec![("gunicorn", "27.0.1"), ("pillow", "10.0.0")]),
        ("freeze-versions", "freeze.txt", "gunicorn==22.0.0\n".into(), vec![("gunicorn", "22.0.0")]),
        ("uv", "uv.lock", uv(&[("django", "4.2.10"), ("jinja2", "3.1.2")]), vec![("django", "4.2.10"), ("jinja2", "3.1.2")]),
        ("uv2", "uv.lock", uv(&[("requests", "2.31.0"), ("zope-interface", "5.0")]), vec![("requests", "2.31.0"), ("zope-interface", "5.0")]),
        ("poetry", "poetry.lock", poetry(&[("Django", "5.0.2")]), vec![("django", "5.0.2")]),
        ("poetry2", "poetry.lock", poetry(&[("gunicorn", "22.0.0"), ("psycopg", "3.3.10")]), vec![("gunicorn", "22.0.0"), ("psycopg", "3.3.10")]),
        ("pipenv", "Pipfile.lock", pipfile(&[("django", "5.2.19")], &[("requests", "2.28.0")]), vec![("django", "5.2.19"), ("requests", "2.28.0")]),
        ("pipenv2", "Pipfile.lock", pipfile(&[("pillow", "10.0.0rc1")], &[]), vec![("pillow", "10.0.0rc1")]),
        ("empty", "requirements.txt", "# nothing pinned yet\n\n".into(), vec![]),
        ("introduced-inclusive", "requirements.txt", "Django==5.0.3\nJinja2==3.0\n".into(), vec![("django", "5.0.3"), ("jinja2", "3.0")]),
        ("after-last-affected", "requirements.txt", "Jinja2==3.1.2.post1\n".into(), vec![("jinja2", "3.1.2.post1")]),
        ("between-ranges", "requirements.txt", "Django==3.3\n".into(), vec![("django", "3.3")]),
        ("prerelease-before-range", "requirements.txt", "Django==4.0rc1\n".into(), vec![("django", "4.0rc1")]),
    ]
}

struct Setup {
    s: Scratch,
    zip: PathBuf,
}

fn setup(deps_section: &str) -> Setup {
    let s = Scratch::new();
    let zip = s.path().join("all.zip");
    write_osv_zip(&zip);
    s.write_config(&format!("version: 1\napp:\n  name: depsapp\n{deps_section}"));
    Setup { s, zip }
}

/// caretaker's findings reduced to what the reference prints.
fn findings_of(report: &Value) -> Vec<Value> {
    report["vulnerabilities"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| json!({"package": f["package"], "version": f["version"], "ids": f["ids"], "fixed_in": f["fixed_in"]}))
        .collect()
}

#[test]
fn fixtures_match_the_expected_findings_and_the_python_reference() {
    let t = setup("deps:\n  index_url: off\n");
    let ct = t.s.caretaker();
    let out = ct.expect(&["deps", "import-db", t.zip.to_str().unwrap()], 0);
    assert!(out.contains("dated 2026-12-01T08:00:00Z"), "{out}");
    assert!(out.contains("1 withdrawn"), "{out}");
    let fixtures = fixtures();
    assert!(fixtures.len() >= 20);
    for (dir, file, content, pins) in fixtures {
        let d = t.s.path().join("fixtures").join(dir);
        std::fs::create_dir_all(&d).unwrap();
        let lock = d.join(file);
        std::fs::write(&lock, &content).unwrap();
        let report = ct.json(&["deps", "--json", "--lockfile", lock.to_str().unwrap()]);
        let read: Vec<(String, String)> = report["packages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["normalized"].as_str().unwrap().to_string(), p["version"].as_str().unwrap().to_string()))
            .collect();
        let want_read: Vec<(String, String)> = pins.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        assert_eq!(read, want_read, "{dir}: packages read");
        let mut want: Vec<(String, Vec<String>)> = pins
            .iter()
            .flat_map(|(n, v)| {
                expected_for(n, v).into_iter().map(|ids| (n.to_string(), ids.into_iter().map(String::from).collect()))
            })
            .collect();
        want.sort();
        let mut got: Vec<(String, Vec<String>)> = findings_of(&report)
            .iter()
            .map(|f| (f["package"].as_str().unwrap().to_string(), serde_json::from_value(f["ids"].clone()).unwrap()))
            .collect();
        got.sort();
        assert_eq!(got, want, "{dir}: findings");
        assert_eq!(report["outdated"]["checked"], false, "{dir}");
        // The reference, over the same zip and file.
        let py = std::process::Command::new("python3")
            .arg(Path::new(FIXTURES).join("osv_reference.py"))
            .arg(&t.zip)
            .arg(&lock)
            .output()
            .expect("python3 runs");
        assert!(py.status.success(), "{dir}: reference failed: {}", String::from_utf8_lossy(&py.stderr));
        let reference: Vec<Value> = serde_json::from_slice(&py.stdout).unwrap();
        assert_eq!(findings_of(&report), reference, "{dir}: caretaker and the reference disagree");
    }
}

#[test]
fn the_django_fixture_pins_are_the_ones_scripts_install_deps_installs() {
    let script = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/install-deps")).unwrap();
    let line = script.lines().find(|l| l.starts_with("django_pins=(")).expect("django_pins in scripts/install-deps");
    let mut pins: Vec<String> = line
        .trim_start_matches("django_pins=(")
        .trim_end_matches(')')
        .split_whitespace()
        .map(|p| p.trim_matches('\'').to_string())
        .collect();
    pins.sort();
    let text = std::fs::read_to_string(Path::new(FIXTURES).join("django-app-requirements.txt")).unwrap();
    let mut ours: Vec<String> =
        text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).map(String::from).collect();
    ours.sort();
    assert_eq!(ours, pins);
}

/// A PyPI-style JSON API on loopback: answers `count` requests from `releases`, then stops.
fn serve_index(releases: BTreeMap<&'static str, Vec<(&'static str, bool)>>, count: usize) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(count) {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]);
            let path = req.split_whitespace().nth(1).unwrap_or("").to_string();
            let name = path.trim_start_matches("/pypi/").trim_end_matches("/json");
            let (status, body) = match releases.get(name) {
                Some(rs) => {
                    let r: serde_json::Map<String, Value> =
                        rs.iter().map(|(v, yanked)| (v.to_string(), json!([{"yanked": yanked}]))).collect();
                    ("200 OK", json!({"info": {"name": name}, "releases": r}).to_string())
                }
                None => ("404 Not Found", "{}".to_string()),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}/pypi")
}

#[test]
fn outdated_packages_from_an_index_with_django_lts_lines() {
    let index = serve_index(
        BTreeMap::from([
            ("django", vec![("4.2.10", false), ("4.2.20", false), ("5.2.19", false), ("6.0a1", false)]),
            // 2.33.0 is yanked: 2.32.3 is the newest.
            ("requests", vec![("2.28.0", false), ("2.32.3", false), ("2.33.0", true)]),
            ("gunicorn", vec![("22.0.0", false), ("23.0.0", false)]),
        ]),
        4,
    );
    let t = setup(&format!("deps:\n  index_url: {index}\n"));
    let ct = t.s.caretaker();
    let lock =
        t.s.write("requirements.txt", "Django==4.2.20\nrequests==2.28.0\ngunicorn==23.0.0\nprivate-pkg==1.0\n", 0o644);
    // No database imported yet: vulnerabilities are "not checked", outdated still works.
    let report = ct.json(&["deps", "--json", "--lockfile", lock.to_str().unwrap()]);
    assert_eq!(report["vulnerabilities"]["checked"], false);
    assert!(report["vulnerabilities"]["reason"].as_str().unwrap().contains("import-db"), "{report:#}");
    assert_eq!(report["outdated"]["checked"], true, "{report:#}");
    let outdated = report["outdated"]["packages"].as_array().unwrap();
    // Django 4.2.20 is the newest of its LTS line: not outdated although 5.2 exists.
    assert_eq!(outdated.len(), 1, "{report:#}");
    assert_eq!(outdated[0]["package"], "requests");
    assert_eq!(outdated[0]["compared_with"], "2.32.3");
    assert_eq!(outdated[0]["line"], "2");
}

#[test]
fn an_unreachable_index_is_reported_as_not_checked() {
    // A port nobody listens on: bind, take the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let t = setup(&format!("deps:\n  index_url: http://127.0.0.1:{port}/pypi\n"));
    let ct = t.s.caretaker();
    ct.expect(&["deps", "import-db", t.zip.to_str().unwrap()], 0);
    let lock = t.s.write("requirements.txt", "Django==4.2.10\n", 0o644);
    let out = ct.expect(&["deps", "--lockfile", lock.to_str().unwrap()], 0);
    assert!(out.contains("Outdated: NOT CHECKED"), "{out}");
    assert!(out.contains("not reachable"), "{out}");
    assert!(
        out.contains("Vulnerable: 1 packages, 2 vulnerabilities (OSV database dated 2026-12-01T08:00:00Z)"),
        "{out}"
    );
    // The findings feed the metrics (outdated is absent: not checked).
    let metrics = ct.expect(&["metrics"], 0);
    assert!(metrics.contains("caretaker_dependencies_vulnerable 1"), "{metrics}");
    assert!(!metrics.contains("caretaker_dependencies_outdated"), "{metrics}");
}

#[test]
fn pip_freeze_runs_in_the_app_environment() {
    let t = setup("");
    let ct = t.s.caretaker();
    ct.expect(&["deps", "import-db", t.zip.to_str().unwrap()], 0);
    // The freeze command sees the app's env and working dir (the config's directory).
    t.s.write("freeze-out.txt", "Django==4.2.11\n", 0o644);
    t.s.write_config(
        "version: 1\napp:\n  name: depsapp\n  env:\n    FREEZE_FILE: freeze-out.txt\ndeps:\n  index_url: off\n  freeze_command: cat \"$FREEZE_FILE\"\n",
    );
    let report = ct.json(&["deps", "--json"]);
    assert_eq!(report["source"]["kind"], "freeze", "{report:#}");
    let f = findings_of(&report);
    assert_eq!(f.len(), 1, "{report:#}");
    assert_eq!(f[0]["ids"], json!(["GHSA-bbbb-bbbb-bbbb"]));
    assert_eq!(f[0]["fixed_in"], json!(["4.2.22"]));
}

#[test]
fn a_failure_to_read_the_dependencies_is_a_failed_job_with_a_clear_message() {
    let t = setup(
        "deps:\n  index_url: off\n  freeze_command: [\"sh\", \"-c\", \"echo 'No module named pip' >&2; exit 1\"]\n",
    );
    let ct = t.s.caretaker();
    let out = ct.run(&["deps"]);
    assert_eq!(out.status.code(), Some(1));
    let err = crate::stderr_of(&out);
    assert!(err.contains("cannot read the app's dependencies"), "{err}");
    assert!(err.contains("No module named pip"), "{err}");
    assert!(err.contains("deps.lockfile"), "{err}");
    let jobs = ct.json(&["jobs", "--json"]);
    let job = &jobs.as_array().unwrap()[0];
    assert_eq!(job["kind"], "deps");
    assert_eq!(job["outcome"], "failed");
    // The other maintenance tasks are untouched: the check task still runs and records.
    ct.run(&["check"]);
    let jobs = ct.json(&["jobs", "--json"]);
    assert!(jobs.as_array().unwrap().iter().any(|j| j["kind"] == "check"), "{jobs:#}");
}

#[test]
fn importing_something_that_is_not_an_osv_export_is_refused_and_keeps_the_old_database() {
    let t = setup("deps:\n  index_url: off\n");
    let ct = t.s.caretaker();
    ct.expect(&["deps", "import-db", t.zip.to_str().unwrap()], 0);
    let bad = t.s.write("bad.zip", "not a zip", 0o644);
    let out = ct.run(&["deps", "import-db", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(5), "{}", crate::stderr_of(&out));
    let lock = t.s.write("requirements.txt", "requests==2.28.0\n", 0o644);
    let report = ct.json(&["deps", "--json", "--lockfile", lock.to_str().unwrap()]);
    assert_eq!(findings_of(&report).len(), 1, "the previous database is still in use: {report:#}");
}

#[test]
fn update_db_downloads_from_the_configured_url_or_says_how_to_import() {
    let t = setup("");
    let bytes = std::fs::read(&t.zip).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        if let Some(Ok(mut s)) = listener.incoming().next() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(s, "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", bytes.len());
            let _ = s.write_all(&bytes);
        }
    });
    let ct = t.s.caretaker();
    let out = ct.expect(&["deps", "update-db", "--url", &format!("http://{addr}/PyPI/all.zip")], 0);
    assert!(out.contains("OSV database imported"), "{out}");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = ct.run(&["deps", "update-db", "--url", &format!("http://127.0.0.1:{port}/all.zip")]);
    assert_eq!(out.status.code(), Some(6));
    assert!(crate::stderr_of(&out).contains("caretaker deps import-db"), "{}", crate::stderr_of(&out));
}
