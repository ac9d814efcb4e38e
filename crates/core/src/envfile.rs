//! Parsing `.env` files (`KEY=value` lines), the way Django projects keep their settings.
//!
//! Accepted: comments (`#`), blank lines, an optional `export ` prefix, values in single
//! quotes (taken literally), double quotes (with `\n`, `\"`, `\\` escapes) or bare (trailing
//! ` #comment` removed, surrounding spaces trimmed). No variable expansion: what is written is
//! what the app gets.

/// A problem in an env file, with its 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvFileError {
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for EnvFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

pub fn parse_env_file(text: &str) -> Result<Vec<(String, String)>, EnvFileError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err(EnvFileError { line: line_no, message: format!("expected KEY=value, found \"{line}\"") });
        };
        let key = key.trim();
        if key.is_empty()
            || key.starts_with(|c: char| c.is_ascii_digit())
            || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(EnvFileError { line: line_no, message: format!("\"{key}\" is not a valid variable name") });
        }
        let value = value.trim_start();
        let value = if let Some(rest) = value.strip_prefix('\'') {
            match rest.find('\'') {
                Some(end) => rest[..end].to_string(),
                None => return Err(EnvFileError { line: line_no, message: "unterminated single quote".into() }),
            }
        } else if let Some(rest) = value.strip_prefix('"') {
            let mut s = String::new();
            let mut chars = rest.chars();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '"' => {
                        closed = true;
                        break;
                    }
                    '\\' => match chars.next() {
                        Some('n') => s.push('\n'),
                        Some('t') => s.push('\t'),
                        Some(other) => s.push(other),
                        None => break,
                    },
                    c => s.push(c),
                }
            }
            if !closed {
                return Err(EnvFileError { line: line_no, message: "unterminated double quote".into() });
            }
            s
        } else {
            let v = match value.find(" #") {
                Some(pos) => &value[..pos],
                None => value,
            };
            v.trim().to_string()
        };
        out.push((key.to_string(), value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_usual_forms() {
        let text = "# Django\nDJANGO_SETTINGS_MODULE=config.settings.production\nexport A = 'lit $X # not comment'\nB=\"two\\nlines\"\nC=bare value # comment\n\nEMPTY=\n";
        let got = parse_env_file(text).unwrap();
        assert_eq!(
            got,
            vec![
                ("DJANGO_SETTINGS_MODULE".into(), "config.settings.production".into()),
                ("A".into(), "lit $X # not comment".into()),
                ("B".into(), "two\nlines".into()),
                ("C".into(), "bare value".into()),
                ("EMPTY".into(), "".into()),
            ]
        );
    }

    #[test]
    fn reports_the_line_of_a_bad_entry() {
        assert_eq!(parse_env_file("A=1\nnot a pair\n").unwrap_err().line, 2);
        assert_eq!(parse_env_file("1A=x\n").unwrap_err().line, 1);
        assert!(parse_env_file("A=\"open\n").is_err());
    }
}
