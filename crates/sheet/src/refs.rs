//! Secrets the config points at instead of holding (pure): a sheet of such a config does not
//! recover them, so `config sheet` says which ones to keep with it.

/// `(line number, key)` for every `*_file:` / `*_env:` / `env_files:` key outside comments.
pub fn external_references(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split(" #").next().unwrap_or("");
        if code.trim_start().starts_with('#') {
            continue;
        }
        let mut key = String::new();
        for ch in code.chars() {
            if ch.is_ascii_alphanumeric() || ch == '_' {
                key.push(ch);
                continue;
            }
            if ch == ':' && (key.ends_with("_file") || key.ends_with("_env") || key == "env_files") {
                out.push((n + 1, key.clone()));
            }
            key.clear();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_point_at_files_or_environment_variables_are_found() {
        let text = "app:\n  env:\n    A: { secret_env: X }\n    B: { secret: inline }\n  env_files: [/etc/app.env]\n# password_file: /old\nbackup:\n  password_file: /etc/caretaker/backup.key # key_file: no\n";
        assert_eq!(
            external_references(text),
            vec![(3, "secret_env".to_string()), (5, "env_files".to_string()), (8, "password_file".to_string())]
        );
    }
}
