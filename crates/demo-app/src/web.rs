//! The HTTP side: an axum router over [`App`].

use std::fmt::Write as _;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Multipart, Path as UrlPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::config::Config;
use crate::db::Database;
use crate::migrations::{self, Migration};

/// Largest accepted upload request.
pub const MAX_UPLOAD_BYTES: usize = 64 * 1024 * 1024;

/// The running application: configuration, database handle, the release's migrations and
/// version. Cheap to clone.
#[derive(Clone)]
pub struct App {
    inner: Arc<AppInner>,
}

struct AppInner {
    config: Config,
    db: Database,
    migrations: Vec<Migration>,
    version: String,
}

impl App {
    /// Open the database, read the release's migrations and VERSION, create the files
    /// directory. Fails when migrations are pending unless `allow_pending`.
    pub async fn open(config: Config, allow_pending: bool) -> Result<App> {
        let db = Database::open(&config.database_url).await?;
        let migrations = match migrations::load_dir(&config.migrations_dir, db.dialect()) {
            Ok(m) => m,
            Err(e) if allow_pending => {
                eprintln!("demo-app: warning: {e:#}");
                Vec::new()
            }
            Err(e) => return Err(e),
        };
        let applied = db.applied_migrations().await?;
        let pending = migrations::pending(&migrations, &applied);
        if !pending.is_empty() {
            let list = pending.iter().map(|m| m.id()).collect::<Vec<_>>().join(", ");
            if !allow_pending {
                bail!(
                    "refusing to serve: {} migration(s) pending on {}: {list}; run `migrate` \
                     first (or pass --allow-pending)",
                    pending.len(),
                    db.describe()
                );
            }
            eprintln!("demo-app: warning: serving with pending migrations: {list}");
        }
        for unknown in migrations::unknown(&migrations, &applied) {
            eprintln!(
                "demo-app: warning: the database has migration {} which this release does not know",
                migrations::migration_id(unknown.version, &unknown.name)
            );
        }
        tokio::fs::create_dir_all(&config.files_dir)
            .await
            .with_context(|| format!("cannot create {}", config.files_dir.display()))?;
        let version = config.read_version();
        Ok(App { inner: Arc::new(AppInner { config, db, migrations, version }) })
    }

    /// The database handle.
    pub fn database(&self) -> &Database {
        &self.inner.db
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The release's VERSION (or "unknown").
    pub fn version(&self) -> &str {
        &self.inner.version
    }

    /// The HTTP routes.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/", get(index))
            .route("/healthz", get(healthz))
            .route("/version", get(version))
            .route("/entries", post(add_entry))
            .route("/upload", post(upload).layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES)))
            .route("/files/{id}", get(serve_file))
            .route("/api/entries", get(api_entries))
            .layer(middleware::from_fn(log_requests))
            .with_state(self.clone())
    }
}

/// Serve `app` on an already bound listener until `shutdown` completes, then finish the
/// in-flight requests (graceful shutdown).
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    app: App,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    axum::serve(listener, app.router()).with_graceful_shutdown(shutdown).await.context("HTTP server failed")
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    eprintln!("demo-app: shutting down");
}

async fn log_requests(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let start = Instant::now();
    let resp = next.run(req).await;
    if path != "/healthz" {
        eprintln!("demo-app: {method} {path} {} {}ms", resp.status().as_u16(), start.elapsed().as_millis());
    }
    resp
}

/// An error answered as a plain-text response.
struct AppError(StatusCode, String);

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        if self.0.is_server_error() {
            eprintln!("demo-app: error: {}", self.1);
        }
        (self.0, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{}\n", self.1)).into_response()
    }
}

impl From<anyhow::Error> for AppError {
    fn from(e: anyhow::Error) -> Self {
        AppError(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))
    }
}

fn bad_request(msg: impl Into<String>) -> AppError {
    AppError(StatusCode::BAD_REQUEST, msg.into())
}

/// Escape text for HTML element content and attribute values.
pub fn escape_html(s: &str) -> String {
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

async fn healthz(State(app): State<App>) -> Response {
    let text = |code: StatusCode, msg: String| {
        (code, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], msg).into_response()
    };
    let flag = app.inner.config.release_dir.join("HEALTH_FAIL");
    if app.inner.config.health_fail || flag.exists() {
        let reason = std::fs::read_to_string(&flag).unwrap_or_default();
        let reason = reason.trim();
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            if reason.is_empty() {
                "health check forced to fail (HEALTH_FAIL)\n".to_string()
            } else {
                format!("health check forced to fail (HEALTH_FAIL): {reason}\n")
            },
        );
    }
    let applied = match app.inner.db.applied_migrations().await {
        Ok(a) => a,
        Err(e) => return text(StatusCode::SERVICE_UNAVAILABLE, format!("database unreachable: {e:#}\n")),
    };
    let pending = migrations::pending(&app.inner.migrations, &applied);
    if !pending.is_empty() {
        let list = pending.iter().map(|m| m.id()).collect::<Vec<_>>().join(", ");
        return text(StatusCode::SERVICE_UNAVAILABLE, format!("migrations pending: {list}\n"));
    }
    text(StatusCode::OK, "ok".to_string())
}

async fn version(State(app): State<App>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{}\n", app.inner.version))
}

async fn api_entries(State(app): State<App>) -> Result<Response, AppError> {
    Ok(Json(app.inner.db.list_entries(1000).await?).into_response())
}

fn human_size(n: i64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

async fn index(State(app): State<App>) -> Result<Html<String>, AppError> {
    let entries = app.inner.db.list_entries(100).await?;
    let uploads = app.inner.db.list_uploads(100).await?;
    let mut h = String::new();
    let version = escape_html(&app.inner.version);
    let _ = write!(
        h,
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>caretaker demo app</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; color: #222; }}
form {{ margin: 1rem 0; padding: 1rem; background: #f4f4f4; border-radius: 6px; }}
input[type=text], textarea {{ width: 100%; box-sizing: border-box; margin: .25rem 0 .5rem; }}
.entry {{ border-bottom: 1px solid #ddd; padding: .5rem 0; }}
.meta {{ color: #666; font-size: .85rem; }}
footer {{ color: #888; font-size: .8rem; margin-top: 2rem; }}
</style>
</head>
<body>
<h1>caretaker demo app</h1>
<h2>Guestbook</h2>
<form method="post" action="/entries">
<label>Name <input type="text" name="author" maxlength="100" required></label>
<label>Message <textarea name="body" rows="3" maxlength="10000" required></textarea></label>
<button type="submit">Add entry</button>
</form>
"#
    );
    if entries.is_empty() {
        h.push_str("<p class=\"empty\">No entries yet.</p>\n");
    }
    for e in &entries {
        let _ = writeln!(
            h,
            "<div class=\"entry\" id=\"entry-{}\"><div class=\"meta\">{} &middot; {}</div><div class=\"body\">{}</div></div>",
            e.id,
            escape_html(&e.author),
            escape_html(&e.created_at),
            escape_html(&e.body).replace('\n', "<br>")
        );
    }
    h.push_str(
        r#"<h2>Files</h2>
<form method="post" action="/upload" enctype="multipart/form-data">
<input type="file" name="file" required>
<button type="submit">Upload</button>
</form>
"#,
    );
    if uploads.is_empty() {
        h.push_str("<p class=\"empty\">No files yet.</p>\n");
    } else {
        h.push_str("<ul class=\"files\">\n");
        for u in &uploads {
            let _ = writeln!(
                h,
                "<li id=\"upload-{id}\"><a href=\"/files/{id}\">{name}</a> <span class=\"meta\">{size} &middot; {at}</span></li>",
                id = u.id,
                name = escape_html(&u.filename),
                size = human_size(u.size),
                at = escape_html(&u.created_at),
            );
        }
        h.push_str("</ul>\n");
    }
    let _ = write!(
        h,
        "<footer>version {version} &middot; database {} &middot; <a href=\"/api/entries\">JSON</a></footer>\n</body>\n</html>\n",
        app.inner.db.dialect().as_str()
    );
    Ok(Html(h))
}

#[derive(Deserialize)]
struct NewEntry {
    #[serde(default)]
    author: String,
    #[serde(default)]
    body: String,
}

async fn add_entry(State(app): State<App>, Form(form): Form<NewEntry>) -> Result<Response, AppError> {
    let author = form.author.trim();
    let body = form.body.trim();
    if author.is_empty() || body.is_empty() {
        return Err(bad_request("both a name (author) and a message (body) are required"));
    }
    if author.chars().count() > 100 || body.chars().count() > 10_000 {
        return Err(bad_request("name or message too long"));
    }
    app.inner.db.add_entry(author, body).await?;
    Ok(Redirect::to("/").into_response())
}

static UPLOAD_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh, unique, path-safe file name for an upload.
fn generate_stored_name() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("u{nanos:x}-{:x}-{:x}", std::process::id(), UPLOAD_COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Strip any directory part and control characters from a client-sent file name.
fn clean_filename(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = base.chars().filter(|c| !c.is_control()).take(200).collect();
    let cleaned = cleaned.trim().to_string();
    if cleaned.is_empty() || cleaned == "." || cleaned == ".." {
        String::new()
    } else {
        cleaned
    }
}

async fn upload(State(app): State<App>, mut multipart: Multipart) -> Result<Response, AppError> {
    let mut saved = 0;
    while let Some(mut field) = multipart.next_field().await.map_err(|e| bad_request(format!("bad upload: {e}")))? {
        if field.name() != Some("file") {
            continue;
        }
        let filename = field.file_name().map(clean_filename).unwrap_or_default();
        let content_type = field.content_type().map(str::to_string).filter(|s| s.len() <= 200);
        let files_dir = app.inner.config.files_dir.clone();
        let stored_name = generate_stored_name();
        let tmp: PathBuf = files_dir.join(format!(".{stored_name}.part"));
        let written: Result<(i64, String), AppError> = async {
            let mut f = tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .await
                .with_context(|| format!("cannot create {}", tmp.display()))?;
            let mut hasher = Sha256::new();
            let mut size: i64 = 0;
            while let Some(chunk) = field.chunk().await.map_err(|e| bad_request(format!("bad upload: {e}")))? {
                hasher.update(&chunk);
                size += chunk.len() as i64;
                f.write_all(&chunk).await.with_context(|| format!("cannot write {}", tmp.display()))?;
            }
            f.sync_all().await.context("cannot sync upload")?;
            let digest = hasher.finalize();
            let hex = digest.iter().fold(String::new(), |mut s, b| {
                let _ = write!(s, "{b:02x}");
                s
            });
            Ok((size, hex))
        }
        .await;
        let (size, sha256) = match written {
            Ok(v) => v,
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(e);
            }
        };
        if filename.is_empty() && size == 0 {
            // The browser's "no file chosen".
            let _ = tokio::fs::remove_file(&tmp).await;
            continue;
        }
        let filename = if filename.is_empty() { "upload".to_string() } else { filename };
        let dest = files_dir.join(&stored_name);
        if let Err(e) = tokio::fs::rename(&tmp, &dest).await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(anyhow::Error::new(e).context(format!("cannot move upload to {}", dest.display())).into());
        }
        if let Err(e) = app.inner.db.add_upload(&filename, &stored_name, content_type.as_deref(), size, &sha256).await {
            let _ = tokio::fs::remove_file(&dest).await;
            return Err(e.into());
        }
        saved += 1;
    }
    if saved == 0 {
        return Err(bad_request("no file in the upload (form field \"file\")"));
    }
    Ok(Redirect::to("/").into_response())
}

/// Content types served inline; everything else is a download.
const INLINE_TYPES: &[&str] = &["text/plain", "image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf"];

fn header_filename(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' { c } else { '_' }).collect()
}

async fn serve_file(State(app): State<App>, UrlPath(id): UrlPath<i64>) -> Result<Response, AppError> {
    let Some(up) = app.inner.db.get_upload(id).await? else {
        return Err(AppError(StatusCode::NOT_FOUND, format!("no upload {id}")));
    };
    if up.stored_name.is_empty() || up.stored_name.contains(['/', '\\']) || up.stored_name.starts_with('.') {
        return Err(AppError(StatusCode::INTERNAL_SERVER_ERROR, format!("upload {id} has an invalid stored name")));
    }
    let path = app.inner.config.files_dir.join(&up.stored_name);
    let data = match tokio::fs::read(&path).await {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(AppError(StatusCode::NOT_FOUND, format!("upload {id} is recorded but its file is missing")))
        }
        Err(e) => return Err(anyhow::Error::new(e).context(format!("cannot read {}", path.display())).into()),
    };
    let mime = up
        .content_type
        .as_deref()
        .map(|t| t.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        .unwrap_or_default();
    let inline = INLINE_TYPES.contains(&mime.as_str());
    let content_type = if inline { mime } else { "application/octet-stream".to_string() };
    let disposition =
        format!("{}; filename=\"{}\"", if inline { "inline" } else { "attachment" }, header_filename(&up.filename));
    let mut resp = Response::new(Body::from(data));
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_html() {
        assert_eq!(escape_html(r#"<a href="x">'&'</a>"#), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }

    #[test]
    fn cleans_filenames() {
        assert_eq!(clean_filename("../../etc/passwd"), "passwd");
        assert_eq!(clean_filename("C:\\x\\report.pdf"), "report.pdf");
        assert_eq!(clean_filename(".."), "");
        assert_eq!(clean_filename("a\nb.txt"), "ab.txt");
        assert_eq!(header_filename("résumé \"x\".txt"), "r_sum_ _x_.txt");
    }
}
