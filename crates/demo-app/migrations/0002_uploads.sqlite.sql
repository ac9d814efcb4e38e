-- Uploaded files: the bytes live in the files directory under `stored_name`
-- (SQLite flavour; see 0002_uploads.postgres.sql).
CREATE TABLE uploads (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    filename TEXT NOT NULL,
    stored_name TEXT NOT NULL UNIQUE,
    content_type TEXT,
    size BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    created_at TEXT NOT NULL
);
