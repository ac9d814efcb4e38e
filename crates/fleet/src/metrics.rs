//! The fleet's Prometheus metrics, per server and per task (`caretaker fleet metrics`; names
//! in docs/fleet.md are a stable interface). Pure: the store's status in, text out.

use crate::inventory::Inventory;
use crate::store::ServerStatus;
use std::fmt::Write as _;

fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

pub fn render(inv: &Inventory, status: &[ServerStatus]) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, f64)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in rows {
            let _ = writeln!(out, "{name}{{{labels}}} {v}");
        }
    };
    let servers: Vec<(&crate::inventory::Server, Option<&ServerStatus>)> =
        inv.servers.iter().map(|s| (s, status.iter().find(|x| x.server == s.name))).collect();
    let srv = |s: &crate::inventory::Server| format!("server=\"{}\"", label(&s.name));
    family(
        "caretaker_fleet_server_last_contact_timestamp_seconds",
        "gauge",
        "When the controller last reached the server (0: never).",
        servers.iter().map(|(s, x)| (srv(s), x.and_then(|x| x.last_ok_contact).unwrap_or(0) as f64)).collect(),
    );
    family(
        "caretaker_fleet_server_up",
        "gauge",
        "1 when the last contact with the server succeeded.",
        servers
            .iter()
            .map(|(s, x)| (srv(s), f64::from(u8::from(x.and_then(|x| x.contact.as_deref()) == Some("ok")))))
            .collect(),
    );
    family(
        "caretaker_fleet_server_transient",
        "gauge",
        "1 for servers marked transient (often off; not alerted when down).",
        servers.iter().map(|(s, _)| (srv(s), f64::from(u8::from(s.transient)))).collect(),
    );
    family(
        "caretaker_fleet_server_reboot_pending",
        "gauge",
        "1 when the server reported a pending reboot.",
        servers.iter().map(|(s, x)| (srv(s), f64::from(u8::from(x.is_some_and(|x| x.reboot_pending))))).collect(),
    );
    let tasks: Vec<(String, &crate::store::TaskStatus)> = servers
        .iter()
        .filter_map(|(s, x)| x.map(|x| (s, x)))
        .flat_map(|(s, x)| x.tasks.iter().map(move |t| (format!("{},task=\"{}\"", srv(s), label(&t.task)), t)))
        .collect();
    family(
        "caretaker_fleet_task_last_success_timestamp_seconds",
        "gauge",
        "When the task last succeeded on the server (0: never).",
        tasks.iter().map(|(l, t)| (l.clone(), t.last_success.unwrap_or(0) as f64)).collect(),
    );
    family(
        "caretaker_fleet_task_last_attempt_timestamp_seconds",
        "gauge",
        "When the task last ran on the server (0: never).",
        tasks.iter().map(|(l, t)| (l.clone(), t.last_attempt.unwrap_or(0) as f64)).collect(),
    );
    family(
        "caretaker_fleet_task_failures",
        "gauge",
        "Failures of the task in a row (0: its last run succeeded).",
        tasks.iter().map(|(l, t)| (l.clone(), f64::from(t.failures))).collect(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TaskStatus;

    #[test]
    fn renders_per_server_and_task() {
        let inv = crate::inventory::parse("servers:\n  - name: a\n  - name: b\n    transient: true\n", "f").unwrap();
        let st = vec![ServerStatus {
            server: "a".into(),
            last_contact: Some(100),
            last_ok_contact: Some(100),
            contact: Some("ok".into()),
            message: None,
            reboot_pending: false,
            tasks: vec![TaskStatus {
                task: "backup".into(),
                kind: Some("backup".into()),
                last_attempt: Some(90),
                last_success: Some(80),
                outcome: "failed".into(),
                message: None,
                figures: serde_json::Value::Null,
                failures: 1,
                retry_after: Some(400),
                needs_human: false,
            }],
        }];
        let text = render(&inv, &st);
        assert!(
            text.contains("caretaker_fleet_server_up{server=\"a\"} 1\ncaretaker_fleet_server_up{server=\"b\"} 0\n"),
            "{text}"
        );
        assert!(text.contains("caretaker_fleet_task_failures{server=\"a\",task=\"backup\"} 1\n"), "{text}");
        assert!(text.contains("caretaker_fleet_server_transient{server=\"b\"} 1\n"), "{text}");
    }
}
