//! What caretaker reads from docker and compose, as plain values (pure parsing, no I/O):
//! containers from `docker inspect` JSON, and the project's services and volumes from the
//! normalised YAML that `compose config` prints (the same shape for v1 and v2).

use marked_yaml::Node;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The labels compose puts on what it creates.
pub const LABEL_PROJECT: &str = "com.docker.compose.project";
pub const LABEL_SERVICE: &str = "com.docker.compose.service";
pub const LABEL_ONEOFF: &str = "com.docker.compose.oneoff";
pub const LABEL_NUMBER: &str = "com.docker.compose.container-number";

/// `FinishedAt`/`StartedAt` of a container that never finished/started.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// One container as `docker inspect` describes it (the fields caretaker uses).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Container {
    pub id: String,
    #[serde(default)]
    pub name: String,
    /// The image id (`sha256:...`) the container runs.
    #[serde(default)]
    pub image: String,
    pub state: ContainerState,
    #[serde(default)]
    pub restart_count: u64,
    #[serde(default)]
    pub config: ContainerConfig,
    #[serde(default)]
    pub host_config: HostConfig,
    #[serde(default)]
    pub network_settings: NetworkSettings,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerState {
    /// `created`, `running`, `paused`, `restarting`, `removing`, `exited`, `dead`.
    pub status: String,
    #[serde(default, rename = "OOMKilled")]
    pub oom_killed: bool,
    #[serde(default)]
    pub pid: u32,
    #[serde(default)]
    pub exit_code: i32,
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub started_at: String,
    #[serde(default)]
    pub finished_at: String,
    #[serde(default)]
    pub health: Option<ContainerHealth>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerHealth {
    /// `starting`, `healthy`, `unhealthy`.
    pub status: String,
    #[serde(default)]
    pub failing_streak: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    /// The image reference the container was created from (`name:tag`).
    #[serde(default)]
    pub image: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostConfig {
    #[serde(default)]
    pub restart_policy: RestartPolicy,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RestartPolicy {
    /// `no` (or empty), `always`, `unless-stopped`, `on-failure`.
    #[serde(default)]
    pub name: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkSettings {
    #[serde(default)]
    pub networks: Option<BTreeMap<String, Network>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Network {
    #[serde(default, rename = "IPAddress")]
    pub ip_address: String,
}

impl Container {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.config.labels.as_ref()?.get(key).map(String::as_str)
    }

    /// The compose service this container belongs to.
    pub fn service(&self) -> Option<&str> {
        self.label(LABEL_SERVICE)
    }

    /// A `compose run` container rather than one of the service's own.
    pub fn is_oneoff(&self) -> bool {
        self.label(LABEL_ONEOFF).is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }

    /// The replica number (`1` unless the service is scaled).
    pub fn number(&self) -> u32 {
        self.label(LABEL_NUMBER).and_then(|n| n.parse().ok()).unwrap_or(1)
    }

    pub fn started_at(&self) -> Option<&str> {
        Some(self.state.started_at.as_str()).filter(|s| !s.is_empty() && *s != ZERO_TIME)
    }

    pub fn finished_at(&self) -> Option<&str> {
        Some(self.state.finished_at.as_str()).filter(|s| !s.is_empty() && *s != ZERO_TIME)
    }

    /// The docker health status, when the image or compose file defines a health check.
    pub fn health_status(&self) -> Option<&str> {
        self.state.health.as_ref().map(|h| h.status.as_str())
    }

    /// The first IP address of the container on any of its networks.
    pub fn ip_address(&self) -> Option<&str> {
        self.network_settings.networks.as_ref()?.values().map(|n| n.ip_address.as_str()).find(|ip| !ip.is_empty())
    }

    /// Whether docker restarts this container by itself after it exits.
    pub fn docker_restarts(&self) -> bool {
        matches!(self.host_config.restart_policy.name.as_str(), "always" | "unless-stopped" | "on-failure")
    }
}

/// Parses `docker inspect` output (a JSON array). Containers that vanished between listing and
/// inspecting are simply absent.
pub fn parse_inspect(json: &str) -> Result<Vec<Container>, String> {
    let trimmed = json.trim();
    if trimmed.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_str(trimmed).map_err(|e| format!("cannot read `docker inspect` output: {e}"))
}

/// A service of the compose project, as `compose config` normalises it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceModel {
    pub name: String,
    /// It has a `build:` section: its image is built from the project's sources.
    pub build: bool,
    /// Its `image:` (after variable interpolation), if any.
    pub image: Option<String>,
    /// Named volumes it mounts, by their key in the compose file, with the mount path.
    pub volumes: Vec<(String, String)>,
}

/// A named volume of the compose project.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VolumeModel {
    /// The key under `volumes:` in the compose file.
    pub key: String,
    /// The docker volume's name.
    pub name: String,
    /// Made outside compose (`external: true`).
    pub external: bool,
}

/// The parts of a compose project caretaker needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProjectModel {
    /// The file format `version:` (compose v1 prints it and wants override files to match).
    pub version: Option<String>,
    pub services: Vec<ServiceModel>,
    pub volumes: Vec<VolumeModel>,
}

impl ProjectModel {
    pub fn service(&self, name: &str) -> Option<&ServiceModel> {
        self.services.iter().find(|s| s.name == name)
    }

    pub fn volume(&self, key: &str) -> Option<&VolumeModel> {
        self.volumes.iter().find(|v| v.key == key)
    }

    pub fn service_names(&self) -> Vec<String> {
        self.services.iter().map(|s| s.name.clone()).collect()
    }
}

fn get<'a>(node: &'a Node, key: &str) -> Option<&'a Node> {
    match node {
        Node::Mapping(m) => m.get_node(key),
        _ => None,
    }
}

fn scalar(node: Option<&Node>) -> Option<String> {
    match node? {
        Node::Scalar(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}

fn truthy(node: Option<&Node>) -> bool {
    match node {
        Some(Node::Scalar(s)) => s.as_str() == "true",
        // `external: { name: x }` (the old form) is external too.
        Some(Node::Mapping(_)) => true,
        _ => false,
    }
}

/// Parses the YAML `compose config` prints. `project` names the volumes compose creates
/// (`<project>_<key>`) when the file does not name them itself.
pub fn parse_config(yaml: &str, project: &str) -> Result<ProjectModel, String> {
    let root = marked_yaml::parse_yaml(0, yaml).map_err(|e| format!("cannot read `compose config` output: {e}"))?;
    let mut model = ProjectModel { version: scalar(get(&root, "version")), ..Default::default() };
    if let Some(Node::Mapping(vols)) = get(&root, "volumes") {
        for (k, v) in vols.iter() {
            let key = k.as_str().to_string();
            let external = truthy(get(v, "external"));
            let explicit = scalar(get(v, "name")).or_else(|| scalar(get(v, "external").and_then(|e| get(e, "name"))));
            let name = match (explicit, external) {
                (Some(n), _) => n,
                (None, true) => key.clone(),
                (None, false) => format!("{project}_{key}"),
            };
            model.volumes.push(VolumeModel { key, name, external });
        }
    }
    match get(&root, "services") {
        Some(Node::Mapping(svcs)) => {
            for (k, v) in svcs.iter() {
                let mut s = ServiceModel {
                    name: k.as_str().to_string(),
                    build: get(v, "build").is_some(),
                    image: scalar(get(v, "image")),
                    volumes: Vec::new(),
                };
                if let Some(Node::Sequence(mounts)) = get(v, "volumes") {
                    for m in mounts.iter() {
                        let (source, target, kind) = match m {
                            // Short form `data:/data:rw` (v1 prints this).
                            Node::Scalar(text) => {
                                let mut parts = text.as_str().splitn(3, ':');
                                let src = parts.next().unwrap_or("").to_string();
                                let dst = parts.next().unwrap_or("").to_string();
                                let kind = if src.starts_with('/') || src.starts_with('.') { "bind" } else { "volume" };
                                (src, dst, kind.to_string())
                            }
                            // Long form `{type: volume, source: data, target: /data}` (v2).
                            other => (
                                scalar(get(other, "source")).unwrap_or_default(),
                                scalar(get(other, "target")).unwrap_or_default(),
                                scalar(get(other, "type")).unwrap_or_else(|| "volume".into()),
                            ),
                        };
                        if kind == "volume" && !source.is_empty() && model.volume(&source).is_some() {
                            s.volumes.push((source, target));
                        }
                    }
                }
                model.services.push(s);
            }
        }
        _ => return Err("`compose config` printed no services".into()),
    }
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_compose_v1_config_output() {
        let yaml = r#"services:
  db:
    image: postgres:15
    volumes:
    - pgdata:/var/lib/postgresql/data:rw
  web:
    build:
      context: /srv/app
      dockerfile: Dockerfile
    image: guestbook-web:latest
    volumes:
    - media:/media:rw
    - /etc/localtime:/etc/localtime:ro
version: '3.7'
volumes:
  media: {}
  pgdata:
    external: true
  static:
    name: shared-static
"#;
        let m = parse_config(yaml, "gb").unwrap();
        assert_eq!(m.version.as_deref(), Some("3.7"));
        assert_eq!(m.service_names(), ["db", "web"]);
        let web = m.service("web").unwrap();
        assert!(web.build);
        assert_eq!(web.image.as_deref(), Some("guestbook-web:latest"));
        assert_eq!(web.volumes, vec![("media".to_string(), "/media".to_string())]);
        assert!(!m.service("db").unwrap().build);
        assert_eq!(m.volume("media").unwrap().name, "gb_media");
        assert_eq!(m.volume("pgdata").unwrap().name, "pgdata");
        assert!(m.volume("pgdata").unwrap().external);
        assert_eq!(m.volume("static").unwrap().name, "shared-static");
    }

    #[test]
    fn reads_compose_v2_long_volume_syntax() {
        let yaml = "name: gb\nservices:\n  web:\n    image: x\n    volumes:\n      - type: volume\n        source: media\n        target: /media\n      - type: bind\n        source: /srv\n        target: /srv\nvolumes:\n  media:\n    name: gb_media\n";
        let m = parse_config(yaml, "gb").unwrap();
        assert_eq!(m.service("web").unwrap().volumes, vec![("media".to_string(), "/media".to_string())]);
        assert_eq!(m.volume("media").unwrap().name, "gb_media");
    }

    #[test]
    fn reads_docker_inspect() {
        let json = r#"[{"Id":"abc","Name":"/gb_web_1","Image":"sha256:1","RestartCount":2,
            "State":{"Status":"running","Pid":42,"ExitCode":0,"StartedAt":"2026-11-30T10:00:00Z",
                     "FinishedAt":"0001-01-01T00:00:00Z","OOMKilled":false,"Health":{"Status":"healthy","FailingStreak":0}},
            "Config":{"Image":"gb-web:1","Labels":{"com.docker.compose.project":"gb","com.docker.compose.service":"web",
                      "com.docker.compose.oneoff":"False","com.docker.compose.container-number":"1"}},
            "HostConfig":{"RestartPolicy":{"Name":"unless-stopped","MaximumRetryCount":0}},
            "NetworkSettings":{"Networks":{"gb_default":{"IPAddress":"172.18.0.2"}}}}]"#;
        let c = &parse_inspect(json).unwrap()[0];
        assert_eq!(c.service(), Some("web"));
        assert!(!c.is_oneoff());
        assert_eq!(c.finished_at(), None);
        assert_eq!(c.started_at(), Some("2026-11-30T10:00:00Z"));
        assert_eq!(c.health_status(), Some("healthy"));
        assert_eq!(c.ip_address(), Some("172.18.0.2"));
        assert!(c.docker_restarts());
        assert_eq!(c.restart_count, 2);
        assert!(parse_inspect("").unwrap().is_empty());
    }
}
