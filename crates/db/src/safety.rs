//! What a database holds, and the safety check built on it: backups refuse to run against a
//! database that is missing, has no tables, has only empty tables, or has fewer rows than the
//! config's `min_rows` asks for — the typical sign of a lost volume or a wrong URL. Restores
//! refuse a target that has any tables at all. Pure: the adapters observe, this judges.

use std::collections::BTreeMap;
use std::fmt;

/// One user table and whether it has at least one row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableState {
    /// `table`, or `schema.table` outside PostgreSQL's `public` schema.
    pub name: String,
    pub has_rows: bool,
}

/// What a database holds, as far as the safety checks care.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Contents {
    pub exists: bool,
    pub tables: Vec<TableState>,
}

impl Contents {
    /// No user tables at all: a restore may write here.
    pub fn is_blank(&self) -> bool {
        self.tables.is_empty()
    }

    /// At least one user table has a row.
    pub fn has_data(&self) -> bool {
        self.tables.iter().any(|t| t.has_rows)
    }
}

/// Why the safety check failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    DatabaseMissing,
    NoTables,
    AllTablesEmpty { tables: usize },
    TableMissing { table: String },
    TooFewRows { table: String, want: u64, found: u64 },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::DatabaseMissing => write!(f, "the database does not exist"),
            Problem::NoTables => write!(f, "the database has no tables"),
            Problem::AllTablesEmpty { tables } => write!(f, "all {tables} tables are empty"),
            Problem::TableMissing { table } => write!(f, "table `{table}` (from min_rows) does not exist"),
            Problem::TooFewRows { table, want, found } => {
                write!(f, "table `{table}` has {found} rows, fewer than the {want} min_rows asks for")
            }
        }
    }
}

/// Judges `contents` and the bounded row counts of the `min_rows` tables (`None`: the table
/// does not exist; counts are taken with `LIMIT want`, so `found` is at most `want`).
pub fn judge(
    contents: &Contents,
    min_rows: &BTreeMap<String, u64>,
    counts: &BTreeMap<String, Option<u64>>,
) -> Vec<Problem> {
    if !contents.exists {
        return vec![Problem::DatabaseMissing];
    }
    let mut problems = Vec::new();
    if contents.tables.is_empty() {
        problems.push(Problem::NoTables);
    } else if !contents.has_data() {
        problems.push(Problem::AllTablesEmpty { tables: contents.tables.len() });
    }
    for (table, want) in min_rows {
        match counts.get(table).copied().flatten() {
            None => problems.push(Problem::TableMissing { table: table.clone() }),
            Some(found) if found < *want => {
                problems.push(Problem::TooFewRows { table: table.clone(), want: *want, found })
            }
            Some(_) => {}
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contents(tables: &[(&str, bool)]) -> Contents {
        Contents {
            exists: true,
            tables: tables.iter().map(|(n, r)| TableState { name: n.to_string(), has_rows: *r }).collect(),
        }
    }

    #[test]
    fn judges_table_driven() {
        let none = BTreeMap::new();
        let min: BTreeMap<String, u64> = [("users".to_string(), 10)].into();
        type Case<'a> = (Contents, &'a BTreeMap<String, u64>, BTreeMap<String, Option<u64>>, Vec<Problem>);
        let cases: Vec<Case> = vec![
            (Contents::default(), &none, BTreeMap::new(), vec![Problem::DatabaseMissing]),
            (contents(&[]), &none, BTreeMap::new(), vec![Problem::NoTables]),
            (
                contents(&[("a", false), ("b", false)]),
                &none,
                BTreeMap::new(),
                vec![Problem::AllTablesEmpty { tables: 2 }],
            ),
            (contents(&[("a", false), ("users", true)]), &none, BTreeMap::new(), vec![]),
            (contents(&[("users", true)]), &min, [("users".to_string(), Some(10))].into(), vec![]),
            (
                contents(&[("users", true)]),
                &min,
                [("users".to_string(), Some(3))].into(),
                vec![Problem::TooFewRows { table: "users".into(), want: 10, found: 3 }],
            ),
            (
                contents(&[("a", true)]),
                &min,
                [("users".to_string(), None)].into(),
                vec![Problem::TableMissing { table: "users".into() }],
            ),
        ];
        for (i, (c, min, counts, want)) in cases.into_iter().enumerate() {
            assert_eq!(judge(&c, min, &counts), want, "case {i}");
        }
    }

    #[test]
    fn problems_read_as_sentences() {
        let p = Problem::TooFewRows { table: "users".into(), want: 10, found: 3 };
        assert_eq!(p.to_string(), "table `users` has 3 rows, fewer than the 10 min_rows asks for");
    }
}
