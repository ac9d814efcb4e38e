//! The pages visitors see when the app does not answer: maintenance (planned), service mode
//! (the app cannot run) and bad gateway (the app does not answer right now). Plain HTML with
//! inline CSS, no external resources, so they work when everything else is down.
//!
//! Service mode deliberately shows no reason: internals are for operators (status page).

/// Escapes text for HTML.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(title: &str, heading: &str, body_html: &str, refresh_seconds: Option<u64>) -> String {
    let refresh = refresh_seconds.map(|s| format!("<meta http-equiv=\"refresh\" content=\"{s}\">")).unwrap_or_default();
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
{refresh}<title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;background:#f5f5f4;color:#1c1917;display:flex;min-height:90vh;align-items:center;justify-content:center;margin:0}}
main{{max-width:34rem;padding:2rem;background:#fff;border-radius:12px;box-shadow:0 1px 4px #0002}}h1{{font-size:1.4rem;margin-top:0}}p{{line-height:1.5}}small{{color:#78716c}}</style>
</head><body><main><h1>{heading}</h1>{body_html}</main></body></html>
"#
    )
}

/// The maintenance page: the operator's message, and it reloads itself.
pub fn maintenance(app: &str, message: &str, retry_after_seconds: u64) -> String {
    page(
        &format!("{} — maintenance", escape(app)),
        "We'll be right back",
        &format!(
            "<p>{}</p><p><small>This page reloads itself every {retry_after_seconds} seconds.</small></p>",
            escape(message)
        ),
        Some(retry_after_seconds),
    )
}

/// The service-mode page: the app cannot run and an operator has been alerted.
pub fn service_unavailable(app: &str, retry_after_seconds: u64) -> String {
    page(
        &format!("{} — service unavailable", escape(app)),
        "Service temporarily unavailable",
        "<p>The site cannot be served right now. The people who run it have been notified and are working on it.</p>\
         <p><small>Please try again later.</small></p>",
        Some(retry_after_seconds),
    )
}

/// The app did not answer this request (down, restarting, too slow).
pub fn bad_gateway(app: &str, timed_out: bool) -> String {
    let what = if timed_out { "took too long to answer" } else { "is not answering right now" };
    page(
        &format!("{} — unavailable", escape(app)),
        "The site is not answering",
        &format!("<p>The application {what}. Please try again in a moment.</p>"),
        None,
    )
}

/// The request body is larger than the site accepts.
pub fn too_large(limit_bytes: u64) -> String {
    page(
        "Request too large",
        "Request too large",
        &format!("<p>This site accepts uploads of up to {} MiB.</p>", limit_bytes >> 20),
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_escaped_and_the_page_refreshes() {
        let p = maintenance("guestbook", "<script>alert(1)</script> & more", 30);
        assert!(p.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; more"));
        assert!(!p.contains("<script>"));
        assert!(p.contains(r#"<meta http-equiv="refresh" content="30">"#));
    }
}
