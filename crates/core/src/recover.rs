//! Disaster recovery, the pure part: where the app's code comes from when `caretaker recover`
//! rebuilds a machine ([`plan_code`]), reading the commit a backup snapshot records
//! ([`snapshot_commit`]), and the persisted [`Progress`] that lets the next `recover` finish
//! an interrupted one ([`Progress::database_plan`]). The binary observes, this module decides
//! (docs/backup.md).

use serde::{Deserialize, Serialize};

/// The snapshot tag that records the commit the app ran when the snapshot was taken.
pub const COMMIT_TAG_PREFIX: &str = "app-commit:";

/// The snapshot tag of `commit`.
pub fn commit_tag(commit: &str) -> String {
    format!("{COMMIT_TAG_PREFIX}{commit}")
}

/// The commit a snapshot's tags record, if any (the first well-formed `app-commit:` tag: hex,
/// 7 to 64 characters).
pub fn snapshot_commit(tags: &[String]) -> Option<&str> {
    tags.iter()
        .filter_map(|t| t.strip_prefix(COMMIT_TAG_PREFIX))
        .find(|c| (7..=64).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// What `recover` found out about the app's code before planning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeObservations {
    /// The directory the app runs in (its working directory, or a compose app's project
    /// directory) exists and is not empty.
    pub release_present: bool,
    /// The config has `app.source` (a git repository).
    pub has_source: bool,
    /// The reference the config names (`app.source`'s branch, tag or commit).
    pub configured_ref: Option<String>,
    /// The commit the snapshot records (`app-commit:` tag).
    pub snapshot_commit: Option<String>,
    /// `--ref REF`: deploy this reference instead of the snapshot's commit.
    pub requested_ref: Option<String>,
    /// `--redeploy`: rebuild the release even when one is present.
    pub redeploy: bool,
}

/// Why a release is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeployReason {
    /// No release on this machine.
    Missing,
    /// `--redeploy`.
    Redeploy,
    /// `--ref`.
    Requested,
}

/// Which reference a deployment fetches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefOrigin {
    /// The commit the snapshot records: the code the data belongs to.
    Snapshot,
    /// `--ref`.
    Requested,
    /// The snapshot records no commit (taken before caretaker recorded it, or of an app not
    /// deployed by `caretaker update`): the config's reference, migrated forward afterwards.
    Configured,
}

/// The code step of `recover`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CodePlan {
    /// Run the release that is there.
    UsePresent,
    /// Fetch `reference` from the source, build a release the way `update` does and point
    /// `current` at it.
    Deploy { reference: String, origin: RefOrigin, reason: DeployReason },
    /// Nothing can be done: the message says why and what to do. Nothing may be changed.
    Refuse { reason: String, hint: String },
}

/// Decides where the code comes from. Without a source a release cannot be built: a missing
/// release, `--ref` or `--redeploy` is refused before anything is touched.
pub fn plan_code(obs: &CodeObservations) -> CodePlan {
    let reason = match (&obs.requested_ref, obs.redeploy, obs.release_present) {
        (Some(_), _, _) => DeployReason::Requested,
        (None, true, _) => DeployReason::Redeploy,
        (None, false, true) => return CodePlan::UsePresent,
        (None, false, false) => DeployReason::Missing,
    };
    if !obs.has_source {
        let (reason, hint) = match reason {
            DeployReason::Missing => (
                "the app's code is not on this machine (its working directory is missing or empty) and the config has no app.source to fetch it from".to_string(),
                "put the release where app.working_dir (or compose.project_dir) points, or add app: { source: { git: <url or path>, branch: main } } and point app.working_dir at <state dir>/current".to_string(),
            ),
            DeployReason::Redeploy | DeployReason::Requested => (
                format!(
                    "{} needs app.source: the config names no git repository to build a release from",
                    if reason == DeployReason::Redeploy { "--redeploy" } else { "--ref" }
                ),
                "add app: { source: { git: <url or path>, branch: main } }".to_string(),
            ),
        };
        return CodePlan::Refuse { reason, hint };
    }
    let (reference, origin) = match (&obs.requested_ref, &obs.snapshot_commit, &obs.configured_ref) {
        (Some(r), _, _) => (r.clone(), RefOrigin::Requested),
        (None, Some(c), _) => (c.clone(), RefOrigin::Snapshot),
        (None, None, Some(r)) => (r.clone(), RefOrigin::Configured),
        (None, None, None) => {
            return CodePlan::Refuse {
                reason: "the snapshot records no commit and app.source names no branch, tag or commit".into(),
                hint: "name the code to deploy with --ref REF".into(),
            }
        }
    };
    CodePlan::Deploy { reference, origin, reason }
}

/// The steps of `recover` that change something, in order. Progress is persisted before each
/// begins and after each ends.
pub const STEPS: [&str; 7] = ["inspect", "code", "files", "database", "volumes", "migrate", "start"];

/// An unfinished `recover`, persisted in the state store (fact `recover.progress`) from before
/// its live-data inspection until it succeeds. What it wrote after the inspection passed is its
/// own data, not live data: the next `recover` finishes the job without `--force`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// The job that started it (the first of the runs).
    pub job_id: i64,
    /// The snapshot being recovered (full id): a resumed run uses the same one.
    pub snapshot: String,
    /// `--force` of the first run: live data found by the inspection was moved aside.
    pub force: bool,
    /// Steps finished.
    pub done: Vec<String>,
    /// Steps begun (finished or not).
    pub begun: Vec<String>,
    /// When the database step began, the live database held tables (only with `--force`:
    /// the inspection refuses them otherwise). Then what is live after an interruption may
    /// still be that data, and nothing may be dropped.
    pub database_was_live: bool,
}

/// How the database step restores, from the progress of an earlier, interrupted run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatabasePlan {
    /// Into an empty database (tables there are refused: live data).
    IntoEmpty,
    /// Replace what is there, keeping it aside (`--force`).
    ReplaceKeepingOld,
    /// The interrupted run restored (part of) the database itself, into a database that held
    /// no tables: replace it and drop the copy of it the restore keeps aside — it was this
    /// job's own, possibly partial, data.
    ReplaceOwn,
}

impl Progress {
    pub fn is_done(&self, step: &str) -> bool {
        self.done.iter().any(|s| s == step)
    }

    pub fn was_begun(&self, step: &str) -> bool {
        self.begun.iter().any(|s| s == step)
    }

    pub fn begin(&mut self, step: &str) {
        if !self.was_begun(step) {
            self.begun.push(step.to_string());
        }
    }

    pub fn finish(&mut self, step: &str) {
        self.begin(step);
        if !self.is_done(step) {
            self.done.push(step.to_string());
        }
    }

    /// Whether what a step finds on disk after the inspection is this job's own doing: the
    /// inspection passed (nothing live was there, or `--force` moved it aside).
    pub fn owns_what_is_there(&self) -> bool {
        self.is_done("inspect")
    }

    /// How to restore the database now. `live_now`: the database holds tables now.
    pub fn database_plan(&self, live_now: bool) -> DatabasePlan {
        let resumed = self.was_begun("database");
        match (resumed, self.database_was_live, live_now) {
            // An interrupted forced restore: what is live may be the old data still; keep it.
            (true, true, _) => DatabasePlan::ReplaceKeepingOld,
            (true, false, true) if self.owns_what_is_there() => DatabasePlan::ReplaceOwn,
            _ if self.force => DatabasePlan::ReplaceKeepingOld,
            _ => DatabasePlan::IntoEmpty,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs() -> CodeObservations {
        CodeObservations {
            release_present: false,
            has_source: true,
            configured_ref: Some("main".into()),
            snapshot_commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
            requested_ref: None,
            redeploy: false,
        }
    }

    fn deploy(reference: &str, origin: RefOrigin, reason: DeployReason) -> CodePlan {
        CodePlan::Deploy { reference: reference.into(), origin, reason }
    }

    #[test]
    fn the_code_comes_from_the_release_present_or_the_snapshots_commit() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        let cases: Vec<(&str, CodeObservations, CodePlan)> = vec![
            ("present", CodeObservations { release_present: true, ..obs() }, CodePlan::UsePresent),
            (
                "present, no source",
                CodeObservations { release_present: true, has_source: false, ..obs() },
                CodePlan::UsePresent,
            ),
            ("missing → the snapshot's commit", obs(), deploy(sha, RefOrigin::Snapshot, DeployReason::Missing)),
            (
                "missing, snapshot without a commit → the configured ref",
                CodeObservations { snapshot_commit: None, ..obs() },
                deploy("main", RefOrigin::Configured, DeployReason::Missing),
            ),
            (
                "present but --redeploy",
                CodeObservations { release_present: true, redeploy: true, ..obs() },
                deploy(sha, RefOrigin::Snapshot, DeployReason::Redeploy),
            ),
            (
                "--ref wins over the snapshot",
                CodeObservations { release_present: true, requested_ref: Some("v3".into()), ..obs() },
                deploy("v3", RefOrigin::Requested, DeployReason::Requested),
            ),
            (
                "--ref and --redeploy",
                CodeObservations { requested_ref: Some("v3".into()), redeploy: true, ..obs() },
                deploy("v3", RefOrigin::Requested, DeployReason::Requested),
            ),
        ];
        for (what, o, want) in cases {
            assert_eq!(plan_code(&o), want, "{what}");
        }
    }

    #[test]
    fn without_a_source_nothing_can_be_built_and_the_plan_says_so() {
        let no_source = CodeObservations { has_source: false, configured_ref: None, ..obs() };
        let CodePlan::Refuse { reason, hint } = plan_code(&no_source) else { panic!("must refuse") };
        assert!(reason.contains("not on this machine") && reason.contains("app.source"), "{reason}");
        assert!(hint.contains("app.working_dir"), "{hint}");
        for (o, flag) in [
            (CodeObservations { release_present: true, redeploy: true, ..no_source.clone() }, "--redeploy"),
            (CodeObservations { release_present: true, requested_ref: Some("v2".into()), ..no_source }, "--ref"),
        ] {
            let CodePlan::Refuse { reason, .. } = plan_code(&o) else { panic!("{flag} must refuse") };
            assert!(reason.starts_with(flag), "{reason}");
        }
        let nothing = CodeObservations { snapshot_commit: None, configured_ref: None, ..obs() };
        assert!(matches!(plan_code(&nothing), CodePlan::Refuse { hint, .. } if hint.contains("--ref")));
    }

    #[test]
    fn the_snapshots_commit_is_read_from_a_well_formed_tag_only() {
        let tags = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            snapshot_commit(&tags(&["app:x", "app-commit:not-hex", "app-commit:abcdef0123"])),
            Some("abcdef0123")
        );
        assert_eq!(snapshot_commit(&tags(&["app:x", "app-version:v2"])), None);
        assert_eq!(snapshot_commit(&tags(&["app-commit:abc"])), None, "too short to name a commit");
        assert_eq!(commit_tag("abcdef0"), "app-commit:abcdef0");
        assert_eq!(snapshot_commit(&[commit_tag("abcdef0")]), Some("abcdef0"));
    }

    #[test]
    fn an_interrupted_recover_replaces_only_its_own_data() {
        let mut p = Progress { snapshot: "abc".into(), ..Default::default() };
        // A first run: an empty database is restored into; tables there are live data.
        assert_eq!(p.database_plan(false), DatabasePlan::IntoEmpty);
        assert_eq!(p.database_plan(true), DatabasePlan::IntoEmpty);
        p.finish("inspect");
        p.begin("database");
        // Killed during the database step: tables there now are this job's own.
        assert_eq!(p.database_plan(true), DatabasePlan::ReplaceOwn);
        assert_eq!(p.database_plan(false), DatabasePlan::IntoEmpty);
        // A forced run that found a live database: never drop what may be the old data.
        let forced = Progress { force: true, database_was_live: true, ..p.clone() };
        assert_eq!(forced.database_plan(true), DatabasePlan::ReplaceKeepingOld);
        let fresh_forced = Progress { force: true, ..Default::default() };
        assert_eq!(fresh_forced.database_plan(true), DatabasePlan::ReplaceKeepingOld);
        // Before the inspection passed nothing is the job's own.
        let uninspected = Progress { begun: vec!["database".into()], ..Default::default() };
        assert_eq!(uninspected.database_plan(true), DatabasePlan::IntoEmpty);
        p.finish("database");
        assert!(p.is_done("database") && p.was_begun("database") && !p.is_done("files"));
        assert_eq!(p.begun, ["inspect", "database"]);
    }
}
