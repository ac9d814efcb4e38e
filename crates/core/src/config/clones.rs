//! The `clones:` section: staging clones of the app (docs/clones.md) — environment overrides,
//! lifetimes, limits and the ports clones get.

use super::model::EnvValue;
use super::reader::{duration, unsigned, Cx};
use marked_yaml::Node;
use serde::{Serialize, Serializer};
use std::collections::BTreeMap;
use std::time::Duration;

/// Where a clone's outgoing mail goes when `clones.env` does not say: a loopback port nothing
/// listens on, so every connection is refused and no message leaves the host.
pub const MAIL_SINK_HOST: &str = "127.0.0.1";
pub const MAIL_SINK_PORT: u16 = 1;

#[derive(Clone, Debug, Serialize)]
pub struct Clones {
    /// Variables set for every process of a clone, over the app's own (`EMAIL_HOST`, a banner
    /// flag, a user switcher). They win over the mail-sink defaults.
    pub env: BTreeMap<String, EnvValue>,
    /// The longest lifetime a clone may be given.
    #[serde(serialize_with = "ser_duration")]
    pub max_ttl: Duration,
    /// The lifetime of a clone created without `--ttl`.
    #[serde(serialize_with = "ser_duration")]
    pub default_ttl: Duration,
    /// How many clones may exist at once.
    pub max_count: u32,
    /// The most disk all clones' copies may use together (bytes); `None`: no limit beyond the
    /// free space of the file system.
    pub max_disk: Option<u64>,
    /// The ports clones listen on (inclusive), one per port of the app.
    pub port_range: (u16, u16),
}

fn ser_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::duration::format_duration(*d))
}

pub fn defaults() -> Clones {
    Clones {
        env: BTreeMap::new(),
        max_ttl: Duration::from_secs(7 * 86400),
        default_ttl: Duration::from_secs(3 * 86400),
        max_count: 3,
        max_disk: None,
        port_range: (42000, 42999),
    }
}

pub(super) fn clones(cx: &mut Cx, node: &Node, path: &str) -> Option<Clones> {
    let mut m = cx.map(node, path)?;
    let mut c = defaults();
    if let Some(env) = m.opt(cx, "env", super::parse::env) {
        c.env = env;
    }
    let max_ttl = m.opt(cx, "max_ttl", duration);
    let default_ttl = m.opt(cx, "default_ttl", duration);
    if let Some(d) = max_ttl {
        c.max_ttl = d;
        // A smaller maximum lowers the default with it unless the default is given.
        if default_ttl.is_none() && c.default_ttl > d {
            c.default_ttl = d;
        }
    }
    if let Some(d) = default_ttl {
        c.default_ttl = d;
    }
    if let Some(n) = m.opt(cx, "max_count", unsigned) {
        c.max_count = n.min(u32::MAX as u64) as u32;
    }
    c.max_disk = m.opt(cx, "max_disk", super::parse::size);
    let range = m.opt(cx, "port_range", port_range);
    let span = *m.span();
    m.finish(cx);
    if c.default_ttl > c.max_ttl {
        cx.error(
            &span,
            path,
            format!(
                "`{path}.default_ttl` ({}) is longer than `{path}.max_ttl` ({})",
                crate::duration::format_duration(c.default_ttl),
                crate::duration::format_duration(c.max_ttl)
            ),
            Some("lower default_ttl or raise max_ttl".into()),
        );
        return None;
    }
    if let Some(r) = range {
        c.port_range = r;
    }
    Some(c)
}

/// `42000-42999`: two ports, the first not above the second.
fn port_range(cx: &mut Cx, node: &Node, path: &str) -> Option<(u16, u16)> {
    let s = super::reader::string(cx, node, path)?;
    let parsed =
        s.split_once('-').and_then(|(a, b)| Some((a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?)));
    match parsed {
        Some((a, b)) if a > 0 && a <= b => Some((a, b)),
        _ => {
            cx.error(
                node.span(),
                path,
                format!("`{path}` must be a port range like 42000-42999, found \"{s}\""),
                Some("two port numbers from 1 to 65535, the first not above the second".into()),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{load, NoSecrets};
    use std::path::Path;

    fn load_text(extra: &str) -> Result<crate::config::Config, String> {
        let text = format!("version: 1\napp:\n  name: a\n{extra}");
        load(&text, Path::new("/etc/caretaker/caretaker.yml"), Some(0o600), &NoSecrets)
            .map(|l| l.config)
            .map_err(|d| d.render(&text))
    }

    #[test]
    fn defaults_without_a_section() {
        let c = load_text("").unwrap().clones;
        assert_eq!(c.max_ttl.as_secs(), 7 * 86400);
        assert_eq!(c.default_ttl.as_secs(), 3 * 86400);
        assert_eq!((c.max_count, c.max_disk, c.port_range), (3, None, (42000, 42999)));
    }

    #[test]
    fn section_is_read_and_checked() {
        let c = load_text(
            "clones:\n  env: { EMAIL_HOST: nowhere.invalid, BANNER: staging }\n  max_ttl: 1d\n  max_count: 2\n  max_disk: 5GiB\n  port_range: 43000-43009\n",
        )
        .unwrap()
        .clones;
        assert_eq!(c.env["EMAIL_HOST"].expose(), "nowhere.invalid");
        assert_eq!((c.max_ttl.as_secs(), c.default_ttl.as_secs()), (86400, 86400), "the default follows a lower max");
        assert_eq!((c.max_count, c.max_disk, c.port_range), (2, Some(5 << 30), (43000, 43009)));

        let e = load_text("clones:\n  max_ttl: 1d\n  default_ttl: 2d\n").unwrap_err();
        assert!(e.contains("`clones.default_ttl` (2d) is longer than `clones.max_ttl` (1d)"), "{e}");
        let e = load_text("clones:\n  port_range: 5000-4000\n").unwrap_err();
        assert!(e.contains("must be a port range like 42000-42999"), "{e}");
        let e = load_text("clones:\n  max_tll: 1d\n").unwrap_err();
        assert!(e.contains("max_tll"), "{e}");
    }
}
