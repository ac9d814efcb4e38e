//! The compose runtime's glue (docs/compose.md): the app's compose project as the config
//! describes it — which compose command line, project name, directory, files, the image pins
//! of the current release and the app's environment for `${VAR}` interpolation — and the
//! settings the watcher takes from the config.

use crate::appenv::{app_env, working_dir};
use crate::exit::{Code, Failure};
use anyhow::Result;
use caretaker_compose::model::ProjectModel;
use caretaker_compose::run::Redact;
use caretaker_compose::watch::WatchSpec;
use caretaker_compose::{Cli, Project};
use caretaker_core::config::{Compose, Config, CrashLoop, ImageSource, Redactor};
use caretaker_supervisor::machine::HealthSpec;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The compose file caretaker writes into a release directory to pin each service to the
/// image built (or pulled) for that release; it is passed after the app's own files.
pub const IMAGES_OVERRIDE: &str = ".caretaker-images.yml";

/// The config's compose section, or a config error for commands that need it.
pub fn section(config: &Config) -> Result<&Compose> {
    config.compose.as_ref().ok_or_else(|| {
        Failure::new(Code::Config, "the config has no `compose:` section")
            .hint("this command is for compose apps")
            .into()
    })
}

/// Redaction of compose and docker output with every secret of the config.
pub fn redact(redactor: &Redactor) -> Redact {
    let r = redactor.clone();
    std::sync::Arc::new(move |s: &str| r.redact(s))
}

/// The project directory: `compose.project_dir`, else the app's working directory (with
/// `caretaker update`, `<state dir>/current`: the current release).
pub fn project_dir(config: &Config, config_path: &Path) -> PathBuf {
    let c = config.compose.as_ref();
    let dir = c.and_then(|c| c.project_dir.clone()).unwrap_or_else(|| working_dir(&config.app, config_path));
    let dir = if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir };
    std::path::absolute(&dir).unwrap_or(dir)
}

/// The app's compose project, in its usual directory.
pub fn project(config: &Config, config_path: &Path, redactor: &Redactor) -> Result<Project> {
    project_at(config, config_path, redactor, &project_dir(config, config_path))
}

/// The app's compose project with `dir` as the project directory (a release being built).
pub fn project_at(config: &Config, config_path: &Path, redactor: &Redactor, dir: &Path) -> Result<Project> {
    let c = section(config)?;
    link_outside_files(c, dir)?;
    let cli = Cli::detect(c.cli)?;
    // The app's env (env files, `env:`) is compose's environment, so `${VAR}` in the compose
    // file reaches secrets without writing them anywhere.
    let env = app_env(&config.app, None, &working_dir(&config.app, config_path))?;
    let project = Project::new(cli, &c.project, dir, &c.files, redact(redactor))
        .with_env(env)
        .with_pins(&dir.join(IMAGES_OVERRIDE));
    Ok(match (&config.app.source, &c.project_dir) {
        // The project directory is the current release: none before the first update.
        (Some(_), None) => project.with_missing_dir(
            ": no release deployed yet — run `caretaker update`",
            "`caretaker update` deploys the release from `app.source`; `caretaker recover` on a new machine",
        ),
        _ => project.with_missing_dir(
            "",
            "create it, or point `compose.project_dir` (or `app.working_dir`) at the directory of the compose files",
        ),
    })
}

/// Links each of `compose.outside_files` into the project directory `dir` (when it exists), so
/// that a release exported from git finds the env files kept outside git where its compose
/// file names them. A symlink, not a copy: the file keeps its one place and mode (0600), a
/// rollback's release sees today's secrets, and `docker build` sends the link, never the
/// secret, in its context. Idempotent; a file of the release at that path is not replaced.
pub fn link_outside_files(c: &Compose, dir: &Path) -> Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    for f in &c.outside_files {
        let target = dir.join(&f.path);
        match std::fs::symlink_metadata(&target) {
            Ok(m) if m.file_type().is_symlink() => {
                if std::fs::read_link(&target).ok().as_deref() == Some(f.from.as_path()) {
                    continue;
                }
                // A link to somewhere else (the config changed): only the link is replaced.
                std::fs::remove_file(&target).map_err(|e| anyhow::anyhow!("replacing {}: {e}", target.display()))?;
            }
            Ok(_) => {
                return Err(Failure::new(
                    Code::Refused,
                    format!(
                        "{} exists in the project directory; `compose.outside_files` would hide it",
                        target.display()
                    ),
                )
                .hint(format!(
                    "keep `{}` out of the repository (and so out of every release), or remove it from `compose.outside_files`",
                    f.path.display()
                ))
                .into())
            }
            Err(_) => {}
        }
        if std::fs::symlink_metadata(&f.from).is_err() {
            return Err(Failure::new(
                Code::Config,
                format!("{} (config key `compose.outside_files`) does not exist", f.from.display()),
            )
            .hint("create it there (env files holding secrets: mode 0600), or correct the path in the config")
            .into());
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| anyhow::anyhow!("creating {}: {e}", parent.display()))?;
        }
        std::os::unix::fs::symlink(&f.from, &target)
            .map_err(|e| anyhow::anyhow!("linking {} to {}: {e}", target.display(), f.from.display()))?;
    }
    Ok(())
}

/// What `config check` found comparing the config's compose names with the compose file.
pub enum NamesCheck {
    /// The project directory does not exist (no release deployed yet): nothing was compared.
    NoProjectDir(PathBuf),
    /// `compose config` ran: each problem as (config key, message), and the file's services.
    Checked { problems: Vec<(String, String)>, services: Vec<String> },
}

/// Runs `compose config` in the project directory (when it exists) and compares the names the
/// config uses with the compose file's.
pub fn check_names(config: &Config, config_path: &Path, redactor: &Redactor) -> Result<NamesCheck> {
    let dir = project_dir(config, config_path);
    if !dir.is_dir() {
        return Ok(NamesCheck::NoProjectDir(dir));
    }
    let model = project(config, config_path, redactor)?.model()?;
    Ok(NamesCheck::Checked { problems: name_problems(config, &model), services: model.service_names() })
}

/// [`check_names`] for `config check`: lines for people, JSON, and whether all is well.
pub struct NamesReport {
    pub ok: bool,
    pub lines: Vec<String>,
    pub json: serde_json::Value,
}

pub fn check_names_report(config: &Config, config_path: &Path) -> NamesReport {
    let redactor = Redactor::new(config.secrets());
    match check_names(config, config_path, &redactor) {
        Ok(NamesCheck::NoProjectDir(dir)) => NamesReport {
            ok: true,
            lines: vec![format!(
                "note: project directory {} does not exist (no release deployed yet?): the names in `compose.services`, `compose.app_service`, `compose.keep_running`, `compose.volumes` and `database.compose_service` were not checked against the compose file",
                dir.display()
            )],
            json: serde_json::json!({ "checked": false, "project_dir": dir, "problems": [] }),
        },
        Ok(NamesCheck::Checked { problems, services }) => NamesReport {
            ok: problems.is_empty(),
            lines: problems.iter().map(|(key, msg)| format!("error: `{key}`: {msg}")).collect(),
            json: serde_json::json!({
                "checked": true,
                "services": services,
                "problems": problems.iter().map(|(k, m)| serde_json::json!({ "key": k, "message": m })).collect::<Vec<_>>(),
            }),
        },
        // No compose on this machine (yet): the config is not wrong for that.
        Err(e)
            if e.downcast_ref::<caretaker_compose::Error>()
                .is_some_and(|c| c.kind() == caretaker_compose::ErrorKind::ToolMissing) =>
        {
            NamesReport {
                ok: true,
                lines: vec![format!("note: {e}: the compose names in the config were not checked against the compose file")],
                json: serde_json::json!({ "checked": false, "error": e.to_string() }),
            }
        }
        Err(e) => {
            let (_, hint) = crate::exit::classify(&e);
            let mut lines = vec![format!("error: reading the compose file: {}", redactor.redact(&format!("{e:#}")))];
            lines.extend(hint.map(|h| format!("  hint: {h}")));
            NamesReport {
                ok: false,
                lines,
                json: serde_json::json!({ "checked": false, "error": redactor.redact(&format!("{e:#}")) }),
            }
        }
    }
}

/// The names the config uses that the compose file does not define: (config key, message).
pub fn name_problems(config: &Config, model: &ProjectModel) -> Vec<(String, String)> {
    let Some(c) = &config.compose else { return Vec::new() };
    let services = model.service_names().join(", ");
    let mut out = Vec::new();
    let mut service = |key: String, name: &str| {
        if model.service(name).is_none() {
            out.push((key, format!("the compose file has no service `{name}` (it has: {services})")));
        }
    };
    for s in &c.services {
        service(format!("compose.services.{}", s.name), &s.name);
    }
    if let Some(s) = &c.app_service {
        service("compose.app_service".into(), s);
    }
    for s in &c.keep_running {
        service("compose.keep_running".into(), s);
    }
    if let Some(s) = config.database.as_ref().and_then(|d| d.compose_service.as_ref()) {
        service("database.compose_service".into(), s);
    }
    let volumes: Vec<&str> = model.volumes.iter().map(|v| v.key.as_str()).collect();
    for v in &c.volumes {
        if model.volume(&v.name).is_none() {
            out.push((
                "compose.volumes".into(),
                format!("the compose file has no named volume `{}` (it has: {})", v.name, volumes.join(", ")),
            ));
        }
    }
    out
}

/// The watcher's settings for these services (the compose file's), from `compose.services`.
pub fn watch_specs(config: &Config, names: &[String]) -> Vec<WatchSpec> {
    let c = config.compose.as_ref();
    names
        .iter()
        .map(|n| {
            let s = c.and_then(|c| c.service(n));
            WatchSpec {
                name: n.clone(),
                health: s.and_then(|s| s.health.as_ref()).map(|h| HealthSpec {
                    interval: h.interval,
                    retries: h.retries,
                    start_period: h.start_period,
                }),
                crash_loop: s
                    .map(|s| s.crash_loop)
                    .unwrap_or(CrashLoop { restarts: 5, within: Duration::from_secs(60) }),
            }
        })
        .collect()
}

/// The services an update keeps running while it stops the app: the database's
/// (`database.compose_service`), `compose.keep_running`, and when images are built, every service that is not built from the app's sources (databases,
/// caches, queues use images made elsewhere).
pub fn keep_running(config: &Config, model: &ProjectModel) -> Vec<String> {
    let Some(c) = &config.compose else { return Vec::new() };
    let mut keep = c.keep_running.clone();
    keep.extend(config.database.as_ref().and_then(|d| d.compose_service.clone()));
    if c.images == ImageSource::Build {
        keep.extend(model.services.iter().filter(|s| !s.build).map(|s| s.name.clone()));
    }
    keep.sort();
    keep.dedup();
    keep
}

/// The settings of services the config names but the compose file does not have.
pub fn unknown_services(config: &Config, model: &ProjectModel) -> Vec<String> {
    let Some(c) = &config.compose else { return Vec::new() };
    let named = c.services.iter().map(|s| &s.name).chain(c.app_service.iter()).chain(c.keep_running.iter());
    let mut out: Vec<String> = named.filter(|n| model.service(n).is_none()).cloned().collect();
    out.sort();
    out.dedup();
    out
}

/// How long one-off commands (migrations, the migration check) may run.
pub const ONE_OFF_TIMEOUT: Duration = Duration::from_secs(3600);

/// Builds (or pulls) the images of the release in `dir` under the release's own tags and
/// writes the pin file there (`IMAGES_OVERRIDE`), so that this release runs exactly these
/// images and the previous release's stay for a rollback. Returns (service, image) pairs.
pub fn prepare_release_images(
    config: &Config,
    config_path: &Path,
    redactor: &Redactor,
    dir: &Path,
    release: &str,
    each_line: &mut dyn FnMut(&str),
) -> Result<Vec<(String, String)>> {
    let c = section(config)?;
    // Pins of an earlier attempt at this release would hide the compose file's own images.
    let pins_file = dir.join(IMAGES_OVERRIDE);
    let _ = std::fs::remove_file(&pins_file);
    let project = project_at(config, config_path, redactor, dir)?;
    let model = project.model()?;
    let docker = caretaker_compose::Docker::new(redact(redactor));
    let write_pins = |pins: &[(String, String)]| -> Result<()> {
        let text = caretaker_compose::images::pins_yaml(model.version.as_deref(), release, pins);
        std::fs::write(&pins_file, text).map_err(|e| anyhow::anyhow!("writing {}: {e}", pins_file.display()))
    };
    let image = |service: &str| caretaker_compose::images::release_image(&c.project, service, release);
    // An earlier attempt at this release made images under the same tags: once replaced they
    // would be left dangling, so they are removed below.
    let earlier: Vec<String> =
        model.service_names().iter().filter_map(|s| docker.image_id(&image(s)).ok().flatten()).collect();
    let pins: Vec<(String, String)> = match c.images {
        ImageSource::Build => {
            let services: Vec<String> = model.services.iter().filter(|s| s.build).map(|s| s.name.clone()).collect();
            let pins: Vec<(String, String)> = services.iter().map(|s| (s.clone(), image(s))).collect();
            // Compose tags what it builds with the pinned names.
            write_pins(&pins)?;
            if !services.is_empty() {
                project.build(&services, each_line)?;
            }
            pins
        }
        ImageSource::Pull => {
            let pulled: Vec<(String, String)> = model
                .services
                .iter()
                .filter(|s| !s.build)
                .filter_map(|s| s.image.clone().map(|i| (s.name.clone(), i)))
                .collect();
            let names: Vec<String> = pulled.iter().map(|(s, _)| s.clone()).collect();
            if !names.is_empty() {
                project.pull(&names, each_line)?;
            }
            let mut pins = Vec::new();
            for (service, reference) in &pulled {
                docker.tag(reference, &image(service))?;
                each_line(&format!("{reference} → {}", image(service)));
                pins.push((service.clone(), image(service)));
            }
            write_pins(&pins)?;
            pins
        }
    };
    let mut now = Vec::new();
    for (service, img) in &pins {
        match docker.image_id(img)? {
            Some(id) => now.push(id),
            None => anyhow::bail!("the image {img} of service {service} was not made"),
        }
    }
    for id in earlier.iter().filter(|id| !now.contains(id)) {
        if docker.remove_image(id).is_ok() {
            each_line(&format!("removed {id}, an earlier build of this release"));
        }
    }
    Ok(pins)
}

/// Removes what updates leave behind and no rollback needs: release images of releases not in
/// `keep` (the release directories that remain) and not used by a container, one-off
/// containers that ended (a killed caretaker's migration), and volume helper containers.
/// Problems are reported through `each_line`, not failed on: the update itself succeeded.
pub fn clean_up(config: &Config, redactor: &Redactor, keep: &[String], each_line: &mut dyn FnMut(&str)) -> Result<()> {
    let c = section(config)?;
    let docker = caretaker_compose::Docker::new(redact(redactor));
    let containers = docker.project_containers(&c.project)?;
    let ended: Vec<String> = containers
        .iter()
        .filter(|c| c.is_oneoff() && matches!(c.state.status.as_str(), "exited" | "dead" | "created"))
        .map(|c| c.id.clone())
        .collect();
    if !ended.is_empty() {
        each_line(&format!("removing {} ended one-off container(s)", ended.len()));
        docker.remove_containers(&ended)?;
    }
    caretaker_compose::volume::Volumes { docker: &docker, project: &c.project }.remove_leftover_helpers()?;
    let prefix = caretaker_compose::images::release_prefix(&c.project);
    let images: Vec<String> = docker.images(&format!("{prefix}*"))?.into_iter().map(|(r, _)| r).collect();
    let in_use: Vec<String> = containers.iter().map(|c| c.config.image.clone()).collect();
    for image in caretaker_compose::images::images_to_remove(&images, &c.project, keep, &in_use) {
        match docker.remove_image(&image) {
            Ok(()) => each_line(&format!("removed image {image}")),
            Err(e) => each_line(&format!("could not remove image {image}: {e}")),
        }
    }
    Ok(())
}

/// Stops and removes the project's one-off containers (a migration a killed caretaker left
/// running must not go on while its database is reverted).
pub fn remove_one_off_containers(config: &Config, redactor: &Redactor, each_line: &mut dyn FnMut(&str)) -> Result<()> {
    let c = section(config)?;
    let docker = caretaker_compose::Docker::new(redact(redactor));
    let ids: Vec<String> =
        docker.project_containers(&c.project)?.iter().filter(|c| c.is_oneoff()).map(|c| c.id.clone()).collect();
    if !ids.is_empty() {
        each_line(&format!("removing {} one-off container(s) left by an interrupted run", ids.len()));
        docker.remove_containers(&ids)?;
    }
    Ok(())
}

/// Runs the app's one-off commands (`app.migrate`) each in a new container of
/// `compose.app_service` of the project in `dir` (`compose run --rm --no-deps -T`); output
/// goes to `each_line`. A command that fails ends the run with an error.
pub fn run_one_off_commands(
    config: &Config,
    config_path: &Path,
    redactor: &Redactor,
    dir: &Path,
    cmds: &[caretaker_core::config::Command],
    what: &str,
    each_line: &mut dyn FnMut(&str),
) -> Result<()> {
    for cmd in cmds {
        let status = run_one_off(config, config_path, redactor, dir, cmd, what, ONE_OFF_TIMEOUT, each_line)?;
        if !status.success() {
            anyhow::bail!("{what} command `{cmd}` failed in a one-off container ({status})");
        }
    }
    Ok(())
}

/// One one-off command (at most `limit`); how it ended.
#[allow(clippy::too_many_arguments)]
pub fn run_one_off(
    config: &Config,
    config_path: &Path,
    redactor: &Redactor,
    dir: &Path,
    cmd: &caretaker_core::config::Command,
    what: &str,
    limit: Duration,
    each_line: &mut dyn FnMut(&str),
) -> Result<std::process::ExitStatus> {
    let c = section(config)?;
    let Some(service) = &c.app_service else {
        anyhow::bail!("compose.app_service is not set: no service to run `{cmd}` in");
    };
    let project = project_at(config, config_path, redactor, dir)?;
    each_line(&format!("{what}: compose run --rm {service} {cmd}"));
    let ended = project.run_oneoff(service, &cmd.argv(), limit, each_line)?;
    if !ended.success() {
        each_line(&format!("{what}: `{cmd}` ended with {}", ended.status));
    }
    Ok(ended.status)
}

/// The app's database adapter. For a database in a compose service (`database.compose_service`)
/// the adapter connects to that service's running container (SQL to its address, client tools
/// inside it); otherwise it is `caretaker_db::open`.
pub fn open_database(config: &Config, redactor: &Redactor) -> caretaker_db::Result<Box<dyn caretaker_db::Database>> {
    use caretaker_db::{Error, ErrorKind};
    let Some(db) = &config.database else {
        return Err(Error::new(ErrorKind::Other, "database", "no database configured"));
    };
    let Some(service) = &db.compose_service else { return caretaker_db::open(db, redactor) };
    let what = format!("database service {service}");
    let project = config.compose.as_ref().map(|c| c.project.as_str()).unwrap_or_default();
    let docker = caretaker_compose::Docker::new(redact(redactor));
    let containers =
        docker.project_containers(project).map_err(|e| Error::new(ErrorKind::Unreachable, &what, e.to_string()))?;
    let c = containers
        .iter()
        .filter(|c| c.service() == Some(service.as_str()) && !c.is_oneoff() && c.state.status == "running")
        .min_by_key(|c| c.number())
        .ok_or_else(|| {
            Error::new(ErrorKind::Unreachable, &what, format!("no running container of service {service}"))
                .hint("start the app (`caretaker up`): the database runs in its compose project")
        })?;
    // A container on the host's network has no address of its own: it listens on the host's.
    let address = c.ip_address().unwrap_or("127.0.0.1");
    caretaker_db::open_in_container(db, redactor, &c.id, address)
}

/// Starts the database's compose service (and only it) and waits until the database answers,
/// for `recover` on a machine where nothing runs yet.
pub fn start_database_service(config: &Config, config_path: &Path, redactor: &Redactor) -> Result<()> {
    start_database_service_at(config, config_path, redactor, &project_dir(config, config_path))
}

/// [`start_database_service`] with the compose files of the release in `dir`. Nothing to do
/// without `database.compose_service`; a running service is left as it is.
pub fn start_database_service_at(config: &Config, config_path: &Path, redactor: &Redactor, dir: &Path) -> Result<()> {
    let Some(service) = config.database.as_ref().and_then(|d| d.compose_service.clone()) else { return Ok(()) };
    // A running container of the service (an update keeps it running) is left as it is.
    if open_database(config, redactor).is_err() {
        let project = project_at(config, config_path, redactor, dir)?;
        let c = section(config)?;
        project.up(std::slice::from_ref(&service), c.stop_timeout, &mut |_| {})?;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let answer = open_database(config, redactor).and_then(|db| {
            db.size().map(|_| ()).or_else(|e| match e.kind() {
                // The server answers; the database itself may not exist yet.
                caretaker_db::ErrorKind::NotFound | caretaker_db::ErrorKind::AuthFailed => Ok(()),
                _ => Err(e),
            })
        });
        match answer {
            Ok(()) => return Ok(()),
            Err(e) if std::time::Instant::now() > deadline => return Err(e.into()),
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use caretaker_compose::model::parse_config;

    fn config(yaml: &str) -> Config {
        let text = format!("version: 1\napp: {{ name: gb }}\n{yaml}");
        caretaker_core::config::load(
            &text,
            Path::new("/srv/gb/caretaker.yml"),
            None,
            &caretaker_core::config::NoSecrets,
        )
        .unwrap()
        .config
    }

    #[test]
    fn an_update_keeps_the_database_and_what_is_not_built_from_the_sources_running() {
        let model = parse_config(
            "services:\n  db: { image: postgres }\n  redis: { image: redis }\n  web: { build: { context: . } }\n  worker: { build: { context: . } }\n",
            "gb",
        )
        .unwrap();
        let built = config("compose: { keep_running: [worker] }\n");
        assert_eq!(keep_running(&built, &model), ["db", "redis", "worker"]);
        let pulled = config(
            "compose: { images: pull }\ndatabase: { kind: postgres, url: \"postgres://a:b@db/gb\", compose_service: db }\n",
        );
        assert_eq!(keep_running(&pulled, &model), ["db"]);
        assert_eq!(unknown_services(&built, &model), Vec::<String>::new());
        assert_eq!(unknown_services(&config("compose: { app_service: django }\n"), &model), ["django"]);
    }

    #[test]
    fn config_names_the_compose_file_lacks_are_problems_with_their_keys() {
        let model = parse_config(
            "services:\n  django: { build: { context: . } }\n  postgres: { image: postgres }\nvolumes:\n  production_media: {}\n",
            "gb",
        )
        .unwrap();
        let c = config(
            "compose:\n  app_service: web\n  keep_running: [redis]\n  services: { worker: { critical: false } }\n  volumes: [media, production_media]\ndatabase: { kind: postgres, url: \"postgres://a:b@db/gb\", compose_service: db }\n",
        );
        let keys: Vec<String> = name_problems(&c, &model).into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "compose.services.worker",
                "compose.app_service",
                "compose.keep_running",
                "database.compose_service",
                "compose.volumes"
            ]
        );
        assert!(!c.service_is_critical("worker") && c.service_is_critical("django"));
        let ok = config("compose:\n  app_service: django\n  volumes: [production_media]\n");
        assert!(name_problems(&ok, &model).is_empty());
    }

    #[test]
    fn outside_files_are_relative_to_the_project_directory_and_kept_next_to_the_config() {
        let c = config("compose:\n  outside_files: [.envs/.production, { path: .env, from: /etc/gb/env }]\n");
        let files = &c.compose.as_ref().unwrap().outside_files;
        assert_eq!(files[0].path, PathBuf::from(".envs/.production"));
        assert_eq!(files[0].from, PathBuf::from("/srv/gb/.envs/.production"));
        assert_eq!(files[1].from, PathBuf::from("/etc/gb/env"));
        for bad in ["../secrets", "/etc/gb/env"] {
            let text = format!("version: 1\napp: {{ name: gb }}\ncompose: {{ outside_files: [\"{bad}\"] }}\n");
            let r = caretaker_core::config::load(
                &text,
                Path::new("/srv/gb/caretaker.yml"),
                None,
                &caretaker_core::config::NoSecrets,
            );
            assert!(r.is_err(), "{bad} is refused");
        }
    }

    #[test]
    fn watch_specs_take_the_compose_services_settings() {
        let c = config("compose:\n  services:\n    web: { health: { tcp: \"127.0.0.1:8000\" }, crash_loop: { restarts: 2, within: 10s } }\n");
        let specs = watch_specs(&c, &["web".into(), "db".into()]);
        assert!(specs[0].health.is_some() && specs[0].crash_loop.restarts == 2);
        assert!(specs[1].health.is_none() && specs[1].crash_loop.restarts == 5);
        assert_eq!(project_dir(&c, Path::new("/srv/gb/caretaker.yml")), PathBuf::from("/srv/gb"));
    }
}
