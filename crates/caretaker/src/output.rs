//! Rendering for people: aligned tables, YAML for `config show`, human durations and sizes.

use serde_json::Value;
use std::fmt::Write as _;

/// Left-aligned columns separated by two spaces; the header is the first row.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> =
        (0..cols).map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = widths[c]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Block-style YAML for a JSON value (the shapes `config show` prints: maps, lists, scalars).
pub fn yaml(value: &Value) -> String {
    let mut out = String::new();
    write_yaml(&mut out, value, 0, false);
    out
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => {
            let plain = !s.is_empty()
                && !s.starts_with(|c: char| " -?:,[]{}#&*!|>'\"%@`~".contains(c))
                && s.parse::<f64>().is_err()
                && !s.ends_with(' ')
                && !s.contains(": ")
                && !s.contains(" #")
                && !s.contains('\n')
                && !["true", "false", "null", "yes", "no", "on", "off", "~"].contains(&s.to_ascii_lowercase().as_str());
            if plain {
                s.clone()
            } else {
                serde_json::to_string(s).unwrap_or_default()
            }
        }
        _ => unreachable!("only scalars"),
    }
}

fn write_yaml(out: &mut String, v: &Value, indent: usize, in_list: bool) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (i, (k, val)) in map.iter().enumerate() {
                let prefix = if in_list && i == 0 { String::new() } else { pad.clone() };
                match val {
                    Value::Object(m) if !m.is_empty() => {
                        let _ = writeln!(out, "{prefix}{k}:");
                        write_yaml(out, val, indent + 2, false);
                    }
                    Value::Array(a) if !a.is_empty() => {
                        let _ = writeln!(out, "{prefix}{k}:");
                        write_yaml(out, val, indent + 2, false);
                    }
                    Value::Object(_) => {
                        let _ = writeln!(out, "{prefix}{k}: {{}}");
                    }
                    Value::Array(_) => {
                        let _ = writeln!(out, "{prefix}{k}: []");
                    }
                    _ => {
                        let _ = writeln!(out, "{prefix}{k}: {}", scalar(val));
                    }
                }
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for item in items {
                match item {
                    Value::Object(m) if !m.is_empty() => {
                        let _ = write!(out, "{pad}- ");
                        write_yaml(out, item, indent + 2, true);
                    }
                    Value::Array(a) if !a.is_empty() => {
                        let _ = writeln!(out, "{pad}-");
                        write_yaml(out, item, indent + 2, false);
                    }
                    Value::Object(_) => {
                        let _ = writeln!(out, "{pad}- {{}}");
                    }
                    Value::Array(_) => {
                        let _ = writeln!(out, "{pad}- []");
                    }
                    _ => {
                        let _ = writeln!(out, "{pad}- {}", scalar(item));
                    }
                }
            }
        }
        Value::Object(_) => out.push_str("{}\n"),
        Value::Array(_) => out.push_str("[]\n"),
        other => {
            let _ = writeln!(out, "{pad}{}", scalar(other));
        }
    }
}

/// "1.2s", "3m 05s", "2h 10m".
pub fn human_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{:.1}s", d.as_secs_f64())
    } else if s < 3600 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        format!("{}h {:02}m", s / 3600, (s % 3600) / 60)
    }
}

/// An operation's progress on the terminal: lines to stdout, warnings to stderr.
pub struct TerminalProgress;

impl caretaker_app::Progress for TerminalProgress {
    fn line(&mut self, line: &str) {
        println!("{line}");
    }

    fn warning(&mut self, warning: &str) {
        eprintln!("warning: {warning}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yaml_output_round_trips_through_the_config_loader_shapes() {
        let v = json!({"version": 1, "app": {"name": "x", "build": ["pip install", "make"], "env": {}},
                       "files": [{"path": "/srv", "allow_empty": false}], "note": "a: b", "n": null});
        let expected = "version: 1\napp:\n  name: x\n  build:\n    - pip install\n    - make\n  env: {}\nfiles:\n  - path: /srv\n    allow_empty: false\nnote: \"a: b\"\nn: null\n";
        assert_eq!(yaml(&v), expected);
    }

    #[test]
    fn table_aligns_columns() {
        let t = table(&[vec!["ID".into(), "KIND".into()], vec!["10".into(), "backup".into()]]);
        assert_eq!(t, "ID  KIND\n10  backup\n");
    }
}
