//! Safe updates, the pure part: which steps an update takes ([`plan_update`]), which steps undo
//! a failed one ([`plan_rollback`]), what to do with an update found half-done after a crash
//! ([`resume`]), whether a change needs migrations ([`migrations_from_added_files`]), which
//! release directories to remove ([`releases_to_remove`]), whether the services run in the new
//! release ([`outside_release`]) and what a failed update tells the operator it left behind
//! ([`failure_consequence`]). The binary carries the steps out and persists a [`Progress`]
//! before each one (docs/updates.md).

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One step of an update, in the order [`plan_update`] lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Export the target commit into a new release directory.
    Fetch,
    /// Run `app.build` in the new release while the old one keeps serving.
    Build,
    /// Run the `update.migrations.command` in the new release to learn whether migrations are due.
    DetectMigrations,
    MaintenanceOn,
    /// Stop the services (control socket `Down`).
    Stop,
    /// Database snapshot; skipped at run time when no migrations are needed.
    Snapshot,
    /// Point `current` at the new release.
    Switch,
    /// Run `app.migrate` in the new release.
    Migrate,
    /// Start the services (control socket `Up`).
    Start,
    /// Wait until every service is healthy, within `update.health_timeout`.
    HealthGate,
    MaintenanceOff,
    /// Record the release as deployed, schedule the snapshot's removal, prune old releases.
    Finish,
}

impl Step {
    pub const ALL: [Step; 12] = [
        Step::Fetch,
        Step::Build,
        Step::DetectMigrations,
        Step::MaintenanceOn,
        Step::Stop,
        Step::Snapshot,
        Step::Switch,
        Step::Migrate,
        Step::Start,
        Step::HealthGate,
        Step::MaintenanceOff,
        Step::Finish,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Step::Fetch => "fetch",
            Step::Build => "build",
            Step::DetectMigrations => "detect_migrations",
            Step::MaintenanceOn => "maintenance_on",
            Step::Stop => "stop",
            Step::Snapshot => "snapshot",
            Step::Switch => "switch",
            Step::Migrate => "migrate",
            Step::Start => "start",
            Step::HealthGate => "health_gate",
            Step::MaintenanceOff => "maintenance_off",
            Step::Finish => "finish",
        }
    }

    pub fn parse(s: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|st| st.name() == s)
    }
}

/// One step of undoing a failed update.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RollbackStep {
    /// Stop whatever runs (the new release, or nothing).
    StopNew,
    /// Revert the database to the pre-migration snapshot.
    RevertDatabase,
    /// Point `current` back at the previous release.
    SwitchBack,
    StartOld,
    /// Wait until the old release is healthy; failing this ends in service mode.
    VerifyOld,
    MaintenanceOff,
}

impl RollbackStep {
    pub fn name(self) -> &'static str {
        match self {
            RollbackStep::StopNew => "stop_new",
            RollbackStep::RevertDatabase => "revert_database",
            RollbackStep::SwitchBack => "switch_back",
            RollbackStep::StartOld => "start_old",
            RollbackStep::VerifyOld => "verify_old",
            RollbackStep::MaintenanceOff => "maintenance_off",
        }
    }
}

/// How migrations are detected, as observed before planning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Migrations {
    Needed,
    NotNeeded,
    /// Decided by a command run in the built release ([`Step::DetectMigrations`]).
    AskCommand,
}

/// What the binary found out before planning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observations {
    pub migrations: Migrations,
    pub has_database: bool,
    pub has_build: bool,
    pub has_migrate: bool,
    /// The database already holds tables (observed only when nothing was deployed yet): an app
    /// adopted with its existing data, whose first deployment migrates that data.
    pub database_has_tables: bool,
    /// The operator had switched maintenance mode on: the update leaves it on (no
    /// `maintenance_on`/`maintenance_off` steps) instead of switching it off at the end.
    pub maintenance_already_on: bool,
    /// Update even when the target commit is the running one.
    pub force: bool,
}

/// `current`: the running commit (`None` on the first deployment); `target`: the commit to
/// deploy. An empty plan means there is nothing to do.
pub fn plan_update(current: Option<&str>, target: &str, obs: &Observations) -> Vec<Step> {
    if current == Some(target) && !obs.force {
        return Vec::new();
    }
    Step::ALL
        .into_iter()
        .filter(|s| match s {
            Step::Build => obs.has_build,
            Step::DetectMigrations => obs.migrations == Migrations::AskCommand,
            // Data to protect: a database that a release served, or that already holds tables
            // on a first deployment (an existing app adopted). An empty one has nothing to lose.
            Step::Snapshot => {
                obs.has_database
                    && (current.is_some() || obs.database_has_tables)
                    && obs.migrations != Migrations::NotNeeded
            }
            Step::Migrate => obs.has_migrate,
            Step::MaintenanceOn | Step::MaintenanceOff => !obs.maintenance_already_on,
            _ => true,
        })
        .collect()
}

/// Which way an update is going.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    Forward,
    /// A step failed (`step`, `reason`); the rollback steps are being carried out.
    RollingBack {
        step: String,
        reason: String,
    },
}

/// An update in flight, persisted (as JSON in the state store) before every step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub job_id: i64,
    /// Release directory name serving before the update (`None`: first deployment).
    pub from: Option<String>,
    pub from_commit: Option<String>,
    pub to: String,
    pub to_commit: String,
    pub reference: String,
    pub plan: Vec<Step>,
    /// The step about to run (or running); every step before it is done.
    pub next: usize,
    /// The snapshot taken before migrating, once taken.
    pub snapshot: Option<String>,
    /// Whether migrations are due (known after detection).
    pub migrations_needed: Option<bool>,
    pub phase: Phase,
    /// Rollback steps already done.
    pub rollback_done: usize,
}

impl Progress {
    /// Whether `step` has been reached (started) in the plan.
    pub fn reached(&self, step: Step) -> bool {
        self.plan.iter().take(self.next + 1).any(|s| *s == step)
    }

    pub fn health_passed(&self) -> bool {
        self.plan.iter().take(self.next).any(|s| *s == Step::HealthGate)
    }

    pub fn current_step(&self) -> Option<Step> {
        self.plan.get(self.next).copied()
    }
}

/// The steps that undo `progress`, as far as it went. Nothing served has changed before
/// `Stop`, so a failure in fetch, build or detection only leaves maintenance (if on).
pub fn plan_rollback(p: &Progress) -> Vec<RollbackStep> {
    let mut out = Vec::new();
    let stopped = p.reached(Step::Stop);
    if stopped {
        out.push(RollbackStep::StopNew);
    }
    if p.snapshot.is_some() {
        out.push(RollbackStep::RevertDatabase);
    }
    if p.reached(Step::Switch) && p.from.is_some() {
        out.push(RollbackStep::SwitchBack);
    }
    if stopped && p.from.is_some() {
        out.push(RollbackStep::StartOld);
        out.push(RollbackStep::VerifyOld);
    }
    if p.reached(Step::MaintenanceOn) {
        out.push(RollbackStep::MaintenanceOff);
    }
    out
}

/// What to do with an update found unfinished (after a crash).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resume {
    /// The health gate passed: run the remaining steps from `next`.
    Forward { next: usize },
    /// Roll back, skipping the rollback steps already done.
    RollBack { steps: Vec<RollbackStep>, skip: usize },
}

pub fn resume(p: &Progress) -> Resume {
    match &p.phase {
        Phase::Forward if p.health_passed() => Resume::Forward { next: p.next },
        Phase::Forward => Resume::RollBack { steps: plan_rollback(p), skip: 0 },
        Phase::RollingBack { .. } => Resume::RollBack { steps: plan_rollback(p), skip: p.rollback_done },
    }
}

/// Whether files added between the running and the target commit (`added`, repository-relative
/// paths) lie under a migration directory matching one of `globs` (`*` within a path segment,
/// `**` for any number of segments).
pub fn migrations_from_added_files(added: &[String], globs: &[String]) -> bool {
    added.iter().any(|file| {
        let segs: Vec<&str> = file.split('/').collect();
        // Every proper ancestor directory of the file.
        (1..segs.len()).any(|n| globs.iter().any(|g| glob_match(&g.split('/').collect::<Vec<_>>(), &segs[..n])))
    })
}

fn glob_match(pat: &[&str], path: &[&str]) -> bool {
    match pat.split_first() {
        None => path.is_empty(),
        Some((&"**", rest)) => (0..=path.len()).any(|i| glob_match(rest, &path[i..])),
        Some((p, rest)) => match path.split_first() {
            Some((s, prest)) => segment_match(p.as_bytes(), s.as_bytes()) && glob_match(rest, prest),
            None => false,
        },
    }
}

fn segment_match(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| segment_match(rest, &s[i..])),
        Some((b'?', rest)) => !s.is_empty() && segment_match(rest, &s[1..]),
        Some((c, rest)) => s.first() == Some(c) && segment_match(rest, &s[1..]),
    }
}

/// The release directory name for release number `n` of `commit`.
pub fn release_name(n: u64, commit: &str) -> String {
    format!("{n}-{}", &commit[..commit.len().min(12)])
}

/// `(n, commit prefix)` of a release directory name.
pub fn parse_release_name(name: &str) -> Option<(u64, &str)> {
    let (n, c) = name.split_once('-')?;
    Some((n.parse().ok()?, c)).filter(|(_, c)| !c.is_empty() && c.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Release directories to remove so that at most `keep` remain: never `current` or `previous`;
/// releases that cannot be rolled back to (not in `history`, the deployment history: failed,
/// rolled back, unknown) go first, oldest first, then the oldest of the history. So failed
/// updates never push out the good releases `caretaker rollback` walks back through.
pub fn releases_to_remove(
    names: &[String],
    keep: usize,
    history: &[String],
    current: Option<&str>,
    previous: Option<&str>,
) -> Vec<String> {
    let mut rel: Vec<(bool, u64, &String)> =
        names.iter().filter_map(|n| parse_release_name(n).map(|(i, _)| (history.contains(n), i, n))).collect();
    // Not in the history (`false`) before in it, each oldest first.
    rel.sort();
    let mut remaining = rel.len();
    let mut out = Vec::new();
    for (_, _, name) in rel {
        if remaining <= keep {
            break;
        }
        if Some(name.as_str()) == current || Some(name.as_str()) == previous {
            continue;
        }
        out.push(name.clone());
        remaining -= 1;
    }
    out
}

/// The services whose working directory (`cwds`: name, the directory its process runs in as the
/// kernel reports it, symlinks resolved) is not the release directory `release` (resolved) or
/// inside it: they run other code than the release the update switched in.
pub fn outside_release<'a>(cwds: &'a [(String, PathBuf)], release: &Path) -> Vec<&'a (String, PathBuf)> {
    cwds.iter().filter(|(_, cwd)| !cwd.starts_with(release)).collect()
}

/// Whether `step` runs the app's own commands or code, with its environment (the database URL
/// included): such a step may have changed data, so after it a failure never reports that
/// nothing was changed.
pub fn step_can_change_data(step: Step) -> bool {
    matches!(step, Step::Build | Step::DetectMigrations | Step::Migrate | Step::Start | Step::HealthGate)
}

/// What a failed update whose rollback steps all succeeded left behind, in words, as a function
/// of the steps that ran (`p.next` is the step that failed; it ran, at least partly). Says
/// "nothing was changed" only when no step that can change data ([`step_can_change_data`]) ran.
pub fn failure_consequence(p: &Progress) -> String {
    let ran: Vec<Step> = p.plan.iter().take(p.next + 1).copied().filter(|s| step_can_change_data(*s)).collect();
    let serving = match (&p.from, p.reached(Step::Stop)) {
        (Some(from), true) => format!("{from} serves again"),
        (Some(from), false) => format!("{from} kept serving"),
        (None, _) => "nothing is deployed".to_string(),
    };
    let data = if ran.is_empty() {
        "nothing was changed".to_string()
    } else if ran.contains(&Step::Migrate) || p.snapshot.is_some() {
        match &p.snapshot {
            Some(snap) => format!("the database was reverted to snapshot {snap}, taken before migrating"),
            None => "`migrate` ran and may have changed the database, which was NOT reverted (no snapshot \
                     was taken): check it before trying again"
                .to_string(),
        }
    } else {
        let names: Vec<&str> = ran.iter().map(|s| s.name()).collect();
        format!(
            "the app's commands ran ({}) and may have written data, which was not reverted (the job log shows what they did)",
            names.join(", ")
        )
    };
    format!("{data}; {serving}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(m: Migrations) -> Observations {
        Observations {
            migrations: m,
            has_database: true,
            has_build: true,
            has_migrate: true,
            database_has_tables: false,
            maintenance_already_on: false,
            force: false,
        }
    }

    fn names(steps: &[Step]) -> Vec<&'static str> {
        steps.iter().map(|s| s.name()).collect()
    }

    #[test]
    fn plans() {
        assert!(plan_update(Some("abc"), "abc", &obs(Migrations::Needed)).is_empty());
        let forced = Observations { force: true, ..obs(Migrations::NotNeeded) };
        assert_eq!(
            names(&plan_update(Some("abc"), "abc", &forced)),
            [
                "fetch",
                "build",
                "maintenance_on",
                "stop",
                "switch",
                "migrate",
                "start",
                "health_gate",
                "maintenance_off",
                "finish"
            ]
        );
        assert!(plan_update(Some("a"), "b", &obs(Migrations::Needed)).contains(&Step::Snapshot));
        assert!(!plan_update(None, "b", &obs(Migrations::Needed)).contains(&Step::Snapshot));
        let ask = plan_update(Some("a"), "b", &obs(Migrations::AskCommand));
        assert!(ask.contains(&Step::DetectMigrations) && ask.contains(&Step::Snapshot));
        let nodb = Observations { has_database: false, has_build: false, ..obs(Migrations::Needed) };
        assert!(!plan_update(Some("a"), "b", &nodb).iter().any(|s| matches!(s, Step::Snapshot | Step::Build)));
    }

    fn progress(at: Step, snapshot: bool) -> Progress {
        let plan = plan_update(Some("a"), "b", &obs(Migrations::Needed));
        Progress {
            job_id: 1,
            from: Some("1-a".into()),
            from_commit: Some("a".into()),
            to: "2-b".into(),
            to_commit: "b".into(),
            reference: "v2".into(),
            next: plan.iter().position(|s| *s == at).unwrap(),
            plan,
            snapshot: snapshot.then(|| "snap".into()),
            migrations_needed: Some(true),
            phase: Phase::Forward,
            rollback_done: 0,
        }
    }

    #[test]
    fn rollback_undoes_what_was_reached() {
        use RollbackStep::*;
        assert_eq!(plan_rollback(&progress(Step::Build, false)), vec![]);
        assert_eq!(plan_rollback(&progress(Step::Stop, false)), vec![StopNew, StartOld, VerifyOld, MaintenanceOff]);
        assert_eq!(
            plan_rollback(&progress(Step::Migrate, true)),
            vec![StopNew, RevertDatabase, SwitchBack, StartOld, VerifyOld, MaintenanceOff]
        );
        let mut first = progress(Step::Migrate, false);
        first.from = None;
        assert_eq!(plan_rollback(&first), vec![StopNew, MaintenanceOff]);
    }

    #[test]
    fn resume_goes_forward_only_after_the_health_gate() {
        let p = progress(Step::MaintenanceOff, true);
        assert_eq!(resume(&p), Resume::Forward { next: p.next });
        assert!(matches!(resume(&progress(Step::HealthGate, true)), Resume::RollBack { skip: 0, .. }));
        let mut p = progress(Step::Start, true);
        p.phase = Phase::RollingBack { step: "start".into(), reason: "x".into() };
        p.rollback_done = 2;
        assert!(matches!(resume(&p), Resume::RollBack { skip: 2, .. }));
    }

    #[test]
    fn migration_globs() {
        let g = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(migrations_from_added_files(&g(&["migrations/0003_x.sql"]), &g(&["**/migrations"])));
        assert!(migrations_from_added_files(&g(&["app/blog/migrations/0003_x.py"]), &g(&["**/migrations"])));
        assert!(migrations_from_added_files(&g(&["a/migrations/sub/x.sql"]), &g(&["*/migrations"])));
        assert!(!migrations_from_added_files(&g(&["VERSION", "src/migrations.rs"]), &g(&["**/migrations"])));
        assert!(!migrations_from_added_files(&g(&["db/migrate/x.rb"]), &g(&["migrations"])));
        assert!(migrations_from_added_files(&g(&["db/migrate/x.rb"]), &g(&["db/migr*"])));
    }

    #[test]
    fn a_first_deployment_onto_existing_tables_takes_a_snapshot() {
        let adopted = Observations { database_has_tables: true, ..obs(Migrations::Needed) };
        let plan = plan_update(None, "b", &adopted);
        let at = |s: Step| plan.iter().position(|x| *x == s).unwrap();
        assert!(at(Step::Snapshot) < at(Step::Migrate), "{plan:?}");
        // An empty database has nothing to lose; no detected migrations need no snapshot.
        assert!(!plan_update(None, "b", &obs(Migrations::Needed)).contains(&Step::Snapshot));
        let none = Observations { database_has_tables: true, ..obs(Migrations::NotNeeded) };
        assert!(!plan_update(None, "b", &none).contains(&Step::Snapshot));
        // Rolled back: stop, revert; nothing to switch back to or start.
        let mut p = progress(Step::Migrate, true);
        p.from = None;
        p.from_commit = None;
        p.next = at(Step::Migrate);
        p.plan = plan;
        assert_eq!(
            plan_rollback(&p),
            vec![RollbackStep::StopNew, RollbackStep::RevertDatabase, RollbackStep::MaintenanceOff]
        );
    }

    #[test]
    fn maintenance_found_on_stays_on() {
        let on = Observations { maintenance_already_on: true, ..obs(Migrations::Needed) };
        let plan = plan_update(Some("a"), "b", &on);
        assert!(!plan.iter().any(|s| matches!(s, Step::MaintenanceOn | Step::MaintenanceOff)), "{plan:?}");
        let mut p = progress(Step::Migrate, true);
        p.next = plan.iter().position(|s| *s == Step::Migrate).unwrap();
        p.plan = plan;
        assert!(!plan_rollback(&p).contains(&RollbackStep::MaintenanceOff));
    }

    #[test]
    fn failure_wording_follows_the_steps_that_ran() {
        let mut fetch = progress(Step::Fetch, false);
        assert_eq!(failure_consequence(&fetch), "nothing was changed; 1-a kept serving");
        fetch.from = None;
        assert_eq!(failure_consequence(&fetch), "nothing was changed; nothing is deployed");
        let build = failure_consequence(&progress(Step::Build, false));
        assert!(build.starts_with("the app's commands ran (build)") && build.ends_with("1-a kept serving"), "{build}");
        assert_eq!(
            failure_consequence(&progress(Step::Migrate, true)),
            "the database was reverted to snapshot snap, taken before migrating; 1-a serves again"
        );
        let mut first = progress(Step::Migrate, false);
        first.from = None;
        let text = failure_consequence(&first);
        assert!(text.contains("`migrate` ran") && text.contains("NOT reverted"), "{text}");
        assert!(text.ends_with("nothing is deployed"), "{text}");
        // Never "nothing was changed" once a step that can change data has started.
        for (i, step) in Step::ALL.iter().enumerate() {
            for snapshot in [false, true] {
                let plan = Step::ALL.to_vec();
                let mut p = progress(Step::Fetch, snapshot);
                p.plan = plan;
                p.next = i;
                let ran_code = Step::ALL[..=i].iter().any(|s| step_can_change_data(*s));
                assert_eq!(failure_consequence(&p).contains("nothing was changed"), !ran_code, "{step:?}");
            }
        }
    }

    #[test]
    fn services_outside_the_new_release() {
        let cwds = vec![
            ("web".to_string(), PathBuf::from("/s/releases/2-b")),
            ("worker".to_string(), PathBuf::from("/s/releases/2-b/src")),
            ("old".to_string(), PathBuf::from("/srv/app/current")),
            ("prefix".to_string(), PathBuf::from("/s/releases/2-bc")),
        ];
        let out: Vec<&str> =
            outside_release(&cwds, Path::new("/s/releases/2-b")).iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(out, ["old", "prefix"]);
    }

    #[test]
    fn release_retention() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let n = s(&["1-aa", "2-bb", "3-cc", "10-dd", "tmp"]);
        let all = s(&["1-aa", "2-bb", "3-cc", "10-dd"]);
        assert_eq!(releases_to_remove(&n, 2, &all, Some("10-dd"), Some("3-cc")), vec!["1-aa", "2-bb"]);
        assert_eq!(releases_to_remove(&n, 1, &all, Some("10-dd"), Some("1-aa")), vec!["2-bb", "3-cc"]);
        assert_eq!(parse_release_name("12-abc123"), Some((12, "abc123")));
        assert_eq!(release_name(3, "0123456789abcdef"), "3-0123456789ab");
    }

    #[test]
    fn failed_releases_are_pruned_before_good_ones() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // v1, v2 deployed; three failed updates; v6 deployed: keep 3.
        let names = s(&["1-a1", "2-b2", "3-c3", "4-d4", "5-e5", "6-f6"]);
        let history = s(&["1-a1", "2-b2", "6-f6"]);
        assert_eq!(
            releases_to_remove(&names, 3, &history, Some("6-f6"), Some("2-b2")),
            ["3-c3", "4-d4", "5-e5"],
            "the good v1 stays reachable by `rollback`"
        );
        // Fewer to keep than good ones: the failed go, then the oldest good one.
        assert_eq!(
            releases_to_remove(&names, 2, &history, Some("6-f6"), Some("2-b2")),
            ["3-c3", "4-d4", "5-e5", "1-a1"]
        );
        // Within the limit: nothing goes, failed or not.
        assert!(releases_to_remove(&names, 6, &history, Some("6-f6"), Some("2-b2")).is_empty());
        // current and previous are never removed, even with keep 0.
        assert_eq!(
            releases_to_remove(&names, 0, &history, Some("6-f6"), Some("2-b2")),
            ["3-c3", "4-d4", "5-e5", "1-a1"]
        );
    }
}
