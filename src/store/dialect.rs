//! One SQL text for both backends. Statements are written in the SQLite
//! dialect restricted to what Postgres also accepts, plus two SQLite-only
//! spellings that [`to_postgres`] rewrites once per statement (cached by
//! [`sql!`](crate::sql)):
//!
//! - `json_each($N)` (a JSON array bound as text, each element an object read
//!   with `value ->> 'key'`) → `payhook_json_rows($N::jsonb)`, which is
//!   `jsonb_array_elements` planned as one row (see migration 0003: with the
//!   built-in's 100-row estimate the planner scans whole tables);
//! - a unary `+` before a text column (`+d.status = 'pending'`, which stops
//!   SQLite from choosing the status index over the primary key) →
//!   `(d.status || '')`, which does the same on Postgres and also hides the
//!   column's statistics: joined to a batch, a status that the (often stale)
//!   statistics call rare made the planner scan every such row once per
//!   batch element (a second per outcome batch at a 40,000 backlog).
//!
//! Integers read from JSON are written `CAST(value ->> 'n' AS BIGINT)`, which
//! both accept; every integer column is `BIGINT` on Postgres.

/// The Postgres spelling of a statement written for both backends.
pub fn to_postgres(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut rest = sql;
    while let Some(at) = rest.find("json_each($") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "json_each(".len()..];
        let close = after.find(')').unwrap_or(after.len());
        out.push_str("payhook_json_rows(");
        out.push_str(&after[..close]);
        out.push_str("::jsonb");
        rest = &after[close..];
    }
    out.push_str(rest);
    // Unary plus: a `+` right before a letter, after a space or `(`. The
    // column becomes `(col || '')`: same value, but neither an index nor
    // the column's statistics apply to it.
    let bytes = out.as_bytes();
    let mut cleaned = String::with_capacity(out.len() + 16);
    let mut i = 0;
    while i < out.len() {
        let c = bytes[i];
        let unary = c == b'+'
            && i > 0
            && matches!(bytes[i - 1], b' ' | b'(')
            && bytes.get(i + 1).is_some_and(|b| b.is_ascii_alphabetic());
        if unary {
            let start = i + 1;
            let mut end = start;
            while end < out.len()
                && (bytes[end].is_ascii_alphanumeric() || matches!(bytes[end], b'_' | b'.'))
            {
                end += 1;
            }
            cleaned.push('(');
            cleaned.push_str(&out[start..end]);
            cleaned.push_str(" || '')");
            i = end;
        } else {
            let ch = out[i..].chars().next().unwrap_or(' ');
            cleaned.push(ch);
            i += ch.len_utf8();
        }
    }
    cleaned
}

#[cfg(test)]
mod tests {
    use super::to_postgres;

    #[test]
    fn rewrites_only_the_sqlite_spellings() {
        assert_eq!(
            to_postgres("SELECT value ->> 'id' FROM json_each($1) AS j WHERE +d.status = 'x' AND (+status = 1)"),
            "SELECT value ->> 'id' FROM payhook_json_rows($1::jsonb) AS j WHERE (d.status || '') = 'x' AND ((status || '') = 1)"
        );
        assert_eq!(
            to_postgres("SELECT a + 1, b +1 FROM t"),
            "SELECT a + 1, b +1 FROM t"
        );
        assert_eq!(
            to_postgres("json_each($12) JOIN json_each($3)"),
            "payhook_json_rows($12::jsonb) JOIN payhook_json_rows($3::jsonb)"
        );
    }
}
