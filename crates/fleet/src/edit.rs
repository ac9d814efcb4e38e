//! `caretaker fleet add|remove`: edits of fleet.yml as text, so the operator's comments and
//! layout stay. Pure: old text in, new text out. Every edit is checked by parsing the result and
//! comparing it with what was meant; an edit that would come out different (an unusual layout,
//! flow-style lists) is refused with a message rather than written.

use crate::inventory::{parse, Server};
use crate::{Error, ErrorKind};

/// The YAML lines of one server entry, as `fleet add` writes it.
pub fn server_yaml(s: &Server) -> String {
    let mut out = format!("  - name: {}\n    host: {}\n", quote(&s.name), quote(&s.ssh.host));
    if s.ssh.port != 22 {
        out += &format!("    port: {}\n", s.ssh.port);
    }
    if let Some(u) = &s.ssh.user {
        out += &format!("    user: {}\n", quote(u));
    }
    if let Some(j) = &s.jump {
        out += &format!("    jump: {}\n", quote(&j.to_string()));
    }
    if s.transient {
        out += "    transient: true\n";
    }
    if !s.groups.is_empty() {
        out += &format!("    groups: [{}]\n", s.groups.iter().map(|g| quote(g)).collect::<Vec<_>>().join(", "));
    }
    if s.caretaker_path != "caretaker" {
        out += &format!("    caretaker_path: {}\n", quote(&s.caretaker_path));
    }
    if let Some(c) = &s.config {
        out += &format!("    config: {}\n", quote(c));
    }
    if let Some(k) = &s.identity_file {
        out += &format!("    identity_file: {}\n", quote(k));
    }
    out
}

/// A YAML scalar, quoted when plain style would change its meaning.
fn quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | '@' | ':' | '[' | ']'))
        && !s.starts_with(['-', '[', ':', '@'])
        && !s.contains(": ")
        && !matches!(s, "true" | "false" | "yes" | "no" | "null" | "~")
        && s.parse::<f64>().is_err();
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).expect("a string serializes")
    }
}

/// A new fleet.yml.
pub fn new_file() -> String {
    "# caretaker fleet inventory (docs/fleet.md)\nversion: 1\nservers:\n".to_string()
}

/// fleet.yml with `server` appended to `servers:`.
pub fn add(text: &str, server: &Server, file: &str) -> Result<String, Error> {
    let inv = parse(text, file).map_err(|d| invalid(file, &d))?;
    if inv.server(&server.name).is_some() {
        return Err(Error::new(ErrorKind::Inventory, format!("{file} already has a server `{}`", server.name))
            .hint("remove it first (`caretaker fleet remove NAME`) or choose another name"));
    }
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let block = server_yaml(server);
    let new = match lines.iter().position(|l| l.trim_end() == "servers:" || l.trim_end() == "servers: []") {
        None => {
            let mut t = text.to_string();
            if !t.is_empty() && !t.ends_with('\n') {
                t.push('\n');
            }
            t + "servers:\n" + &block
        }
        Some(i) => {
            // The list ends at the next line that starts a top-level key.
            let end = (i + 1..lines.len())
                .find(|&j| {
                    let l = lines[j];
                    !l.starts_with([' ', '\t', '-', '#', '\n', '\r']) && !l.trim().is_empty()
                })
                .unwrap_or(lines.len());
            // Keep trailing comments and blank lines after the last entry where they are.
            let mut at = end;
            while at > i + 1 && (lines[at - 1].trim().is_empty() || lines[at - 1].trim_start().starts_with('#')) {
                at -= 1;
            }
            let mut out = String::new();
            for (j, l) in lines.iter().enumerate() {
                if j == i {
                    out += "servers:\n";
                    if i + 1 == at {
                        out += &block;
                    }
                    continue;
                }
                out += l;
                if j + 1 == at && j != i {
                    if !l.ends_with('\n') {
                        out.push('\n');
                    }
                    out += &block;
                }
            }
            out
        }
    };
    let mut want = inv.servers.clone();
    want.push(server.clone());
    check(&new, file, &want)?;
    Ok(new)
}

/// fleet.yml without the server `name` (its lines, and the comment lines right above it).
pub fn remove(text: &str, name: &str, file: &str) -> Result<String, Error> {
    let inv = parse(text, file).map_err(|d| invalid(file, &d))?;
    inv.require(name)?;
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let is_item = |l: &str| l.trim_start().starts_with("- ");
    let indent = |l: &str| l.len() - l.trim_start().len();
    // The item whose `name:` is `name`: the `- ` line at or above the `name:` line.
    let mut start = None;
    for (j, l) in lines.iter().enumerate() {
        let t = l.trim_start().trim_start_matches("- ").trim();
        if let Some(v) = t.strip_prefix("name:") {
            if unquote(v.trim()) == name {
                start = (0..=j).rev().find(|&k| is_item(lines[k]));
                break;
            }
        }
    }
    let Some(start) = start else {
        return Err(refuse(file, "the server's entry was not found as a `- name:` block"));
    };
    let item_indent = indent(lines[start]);
    let end = (start + 1..lines.len())
        .find(|&j| {
            let l = lines[j];
            !l.trim().is_empty() && !l.trim_start().starts_with('#') && indent(l) <= item_indent
        })
        .unwrap_or(lines.len());
    // Trailing blank/comment lines before the next item belong to the next item.
    let mut end_kept = end;
    while end_kept > start + 1
        && (lines[end_kept - 1].trim().is_empty() || lines[end_kept - 1].trim_start().starts_with('#'))
    {
        end_kept -= 1;
    }
    let mut begin = start;
    while begin > 0 && lines[begin - 1].trim_start().starts_with('#') && indent(lines[begin - 1]) >= item_indent {
        begin -= 1;
    }
    let new: String = lines[..begin].concat() + &lines[end_kept..].concat();
    let want: Vec<Server> = inv.servers.iter().filter(|s| s.name != name).cloned().collect();
    check(&new, file, &want)?;
    Ok(new)
}

fn unquote(v: &str) -> String {
    let v = v.split(" #").next().unwrap_or(v).trim();
    if v.len() >= 2 && ((v.starts_with('"') && v.ends_with('"')) || (v.starts_with('\'') && v.ends_with('\''))) {
        v[1..v.len() - 1].to_string()
    } else {
        v.to_string()
    }
}

fn check(new: &str, file: &str, want: &[Server]) -> Result<(), Error> {
    match parse(new, file) {
        Ok(inv) if inv.servers == want => Ok(()),
        _ => Err(refuse(file, "editing it as text would not give the intended list of servers")),
    }
}

fn refuse(file: &str, why: &str) -> Error {
    Error::new(ErrorKind::Inventory, format!("cannot edit {file} safely: {why}; nothing was changed"))
        .hint("edit the file by hand (block-style `servers:` list, one `- name:` entry per server)")
}

fn invalid(file: &str, d: &caretaker_core::config::Diagnostics) -> Error {
    let first = d.errors().next().map(ToString::to_string).unwrap_or_default();
    Error::new(ErrorKind::Inventory, format!("{file} is not valid: {first}")).hint("fix it first; nothing was changed")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Endpoint;

    fn srv(name: &str) -> Server {
        let mut s = Server::new(name, Endpoint::parse(&format!("root@{name}.example:2222")).unwrap());
        s.groups = vec!["web".into()];
        s
    }

    #[test]
    fn add_and_remove_keep_comments() {
        let text = "# my fleet\nversion: 1\nservers:\n  # the web server\n  - name: web1\n    host: 192.0.2.1 # primary\n\n  # the database\n  - name: db1\n    host: 192.0.2.2\n# trailing note\nmax_reboots: 2\n";
        let added = add(text, &srv("web2"), "fleet.yml").unwrap();
        expect_test::expect![[r#"
            # my fleet
            version: 1
            servers:
              # the web server
              - name: web1
                host: 192.0.2.1 # primary

              # the database
              - name: db1
                host: 192.0.2.2
              - name: web2
                host: web2.example
                port: 2222
                user: root
                groups: [web]
            # trailing note
            max_reboots: 2
        "#]]
        .assert_eq(&added);
        let removed = remove(&added, "web1", "fleet.yml").unwrap();
        expect_test::expect![[r#"
            # my fleet
            version: 1
            servers:

              # the database
              - name: db1
                host: 192.0.2.2
              - name: web2
                host: web2.example
                port: 2222
                user: root
                groups: [web]
            # trailing note
            max_reboots: 2
        "#]]
        .assert_eq(&removed);
        let e = add(&added, &srv("web2"), "fleet.yml").unwrap_err();
        assert!(e.message.contains("already has"));
        let e = remove(&added, "nope", "fleet.yml").unwrap_err();
        assert!(e.message.contains("no server `nope`"));
    }

    #[test]
    fn add_to_new_and_empty_files() {
        let t = add(&new_file(), &srv("a"), "f").unwrap();
        let t = add(&t, &srv("b"), "f").unwrap();
        assert_eq!(parse(&t, "f").unwrap().servers.len(), 2);
        let t = add("version: 1\n", &srv("a"), "f").unwrap();
        assert_eq!(parse(&t, "f").unwrap().servers[0].name, "a");
        let t = remove(&t, "a", "f").unwrap();
        assert!(parse(&t, "f").unwrap().servers.is_empty());
    }

    #[test]
    fn refuses_flow_style() {
        let e = add("servers: [{name: a}]\n", &srv("b"), "f").unwrap_err();
        assert!(e.message.contains("cannot edit f safely"), "{}", e.message);
    }
}
