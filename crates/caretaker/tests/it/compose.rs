//! The compose runtime against the real docker engine (docs/compose.md): a compose project of
//! the demo app with a named volume, run by `caretaker up`/`status`/`logs`/`exec`/`restart`/
//! `down`, a crash-looping container, updates with rollback, volume backup and restore.
//!
//! No image can be pulled here: each test builds its own base image from this caretaker binary
//! (which embeds the demo app as `caretaker demo-app`), its shared libraries and `/bin/sh`,
//! imported with `docker import`; its compose files build on that. Each test uses its own
//! project name and removes its containers, volumes, networks and images when it ends, also
//! when it fails (`Drop`). Without docker the tests fail under CI and are skipped loudly
//! otherwise (`CARETAKER_TEST_DOCKER`, set by `scripts/services`).

use crate::supervisor::{free_port, http_get};
use crate::update::{commit_tag, git, psql};
use crate::BIN;
use caretaker_testkit::{require_service, wait_until, Caretaker};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A compose app in a scratch directory, with its own project name and base image.
pub(crate) struct ComposeApp {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) project: String,
    pub(crate) base: String,
    pub(crate) ct: Caretaker,
    pub(crate) http_port: u16,
}

impl ComposeApp {
    /// `None` when docker is missing (a failure under CI).
    pub(crate) fn new() -> Option<ComposeApp> {
        require_service("CARETAKER_TEST_DOCKER")?;
        let project = caretaker_testkit::unique_name("ctc").replace('_', "");
        let base = format!("{project}-base:1");
        let dir = tempfile::tempdir().unwrap();
        let ct = Caretaker::new(BIN, &dir.path().join("caretaker.yml"), &dir.path().join("state"));
        let app = ComposeApp { dir, project, base, ct, http_port: free_port() };
        app.build_base_image();
        Some(app)
    }

    pub(crate) fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    pub(crate) fn write(&self, name: &str, text: &str) {
        let p = self.path(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// Writes caretaker.yml: the app named after the project, its own HTTP port, and `body`.
    pub(crate) fn config(&self, body: &str) {
        self.config_with("", body)
    }

    /// Like [`ComposeApp::config`], with `app_keys` (indented lines) under `app:`.
    pub(crate) fn config_with(&self, app_keys: &str, body: &str) {
        let text = format!(
            "version: 1\napp:\n  name: {}\n{app_keys}\nhttp: {{ listen: \"127.0.0.1:{}\" }}\n{body}\n",
            self.project, self.http_port
        );
        self.write("caretaker.yml", &text);
        std::fs::set_permissions(self.path("caretaker.yml"), std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
    }

    pub(crate) fn status(&self) -> Value {
        self.ct.json(&["status", "--json"])
    }

    pub(crate) fn service(&self, name: &str) -> Value {
        let s = self.status();
        s["services"].as_array().unwrap().iter().find(|v| v["name"] == name).cloned().unwrap_or(Value::Null)
    }

    /// The base image: this caretaker binary as `/caretaker` (entrypoint), the libraries it
    /// links, and `/bin/sh` for shell commands.
    fn build_base_image(&self) {
        let root = self.path("rootfs");
        for d in ["tmp", "bin", "data"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::set_permissions(root.join("tmp"), std::os::unix::fs::PermissionsExt::from_mode(0o1777)).unwrap();
        std::fs::copy(BIN, root.join("caretaker")).unwrap();
        let sh = std::fs::canonicalize("/bin/sh").unwrap();
        std::fs::copy(&sh, root.join("bin/sh")).unwrap();
        copy_libraries(&root, &[PathBuf::from(BIN), sh]);
        import_root(&root, &self.base, &["ENTRYPOINT [\"/caretaker\"]"]);
    }

    /// A PostgreSQL server image made from this machine's PostgreSQL (`CARETAKER_TEST_PG_BIN`):
    /// its binaries and libraries, `/bin/sh` and an entry script that runs `initdb` on first
    /// start (user `POSTGRES_USER`, password `POSTGRES_PASSWORD`) and then the server.
    pub(crate) fn build_postgres_image(&self) -> Option<String> {
        let bin = PathBuf::from(require_service("CARETAKER_TEST_PG_BIN")?);
        let version = bin.parent().unwrap().file_name().unwrap().to_string_lossy().into_owned();
        let tag = format!("{}-postgres:1", self.project);
        let root = self.path("pgroot");
        let pg = root.join(format!("usr/lib/postgresql/{version}"));
        for d in ["tmp", "bin", "etc", "var/lib/postgresql", "var/run/postgresql", "usr/share/zoneinfo"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::create_dir_all(pg.join("bin")).unwrap();
        let mut exes = Vec::new();
        for b in ["postgres", "initdb", "pg_dump", "pg_restore", "psql"] {
            std::fs::copy(bin.join(b), pg.join("bin").join(b)).unwrap();
            exes.push(pg.join("bin").join(b));
        }
        let cp = |from: &Path, to: &Path| {
            assert!(Command::new("cp").arg("-rL").arg(from).arg(to).status().unwrap().success());
        };
        cp(&bin.parent().unwrap().join("lib"), &pg);
        for e in std::fs::read_dir(pg.join("lib")).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "bitcode" || name.starts_with("llvmjit") {
                let _ = std::fs::remove_dir_all(e.path()).or_else(|_| std::fs::remove_file(e.path()));
            } else if name.ends_with(".so") {
                exes.push(e.path());
            }
        }
        std::fs::create_dir_all(root.join("usr/share/postgresql")).unwrap();
        cp(Path::new(&format!("/usr/share/postgresql/{version}")), &root.join("usr/share/postgresql"));
        std::fs::copy("/usr/share/zoneinfo/UTC", root.join("usr/share/zoneinfo/UTC")).unwrap();
        let sh = std::fs::canonicalize("/bin/sh").unwrap();
        std::fs::copy(&sh, root.join("bin/sh")).unwrap();
        exes.push(sh);
        copy_libraries(&root, &exes);
        std::fs::write(
            root.join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\npostgres:x:999:999::/var/lib/postgresql:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(root.join("etc/group"), "root:x:0:\npostgres:x:999:\n").unwrap();
        let entry = r#"#!/bin/sh
set -e
D=/var/lib/postgresql/data
if [ ! -s "$D/PG_VERSION" ]; then
  printf '%s\n' "$POSTGRES_PASSWORD" > /tmp/pw
  initdb -D "$D" -U "$POSTGRES_USER" --pwfile=/tmp/pw --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C >/dev/null
  : > /tmp/pw
  echo "host all all 0.0.0.0/0 scram-sha-256" >> "$D/pg_hba.conf"
  postgres --single -D "$D" postgres <<SQL >/dev/null
CREATE DATABASE "$POSTGRES_USER";
SQL
fi
exec postgres -D "$D" -c listen_addresses='*' -c unix_socket_directories=/var/run/postgresql -c fsync=off
"#;
        std::fs::write(root.join("entry.sh"), entry).unwrap();
        for (p, mode) in [("entry.sh", 0o755), ("tmp", 0o1777)] {
            std::fs::set_permissions(root.join(p), std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
        }
        for d in ["var/lib/postgresql", "var/run/postgresql"] {
            assert!(Command::new("chown").arg("999:999").arg(root.join(d)).status().unwrap().success());
        }
        let path_env = format!("ENV PATH=/usr/lib/postgresql/{version}/bin:/bin");
        import_root(&root, &tag, &["ENTRYPOINT [\"/entry.sh\"]", "USER 999", "ENV TZ=UTC", &path_env]);
        Some(tag)
    }

    /// Stops the daemon, then removes everything docker holds for this project.
    fn clean_up(&self) {
        let _ = self.ct.command(&["down", "--daemon"]).stdout(Stdio::null()).stderr(Stdio::null()).status();
        let p = &self.project;
        let ids = |args: &[&str]| -> Vec<String> {
            let out = Command::new("docker").args(args).output().unwrap();
            String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).filter(|l| !l.is_empty()).collect()
        };
        let rm = |what: &[&str], ids: Vec<String>| {
            if !ids.is_empty() {
                let _ = Command::new("docker").args(what).args(&ids).output();
            }
        };
        for label in [format!("label=com.docker.compose.project={p}"), format!("label=org.caretaker.project={p}")] {
            rm(&["rm", "-f"], ids(&["ps", "-aq", "--filter", &label]));
        }
        let mut volumes = ids(&["volume", "ls", "-q", "--filter", &format!("label=com.docker.compose.project={p}")]);
        volumes.extend(ids(&["volume", "ls", "-q", "--filter", &format!("label=org.caretaker.project={p}")]));
        volumes.extend(ids(&["volume", "ls", "-q", "--filter", &format!("name={p}_")]));
        rm(&["volume", "rm", "-f"], volumes);
        rm(
            &["network", "rm"],
            ids(&["network", "ls", "-q", "--filter", &format!("label=com.docker.compose.project={p}")]),
        );
        let mut images = Vec::new();
        for pattern in [format!("{p}*"), format!("caretaker/{p}"), format!("caretaker/{p}/*")] {
            images.extend(ids(&[
                "image",
                "ls",
                "--format",
                "{{.Repository}}:{{.Tag}}",
                "--filter",
                &format!("reference={pattern}"),
            ]));
        }
        rm(&["image", "rm", "-f"], images);
    }
}

impl Drop for ComposeApp {
    fn drop(&mut self) {
        self.clean_up();
    }
}

/// Output of `docker ARGS`, trimmed.
pub(crate) fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Copies the shared libraries each of `exes` links (as `ldd` lists them) into `root`, at the
/// same paths.
pub(crate) fn copy_libraries(root: &Path, exes: &[PathBuf]) {
    for exe in exes {
        let out = Command::new("ldd").arg(exe).output().unwrap();
        for lib in String::from_utf8_lossy(&out.stdout).split_whitespace().filter(|w| w.starts_with('/')) {
            let to = root.join(lib.trim_start_matches('/'));
            if !to.exists() {
                std::fs::create_dir_all(to.parent().unwrap()).unwrap();
                std::fs::copy(lib, &to).unwrap();
            }
        }
    }
}

/// Imports the directory `root` as the image `tag` (`docker import` with each of `changes` as a
/// Dockerfile instruction), then removes `root`.
pub(crate) fn import_root(root: &Path, tag: &str, changes: &[&str]) {
    let mut tar = Command::new("tar").arg("-C").arg(root).args(["-c", "."]).stdout(Stdio::piped()).spawn().unwrap();
    let mut import = Command::new("docker");
    import.arg("import");
    for c in changes {
        import.args(["-c", c]);
    }
    let import = import.args(["-", tag]).stdin(tar.stdout.take().unwrap()).output().unwrap();
    assert!(tar.wait().unwrap().success());
    assert!(import.status.success(), "docker import: {}", String::from_utf8_lossy(&import.stderr));
    std::fs::remove_dir_all(root).unwrap();
}

/// The version the demo app on `port` reports, once it answers (at most 30 s).
pub(crate) fn app_version(port: u16) -> String {
    wait_until(Duration::from_secs(30), "the app to answer /version", || {
        http_get(port, "/version").filter(|(s, _)| *s == 200).map(|(_, b)| b.trim().to_string())
    })
}

/// The `db` service of a compose file: PostgreSQL from `pg_image` (`build_postgres_image`),
/// user `app`, its password from the `DB_PASSWORD` variable, data in the `pgdata` volume.
pub(crate) fn postgres_service(pg_image: &str) -> String {
    format!(
        r#"  db:
    image: {pg_image}
    environment:
      POSTGRES_USER: app
      POSTGRES_PASSWORD: "${{DB_PASSWORD}}"
    volumes: ["pgdata:/var/lib/postgresql"]
    restart: unless-stopped"#
    )
}

/// A release of the demo app as a docker build context: the migrations and VERSION of
/// `write_default_release`, on top of the test's base image.
pub(crate) fn write_demo_build(app: &ComposeApp, dir: &Path) {
    caretaker_demo_app::write_default_release(dir).unwrap();
    std::fs::write(dir.join("Dockerfile"), format!("FROM {}\nCOPY . /app\nENV DEMO_RELEASE_DIR=/app\n", app.base))
        .unwrap();
}

#[test]
fn compose_app_up_status_logs_exec_restart_and_down() {
    let Some(app) = ComposeApp::new() else { return };
    let port = free_port();
    write_demo_build(&app, &app.path("build"));
    app.write(
        "docker-compose.yml",
        &format!(
            r#"version: "3.7"
services:
  web:
    build: ./build
    entrypoint: ["/bin/sh", "-c", "/caretaker demo-app migrate && exec /caretaker demo-app serve --listen 0.0.0.0:8000"]
    environment:
      DEMO_DATABASE_URL: sqlite:///data/demo.db
      DEMO_FILES_DIR: /data/files
      GREETING: "${{GREETING}}"
    ports: ["127.0.0.1:{port}:8000"]
    volumes: ["data:/data"]
    restart: unless-stopped
volumes:
  data:
"#
        ),
    );
    app.config_with(
        "  env: { GREETING: \"hello from caretaker's env\" }",
        &format!(
            r#"compose:
  app_service: web
  services:
    web: {{ health: {{ http: "http://127.0.0.1:{port}/healthz", interval: 1s, timeout: 1s, start_period: 30s }} }}"#
        ),
    );
    app.ct.expect(&["config", "check"], 0);

    let out = app.ct.expect(&["up", "--timeout", "120"], 0);
    assert!(out.contains("web") && out.contains("healthy"), "{out}");
    let web = app.service("web");
    assert_eq!((web["state"].as_str(), web["health"].as_str()), (Some("running"), Some("healthy")), "{web}");
    let pid = web["pid"].as_u64().unwrap();
    // The app serves through the published port and keeps its data in the named volume.
    let (code, _) = http_get(port, "/healthz").unwrap();
    assert_eq!(code, 200);
    let volume = format!("{}_data", app.project);
    assert_eq!(docker(&["volume", "inspect", "--format", "{{.Name}}", &volume]), volume);
    // The app's env reaches compose for `${VAR}` interpolation.
    let env = docker(&[
        "inspect",
        "--format",
        "{{range .Config.Env}}{{println .}}{{end}}",
        &format!("{}_web_1", app.project),
    ]);
    assert!(env.contains("GREETING=hello from caretaker's env"), "{env}");

    let logs = app.ct.expect(&["logs", "web", "-n", "50"], 0);
    assert!(logs.contains("listening on http://0.0.0.0:8000"), "{logs}");
    let status = app.ct.expect(&["exec", "--", "/caretaker", "demo-app", "status"], 0);
    let status: Value = serde_json::from_str(&status).unwrap_or_else(|e| panic!("{e}: {status}"));
    assert!(status["applied"].as_array().is_some_and(|a| !a.is_empty()), "{status}");

    app.ct.expect(&["restart", "web", "--timeout", "60"], 0);
    let web = app.service("web");
    assert_eq!(web["state"], "running", "{web}");
    assert_ne!(web["pid"].as_u64().unwrap(), pid, "a new process after restart");
    assert_eq!(web["restarts"], 0, "an operator's restart is no crash");

    app.ct.expect(&["down"], 0);
    assert_eq!(app.service("web")["state"], "stopped");
    app.ct.expect(&["down", "--daemon"], 0);
    // Without a daemon, status shows what docker reports.
    let st = app.status();
    assert_eq!(st["daemon_pid"], 0, "{st}");
    assert_eq!(st["services"][0]["state"], "stopped", "{st}");
    assert_eq!(docker(&["volume", "inspect", "--format", "{{.Name}}", &volume]), volume, "down keeps volumes");
}

#[test]
fn a_crash_looping_container_is_reported_and_the_app_goes_into_service_mode() {
    let Some(app) = ComposeApp::new() else { return };
    app.write(
        "docker-compose.yml",
        &format!(
            r#"version: "3.7"
services:
  web:
    image: {base}
    command: ["demo-app", "serve", "--listen", "127.0.0.1:8000", "--allow-pending"]
    restart: unless-stopped
  broken:
    image: {base}
    entrypoint: ["/bin/sh", "-c", "echo 'cannot open settings.py' >&2; exit 2"]
    restart: always
"#,
            base = app.base
        ),
    );
    app.config("compose:\n  services:\n    broken: { crash_loop: { restarts: 2, within: 60s } }");
    let out = app.ct.run(&["up", "--timeout", "60"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("service broken is failed: crash loop: 3 crashes"), "{err}");
    assert!(err.contains("cannot open settings.py"), "the container's last lines are shown: {err}");
    let st = app.status();
    let broken = st["services"].as_array().unwrap().iter().find(|s| s["name"] == "broken").unwrap().clone();
    assert_eq!(broken["state"], "failed", "{st}");
    assert!(broken["restarts"].as_u64().unwrap() >= 3, "{broken}");
    assert!(st["service_mode"].as_str().unwrap().contains("broken failed"), "{st}");
    let mode = app.ct.json(&["maintenance", "status", "--json"]);
    assert_eq!(mode["mode"], "service", "{mode}");
    // caretaker stopped the container, so docker restarts it no more; the other service runs.
    let container = format!("{}_broken_1", app.project);
    wait_until(Duration::from_secs(30), "the broken container to be stopped", || {
        (docker(&["inspect", "--format", "{{.State.Status}}", &container]) == "exited").then_some(())
    });
    let count = docker(&["inspect", "--format", "{{.RestartCount}}", &container]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(docker(&["inspect", "--format", "{{.RestartCount}}", &container]), count, "no more restarts");
    assert_eq!(app.service("web")["state"], "running");
    // As the built-in supervisor: metrics and the alert rules see it.
    let (code, metrics) = http_get(app.http_port, "/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(metrics.contains("caretaker_service_up{service=\"broken\"} 0"), "{metrics}");
    assert!(metrics.contains("caretaker_service_up{service=\"web\"} 1"), "{metrics}");
    assert!(metrics.contains("caretaker_service_mode 1"), "{metrics}");
    let log = std::fs::read_to_string(app.path("state/logs/broken.log")).unwrap();
    assert!(log.contains("failed: crash loop"), "{log}");
    // `up` clears the failed state (and starts it again; it fails again the same way).
    app.ct.expect(&["reset-failed"], 0);
    assert_eq!(app.ct.json(&["maintenance", "status", "--json"])["mode"], "normal");
}

/// Sends a raw HTTP request to 127.0.0.1:`port`; the status code and body.
pub(crate) fn http_raw(port: u16, request: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(request.as_bytes()).ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, buf.split_once("\r\n\r\n").map(|x| x.1.to_string()).unwrap_or_default()))
}

/// Adds a guestbook entry through the demo app's form.
pub(crate) fn post_entry(port: u16, body: &str) {
    let form = format!("author=tester&body={body}");
    let req = format!(
        "POST /entries HTTP/1.0\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    );
    assert_eq!(http_raw(port, &req).map(|r| r.0), Some(303), "POST /entries");
}

/// A compose app of the demo app whose SQLite database and files live in the named volume
/// `data`, published on `port`.
fn demo_app_with_volume(app: &ComposeApp, port: u16, extra_config: &str) {
    write_demo_build(app, &app.path("build"));
    app.write(
        "docker-compose.yml",
        &format!(
            r#"version: "3.7"
services:
  web:
    build: ./build
    entrypoint: ["/bin/sh", "-c", "/caretaker demo-app migrate && exec /caretaker demo-app serve --listen 0.0.0.0:8000"]
    environment:
      DEMO_DATABASE_URL: sqlite:///data/demo.db
      DEMO_FILES_DIR: /data/files
    ports: ["127.0.0.1:{port}:8000"]
    volumes: ["data:/data"]
    restart: unless-stopped
volumes:
  data:
"#
        ),
    );
    app.config(&format!(
        r#"compose:
  services:
    web: {{ health: {{ http: "http://127.0.0.1:{port}/healthz", interval: 1s, timeout: 1s, start_period: 30s }} }}
  volumes: [data]
backup:
  repository: "{repo}"
  password: "a long enough test password"
{extra_config}"#,
        repo = app.path("repo").display()
    ));
}

#[test]
fn named_volume_backup_wipe_restore_round_trip() {
    let Some(app) = ComposeApp::new() else { return };
    let port = free_port();
    demo_app_with_volume(&app, port, "");
    let volume = format!("{}_data", app.project);
    app.ct.expect(&["up", "--timeout", "120"], 0);
    post_entry(port, "kept-in-the-volume");
    app.ct.expect(&["backup", "init"], 0);
    let run = app.ct.json(&["backup", "run", "--json"]);
    assert_eq!(run["outcome"], "succeeded", "{run}");
    assert!(run["figures"]["measurement"]["streams"]["volume-data"].as_u64().unwrap() > 0, "{run}");

    // The stream is a plain tar archive of the volume.
    let out = app.path("out");
    app.ct.expect(&["backup", "restore", "--db-only", "--target", out.to_str().unwrap()], 0);
    let tar = Command::new("tar").arg("-tf").arg(out.join("caretaker-streams/volume-data")).output().unwrap();
    let listing = String::from_utf8_lossy(&tar.stdout);
    assert!(listing.contains("caretaker-volume/demo.db"), "{listing}");

    // Wipe: the containers and the volume are gone.
    app.ct.expect(&["down", "--daemon"], 0);
    let containers = docker(&["ps", "-aq", "--filter", &format!("label=com.docker.compose.project={}", app.project)]);
    let ids: Vec<&str> = containers.lines().collect();
    assert!(Command::new("docker").args(["rm", "-f"]).args(&ids).output().unwrap().status.success());
    docker(&["volume", "rm", &volume]);
    assert_eq!(docker(&["volume", "ls", "-q", "--filter", &format!("name=^{volume}$")]), "");
    // A backup now would overwrite good data with nothing: refused.
    let refused = app.ct.run(&["backup", "run"]);
    assert_eq!(refused.status.code(), Some(5), "{}", String::from_utf8_lossy(&refused.stderr));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("does not exist"));

    // Restore: the volume is created (compose adopts it) and filled.
    app.ct.expect(&["backup", "restore"], 0);
    let labels = docker(&["volume", "inspect", "--format", "{{json .Labels}}", &volume]);
    assert!(labels.contains(&format!("\"com.docker.compose.project\":\"{}\"", app.project)), "{labels}");
    app.ct.expect(&["up", "--timeout", "120"], 0);
    let (code, entries) = http_get(port, "/api/entries").unwrap();
    assert_eq!(code, 200);
    assert!(entries.contains("kept-in-the-volume"), "the entry came back: {entries}");

    // Over a volume with data: refused, unless --force, which keeps the old contents aside.
    post_entry(port, "written-after-the-backup");
    let out = app.ct.run(&["backup", "restore"]);
    assert_eq!(out.status.code(), Some(5), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"));
    let out = app.ct.run(&["backup", "restore", "--force"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let aside = docker(&["volume", "ls", "-q", "--filter", &format!("name={volume}__old_")]);
    assert!(!aside.is_empty(), "the previous contents are kept as a volume: {err}");
    // The copy is listed by the restore and by `backup kept-aside`, which removes it on request.
    assert!(err.contains(&format!("volume {volume} → volume {}", aside.trim())), "{err}");
    let listed = app.ct.json(&["backup", "kept-aside", "--json"]);
    assert!(listed.as_array().unwrap().iter().any(|r| r["kind"] == "volume" && r["name"] == aside.trim()), "{listed}");
    app.ct.expect(&["backup", "kept-aside", "--keep", "0"], 0);
    assert_eq!(docker(&["volume", "ls", "-q", "--filter", &format!("name={volume}__old_")]), "");
    app.ct.expect(&["up", "--timeout", "120"], 0);
    let (_, entries) = http_get(port, "/api/entries").unwrap();
    assert!(entries.contains("kept-in-the-volume") && !entries.contains("written-after-the-backup"), "{entries}");
    assert_eq!(app.ct.json(&["maintenance", "status", "--json"])["mode"], "normal");
}

/// A database of its own on the test PostgreSQL server, dropped at the end.
pub(crate) struct TestDb {
    admin: String,
    name: String,
    pub(crate) url: String,
}

impl TestDb {
    pub(crate) fn new() -> Option<TestDb> {
        let admin = require_service("CARETAKER_TEST_PG_URL")?;
        let name = caretaker_testkit::unique_name("ctcompose");
        psql(&admin, &format!("CREATE DATABASE {name}"));
        let url = format!("{}/{name}", &admin[..admin.rfind('/').unwrap()]);
        Some(TestDb { admin, name, url })
    }
}

impl Drop for TestDb {
    /// Drops the database and the snapshots and copies updates kept of it.
    fn drop(&mut self) {
        let list = Command::new("psql")
            .args([
                &self.admin,
                "-At",
                "-c",
                &format!("SELECT datname FROM pg_database WHERE datname LIKE '{}%'", self.name),
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for db in list.lines().filter(|d| *d == self.name || d.starts_with(&format!("{}__", self.name))) {
            let _ = Command::new("psql")
                .args([&self.admin, "-c", &format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)")])
                .output();
        }
    }
}

/// The demo app as a compose project in a git repository, its image built from the release:
/// v1; v2 adds a migration; v3 a migration that changes data, then one that fails; v4 is v2
/// again under a new version. The app
/// uses the host's network (the test database listens on the host's loopback).
fn compose_repo(app: &ComposeApp, repo: &Path, port: u16) {
    init_demo_repo(app, repo);
    std::fs::write(
        repo.join("docker-compose.yml"),
        format!(
            r#"version: "3.7"
services:
  web:
    build: .
    command: ["/caretaker", "demo-app", "serve", "--listen", "127.0.0.1:{port}"]
    network_mode: host
    environment:
      DEMO_DATABASE_URL: "${{DATABASE_URL}}"
      DEMO_FILES_DIR: /data/files
    volumes: ["files:/data/files"]
    restart: unless-stopped
volumes:
  files:
"#
        ),
    )
    .unwrap();
    commit_tag(repo, "v1");
    std::fs::write(
        repo.join("migrations/0003_entry_tags.sql"),
        "ALTER TABLE entries ADD COLUMN tags TEXT;\nUPDATE entries SET tags = 'migrated';\n",
    )
    .unwrap();
    std::fs::write(repo.join("VERSION"), "v2\n").unwrap();
    commit_tag(repo, "v2");
    std::fs::write(repo.join("migrations/0004_rewrite.sql"), "UPDATE entries SET body = 'clobbered';\n").unwrap();
    std::fs::write(repo.join("migrations/0005_broken.sql"), "SELECT * FROM no_such_table;\n").unwrap();
    std::fs::write(repo.join("VERSION"), "v3\n").unwrap();
    commit_tag(repo, "v3");
    std::fs::remove_file(repo.join("migrations/0004_rewrite.sql")).unwrap();
    std::fs::remove_file(repo.join("migrations/0005_broken.sql")).unwrap();
    std::fs::write(repo.join("VERSION"), "v4\n").unwrap();
    commit_tag(repo, "v4");
}

/// A new git repository at `repo` holding the demo app's v1 release and a Dockerfile that
/// builds it on the test's base image (no compose file yet, nothing committed).
pub(crate) fn init_demo_repo(app: &ComposeApp, repo: &Path) {
    std::fs::create_dir_all(repo).unwrap();
    git(repo, &["init", "-q", "-b", "main"]);
    caretaker_demo_app::write_release(repo, "v1").unwrap();
    std::fs::write(
        repo.join("Dockerfile"),
        format!("FROM {}\nCOPY . /app\nENV DEMO_RELEASE_DIR=/app\nENTRYPOINT []\n", app.base),
    )
    .unwrap();
}

/// The image the service's container runs (its reference).
pub(crate) fn running_image(app: &ComposeApp) -> String {
    docker(&["inspect", "--format", "{{.Config.Image}}", &format!("{}_web_1", app.project)])
}

#[test]
fn compose_update_builds_release_images_migrates_in_a_one_off_container_and_rolls_back_a_failed_migration() {
    let Some(db) = TestDb::new() else { return };
    let Some(app) = ComposeApp::new() else { return };
    let port = free_port();
    let d = app.dir.path().to_path_buf();
    compose_repo(&app, &d.join("repo"), port);
    app.config_with(
        &format!(
            r#"  working_dir: "{d}/state/current"
  source: {{ git: "{d}/repo", tag: v1 }}
  migrate: [["/caretaker", "demo-app", "migrate"]]
  env: {{ DATABASE_URL: "{url}" }}"#,
            d = d.display(),
            url = db.url
        ),
        &format!(
            r#"compose:
  app_service: web
  services:
    web: {{ health: {{ http: "http://127.0.0.1:{port}/healthz", interval: 1s, timeout: 1s, start_period: 20s }} }}
database: {{ kind: postgres, url: "{url}" }}
update: {{ health_timeout: 30s, keep_releases: 1 }}"#,
            url = db.url
        ),
    );
    let version = || app_version(port);

    // The first deployment: build, migrate in a one-off container, start, health gate.
    let out = app.ct.run(&["update", "--to", "v1"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(version(), "v1");
    let v1_image = running_image(&app);
    assert!(v1_image.starts_with(&format!("caretaker/{}/web:1-", app.project)), "{v1_image}");
    for i in 0..5 {
        psql(
            &db.url,
            &format!("INSERT INTO entries (author, body, created_at) VALUES ('a{i}', 'b{i}', '2026-01-01T00:00:00Z')"),
        );
    }

    // v2: a new image under a new tag; the old one stays for a rollback.
    app.ct.expect(&["update", "--to", "v2"], 0);
    assert_eq!(version(), "v2");
    let v2_image = running_image(&app);
    assert!(v2_image.starts_with(&format!("caretaker/{}/web:2-", app.project)), "{v2_image}");
    assert!(!docker(&["image", "inspect", "--format", "{{.Id}}", &v1_image]).is_empty(), "v1's image is kept");
    assert_eq!(psql(&db.url, "SELECT DISTINCT tags FROM entries").trim(), "migrated");
    let job = app.ct.json(&["jobs", "--kind", "update", "-n", "1", "--json"]);
    let log = app.ct.expect(&["jobs", "show", &job[0]["id"].to_string()], 0);
    assert!(log.contains("compose run --rm web"), "the migration ran in a one-off container: {log}");
    let oneoffs = docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=com.docker.compose.project={}", app.project),
        "--filter",
        "label=com.docker.compose.oneoff=True",
    ]);
    assert_eq!(oneoffs, "", "one-off containers are removed");
    let rows = psql(&db.url, "SELECT id, author, body, tags FROM entries ORDER BY id");

    // v3: a data-changing migration, then a failing one → everything back as it was.
    let out = app.ct.run(&["update", "--to", "v3"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "rolled back: {err}");
    assert!(err.contains("failed at migrate"), "{err}");
    assert_eq!(version(), "v2");
    assert_eq!(running_image(&app), v2_image, "the previous image serves again");
    assert_eq!(
        psql(&db.url, "SELECT id, author, body, tags FROM entries ORDER BY id"),
        rows,
        "the database is reverted"
    );
    let st = app.status();
    assert_eq!(st["services"][0]["state"], "running", "{st}");
    assert_eq!(app.ct.json(&["maintenance", "status", "--json"])["mode"], "normal");

    // `rollback` returns to v1's code (its image), keeping the data.
    app.ct.expect(&["rollback"], 0);
    assert_eq!(version(), "v1");
    assert_eq!(running_image(&app), v1_image);

    // caretaker killed in the middle of an update (before migrating): `update --resume` rolls
    // back to the release and image that served.
    let killed =
        app.ct.command(&["update", "--to", "v2"]).env("CARETAKER_TEST_KILL_AT_STEP", "migrate").output().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&killed.status), Some(9), "killed at migrate");
    let out = app.ct.run(&["update"]);
    assert_eq!(out.status.code(), Some(4), "an interrupted update must be resumed first");
    let out = app.ct.run(&["update", "--resume"]);
    assert_eq!(out.status.code(), Some(7), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(version(), "v1");
    assert_eq!(running_image(&app), v1_image);
    assert_eq!(app.ct.json(&["maintenance", "status", "--json"])["mode"], "normal");

    // A good update cleans up: only the images rollback needs (the current and the previous
    // release's) remain; the failed and interrupted releases' images are gone, not left dangling.
    let release_images = || -> Vec<(String, String)> {
        let filter = format!("reference=caretaker/{}/*", app.project);
        let out =
            docker(&["image", "ls", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}", "--filter", &filter]);
        let mut v: Vec<(String, String)> =
            out.lines().filter_map(|l| l.split_once(' ')).map(|(r, i)| (r.to_string(), i.to_string())).collect();
        v.sort();
        v
    };
    let before = release_images();
    assert!(before.len() >= 3, "{before:?}");
    app.ct.expect(&["update", "--to", "v4"], 0);
    assert_eq!(version(), "v4");
    let v4_image = running_image(&app);
    let after = release_images();
    let mut want = vec![v1_image.clone(), v4_image];
    want.sort();
    assert_eq!(after.iter().map(|(r, _)| r.clone()).collect::<Vec<_>>(), want);
    for (reference, id) in before.iter().filter(|(r, _)| !want.contains(r)) {
        assert_eq!(docker(&["image", "inspect", "--format", "{{.Id}}", id]), "", "{reference}'s image {id} is gone");
    }
}

#[test]
fn a_database_in_a_compose_service_is_dumped_restored_snapshotted_and_reverted_through_its_container() {
    let Some(app) = ComposeApp::new() else { return };
    let Some(pg_image) = app.build_postgres_image() else { return };
    let port = free_port();
    let password = "pw-in-the-container-only-7713";
    let db = postgres_service(&pg_image);
    write_demo_build(&app, &app.path("build"));
    app.write(
        "docker-compose.yml",
        &format!(
            r#"version: "3.7"
services:
{db}
  web:
    build: ./build
    entrypoint: ["/bin/sh", "-c", "/caretaker demo-app migrate && exec /caretaker demo-app serve --listen 0.0.0.0:8000"]
    environment:
      DEMO_DATABASE_URL: "postgres://app:${{DB_PASSWORD}}@db:5432/app"
      DEMO_FILES_DIR: /tmp
    depends_on: [db]
    ports: ["127.0.0.1:{port}:8000"]
    restart: unless-stopped
volumes:
  pgdata:
"#
        ),
    );
    app.config_with(
        &format!("  env: {{ DB_PASSWORD: {{ secret: \"{password}\" }} }}"),
        &format!(
            r#"compose:
  services:
    # The app retries until the database has started.
    web: {{ health: {{ http: "http://127.0.0.1:{port}/healthz", interval: 1s, timeout: 1s, start_period: 60s }}, crash_loop: {{ restarts: 30, within: 60s }} }}
database:
  kind: postgres
  url: "postgres://app:{password}@db:5432/app"
  compose_service: db
backup:
  repository: "{repo}"
  password: "a long enough test password""#,
            repo = app.path("repo").display()
        ),
    );
    app.ct.expect(&["up", "--timeout", "120"], 0);
    let entries = || http_get(port, "/api/entries").map(|(_, b)| b).unwrap_or_default();
    post_entry(port, "before-the-backup");

    // The client tools run in the server's container: nothing needed on this machine.
    let check = app.ct.json(&["db", "check", "--json"]);
    assert!(check.to_string().contains("in container"), "{check}");
    app.ct.expect(&["backup", "init"], 0);
    let run = app.ct.json(&["backup", "run", "--json"]);
    assert_eq!(run["outcome"], "succeeded", "{run}");
    assert!(run["figures"]["measurement"]["streams"]["database"].as_u64().unwrap() > 0, "{run}");

    // Restore over live data (forced): pg_restore in the container; the old contents kept.
    post_entry(port, "after-the-backup");
    app.ct.expect(&["backup", "restore", "--db-only", "--force"], 0);
    wait_until(Duration::from_secs(30), "the restored entries", || {
        let e = entries();
        (e.contains("before-the-backup") && !e.contains("after-the-backup")).then_some(())
    });
    let snaps = app.ct.json(&["db", "snapshots", "--json"]);
    assert!(snaps.to_string().contains("app__old_"), "the previous contents are kept: {snaps}");

    // Snapshot and revert, through a connection to the container's address.
    let snap = app.ct.json(&["db", "snapshot", "--label", "t", "--json"]);
    let name = snap["name"].as_str().unwrap().to_string();
    post_entry(port, "after-the-snapshot");
    assert!(entries().contains("after-the-snapshot"));
    app.ct.expect(&["db", "revert", &name, "--yes"], 0);
    wait_until(Duration::from_secs(30), "the reverted entries", || {
        let e = entries();
        (e.contains("before-the-backup") && !e.contains("after-the-snapshot")).then_some(())
    });

    // The password was never on a command line or in any output caretaker kept.
    let mut logs = String::new();
    for e in std::fs::read_dir(app.path("state/jobs")).unwrap().flatten() {
        logs.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
    }
    assert!(!logs.contains(password), "a job log holds the password");
}
