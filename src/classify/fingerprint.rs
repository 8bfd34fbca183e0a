//! Statement fingerprints for the classification cache: the text with literal values replaced,
//! comments dropped and white space collapsed, so `… WHERE aid = 1` and `… WHERE aid = 2` are
//! parsed once between them.
//!
//! Sound because a classification never depends on a literal's value — except the values of
//! `SET` statements, which the cache re-reads from the original text (see
//! `session::statements::ClassCache`). Identifiers (quoted or not), keywords, operators and
//! parameter placeholders are kept as they are; `E'…'` strings are kept verbatim too, because
//! their escapes can make a text unparseable.

/// The fingerprint of `sql` (see the module documentation).
///
/// On every statement's path: runs of ordinary text are copied whole, and only quotes,
/// comments, numbers, `$` and white space are looked at one by one. Each byte is looked at once.
pub fn fingerprint(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut i = 0;
    while i < sql.len() {
        let run_end = ordinary_run_end(sql.as_bytes(), i, out.as_bytes().last().copied());
        if run_end > i {
            // Runs end before an ASCII byte or at the end: whole characters.
            out.push_str(sql.get(i..run_end).unwrap_or(""));
            i = run_end;
        } else {
            i = rewrite_special(sql, i, &mut out);
        }
    }
    let end = out.trim_end().len();
    out.truncate(end);
    out
}

/// Where the run of ordinary bytes from `i` ends: bytes the fingerprint keeps as they are.
/// `prev` is the last byte written to the fingerprint.
#[inline]
fn ordinary_run_end(b: &[u8], mut i: usize, mut prev: Option<u8>) -> usize {
    while i < b.len() {
        let c = b[i];
        let ordinary = if c == b' ' {
            // A single space between two words is kept as it is.
            prev.is_some_and(|p| p != b' ')
                && b.get(i + 1).is_some_and(|n| !n.is_ascii_whitespace())
        } else {
            !is_special(c, prev.is_some_and(is_ident))
        };
        if !ordinary {
            break;
        }
        prev = Some(c);
        i += 1;
    }
    i
}

/// Writes what the special byte at `i` starts (a literal, a comment, a quoted name, white space,
/// or a `-`, `/` or `$` that starts nothing) to `out`, and returns where scanning goes on.
#[inline]
fn rewrite_special(sql: &str, i: usize, out: &mut String) -> usize {
    let b = sql.as_bytes();
    let prev_ident = out.as_bytes().last().copied().is_some_and(is_ident);
    let c = b[i];
    match c {
        b'\'' if !prev_is_e_prefix(out.as_bytes()) => {
            out.push_str("''");
            skip_quoted(b, i, b'\'')
        }
        b'\'' | b'"' => copy_quoted(sql, b, i, c, out),
        b'-' if b.get(i + 1) == Some(&b'-') => {
            space(out);
            b[i..]
                .iter()
                .position(|x| *x == b'\n')
                .map_or(b.len(), |n| i + n)
        }
        b'/' if b.get(i + 1) == Some(&b'*') => {
            space(out);
            skip_block_comment(b, i)
        }
        b'$' if !prev_ident => match dollar_tag_end(b, i) {
            Some(tag_end) => {
                out.push_str("''");
                skip_dollar_quoted(b, i, tag_end)
            }
            None => {
                out.push('$');
                i + 1
            }
        },
        b'0'..=b'9' if !prev_ident => {
            out.push('0');
            skip_number(b, i)
        }
        c if c.is_ascii_whitespace() => {
            space(out);
            i + 1
        }
        // `-`, `/` or `$` that start nothing.
        _ => {
            out.push(char::from(c));
            i + 1
        }
    }
}

/// A byte [`fingerprint`] cannot copy as part of a run (`prev_ident`: the byte before it is
/// part of an identifier).
fn is_special(c: u8, prev_ident: bool) -> bool {
    matches!(c, b'\'' | b'"' | b'-' | b'/' | b'$')
        || c.is_ascii_whitespace()
        || (c.is_ascii_digit() && !prev_ident)
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

/// `E'…'`: the output ends with an `E` that starts a word.
fn prev_is_e_prefix(out: &[u8]) -> bool {
    match out {
        [.., e] if !e.eq_ignore_ascii_case(&b'e') => false,
        [e] => e.eq_ignore_ascii_case(&b'e'),
        [.., p, _] => !is_ident(*p),
        [] => false,
    }
}

fn space(out: &mut String) {
    if !out.is_empty() && !out.ends_with(' ') {
        out.push(' ');
    }
}

#[cfg(test)]
fn utf8_len(first: u8) -> usize {
    match first {
        0xf0..=0xff => 4,
        0xe0..=0xef => 3,
        0xc0..=0xdf => 2,
        _ => 1,
    }
}

/// Index after the quoted run starting at `i` (a doubled quote is an escaped quote).
fn skip_quoted(b: &[u8], mut i: usize, q: u8) -> usize {
    i += 1;
    while i < b.len() {
        if b[i] == q {
            if b.get(i + 1) == Some(&q) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        // In E'…' strings a backslash escapes the next byte.
        if b[i] == b'\\' && q == b'\'' {
            i += 1;
        }
        i += 1;
    }
    b.len()
}

fn copy_quoted(sql: &str, b: &[u8], i: usize, q: u8, out: &mut String) -> usize {
    let end = skip_quoted(b, i, q);
    out.push_str(sql.get(i..end).unwrap_or(""));
    end
}

fn skip_block_comment(b: &[u8], mut i: usize) -> usize {
    // PostgreSQL block comments nest.
    let mut depth = 0usize;
    while i + 1 < b.len() {
        match (b[i], b[i + 1]) {
            (b'/', b'*') => {
                depth += 1;
                i += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    b.len()
}

/// `$tag$` at `i`: the index after the opening tag; None for `$1` or a lone `$`.
fn dollar_tag_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    if b.get(j).is_some_and(|c| c.is_ascii_digit()) {
        return None;
    }
    while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] >= 0x80) {
        j += 1;
    }
    (b.get(j) == Some(&b'$')).then_some(j + 1)
}

fn skip_dollar_quoted(b: &[u8], start: usize, tag_end: usize) -> usize {
    let tag = &b[start..tag_end];
    b[tag_end..]
        .windows(tag.len())
        .position(|w| w == tag)
        .map_or(b.len(), |p| tag_end + p + tag.len())
}

fn skip_number(b: &[u8], mut i: usize) -> usize {
    while i < b.len() {
        match b[i] {
            b'0'..=b'9' | b'.' | b'_' => i += 1,
            b'e' | b'E' => {
                i += 1;
                if matches!(b.get(i), Some(b'+' | b'-')) {
                    i += 1;
                }
            }
            _ => break,
        }
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::classify;
    use proptest::prelude::*;

    #[test]
    fn literals_vanish_and_structure_stays() {
        let a = fingerprint("SELECT abalance FROM pgbench_accounts WHERE aid = 12345;");
        let b = fingerprint("select abalance from pgbench_accounts where aid = 7;");
        assert_ne!(a, b, "keywords keep their case: only literals are replaced");
        assert_eq!(
            fingerprint("SELECT * FROM t1 WHERE a = 'x''y' AND b = 1.5e-3 -- c\n AND c = $1"),
            "SELECT * FROM t1 WHERE a = '' AND b = 0 AND c = $1"
        );
        assert_eq!(fingerprint("SELECT $$a;b$$, $f$x$f$"), "SELECT '', ''");
        assert_eq!(fingerprint("SELECT /* a /* b */ c */ 1"), "SELECT 0");
        assert_eq!(
            fingerprint("SELECT \"t 1\".x FROM \"t 1\""),
            "SELECT \"t 1\".x FROM \"t 1\""
        );
        assert_eq!(fingerprint("SELECT E'a\\'b', 1"), "SELECT E'a\\'b', 0");
        assert_eq!(fingerprint("SELECT nextval('s')"), "SELECT nextval('')");
        assert_eq!(fingerprint("SELECT 'ünï', x1"), "SELECT '', x1");
    }

    proptest! {
        /// Statements that differ only in literal values classify the same.
        #[test]
        fn same_fingerprint_same_class(n in any::<u32>(), s in "[a-z ;']{0,12}", t in 0usize..6) {
            let shapes = [
                "SELECT * FROM t WHERE a = {n} AND b = '{s}'",
                "INSERT INTO t VALUES ({n}, '{s}')",
                "SELECT nextval('{s}') + {n}",
                "SELECT {n}; UPDATE t SET b = '{s}'",
                "SELECT * FROM t WHERE a = {n} FOR UPDATE",
                "SELECT pg_advisory_lock({n}), '{s}'",
            ];
            let quoted = s.replace('\'', "''");
            let sql = shapes[t].replace("{n}", &n.to_string()).replace("{s}", &quoted);
            let other = shapes[t].replace("{n}", "1").replace("{s}", "x");
            prop_assert_eq!(fingerprint(&sql), fingerprint(&other));
            let (a, b) = (classify(&sql), classify(&other));
            prop_assert_eq!(a.target, b.target);
            prop_assert_eq!(a.pin, b.pin);
            prop_assert_eq!(a.statements, b.statements);
        }

        #[test]
        fn never_panics(s in "\\PC{0,80}") {
            let _ = fingerprint(&s);
        }

        /// The run-copying fingerprint is the byte-at-a-time one, on SQL-like and on any text.
        #[test]
        fn fast_fingerprint_equals_the_reference(
            sql in "([a-zA-Z_]{1,6}|[0-9.eE+-]{1,5}|[ \t\n]{1,2}|'[^']{0,4}'|\"[a-z ]{0,3}\"|\\$[a-z]{0,2}\\$|\\$[0-9]|--[a-z ]{0,4}\n|/\\*[a-z */]{0,6}\\*/|[(),;=*<>:/.]|[éü€]){0,24}",
            any in "\\PC{0,60}",
        ) {
            prop_assert_eq!(fingerprint(&sql), reference(&sql));
            prop_assert_eq!(fingerprint(&any), reference(&any));
        }
    }
    /// The first, byte-at-a-time implementation: the reference the fast one must agree with.
    fn reference(sql: &str) -> String {
        let b = sql.as_bytes();
        let mut out = String::with_capacity(sql.len());
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            let prev_ident = out.as_bytes().last().is_some_and(|p| is_ident(*p));
            i = match c {
                b'\'' if !prev_is_e_prefix(out.as_bytes()) => {
                    out.push_str("''");
                    skip_quoted(b, i, b'\'')
                }
                b'\'' | b'"' => copy_quoted(sql, b, i, c, &mut out),
                b'-' if b.get(i + 1) == Some(&b'-') => {
                    space(&mut out);
                    b[i..]
                        .iter()
                        .position(|x| *x == b'\n')
                        .map_or(b.len(), |n| i + n)
                }
                b'/' if b.get(i + 1) == Some(&b'*') => {
                    space(&mut out);
                    skip_block_comment(b, i)
                }
                b'$' if !prev_ident => match dollar_tag_end(b, i) {
                    Some(tag_end) => {
                        out.push_str("''");
                        skip_dollar_quoted(b, i, tag_end)
                    }
                    None => {
                        out.push('$');
                        i + 1
                    }
                },
                b'0'..=b'9' if !prev_ident => {
                    out.push('0');
                    skip_number(b, i)
                }
                c if c.is_ascii_whitespace() => {
                    space(&mut out);
                    i + 1
                }
                _ => {
                    // Copy one whole UTF-8 character.
                    let len = utf8_len(c);
                    out.push_str(sql.get(i..i + len).unwrap_or(""));
                    i + len
                }
            };
        }
        out.trim_end().to_owned()
    }
}
