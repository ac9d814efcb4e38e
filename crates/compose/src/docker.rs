//! The `docker` command line, for what compose does not do: observing containers
//! (`ps` + `inspect`, JSON), tagging and removing images, creating and removing volumes, and the
//! helper containers that stream a named volume in and out as a tar archive.

use crate::error::{Error, ErrorKind, Result};
use crate::model::{parse_inspect, Container, LABEL_PROJECT};
use crate::run::{self, Redact};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

const QUICK: Duration = Duration::from_secs(60);
/// Marks what caretaker itself creates (helper containers, volumes kept aside), so a cleanup
/// finds exactly those.
pub const LABEL_CARETAKER: &str = "org.caretaker.project";

/// The docker command line.
#[derive(Clone)]
pub struct Docker {
    program: String,
    redact: Redact,
}

impl Docker {
    pub fn new(redact: Redact) -> Docker {
        Docker { program: "docker".into(), redact }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.program);
        c.args(args);
        c
    }

    fn out(&self, args: &[&str]) -> Result<String> {
        run::output(self.command(args), &format!("docker {}", args[0]), QUICK, &self.redact)
    }

    /// Every container of a compose project (running or not, one-off ones included).
    pub fn project_containers(&self, project: &str) -> Result<Vec<Container>> {
        let filter = format!("label={LABEL_PROJECT}={project}");
        let ids = self.out(&["ps", "-a", "-q", "--no-trunc", "--filter", &filter])?;
        let ids: Vec<&str> = ids.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        self.inspect_containers(&ids)
    }

    /// `docker inspect` of these containers; one removed in between is left out.
    pub fn inspect_containers(&self, ids: &[&str]) -> Result<Vec<Container>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut args = vec!["container", "inspect"];
        args.extend(ids);
        let ended = run::run(self.command(&args), "docker container inspect", QUICK, &self.redact, true, &mut |_| {})?;
        // A container that vanished makes inspect fail but still print the others.
        if !ended.success() && !ended.stdout.trim_start().starts_with('[') {
            return Err(run::failure("docker container inspect", &ended));
        }
        parse_inspect(&ended.stdout).map_err(|e| Error::new(ErrorKind::Failed, "docker container inspect", e))
    }

    /// The image id of `reference`, or `None` when there is no such image here.
    pub fn image_id(&self, reference: &str) -> Result<Option<String>> {
        let ended = run::run(
            self.command(&["image", "inspect", "--format", "{{.Id}}", reference]),
            "docker image inspect",
            QUICK,
            &self.redact,
            true,
            &mut |_| {},
        )?;
        if ended.success() {
            return Ok(Some(ended.stdout.trim().to_string()));
        }
        match run::failure("docker image inspect", &ended) {
            e if e.kind() == ErrorKind::NotFound => Ok(None),
            e => Err(e),
        }
    }

    pub fn tag(&self, source: &str, target: &str) -> Result<()> {
        self.out(&["tag", source, target]).map(|_| ())
    }

    /// Removes an image reference (the image goes when no other tag or container holds it).
    pub fn remove_image(&self, reference: &str) -> Result<()> {
        self.out(&["image", "rm", reference]).map(|_| ())
    }

    /// Images whose reference matches `pattern` (docker's `reference` filter, e.g.
    /// `caretaker-gb-*`): (repository:tag, image id).
    pub fn images(&self, pattern: &str) -> Result<Vec<(String, String)>> {
        let filter = format!("reference={pattern}");
        let out = self.out(&[
            "image",
            "ls",
            "--no-trunc",
            "--filter",
            &filter,
            "--format",
            "{{.Repository}}:{{.Tag}} {{.ID}}",
        ])?;
        Ok(out
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(r, id)| (r.to_string(), id.trim().to_string()))
            .collect())
    }

    /// Untagged images left behind (`<none>:<none>` with nothing built on them) carrying `label`.
    pub fn dangling_images(&self, label: &str) -> Result<Vec<String>> {
        let filter = format!("label={label}");
        let out = self.out(&["image", "ls", "-q", "--no-trunc", "--filter", "dangling=true", "--filter", &filter])?;
        Ok(out.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect())
    }

    /// The last `n` lines a container wrote: (`out` or `err`, line), stdout's first.
    pub fn container_logs(&self, id: &str, n: usize) -> Result<Vec<(&'static str, String)>> {
        let n = n.to_string();
        let out = self
            .command(&["logs", "--tail", &n, id])
            .output()
            .map_err(|e| Error::new(ErrorKind::Io, "docker logs", format!("cannot run it: {e}")))?;
        let mut lines: Vec<(&'static str, String)> =
            String::from_utf8_lossy(&out.stdout).lines().map(|l| ("out", (self.redact)(l))).collect();
        lines.extend(String::from_utf8_lossy(&out.stderr).lines().map(|l| ("err", (self.redact)(l))));
        Ok(lines)
    }

    pub fn remove_containers(&self, ids: &[String]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut args = vec!["container", "rm", "-f"];
        args.extend(ids.iter().map(String::as_str));
        self.out(&args).map(|_| ())
    }

    /// Labels (and whether it exists) of a volume.
    pub fn volume(&self, name: &str) -> Result<Option<VolumeInfo>> {
        let ended = run::run(
            self.command(&["volume", "inspect", "--format", "{{json .}}", name]),
            "docker volume inspect",
            QUICK,
            &self.redact,
            true,
            &mut |_| {},
        )?;
        if !ended.success() {
            return match run::failure("docker volume inspect", &ended) {
                e if e.kind() == ErrorKind::NotFound => Ok(None),
                e => Err(e),
            };
        }
        serde_json::from_str(ended.stdout.trim())
            .map(Some)
            .map_err(|e| Error::new(ErrorKind::Failed, "docker volume inspect", format!("unreadable output: {e}")))
    }

    /// Creates a volume with this driver, options and labels.
    pub fn create_volume(
        &self,
        name: &str,
        like: Option<&VolumeInfo>,
        labels: &BTreeMap<String, String>,
    ) -> Result<()> {
        let mut args: Vec<String> = vec!["volume".into(), "create".into()];
        if let Some(v) = like {
            args.push("--driver".into());
            args.push(v.driver.clone());
            for (k, val) in v.options.iter().flatten() {
                args.push("--opt".into());
                args.push(format!("{k}={val}"));
            }
            for (k, val) in v.labels.iter().flatten() {
                if !labels.contains_key(k) {
                    args.push("--label".into());
                    args.push(format!("{k}={val}"));
                }
            }
        }
        for (k, val) in labels {
            args.push("--label".into());
            args.push(format!("{k}={val}"));
        }
        args.push(name.into());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.out(&refs).map(|_| ())
    }

    pub fn remove_volume(&self, name: &str) -> Result<()> {
        self.out(&["volume", "rm", name]).map(|_| ())
    }

    /// Containers (any state) that mount the volume.
    pub fn containers_using_volume(&self, name: &str) -> Result<Vec<Container>> {
        let filter = format!("volume={name}");
        let ids = self.out(&["ps", "-a", "-q", "--no-trunc", "--filter", &filter])?;
        let ids: Vec<&str> = ids.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        self.inspect_containers(&ids)
    }
}

/// `docker volume inspect`, the parts caretaker uses.
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct VolumeInfo {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Driver", default)]
    pub driver: String,
    #[serde(rename = "Labels", default)]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(rename = "Options", default)]
    pub options: Option<BTreeMap<String, String>>,
}
