//! Release images, the pure part: what caretaker names the image of a service for a release,
//! the compose override file that pins each service to it, and which of those images a cleanup
//! may remove (docs/compose.md).
//!
//! Every release gets its own tag (`caretaker/<project>/<service>:<release>`; `/` cannot occur in
//! project or service names, so no project's images look like another's), so the previous
//! release's images stay in place for a rollback, and switching the release directory (whose
//! pin file names the images) switches the images compose runs.

/// The image of `service` in `release` of `project`.
pub fn release_image(project: &str, service: &str, release: &str) -> String {
    format!("{}:{release}", release_repository(project, service))
}

/// The repository part of [`release_image`] (docker wants it lowercase).
pub fn release_repository(project: &str, service: &str) -> String {
    format!("caretaker/{project}/{service}").to_ascii_lowercase()
}

/// The prefix of every release image of `project` (for listing them).
pub fn release_prefix(project: &str) -> String {
    format!("caretaker/{project}/").to_ascii_lowercase()
}

/// The empty image volume helper containers are made from (docs/compose.md).
pub fn helper_image(project: &str) -> String {
    format!("caretaker/{project}:volume-helper").to_ascii_lowercase()
}

/// The compose override file pinning each service (`pins`: service, image) for `release`.
/// `version` is the compose file's `version:` (compose v1 wants every file to agree).
pub fn pins_yaml(version: Option<&str>, release: &str, pins: &[(String, String)]) -> String {
    let mut out = format!(
        "# Written by caretaker for release {release}: the image of each service built or pulled\n# for it (docs/compose.md). Do not edit; the next update writes its own.\n"
    );
    if let Some(v) = version {
        out.push_str(&format!("version: {}\n", quote(v)));
    }
    if pins.is_empty() {
        out.push_str("services: {}\n");
    } else {
        out.push_str("services:\n");
        for (service, image) in pins {
            out.push_str(&format!("  {}:\n    image: {}\n", quote(service), quote(image)));
        }
    }
    out
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Release images to remove: those of `project` whose release is not in `keep` and that no
/// container uses. `images`: (repository:tag) of every release image of the project.
pub fn images_to_remove(images: &[String], project: &str, keep: &[String], in_use: &[String]) -> Vec<String> {
    let prefix = release_prefix(project);
    images
        .iter()
        .filter(|r| r.starts_with(&prefix))
        .filter(|r| r.rsplit_once(':').is_some_and(|(_, tag)| !keep.iter().any(|k| k == tag)))
        .filter(|r| !in_use.contains(r))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_pins_and_removal() {
        assert_eq!(release_image("gb", "Web", "3-abc"), "caretaker/gb/web:3-abc");
        let y = pins_yaml(Some("3.7"), "3-abc", &[("web".into(), "caretaker/gb/web:3-abc".into())]);
        assert!(y.contains("version: \"3.7\"\nservices:\n  \"web\":\n    image: \"caretaker/gb/web:3-abc\"\n"), "{y}");
        assert!(pins_yaml(None, "1-a", &[]).ends_with("services: {}\n"));
        let all: Vec<String> = [
            "caretaker/gb/web:1-a",
            "caretaker/gb/web:2-b",
            "caretaker/gb/worker:3-c",
            "caretaker/gb-x/web:1-a",
            "other:1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let keep = vec!["2-b".to_string(), "3-c".to_string()];
        assert_eq!(images_to_remove(&all, "gb", &keep, &[]), ["caretaker/gb/web:1-a"]);
        assert!(images_to_remove(&all, "gb", &keep, &["caretaker/gb/web:1-a".into()]).is_empty());
    }
}
