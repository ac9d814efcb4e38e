//! The page itself: one self-contained HTML document (inline CSS, inline SVG, no scripts).
//! Every piece of text from the store or the config goes through [`esc`].

use crate::svg::{self, esc, Bar, Point};
use crate::{DependenciesSection, StatusData};
use caretaker_core::job::Outcome;
use caretaker_core::mode::Mode;
use jiff::Timestamp;
use std::fmt::Write;

const STYLE: &str = r#"
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d1d1f;background:#f4f5f7}
header{background:#24292f;color:#fff;padding:14px 24px;display:flex;align-items:baseline;gap:16px}
header h1{font-size:20px;margin:0}header .gen{color:#c9d1d9;font-size:12px;margin-left:auto}
main{padding:16px 24px;display:grid;grid-template-columns:repeat(auto-fit,minmax(560px,1fr));gap:16px}
section{background:#fff;border:1px solid #d8dee4;border-radius:6px;padding:12px 16px;overflow-x:auto}
section.wide{grid-column:1/-1}
h2{font-size:15px;margin:0 0 8px}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eef0f2;vertical-align:top}
th{font-weight:600;color:#57606a;font-size:12px;text-transform:uppercase;letter-spacing:.03em}
.mode{padding:10px 24px;font-weight:600;font-size:15px}
.mode-normal{background:#dafbe1;color:#116329}.mode-maintenance{background:#fff8c5;color:#7d4e00}.mode-service{background:#ffebe9;color:#a40e26}
.pill{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600}
.ok{background:#dafbe1;color:#116329}.warn{background:#fff8c5;color:#7d4e00}.bad{background:#ffebe9;color:#a40e26}.neutral{background:#eaeef2;color:#424a53}
.muted{color:#6e7781}.num{text-align:right;font-variant-numeric:tabular-nums}
dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;margin:0}dt{color:#57606a}dd{margin:0}
svg.chart{max-width:100%;height:auto}.bar-ok{fill:#2da44e}.bar-bad{fill:#cf222e}.bar-warn{fill:#bf8700}.bar-neutral{fill:#8c959f}
a{color:#0969da}
"#;

fn ts(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// `3 min`, `2 h 5 min`, `4 d 3 h`.
pub fn human_seconds(s: i64) -> String {
    let s = s.max(0);
    if s < 60 {
        format!("{s} s")
    } else if s < 3600 {
        format!("{} min", s / 60)
    } else if s < 86400 {
        format!("{} h {} min", s / 3600, s % 3600 / 60)
    } else {
        format!("{} d {} h", s / 86400, s % 86400 / 3600)
    }
}

fn ago(now: Timestamp, t: Timestamp) -> String {
    let d = now.duration_since(t).as_secs();
    if d >= 0 {
        format!("{} ago", human_seconds(d))
    } else {
        format!("in {}", human_seconds(-d))
    }
}

fn when(now: Timestamp, t: Option<Timestamp>) -> String {
    match t {
        Some(t) => format!(r#"<span title="{}">{}</span>"#, esc(&ts(t)), esc(&ago(now, t))),
        None => r#"<span class="muted">—</span>"#.into(),
    }
}

/// `1.5 GiB`.
pub fn human_bytes(b: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b;
    let mut i = 0;
    while v >= 1024.0 && i < units.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{v:.0} {}", units[i])
    } else {
        format!("{v:.1} {}", units[i])
    }
}

fn human_secs_f(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.1} s")
    } else if v < 600.0 {
        format!("{v:.0} s")
    } else {
        human_seconds(v.round() as i64)
    }
}

fn outcome_class(o: Outcome) -> &'static str {
    match o {
        Outcome::Succeeded => "ok",
        Outcome::Running => "neutral",
        Outcome::Partial | Outcome::RolledBack | Outcome::Interrupted | Outcome::Skipped => "warn",
        Outcome::Failed | Outcome::Refused => "bad",
    }
}

fn pill(class: &str, text: &str) -> String {
    format!(r#"<span class="pill {class}">{}</span>"#, esc(text))
}

/// The whole page. `link_suffix` is appended to links (`?token=...` when the page was opened
/// with a token in the URL).
pub fn render(d: &StatusData, link_suffix: &str) -> String {
    let now = d.generated_at;
    let mut o = String::with_capacity(32 << 10);
    let _ = write!(
        o,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><meta http-equiv="refresh" content="60"><title>{app} — caretaker status</title><style>{STYLE}</style></head><body>"#,
        app = esc(&d.app)
    );
    let _ = write!(
        o,
        r#"<header><h1>{}</h1><span>caretaker status</span><span class="gen">as of {} · <a style="color:#c9d1d9" href="/status/api{}">JSON</a></span></header>"#,
        esc(&d.app),
        esc(&ts(now)),
        esc(link_suffix)
    );
    // Mode banner.
    let (class, text) = match &d.mode {
        Mode::Normal => ("mode-normal", "Normal: the app is serving.".to_string()),
        Mode::Maintenance(m) => (
            "mode-maintenance",
            format!(
                "Maintenance (by {}, since {}){}",
                m.by,
                ts(m.since),
                if m.message.is_empty() { String::new() } else { format!(": {}", m.message) }
            ),
        ),
        Mode::Service(f) => (
            "mode-service",
            format!(
                "Service mode since {}: {} — visitors get a “service unavailable” page until `caretaker reset-failed`.",
                ts(f.since),
                f.reason
            ),
        ),
    };
    let _ =
        write!(o, r#"<div id="mode" class="mode {class}" data-mode="{}">{}</div><main>"#, d.mode.name(), esc(&text));

    // Services.
    o.push_str(r#"<section id="services"><h2>Services</h2>"#);
    if !d.services.live {
        o.push_str(r#"<p class="muted">The daemon is not running or did not answer: states are unknown.</p>"#);
    }
    if d.services.rows.is_empty() {
        o.push_str(r#"<p class="muted">No services configured.</p>"#);
    } else {
        o.push_str("<table><tr><th>service</th><th>state</th><th>health</th><th>pid</th><th>up</th><th class=num>restarts</th><th>note</th></tr>");
        for s in &d.services.rows {
            let sc = match s.state.as_str() {
                "running" => "ok",
                "failed" | "backoff" => "bad",
                "unknown" | "stopped" => "neutral",
                _ => "warn",
            };
            let hc = match s.health.as_str() {
                "healthy" => "ok",
                "unhealthy" => "bad",
                _ => "neutral",
            };
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=num>{}</td><td>{}</td></tr>",
                esc(&s.name),
                pill(sc, &s.state),
                pill(hc, &s.health),
                s.pid.map(|p| p.to_string()).unwrap_or_default(),
                s.uptime_seconds.map(|u| human_seconds(u as i64)).unwrap_or_default(),
                s.restarts,
                esc(s.reason.as_deref().unwrap_or(""))
            );
        }
        o.push_str("</table>");
    }
    o.push_str("</section>");

    // Backups.
    o.push_str(r#"<section id="backups"><h2>Backups</h2>"#);
    match &d.backups {
        None => o.push_str(r#"<p class="muted">No backup configured.</p>"#),
        Some(b) => {
            let rpo = match b.age_seconds {
                Some(a) => pill(
                    if a > 2 * 86400 {
                        "bad"
                    } else if a > 86400 {
                        "warn"
                    } else {
                        "ok"
                    },
                    &human_seconds(a),
                ),
                None => pill("bad", "no successful backup"),
            };
            let _ = write!(
                o,
                "<dl><dt>current RPO (age of newest)</dt><dd>{rpo}</dd><dt>newest</dt><dd>{}{}</dd><dt>snapshot</dt><dd>{}</dd><dt>size of newest</dt><dd>{}</dd><dt>repository size</dt><dd>{}</dd><dt>backups recorded</dt><dd>{}</dd></dl>",
                when(now, b.newest),
                b.newest_job.map(|j| format!(r#" · <a href="/status/jobs/{j}/log{}">job {j}</a>"#, esc(link_suffix))).unwrap_or_default(),
                esc(b.newest_snapshot.as_deref().map(|s| &s[..s.len().min(8)]).unwrap_or("—")),
                b.newest_size_bytes.map(|v| human_bytes(v as f64)).unwrap_or_else(|| "—".into()),
                b.repository_size_bytes.map(|v| human_bytes(v as f64)).unwrap_or_else(|| "—".into()),
                b.count
            );
        }
    }
    o.push_str("</section>");

    // Operating system.
    if let Some(os) = &d.os {
        let s = &os.summary;
        let pending = if s.security_updates_pending > 0 {
            pill("warn", &format!("{} ({} security)", s.updates_pending, s.security_updates_pending))
        } else {
            pill(if s.updates_pending > 0 { "warn" } else { "ok" }, &s.updates_pending.to_string())
        };
        let reboot = if s.reboot_required {
            let by = if s.reboot_required_packages.is_empty() {
                String::new()
            } else {
                format!(" ({})", s.reboot_required_packages.join(", "))
            };
            pill("warn", &format!("needed{by}"))
        } else {
            pill("ok", "not needed")
        };
        let last = match &os.last_reboot {
            Some(r) => format!(
                "{} {}",
                pill(if r.outcome == "healthy" { "ok" } else { "bad" }, &r.outcome),
                when(now, r.judged_at)
            ),
            None => "—".into(),
        };
        let _ = write!(
            o,
            r#"<section id="os"><h2>Operating system</h2><dl><dt>updates pending</dt><dd>{pending}</dd><dt>held / kept back</dt><dd>{} / {}</dd><dt>reboot</dt><dd>{reboot}</dd><dt>next reboot slot</dt><dd>{}</dd><dt>last reboot</dt><dd>{last}</dd><dt>booted</dt><dd>{}</dd><dt>last OS update</dt><dd>{}</dd></dl></section>"#,
            esc(&if s.held.is_empty() { "—".to_string() } else { s.held.join(", ") }),
            esc(&if s.kept_back.is_empty() { "—".to_string() } else { s.kept_back.join(", ") }),
            s.next_reboot_slot.map(|t| esc(&ts(t))).unwrap_or_else(|| "—".into()),
            when(now, s.boot_time),
            when(now, s.last_os_update),
        );
    }

    // Certificates.
    if !d.certificates.is_empty() {
        o.push_str(r#"<section id="certificates"><h2>Certificates</h2>"#);
        for c in &d.certificates {
            let left = c.not_after.map(|t| t.duration_since(now).as_secs());
            let state = match (c.self_signed, left, c.stuck_seconds) {
                (_, _, Some(_)) => pill("bad", "renewal stuck"),
                (true, _, _) => pill("warn", "self-signed (no certificate from the CA yet)"),
                (false, Some(l), _) if l <= 7 * 86400 => {
                    pill("bad", &format!("expires in {}", human_seconds(l.max(0))))
                }
                (false, Some(l), _) if l <= 21 * 86400 => pill("warn", &format!("expires in {}", human_seconds(l))),
                (false, Some(l), _) => pill("ok", &format!("valid for {}", human_seconds(l))),
                (false, None, _) => pill("warn", "unknown"),
            };
            let _ = write!(
                o,
                "<dl><dt>names</dt><dd>{}</dd><dt>state</dt><dd>{state}</dd><dt>issuer</dt><dd>{}</dd><dt>not after</dt><dd>{}</dd><dt>next renewal</dt><dd>{}</dd><dt>last renewal</dt><dd>{}</dd><dt>last error</dt><dd>{}</dd></dl>",
                esc(&c.names.join(", ")),
                esc(c.issuer.as_deref().unwrap_or("—")),
                when(now, c.not_after),
                when(now, c.next_renewal),
                when(now, c.renewed_at),
                match &c.last_error {
                    Some(e) => format!("{} ({} in a row)", esc(e), c.failures),
                    None => "—".into(),
                }
            );
        }
        o.push_str("</section>");
    }

    // Alerts.
    o.push_str(r#"<section id="alerts"><h2>Alerts</h2>"#);
    if d.alerts.is_empty() {
        o.push_str(r#"<p class="muted">No alerts.</p>"#);
    } else {
        o.push_str("<table><tr><th>alert</th><th>status</th><th>severity</th><th>since</th><th>summary</th></tr>");
        for a in &d.alerts {
            let sc = match a.status.as_str() {
                "firing" => "bad",
                "pending" => "warn",
                _ => "ok",
            };
            let name = if a.subject.is_empty() { a.rule.clone() } else { format!("{}/{}", a.rule, a.subject) };
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&name),
                pill(sc, &a.status),
                pill(if a.severity == "critical" { "bad" } else { "warn" }, &a.severity),
                when(now, Some(a.fired_at.unwrap_or(a.active_since))),
                esc(&a.summary)
            );
        }
        o.push_str("</table>");
    }
    o.push_str("</section>");

    // Schedule.
    o.push_str(r#"<section id="schedule"><h2>Next scheduled runs</h2>"#);
    if d.schedule.is_empty() {
        o.push_str(r#"<p class="muted">Nothing scheduled.</p>"#);
    } else {
        o.push_str("<table><tr><th>task</th><th>schedule</th><th>last run</th><th>next run</th></tr>");
        for s in &d.schedule {
            let _ = write!(
                o,
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                esc(&s.task),
                esc(&s.schedule),
                when(now, s.last_run),
                match s.next_run {
                    Some(t) if t <= now => format!(r#"<span class="pill warn" title="{}">due now</span>"#, esc(&ts(t))),
                    other => when(now, other),
                }
            );
        }
        o.push_str("</table>");
    }
    o.push_str("</section>");

    // Dependencies.
    if let Some(deps) = &d.dependencies {
        dependencies(&mut o, deps, now, link_suffix);
    }

    // Staging clones, with their time left (docs/clones.md).
    if !d.clones.is_empty() {
        o.push_str(r#"<section id="clones"><h2>Staging clones</h2>"#);
        o.push_str("<table><tr><th>clone</th><th>phase</th><th>time left</th><th>port</th></tr>");
        for c in &d.clones {
            let phase =
                serde_json::to_value(c.phase).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
            let _ = write!(
                o,
                r#"<tr><td>{}</td><td>{}</td><td><span title="{}">{}</span></td><td>{}</td></tr>"#,
                esc(&c.name),
                esc(&phase),
                esc(&ts(c.expires_at)),
                if c.time_left_seconds == 0 {
                    "expired".to_string()
                } else {
                    esc(&human_seconds(c.time_left_seconds as i64))
                },
                c.web_port.map(|p| p.to_string()).unwrap_or_else(|| "—".into())
            );
        }
        o.push_str("</table></section>");
    }

    // Charts.
    let size_points: Vec<Point> =
        d.charts.repository_size.iter().map(|p| Point { x: p.at.as_second() as f64, y: p.bytes as f64 }).collect();
    let fmt_day =
        |x: f64| Timestamp::from_second(x as i64).map(|t| t.strftime("%m-%d %H:%M").to_string()).unwrap_or_default();
    let _ = write!(
        o,
        r#"<section id="chart-repository"><h2>Repository size</h2>{}</section>"#,
        svg::line_chart("Repository size over time", &size_points, &|v| human_bytes(v), &fmt_day)
    );
    let bars: Vec<Bar> = d
        .charts
        .job_durations
        .iter()
        .map(|j| Bar {
            label: j.ended_at.strftime("%m-%d %H:%M").to_string(),
            value: j.seconds,
            class: match outcome_class(j.outcome) {
                "ok" => "ok",
                "bad" => "bad",
                "warn" => "warn",
                _ => "neutral",
            },
            title: format!("job {} {} ({}): {}", j.job, j.kind, j.outcome.as_str(), human_secs_f(j.seconds)),
        })
        .collect();
    let _ = write!(
        o,
        r#"<section id="chart-durations"><h2>Job durations</h2>{}</section>"#,
        svg::bar_chart("Job durations over time (green: succeeded, red: failed)", &bars, &human_secs_f)
    );

    // Jobs.
    o.push_str(r#"<section id="jobs" class="wide"><h2>Recent jobs</h2>"#);
    if d.jobs.is_empty() {
        o.push_str(r#"<p class="muted">No jobs yet.</p>"#);
    } else {
        o.push_str("<table><tr><th class=num>id</th><th>job</th><th>trigger</th><th>outcome</th><th>started</th><th class=num>took</th><th>error</th><th>log</th></tr>");
        for j in &d.jobs {
            let _ = write!(
                o,
                r#"<tr><td class=num>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=num>{}</td><td>{}</td><td><a href="{}{}">log</a></td></tr>"#,
                j.id,
                esc(&j.kind),
                esc(j.trigger.as_str()),
                pill(outcome_class(j.outcome), j.outcome.as_str()),
                when(now, Some(j.started_at)),
                j.duration_seconds.map(human_secs_f).unwrap_or_default(),
                esc(j.error.as_deref().unwrap_or("")),
                esc(&j.log_url),
                esc(link_suffix)
            );
        }
        o.push_str("</table>");
    }
    o.push_str("</section></main></body></html>\n");
    o
}

/// The dependency report's section (docs/deps.md): vulnerable packages with every advisory ID,
/// outdated packages, the OSV database's date, the last run and the last failure.
fn dependencies(o: &mut String, deps: &DependenciesSection, now: Timestamp, link_suffix: &str) {
    o.push_str(r#"<section id="dependencies" class="wide"><h2>Dependencies</h2>"#);
    let job_link = |j: i64| format!(r#"<a href="/status/jobs/{j}/log{}">job {j}</a>"#, esc(link_suffix));
    o.push_str("<dl>");
    let _ = write!(
        o,
        "<dt>schedule</dt><dd>{}</dd>",
        deps.schedule
            .as_deref()
            .map(|s| format!("<code>{}</code>", esc(s)))
            .unwrap_or_else(|| "on demand (`caretaker deps`)".into())
    );
    match &deps.last_run {
        Some(r) => {
            let _ = write!(
                o,
                "<dt>last run</dt><dd>{} {} · {}</dd>",
                when(now, Some(r.at)),
                pill(outcome_class(r.outcome), r.outcome.as_str()),
                job_link(r.job)
            );
        }
        None => o.push_str(r#"<dt>last run</dt><dd class="muted">never</dd>"#),
    }
    if let Some(f) = &deps.last_failure {
        let _ = write!(
            o,
            "<dt>last failure</dt><dd>{} · {} · {}</dd>",
            when(now, Some(f.at)),
            job_link(f.job),
            esc(f.error.as_deref().unwrap_or("failed"))
        );
    }
    let Some(r) = &deps.report else {
        o.push_str(r#"</dl><p class="muted">No successful report yet.</p></section>"#);
        return;
    };
    let vulnerable = match r.vulnerable {
        Some(0) => pill("ok", "none"),
        Some(n) => pill("bad", &format!("{n} packages, {} vulnerabilities", r.vulnerabilities.unwrap_or(0))),
        None => pill("warn", "not checked"),
    };
    let outdated = match r.outdated {
        Some(0) => pill("ok", "none"),
        Some(n) => pill("warn", &format!("{n} packages")),
        None => pill("neutral", "not checked"),
    };
    let _ = write!(
        o,
        "<dt>report</dt><dd>{} · {} · {} packages</dd><dt>OSV database</dt><dd>{}</dd><dt>vulnerable</dt><dd>{vulnerable}{}</dd><dt>outdated</dt><dd>{outdated}{}</dd></dl>",
        when(now, Some(r.at)),
        job_link(r.job),
        r.packages.map(|p| p.to_string()).unwrap_or_else(|| "?".into()),
        esc(r.database_date.as_deref().unwrap_or("unknown")),
        r.vulnerabilities_not_checked.as_deref().map(|w| format!(" <span class=muted>{}</span>", esc(w))).unwrap_or_default(),
        r.outdated_not_checked.as_deref().map(|w| format!(" <span class=muted>{}</span>", esc(w))).unwrap_or_default(),
    );
    if !r.findings.is_empty() {
        o.push_str("<table id=\"vulnerable\"><tr><th>package</th><th>installed</th><th>advisories</th><th>fixed in</th><th>summary</th></tr>");
        for f in &r.findings {
            let ids: Vec<String> = f.ids.iter().map(|i| format!("<code>{}</code>", esc(i))).collect();
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&f.package),
                esc(&f.version),
                ids.join(" "),
                if f.fixed_in.is_empty() { "no fix yet".to_string() } else { esc(&f.fixed_in.join(", ")) },
                esc(f.summary.as_deref().unwrap_or(""))
            );
        }
        o.push_str("</table>");
    }
    if !r.outdated_packages.is_empty() {
        o.push_str("<table id=\"outdated\"><tr><th>package</th><th>installed</th><th>newest of its line</th><th>line</th><th>newest</th></tr>");
        for p in &r.outdated_packages {
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&p.package),
                esc(&p.version),
                esc(p.compared_with.as_deref().unwrap_or("?")),
                esc(&p.line),
                esc(p.latest.as_deref().unwrap_or("?"))
            );
        }
        o.push_str("</table>");
    }
    o.push_str("</section>");
}
