//! Reading a YAML node tree into typed values while collecting every problem.
//!
//! serde stops at the first error; operators want all of them at once, each with its line and
//! column. So the config is read in two steps: `marked_yaml` parses the text into a tree of
//! nodes that remember their position, and the functions here walk that tree. Each reader
//! returns `Option<T>`: `None` means "a problem was recorded in [`Cx`]"; the caller keeps going
//! and the caller of the whole walk fails if any error was recorded.
//!
//! [`Map`] remembers which keys its reader asked for; [`Map::finish`] reports every other key
//! as unknown, with the closest known key as a suggestion. The list of known keys is therefore
//! the code that reads them, and cannot drift from it.

use super::diagnostic::{suggest, Diagnostic, Diagnostics, Location, Severity};
use super::secret::{Secret, SecretOrigin, SecretSource};
use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode};
use marked_yaml::{Node, Span};
use std::path::{Path, PathBuf};

/// The context of one config walk: where problems go, and how secrets are resolved.
pub struct Cx<'a> {
    pub file: String,
    pub base_dir: PathBuf,
    pub source: &'a dyn SecretSource,
    pub diagnostics: Diagnostics,
    /// The key under which the next mapping is read: problems with a mapping as a whole are
    /// reported at its key (`database:`), not somewhere inside it.
    pub anchor: Option<Span>,
}

pub fn location(span: &Span) -> Option<Location> {
    span.start().map(|m| Location { line: m.line(), column: m.column() })
}

impl<'a> Cx<'a> {
    pub fn error(&mut self, span: &Span, path: &str, message: impl Into<String>, hint: Option<String>) {
        self.push(Severity::Error, span, path, message.into(), hint);
    }

    pub fn warning(&mut self, span: &Span, path: &str, message: impl Into<String>, hint: Option<String>) {
        self.push(Severity::Warning, span, path, message.into(), hint);
    }

    fn push(&mut self, severity: Severity, span: &Span, path: &str, message: String, hint: Option<String>) {
        self.diagnostics.0.push(Diagnostic {
            severity,
            file: self.file.clone(),
            location: location(span),
            path: path.to_string(),
            message,
            hint,
        });
    }

    /// How many errors were recorded so far. A reader that leaves out a follow-up error when
    /// its own input already had one compares against the count taken when it started, never
    /// against "any error anywhere": an unknown key in one section must not hide a problem with
    /// a value in another ("every problem at once").
    pub fn error_count(&self) -> usize {
        self.diagnostics.errors().count()
    }

    /// A path from the config, resolved against the config file's directory.
    pub fn resolve_path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// Opens a mapping for reading its keys. Records a type error if `node` is not a mapping.
    pub fn map<'n>(&mut self, node: &'n Node, path: &str) -> Option<Map<'n>> {
        match node {
            Node::Mapping(m) => {
                let anchor = self.anchor.take().unwrap_or(*m.span());
                Some(Map { node: m, path: path.to_string(), asked: Vec::new(), anchor })
            }
            other => {
                self.error(
                    other.span(),
                    path,
                    format!("`{}` must be a mapping (key: value lines), found {}", display_path(path), kind_of(other)),
                    None,
                );
                None
            }
        }
    }
}

/// Shows a key path to a person; the root is called "the config file".
pub fn display_path(path: &str) -> &str {
    if path.is_empty() {
        "the config file"
    } else {
        path
    }
}

pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

pub fn kind_of(node: &Node) -> &'static str {
    match node {
        Node::Scalar(s) if is_null(s) => "an empty value",
        Node::Scalar(_) => "a single value",
        Node::Mapping(_) => "a mapping",
        Node::Sequence(_) => "a list",
    }
}

fn is_null(s: &MarkedScalarNode) -> bool {
    s.may_coerce() && matches!(s.as_str(), "" | "~" | "null" | "Null" | "NULL")
}

/// A mapping being read. Keys read through it count as known.
pub struct Map<'n> {
    pub node: &'n MarkedMappingNode,
    pub path: String,
    asked: Vec<&'static str>,
    anchor: Span,
}

impl<'n> Map<'n> {
    /// Where problems with the mapping as a whole are reported: its key.
    pub fn span(&self) -> &Span {
        &self.anchor
    }

    /// The span of the first of `keys` present in the mapping (e.g. whichever of `url`,
    /// `url_file`, `url_env` was given), for problems with a value read through it.
    pub fn first_key_span(&self, keys: &[&str]) -> Option<Span> {
        keys.iter().find_map(|k| self.key_span(k))
    }

    fn key_span(&self, key: &str) -> Option<Span> {
        self.node.iter().find(|(k, _)| k.as_str() == key).map(|(k, _)| *k.span())
    }

    /// The value of `key`, if present and not null. Marks `key` as known.
    pub fn get(&mut self, key: &'static str) -> Option<&'n Node> {
        self.asked.push(key);
        match self.node.get_node(key) {
            Some(Node::Scalar(s)) if is_null(s) => None,
            other => other,
        }
    }

    pub fn key_path(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// Reads an optional key with `read`; `None` when absent or invalid (invalid is recorded).
    pub fn opt<T>(
        &mut self,
        cx: &mut Cx,
        key: &'static str,
        read: impl FnOnce(&mut Cx, &'n Node, &str) -> Option<T>,
    ) -> Option<T> {
        let node = self.get(key)?;
        let path = self.key_path(key);
        cx.anchor = self.key_span(key);
        let v = read(cx, node, &path);
        cx.anchor = None;
        v
    }

    /// Reads a required key; records "missing key" at the mapping when absent.
    pub fn req<T>(
        &mut self,
        cx: &mut Cx,
        key: &'static str,
        hint: &str,
        read: impl FnOnce(&mut Cx, &'n Node, &str) -> Option<T>,
    ) -> Option<T> {
        match self.get(key) {
            Some(node) => {
                let path = self.key_path(key);
                cx.anchor = self.key_span(key);
                let v = read(cx, node, &path);
                cx.anchor = None;
                v
            }
            None => {
                cx.error(
                    self.span(),
                    &self.path,
                    format!("`{}` is missing the required key `{key}`", display_path(&self.path)),
                    (!hint.is_empty()).then(|| hint.to_string()),
                );
                None
            }
        }
    }

    /// Reads a secret given as `key`, `key_file` or `key_env` (exactly one).
    pub fn secret(
        &mut self,
        cx: &mut Cx,
        key: &'static str,
        key_file: &'static str,
        key_env: &'static str,
    ) -> Option<Secret> {
        let inline = self.get(key);
        let file = self.get(key_file);
        let env = self.get(key_env);
        let given: Vec<&str> =
            [(inline, key), (file, key_file), (env, key_env)].iter().filter_map(|(n, k)| n.map(|_| *k)).collect();
        if given.len() > 1 {
            let n = inline.or(file).or(env).unwrap();
            cx.error(
                n.span(),
                &self.key_path(key),
                format!("`{}` sets the secret `{key}` more than once ({})", display_path(&self.path), given.join(", ")),
                Some(format!("keep exactly one of `{key}`, `{key_file}` or `{key_env}`")),
            );
            return None;
        }
        if let Some(n) = inline {
            let v = string(cx, n, &self.key_path(key))?;
            return Some(Secret::new(v, SecretOrigin::Inline));
        }
        if let Some(n) = file {
            let path = self.key_path(key_file);
            let raw = string(cx, n, &path)?;
            let p = cx.resolve_path(&raw);
            if let Some(why) = cx.source.insecure(&p) {
                cx.error(
                    n.span(),
                    &path,
                    format!("secret file {}: {why}", p.display()),
                    Some(
                        "make it and its directories writable only by their owner (root or the user caretaker runs as)"
                            .into(),
                    ),
                );
                return None;
            }
            return match cx.source.read_file(&p) {
                Ok(text) => {
                    if let Some(mode) = cx.source.file_mode(&p) {
                        if mode & 0o004 != 0 {
                            cx.warning(
                                n.span(),
                                &path,
                                format!("secret file {} is readable by every user on this machine", p.display()),
                                Some(format!("run `chmod 600 {}`", p.display())),
                            );
                        }
                    }
                    let value = text.trim_end_matches(['\n', '\r']).to_string();
                    if value.is_empty() {
                        cx.error(n.span(), &path, format!("secret file {} is empty", p.display()), None);
                        return None;
                    }
                    Some(Secret::new(value, SecretOrigin::File(p)))
                }
                Err(why) => {
                    cx.error(
                        n.span(),
                        &path,
                        format!("cannot read secret file {}: {why}", p.display()),
                        Some("create the file (mode 0600) or point the key at the right file; relative paths are relative to the config file".into()),
                    );
                    None
                }
            };
        }
        if let Some(n) = env {
            let path = self.key_path(key_env);
            let var = string(cx, n, &path)?;
            return match cx.source.env_var(&var) {
                Some(v) if !v.is_empty() => Some(Secret::new(v, SecretOrigin::Env(var))),
                _ => {
                    cx.error(
                        n.span(),
                        &path,
                        format!("environment variable `{var}` is not set (or empty)"),
                        Some(format!(
                            "export {var} in caretaker's environment, e.g. in the systemd unit's EnvironmentFile"
                        )),
                    );
                    None
                }
            };
        }
        None
    }

    /// Reports every key that was not asked for, with a suggestion.
    pub fn finish(self, cx: &mut Cx) {
        for (k, _) in self.node.iter() {
            let key = k.as_str();
            if !self.asked.contains(&key) {
                let hint = match suggest(key, self.asked.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => {
                        let mut known: Vec<&str> = self.asked.clone();
                        known.sort();
                        known.dedup();
                        format!("known keys here: {}", known.join(", "))
                    }
                };
                cx.error(
                    k.span(),
                    &join(&self.path, key),
                    format!("unknown key `{key}` in `{}`", display_path(&self.path)),
                    Some(hint),
                );
            }
        }
    }
}

// ---- readers for single values -------------------------------------------------------------

fn scalar<'n>(cx: &mut Cx, node: &'n Node, path: &str, expected: &str) -> Option<&'n MarkedScalarNode> {
    match node {
        Node::Scalar(s) => Some(s),
        other => {
            cx.error(other.span(), path, format!("`{path}` must be {expected}, found {}", kind_of(other)), None);
            None
        }
    }
}

pub fn string(cx: &mut Cx, node: &Node, path: &str) -> Option<String> {
    scalar(cx, node, path, "a string").map(|s| s.as_str().to_string())
}

/// A string that must not be empty or blank.
pub fn nonempty(cx: &mut Cx, node: &Node, path: &str) -> Option<String> {
    let s = string(cx, node, path)?;
    if s.trim().is_empty() {
        cx.error(node.span(), path, format!("`{path}` must not be empty"), None);
        return None;
    }
    Some(s)
}

pub fn boolean(cx: &mut Cx, node: &Node, path: &str) -> Option<bool> {
    let s = scalar(cx, node, path, "true or false")?;
    match s.as_bool() {
        Some(b) => Some(b),
        None => {
            let hint = match s.as_str() {
                "yes" | "on" | "Yes" | "On" => Some("write `true`".to_string()),
                "no" | "off" | "No" | "Off" => Some("write `false`".to_string()),
                _ => None,
            };
            cx.error(node.span(), path, format!("`{path}` must be true or false, found \"{}\"", s.as_str()), hint);
            None
        }
    }
}

pub fn unsigned(cx: &mut Cx, node: &Node, path: &str) -> Option<u64> {
    let s = scalar(cx, node, path, "a whole number")?;
    match s.as_str().replace('_', "").parse::<u64>() {
        Ok(n) if s.may_coerce() => Some(n),
        _ => {
            cx.error(node.span(), path, format!("`{path}` must be a whole number, found \"{}\"", s.as_str()), None);
            None
        }
    }
}

/// A whole number within `range` (inclusive).
pub fn bounded(cx: &mut Cx, node: &Node, path: &str, min: u64, max: u64) -> Option<u64> {
    let n = unsigned(cx, node, path)?;
    if n < min || n > max {
        cx.error(node.span(), path, format!("`{path}` must be between {min} and {max}, found {n}"), None);
        return None;
    }
    Some(n)
}

pub fn number(cx: &mut Cx, node: &Node, path: &str) -> Option<f64> {
    let s = scalar(cx, node, path, "a number")?;
    match s.as_str().parse::<f64>() {
        Ok(n) if s.may_coerce() && n.is_finite() => Some(n),
        _ => {
            cx.error(node.span(), path, format!("`{path}` must be a number, found \"{}\"", s.as_str()), None);
            None
        }
    }
}

pub fn duration(cx: &mut Cx, node: &Node, path: &str) -> Option<std::time::Duration> {
    let s = scalar(cx, node, path, "a duration like 30s, 15m, 32h or 3d")?;
    match crate::duration::parse_duration(s.as_str()) {
        Ok(d) => Some(d),
        Err(e) => {
            cx.error(node.span(), path, format!("`{path}`: {}", e.message), Some(e.hint));
            None
        }
    }
}

pub fn schedule(cx: &mut Cx, node: &Node, path: &str) -> Option<crate::schedule::Schedule> {
    let s = scalar(cx, node, path, "a schedule like \"daily 00:30\"")?;
    match crate::schedule::parse_schedule(s.as_str()) {
        Ok(sch) => Some(sch),
        Err(e) => {
            cx.error(node.span(), path, format!("`{path}`: {}", e.message), Some(e.hint));
            None
        }
    }
}

/// One of a fixed set of words, with a suggestion for typos.
pub fn choice<T: Copy>(cx: &mut Cx, node: &Node, path: &str, choices: &[(&str, T)]) -> Option<T> {
    let s = scalar(cx, node, path, "one word")?;
    let word = s.as_str();
    if let Some((_, v)) = choices.iter().find(|(w, _)| w.eq_ignore_ascii_case(word)) {
        return Some(*v);
    }
    let names: Vec<&str> = choices.iter().map(|(w, _)| *w).collect();
    let hint = match suggest(word, names.iter().copied()) {
        Some(s) => format!("did you mean `{s}`?"),
        None => format!("use one of: {}", names.join(", ")),
    };
    cx.error(node.span(), path, format!("`{path}` has an unknown value \"{word}\""), Some(hint));
    None
}

/// A list of items; a single scalar is accepted as a list of one when `allow_single`.
pub fn list<'n, T>(
    cx: &mut Cx,
    node: &'n Node,
    path: &str,
    mut item: impl FnMut(&mut Cx, &'n Node, &str) -> Option<T>,
) -> Option<Vec<T>> {
    match node {
        Node::Sequence(seq) => {
            let mut out = Vec::with_capacity(seq.len());
            let mut ok = true;
            for (i, n) in seq.iter().enumerate() {
                cx.anchor = None;
                match item(cx, n, &format!("{path}[{i}]")) {
                    Some(v) => out.push(v),
                    None => ok = false,
                }
            }
            ok.then_some(out)
        }
        other => {
            cx.error(
                other.span(),
                path,
                format!("`{path}` must be a list, found {}", kind_of(other)),
                Some("write `[a, b]` or one `- item` per line".into()),
            );
            None
        }
    }
}

/// A mapping with free-form keys (service names, env var names), in file order.
pub fn entries<'n, T>(
    cx: &mut Cx,
    node: &'n Node,
    path: &str,
    mut value: impl FnMut(&mut Cx, &'n MarkedScalarNode, &'n Node, &str) -> Option<T>,
) -> Option<Vec<T>> {
    let Node::Mapping(m) = node else {
        cx.error(
            node.span(),
            path,
            format!("`{path}` must be a mapping (name: value lines), found {}", kind_of(node)),
            None,
        );
        return None;
    };
    let mut out = Vec::with_capacity(m.len());
    let mut ok = true;
    for (k, v) in m.iter() {
        cx.anchor = Some(*k.span());
        match value(cx, k, v, &join(path, k.as_str())) {
            Some(x) => out.push(x),
            None => ok = false,
        }
    }
    ok.then_some(out)
}
