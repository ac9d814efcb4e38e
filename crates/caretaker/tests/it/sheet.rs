//! The recovery sheet (`config sheet`, `config from-qr`) and the first-boot seed
//! (`config cloud-init`), end to end through the tools a person would use: the PDF rendered by
//! poppler's `pdftoppm`, cross-checked by `zbarimg`, the seed checked by cloud-init's own schema
//! and listed by `isoinfo` (docs/recovery-sheet.md).

use crate::{stderr_of, Scratch, BIN};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn have(tool: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().is_ok_and(|o| o.status.success())
}

/// A tool the tests need: under CI its absence fails the test, elsewhere it skips loudly.
fn require_tool(tool: &str, package: &str) -> bool {
    if have(tool) {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{tool} is missing (Debian package {package}): scripts/install-deps installs it (scripts/deps/apt.txt)");
    }
    eprintln!("SKIPPED: {tool} is missing (Debian package {package}); run scripts/install-deps");
    false
}

const SECRET: &str = "s3cr3t-k3y-\u{e9}t\u{e9}-0123456789abcdef";

fn short_config() -> String {
    format!(
        "version: 1\napp:\n  name: shop\n  domain: shop.example.org\n  env:\n    DJANGO_SECRET_KEY: {{ secret: \"{SECRET}\" }}\nservices:\n  web: python3 -m http.server 8080 --bind 127.0.0.1\n"
    )
}

/// Neither stdout nor stderr shows the config's secret.
fn assert_quiet(out: &std::process::Output) {
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr_of(out));
    assert!(!text.contains(SECRET), "a secret was printed:\n{text}");
}

/// About 10 KB, mostly long random-looking secrets.
fn long_config() -> String {
    let mut s = String::from("version: 1\napp:\n  name: shop\n  domain: shop.example.org\n  env:\n");
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for i in 0..64 {
        let secret: String = (0..130)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                alphabet[(x % 64) as usize] as char
            })
            .collect();
        s.push_str(&format!("    KEY_{i}: {{ secret: \"{secret}\" }}\n"));
    }
    s.push_str("services:\n  web: python3 -m http.server 8080 --bind 127.0.0.1\n");
    s
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// `config sheet` into `dir/sheet.pdf`, then every page rendered at 150 dpi.
fn sheet_and_pages(s: &Scratch, config: &str) -> (PathBuf, Vec<PathBuf>) {
    let ct = s.write_config(config);
    let pdf = s.path().join("sheet.pdf");
    let out = ct.run(&["config", "sheet", "--out", pdf.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("holds every secret"), "{}", stderr_of(&out));
    assert_quiet(&out);
    assert_eq!(mode(&pdf), 0o600);
    let pages = s.path().join("pages");
    std::fs::create_dir(&pages).unwrap();
    let r = Command::new("pdftoppm").args(["-r", "150", "-png"]).arg(&pdf).arg(pages.join("p")).output().unwrap();
    assert!(r.status.success(), "pdftoppm: {}", stderr_of(&r));
    let mut pngs: Vec<PathBuf> = std::fs::read_dir(&pages).unwrap().map(|e| e.unwrap().path()).collect();
    pngs.sort();
    (pdf, pngs)
}

fn from_qr(files: &[PathBuf], out: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(BIN).args(["config", "from-qr", "--out"]).arg(out).args(extra).args(files).output().unwrap()
}

#[test]
fn sheet_round_trips_a_short_config_through_pdftoppm_and_from_its_own_pdf() {
    if !require_tool("pdftoppm", "poppler-utils") {
        return;
    }
    let s = Scratch::new();
    let config = short_config();
    let (pdf, pages) = sheet_and_pages(&s, &config);
    let back = s.path().join("back.yml");
    let out = from_qr(&pages, &back, &[]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_quiet(&out);
    assert_eq!(std::fs::read(&back).unwrap(), config.as_bytes());
    assert_eq!(mode(&back), 0o600);

    // A JPEG scan works as well.
    let jpeg = s.path().join("scan");
    let r = Command::new("pdftoppm")
        .args(["-r", "150", "-jpeg", "-singlefile", "-f"])
        .arg(pages.len().to_string())
        .args(["-l"])
        .arg(pages.len().to_string())
        .arg(&pdf)
        .arg(&jpeg)
        .output()
        .unwrap();
    assert!(r.status.success(), "pdftoppm: {}", stderr_of(&r));
    let from_jpeg = s.path().join("from-jpeg.yml");
    let out = from_qr(&[s.path().join("scan.jpg")], &from_jpeg, &[]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(std::fs::read(&from_jpeg).unwrap(), config.as_bytes());

    // An existing file is kept unless --force.
    let again = from_qr(&pages, &back, &[]);
    assert_eq!(again.status.code(), Some(5), "{}", stderr_of(&again));
    assert!(stderr_of(&again).contains("--force"));

    // caretaker reads the PDF it wrote.
    std::fs::remove_file(&back).unwrap();
    let out = from_qr(&[pdf], &back, &[]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(std::fs::read(&back).unwrap(), config.as_bytes());
}

#[test]
fn sheet_round_trips_a_10kb_config_with_long_secrets_and_zbarimg_reads_the_same_codes() {
    if !require_tool("pdftoppm", "poppler-utils") || !require_tool("zbarimg", "zbar-tools") {
        return;
    }
    let s = Scratch::new();
    let config = long_config();
    assert!(config.len() >= 10_000, "{}", config.len());
    let (pdf, pages) = sheet_and_pages(&s, &config);
    let back = s.path().join("back.yml");
    let out = from_qr(&pages, &back, &[]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(std::fs::read(&back).unwrap(), config.as_bytes());

    // An independent reader (the zbar CLI; its LGPL library is not linked) finds exactly the
    // payloads caretaker put in the codes.
    let want = caretaker_sheet::pdf::embedded_payloads(&std::fs::read(&pdf).unwrap()).unwrap();
    assert!(want.len() > 40, "{} codes", want.len());
    let z =
        Command::new("zbarimg").args(["-q", "--raw", "-Sdisable", "-Sqrcode.enable"]).args(&pages).output().unwrap();
    let mut got: Vec<String> = String::from_utf8_lossy(&z.stdout).lines().map(str::to_string).collect();
    got.sort();
    let mut want_sorted = want.clone();
    want_sorted.sort();
    assert_eq!(got, want_sorted);
}

/// Paints one code of a rendered page white, as if it were torn off.
fn blank_code(page: &Path, index: u32) -> bool {
    let img = image::open(page).unwrap();
    let found = caretaker_sheet::scan::scan_image(&img);
    let mut rgb = img.to_luma8();
    let mut hit = false;
    for f in found {
        let Ok(p) = &f.payload else { continue };
        if caretaker_sheet::chunk::parse(p).unwrap().index != index {
            continue;
        }
        let xs = f.bounds.map(|b| b.0);
        let ys = f.bounds.map(|b| b.1);
        for y in ys.iter().min().unwrap() - 5..ys.iter().max().unwrap() + 5 {
            for x in xs.iter().min().unwrap() - 5..xs.iter().max().unwrap() + 5 {
                rgb.put_pixel(x as u32, y as u32, image::Luma([255]));
            }
        }
        hit = true;
    }
    rgb.save(page).unwrap();
    hit
}

#[test]
fn any_one_missing_code_is_rebuilt_and_two_missing_codes_are_named() {
    if !require_tool("pdftoppm", "poppler-utils") {
        return;
    }
    let s = Scratch::new();
    let config = format!(
        "{}{}",
        short_config(),
        "# kept with the sheet: the lines below pad the config to several codes\n".repeat(6)
    );
    let (_, pages) = sheet_and_pages(&s, &config);
    let qr_page = pages.last().unwrap().clone();
    let total = caretaker_sheet::chunk::encode(config.as_bytes(), caretaker_sheet::chunk::DEFAULT_CHUNK).len() as u32;
    assert!((3..=6).contains(&total), "{total} codes: expected one page of codes");
    for gone in 1..=total {
        let page = s.path().join(format!("without-{gone}.png"));
        std::fs::copy(&qr_page, &page).unwrap();
        assert!(blank_code(&page, gone), "code {gone} not found on {}", qr_page.display());
        let back = s.path().join(format!("back-{gone}.yml"));
        let mut files = pages[..pages.len() - 1].to_vec();
        files.push(page);
        let out = from_qr(&files, &back, &[]);
        assert!(out.status.success(), "without code {gone}: {}", stderr_of(&out));
        assert_eq!(std::fs::read(&back).unwrap(), config.as_bytes(), "without code {gone}");
        if gone < total {
            assert!(stderr_of(&out).contains(&format!("code {gone} of {total} was missing")), "{}", stderr_of(&out));
        }
    }

    let page = s.path().join("without-two.png");
    std::fs::copy(&qr_page, &page).unwrap();
    assert!(blank_code(&page, 1) && blank_code(&page, 3));
    let back = s.path().join("back-two.yml");
    let out = from_qr(&[page], &back, &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(err.contains(&format!("2 of {total} codes are missing: 1 and 3")), "{err}");
    assert!(!back.exists());
}

#[test]
fn cloud_init_seed_passes_the_schema_check_and_the_iso_lists_its_files() {
    if !require_tool("cloud-init", "cloud-init") || !require_tool("isoinfo", "genisoimage") {
        return;
    }
    let s = Scratch::new();
    let config = short_config();
    let ct = s.write_config(&config);
    let dir = s.path().join("seed");
    let out = ct.run(&[
        "config",
        "cloud-init",
        "--user-data",
        dir.to_str().unwrap(),
        "--binary-url",
        "https://downloads.example.org/caretaker",
        "--binary-sha256",
        &"0f".repeat(32),
        "--recover",
    ]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_quiet(&out);
    let user_data = std::fs::read_to_string(dir.join("user-data")).unwrap();
    assert_eq!(mode(&dir.join("user-data")), 0o600);
    assert!(user_data.contains("'recover'"));
    let schema = Command::new("cloud-init").args(["schema", "-c"]).arg(dir.join("user-data")).output().unwrap();
    assert!(
        schema.status.success(),
        "cloud-init schema: {}{}",
        String::from_utf8_lossy(&schema.stdout),
        stderr_of(&schema)
    );

    // The config comes back byte for byte from what cloud-init will write.
    let b64 = user_data.lines().find_map(|l| l.trim().strip_prefix("content: ")).unwrap();
    use base64::Engine as _;
    assert_eq!(base64::engine::general_purpose::STANDARD.decode(b64).unwrap(), config.as_bytes());

    // The ISO: volume cidata, both files, private; a binary carried inside.
    let fake_bin = s.write("caretaker-bin", "#!/bin/sh\necho caretaker\n", 0o755);
    let iso = s.path().join("seed.iso");
    let out = ct.run(&["config", "cloud-init", "--out", iso.to_str().unwrap(), "--binary", fake_bin.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(mode(&iso), 0o600);
    let info = Command::new("isoinfo").args(["-d", "-i"]).arg(&iso).output().unwrap();
    assert!(
        String::from_utf8_lossy(&info.stdout).contains("Volume id: cidata"),
        "{}",
        String::from_utf8_lossy(&info.stdout)
    );
    let list = Command::new("isoinfo").args(["-J", "-f", "-i"]).arg(&iso).output().unwrap();
    let files = String::from_utf8_lossy(&list.stdout);
    assert!(files.lines().any(|l| l == "/user-data") && files.lines().any(|l| l == "/meta-data"), "{files}");
    let ud = Command::new("isoinfo").args(["-J", "-x", "/user-data", "-i"]).arg(&iso).output().unwrap();
    let ud_path = s.path().join("iso-user-data");
    std::fs::write(&ud_path, &ud.stdout).unwrap();
    let schema = Command::new("cloud-init").args(["schema", "-c"]).arg(&ud_path).output().unwrap();
    assert!(
        schema.status.success(),
        "cloud-init schema: {}{}",
        String::from_utf8_lossy(&schema.stdout),
        stderr_of(&schema)
    );

    // Existing output is kept; no ISO tool is a clear error.
    let again =
        ct.run(&["config", "cloud-init", "--out", iso.to_str().unwrap(), "--binary", fake_bin.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(5), "{}", stderr_of(&again));
    let none = ct
        .command(&[
            "config",
            "cloud-init",
            "--out",
            s.path().join("other.iso").to_str().unwrap(),
            "--binary-url",
            "https://x.invalid/c",
        ])
        .env("PATH", s.path())
        .output()
        .unwrap();
    assert_eq!(none.status.code(), Some(6), "{}", stderr_of(&none));
    assert!(stderr_of(&none).contains("xorriso"), "{}", stderr_of(&none));
}

#[test]
fn sheet_names_the_secrets_the_config_only_points_at() {
    let s = Scratch::new();
    let key = s.write("django.key", "kept-in-a-file\n", 0o600);
    let config = format!(
        "version: 1\napp:\n  name: shop\n  env:\n    DJANGO_SECRET_KEY: {{ secret_file: {} }}\nservices:\n  web: python3 -m http.server 8080 --bind 127.0.0.1\n",
        key.display()
    );
    let ct = s.write_config(&config);
    let pdf = s.path().join("sheet.pdf");
    let out = ct.run(&["config", "sheet", "--out", pdf.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(err.contains("line 5: secret_file"), "{err}");
    assert!(!err.contains("kept-in-a-file"), "{err}");
}
