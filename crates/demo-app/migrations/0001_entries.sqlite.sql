-- Guestbook entries (SQLite flavour; see 0001_entries.postgres.sql).
CREATE TABLE entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    author TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX entries_created_at ON entries (created_at);
