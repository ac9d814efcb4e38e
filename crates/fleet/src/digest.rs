//! The digest of a fleet run, by e-mail and/or webhook: what ran, what failed, what needs a
//! human. A transient server that did not answer is listed quietly and alerts no one; any
//! other failure makes the digest an alert (its subject says so), and so do vulnerable
//! dependencies found by a server's `deps` task in this run (docs/deps.md). Pure.

use crate::results::{Outcome, TaskResult};
use crate::run::{HostReport, RunReport};
use caretaker_core::job::figures::DepsFigures;
use std::fmt::Write as _;

pub struct Digest {
    pub subject: String,
    pub body: String,
    /// Whether anything in it needs a human (the subject starts with `ALERT`).
    pub alert: bool,
}

/// A server's vulnerable dependencies: the figures of its `deps` task that ran in this run
/// and found some (`vulnerable` > 0).
fn vulnerable_deps(h: &HostReport) -> Option<(&TaskResult, DepsFigures)> {
    h.tasks.iter().rev().find_map(|t| Some((t, t.vulnerable_deps()?)))
}

/// The lines listing one server's vulnerable dependencies: one per vulnerability with all
/// its IDs and the versions that fix it (a report without the list names the packages).
fn write_vulnerable(b: &mut String, server: &str, t: &TaskResult, f: &DepsFigures) {
    let _ = writeln!(
        b,
        "- {server} / {}: {} vulnerable package(s){}",
        t.task,
        f.vulnerable.unwrap_or(0),
        f.database_date.as_deref().map(|d| format!(" (OSV database of {d})")).unwrap_or_default()
    );
    if f.findings.is_empty() {
        for p in &f.vulnerable_packages {
            let _ = writeln!(b, "    {p}");
        }
    }
    for x in &f.findings {
        let _ = writeln!(
            b,
            "    {} {}: {}{}",
            x.package,
            x.version,
            x.ids.join(", "),
            if x.fixed_in.is_empty() { String::new() } else { format!(" (fixed in {})", x.fixed_in.join(", ")) }
        );
    }
}

pub fn render(report: &RunReport, controller: &str) -> Digest {
    let hosts = &report.hosts;
    let vulnerable: Vec<_> = hosts.iter().filter_map(|h| Some((h, vulnerable_deps(h)?))).collect();
    let vulnerable_count: u64 = vulnerable.iter().map(|(_, (_, f))| f.vulnerable.unwrap_or(0)).sum();
    let alerts: Vec<_> = hosts.iter().filter(|h| h.alerts()).collect();
    let ran: usize =
        hosts.iter().map(|h| h.tasks.iter().filter(|t| !matches!(t.outcome, Outcome::NotDue)).count()).sum();
    let failed: usize = hosts
        .iter()
        .map(|h| h.tasks.iter().filter(|t| matches!(t.outcome, Outcome::Failed | Outcome::Interrupted)).count())
        .sum();
    let quiet: Vec<_> =
        hosts.iter().filter(|h| h.transient && matches!(h.contact.as_str(), "unreachable" | "timeout")).collect();
    let alert = !alerts.is_empty();
    let subject = format!(
        "{}caretaker fleet: {} server(s), {ran} task(s) ran, {failed} failed{}{}",
        if alert { "ALERT: " } else { "" },
        hosts.len(),
        if vulnerable_count > 0 { format!(", {vulnerable_count} vulnerable package(s)") } else { String::new() },
        if alert { format!(", {} need(s) a human", alerts.len()) } else { String::new() }
    );
    let mut b = String::new();
    let _ = writeln!(
        b,
        "Fleet run {} by {controller}{} ({:.1}s)\n",
        report.run.id,
        if report.run.resumed { " (resumed)" } else { "" },
        report.seconds
    );
    if alert {
        b += "NEEDS A HUMAN\n";
        for h in &alerts {
            if h.contact != "ok" {
                let _ = writeln!(b, "- {}: {}: {}", h.server, h.contact, h.message.as_deref().unwrap_or(""));
                if let Some(hint) = &h.hint {
                    let _ = writeln!(b, "    what to do: {hint}");
                }
            }
            for t in
                h.tasks.iter().filter(|t| matches!(t.outcome, Outcome::Failed | Outcome::Interrupted) || t.needs_human)
            {
                let _ = writeln!(
                    b,
                    "- {} / {}: {}{}",
                    h.server,
                    t.task,
                    t.outcome.as_str(),
                    t.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default()
                );
            }
            if let Some((_, (t, f))) = vulnerable.iter().find(|(v, _)| v.server == h.server) {
                write_vulnerable(&mut b, &h.server, t, f);
            }
        }
        b.push('\n');
    }
    b += "WHAT RAN\n";
    for h in hosts.iter().filter(|h| h.contact == "ok") {
        let ran: Vec<String> = h
            .tasks
            .iter()
            .filter(|t| !matches!(t.outcome, Outcome::NotDue))
            .map(|t| format!("{} {}", t.task, t.outcome.as_str()))
            .collect();
        let _ =
            writeln!(b, "- {}: {}", h.server, if ran.is_empty() { "nothing due".to_string() } else { ran.join(", ") });
    }
    let pending: Vec<_> = hosts.iter().filter(|h| h.tasks.iter().any(|t| t.reboot_pending)).collect();
    if !pending.is_empty() {
        b += "\nREBOOT PENDING\n";
        for h in pending {
            let _ = writeln!(b, "- {}", h.server);
        }
    }
    let other: Vec<_> = hosts.iter().filter(|h| matches!(h.contact.as_str(), "leased" | "deferred" | "done")).collect();
    if !other.is_empty() {
        b += "\nNOT WORKED ON IN THIS RUN\n";
        for h in other {
            let _ = writeln!(
                b,
                "- {}: {}{}",
                h.server,
                h.contact,
                h.message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default()
            );
        }
    }
    if !quiet.is_empty() {
        b += "\nOFF (transient, not alerted)\n";
        for h in quiet {
            let _ = writeln!(b, "- {}: did not answer", h.server);
        }
    }
    Digest { subject, body: b, alert }
}

/// The webhook payload: the digest plus the report as JSON.
pub fn webhook_payload(report: &RunReport, d: &Digest) -> serde_json::Value {
    serde_json::json!({
        "source": "caretaker-fleet",
        "alert": d.alert,
        "subject": d.subject,
        "text": d.body,
        "report": report,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::TaskResult;
    use crate::run::HostReport;
    use crate::store::Run;

    fn host(name: &str, contact: &str, transient: bool, tasks: Vec<TaskResult>) -> HostReport {
        HostReport {
            server: name.into(),
            transient,
            contact: contact.into(),
            message: (contact != "ok").then(|| format!("{name} {contact}")),
            hint: None,
            tasks,
            warm: false,
            seconds: 0.1,
            alert: false,
        }
    }

    fn task(name: &str, outcome: Outcome) -> TaskResult {
        TaskResult {
            task: name.into(),
            kind: None,
            outcome,
            message: None,
            figures: serde_json::Value::Null,
            needs_human: false,
            reboot_pending: false,
        }
    }

    /// A `deps` task that found vulnerable packages: listed with every advisory ID under
    /// "needs a human", counted in the subject; one that found none is not.
    #[test]
    fn vulnerable_dependencies_need_a_human() {
        let deps =
            |figures: serde_json::Value| TaskResult { kind: Some("deps".into()), figures, ..task("deps", Outcome::Ok) };
        let report = RunReport {
            run: Run { id: 9, resumed: false },
            hosts: vec![
                host(
                    "web1",
                    "ok",
                    false,
                    vec![
                        task("backup", Outcome::Ok),
                        deps(serde_json::json!({
                            "packages": 40, "vulnerable": 2, "vulnerabilities": 3,
                            "vulnerable_packages": ["django", "requests"], "database_date": "2026-12-01",
                            "findings": [
                                {"package": "django", "version": "3.2.0", "ids": ["CVE-2023-1", "GHSA-aaaa", "PYSEC-2023-1"], "fixed_in": ["3.2.19", "4.1.9"]},
                                {"package": "django", "version": "3.2.0", "ids": ["GHSA-bbbb"], "fixed_in": []},
                                {"package": "requests", "version": "2.0.0", "ids": ["PYSEC-2014-1"], "fixed_in": ["2.3.0"]}
                            ]
                        })),
                    ],
                ),
                // An older server's report: the counts and package names, no findings list.
                host(
                    "web2",
                    "ok",
                    false,
                    vec![deps(serde_json::json!({"vulnerable": 1, "vulnerable_packages": ["jinja2"]}))],
                ),
                host("web3", "ok", false, vec![deps(serde_json::json!({"vulnerable": 0, "packages": 12}))]),
            ],
            seconds: 2.0,
        };
        let d = render(&report, "ctl");
        assert!(d.alert);
        expect_test::expect![[r#"
            ALERT: caretaker fleet: 3 server(s), 4 task(s) ran, 0 failed, 3 vulnerable package(s), 2 need(s) a human
            Fleet run 9 by ctl (2.0s)

            NEEDS A HUMAN
            - web1 / deps: 2 vulnerable package(s) (OSV database of 2026-12-01)
                django 3.2.0: CVE-2023-1, GHSA-aaaa, PYSEC-2023-1 (fixed in 3.2.19, 4.1.9)
                django 3.2.0: GHSA-bbbb
                requests 2.0.0: PYSEC-2014-1 (fixed in 2.3.0)
            - web2 / deps: 1 vulnerable package(s)
                jinja2

            WHAT RAN
            - web1: backup ok, deps ok
            - web2: deps ok
            - web3: deps ok
        "#]]
        .assert_eq(&format!("{}\n{}", d.subject, d.body));
    }

    #[test]
    fn transient_down_is_quiet_any_other_failure_alerts() {
        let quiet = RunReport {
            run: Run { id: 3, resumed: false },
            hosts: vec![
                host("a", "ok", false, vec![task("backup", Outcome::Ok), task("check", Outcome::NotDue)]),
                host("laptop", "unreachable", true, vec![]),
            ],
            seconds: 1.0,
        };
        let d = render(&quiet, "ctl");
        assert!(!d.alert);
        expect_test::expect![[r#"
            caretaker fleet: 2 server(s), 1 task(s) ran, 0 failed
            Fleet run 3 by ctl (1.0s)

            WHAT RAN
            - a: backup ok

            OFF (transient, not alerted)
            - laptop: did not answer
        "#]]
        .assert_eq(&format!("{}\n{}", d.subject, d.body));
        let loud = RunReport {
            run: Run { id: 4, resumed: true },
            hosts: vec![
                host("a", "ok", false, vec![task("backup", Outcome::Failed)]),
                host("db", "unreachable", false, vec![]),
            ],
            seconds: 1.0,
        };
        let d = render(&loud, "ctl");
        assert!(d.alert);
        expect_test::expect![[r#"
            ALERT: caretaker fleet: 2 server(s), 1 task(s) ran, 1 failed, 2 need(s) a human
            Fleet run 4 by ctl (resumed) (1.0s)

            NEEDS A HUMAN
            - a / backup: failed
            - db: unreachable: db unreachable

            WHAT RAN
            - a: backup failed
        "#]]
        .assert_eq(&format!("{}\n{}", d.subject, d.body));
    }
}
