//! Connection URLs (`postgres://user:pw@host:port/db?sslmode=disable`,
//! `mysql://user:pw@host:port/db`): parsed here once, without I/O, so the adapters can hand
//! each part to its consumer (the password only to a 0600 file or a child's environment) and
//! show the rest in messages.

/// A parsed database URL. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct DbUrl {
    pub scheme: String,
    pub user: Option<String>,
    pub password: Option<String>,
    /// A host name, an IP address, or (percent-encoded in the URL) a Unix socket directory.
    pub host: Option<String>,
    pub port: Option<u16>,
    pub database: Option<String>,
    /// Query parameters in order (`sslmode=disable`, `host=/run/postgresql`, ...).
    pub params: Vec<(String, String)>,
}

impl std::fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display())
    }
}

impl DbUrl {
    /// The URL without its password, safe for messages and logs.
    pub fn display(&self) -> String {
        let mut s = format!("{}://", self.scheme);
        if let Some(u) = &self.user {
            s.push_str(u);
            if self.password.is_some() {
                s.push_str(":***");
            }
            s.push('@');
        }
        match &self.host {
            Some(h) if h.contains(':') => s.push_str(&format!("[{h}]")),
            Some(h) => s.push_str(h),
            None => {}
        }
        if let Some(p) = self.port {
            s.push_str(&format!(":{p}"));
        }
        if let Some(d) = &self.database {
            s.push('/');
            s.push_str(d);
        }
        s
    }

    /// The first value of a query parameter.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// Parses `scheme://[user[:password]@][host][:port][/database][?k=v&...]`. Parts are
/// percent-decoded. The error says what is wrong without repeating the URL (it holds a secret).
pub fn parse_url(url: &str) -> Result<DbUrl, String> {
    let (scheme, rest) = url.split_once("://").ok_or("not a URL: expected scheme://host/database")?;
    if scheme.is_empty() || !scheme.chars().all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-') {
        return Err("the URL scheme is missing or invalid".into());
    }
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
        None => (None, authority),
    };
    let (user, password) = match userinfo {
        None => (None, None),
        Some(ui) => match ui.split_once(':') {
            Some((u, p)) => (non_empty(decode(u)?), Some(decode(p)?)),
            None => (non_empty(decode(ui)?), None),
        },
    };
    let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
        let (h, after) = h.split_once(']').ok_or("unclosed [ in the URL's host")?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(parse_port(p)?),
            None if after.is_empty() => None,
            None => return Err("unexpected text after ] in the URL's host".into()),
        };
        (Some(h.to_string()), port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (non_empty(decode(h)?), Some(parse_port(p)?)),
            None => (non_empty(decode(hostport)?), None),
        }
    };
    let database = match path {
        Some(p) => non_empty(decode(p)?),
        None => None,
    };
    let mut params = Vec::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        params.push((decode(k)?, decode(v)?));
    }
    Ok(DbUrl { scheme: scheme.to_ascii_lowercase(), user, password, host, port, database, params })
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn parse_port(p: &str) -> Result<u16, String> {
    p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| format!("invalid port `{p}` in the URL"))
}

fn decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            let b =
                hex.and_then(|h| u8::from_str_radix(h, 16).ok()).ok_or("invalid percent-encoding (%XX) in the URL")?;
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the URL decodes to invalid UTF-8".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_url() {
        let u = parse_url("postgres://app:s%40cret:x@db.example.org:5433/guest%20book?sslmode=disable&x").unwrap();
        assert_eq!(u.scheme, "postgres");
        assert_eq!(u.user.as_deref(), Some("app"));
        assert_eq!(u.password.as_deref(), Some("s@cret:x"));
        assert_eq!(u.host.as_deref(), Some("db.example.org"));
        assert_eq!(u.port, Some(5433));
        assert_eq!(u.database.as_deref(), Some("guest book"));
        assert_eq!(u.param("sslmode"), Some("disable"));
        assert_eq!(u.param("x"), Some(""));
        assert_eq!(u.display(), "postgres://app:***@db.example.org:5433/guest book");
        assert!(!format!("{u:?}").contains("cret"));
    }

    #[test]
    fn parses_minimal_and_socket_urls() {
        let u = parse_url("mysql://localhost").unwrap();
        assert_eq!((u.user, u.password, u.port, u.database), (None, None, None, None));
        let u = parse_url("postgresql://app@%2Frun%2Fpostgresql/app").unwrap();
        assert_eq!(u.host.as_deref(), Some("/run/postgresql"));
        let u = parse_url("postgres:///app?host=/run/postgresql").unwrap();
        assert_eq!(u.host, None);
        assert_eq!(u.param("host"), Some("/run/postgresql"));
        let u = parse_url("postgres://u:p@[::1]:5432/d").unwrap();
        assert_eq!(u.host.as_deref(), Some("::1"));
        assert_eq!(u.display(), "postgres://u:***@[::1]:5432/d");
    }

    #[test]
    fn password_with_at_sign_splits_at_last_at() {
        let u = parse_url("mysql://root:a@b@127.0.0.1:3306/mysql").unwrap();
        assert_eq!(u.password.as_deref(), Some("a@b"));
        assert_eq!(u.host.as_deref(), Some("127.0.0.1"));
    }

    #[test]
    fn rejects_bad_urls_without_echoing_them() {
        for bad in ["no-scheme", "postgres://u:secretpw@h:99999/d", "postgres://h/%zz", "://h/d", "pg://[::1/d"] {
            let e = parse_url(bad).unwrap_err();
            assert!(!e.contains("secretpw"), "{e}");
        }
    }
}
