//! The digest of a fleet run, by e-mail and/or webhook: what ran, what failed, what needs a
//! human. A transient server that did not answer is listed quietly and alerts no one; any
//! other failure makes the digest an alert (its subject says so). Pure.

use crate::results::Outcome;
use crate::run::RunReport;
use std::fmt::Write as _;

pub struct Digest {
    pub subject: String,
    pub body: String,
    /// Whether anything in it needs a human (the subject starts with `ALERT`).
    pub alert: bool,
}

pub fn render(report: &RunReport, controller: &str) -> Digest {
    let hosts = &report.hosts;
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
        "{}caretaker fleet: {} server(s), {ran} task(s) ran, {failed} failed{}",
        if alert { "ALERT: " } else { "" },
        hosts.len(),
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
