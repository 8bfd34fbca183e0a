//! The cases of the differential protocol test (tests/differential/): a frontend message
//! sequence as data, its wire bytes, and a line-per-step text form for regression files.
//!
//! SQL and COPY text may contain `{t}`, replaced at send time by the table of the side that
//! runs the case (so the direct and the proxied side never share rows).

use std::fmt::Write as _;

use bytes::{BufMut, BytesMut};

/// One thing the client does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Query(String),
    Parse {
        name: String,
        sql: String,
    },
    /// Bind of `stmt` to `portal` with text parameters (None = NULL), text results.
    Bind {
        portal: String,
        stmt: String,
        params: Vec<Option<String>>,
    },
    /// Describe of a statement (`b'S'`) or portal (`b'P'`).
    Describe {
        kind: u8,
        name: String,
    },
    Execute {
        portal: String,
        max_rows: i32,
    },
    Close {
        kind: u8,
        name: String,
    },
    Sync,
    Flush,
    CopyData(String),
    CopyDone,
    CopyFail(String),
    /// FunctionCall of `oid` with text arguments, text result.
    FunctionCall {
        oid: u32,
        args: Vec<Option<String>>,
    },
    Terminate,
    /// The first `keep` bytes of a message, then the client shuts its writing side: a final
    /// message cut short.
    Truncated {
        keep: usize,
        step: Box<Step>,
    },
    /// Sends what is pending and waits for a reply with this type byte (or the end).
    Await(u8),
    /// Sends what is pending and sleeps.
    Sleep(u64),
    /// Sends what is pending and drops the connection with a TCP reset.
    Vanish,
    /// Bytes sent instead of a StartupMessage (first step only); the client then shuts its
    /// writing side and reads until the server closes.
    RawStartup(Vec<u8>),
}

impl Step {
    /// Appends the wire form (with `{t}` replaced by `table`); control steps write nothing.
    pub fn render(&self, table: &str, out: &mut BytesMut) {
        let sub = |s: &str| s.replace("{t}", table);
        match self {
            Step::Query(sql) => message(out, b'Q', |b| cstr(b, &sub(sql))),
            Step::Parse { name, sql } => message(out, b'P', |b| {
                cstr(b, name);
                cstr(b, &sub(sql));
                b.put_i16(0);
            }),
            Step::Bind {
                portal,
                stmt,
                params,
            } => message(out, b'B', |b| {
                cstr(b, portal);
                cstr(b, stmt);
                b.put_i16(0);
                values(b, params, &sub);
                b.put_i16(0);
            }),
            Step::Describe { kind, name } => message(out, b'D', |b| {
                b.put_u8(*kind);
                cstr(b, name);
            }),
            Step::Execute { portal, max_rows } => message(out, b'E', |b| {
                cstr(b, portal);
                b.put_i32(*max_rows);
            }),
            Step::Close { kind, name } => message(out, b'C', |b| {
                b.put_u8(*kind);
                cstr(b, name);
            }),
            Step::Sync => message(out, b'S', |_| {}),
            Step::Flush => message(out, b'H', |_| {}),
            Step::CopyData(data) => message(out, b'd', |b| b.put_slice(sub(data).as_bytes())),
            Step::CopyDone => message(out, b'c', |_| {}),
            Step::CopyFail(why) => message(out, b'f', |b| cstr(b, why)),
            Step::FunctionCall { oid, args } => message(out, b'F', |b| {
                b.put_u32(*oid);
                b.put_i16(0);
                values(b, args, &sub);
                b.put_i16(0);
            }),
            Step::Terminate => message(out, b'X', |_| {}),
            Step::Truncated { keep, step } => {
                let mut whole = BytesMut::new();
                step.render(table, &mut whole);
                out.put_slice(&whole[..(*keep).min(whole.len())]);
            }
            Step::RawStartup(bytes) => out.put_slice(bytes),
            Step::Await(_) | Step::Sleep(_) | Step::Vanish => {}
        }
    }
}

fn message(out: &mut BytesMut, tag: u8, body: impl FnOnce(&mut BytesMut)) {
    let mut b = BytesMut::new();
    body(&mut b);
    out.put_u8(tag);
    out.put_i32(b.len() as i32 + 4);
    out.put_slice(&b);
}

fn cstr(out: &mut BytesMut, s: &str) {
    out.put_slice(s.as_bytes());
    out.put_u8(0);
}

fn values(out: &mut BytesMut, values: &[Option<String>], sub: &dyn Fn(&str) -> String) {
    out.put_i16(values.len() as i16);
    for v in values {
        match v {
            None => out.put_i32(-1),
            Some(v) => {
                let v = sub(v);
                out.put_i32(v.len() as i32);
                out.put_slice(v.as_bytes());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Text form: one step a line, fields split by tabs, `\`, tab and newline escaped.

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('\t', "\\t")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

fn unesc(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

fn opt(v: &Option<String>) -> String {
    v.as_deref().map_or("\\N".to_owned(), esc)
}

fn unopt(s: &str) -> Option<String> {
    (s != "\\N").then(|| unesc(s))
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |v: &[Option<String>]| v.iter().map(opt).collect::<Vec<_>>();
        let fields: Vec<String> = match self {
            Step::Query(sql) => vec!["Query".into(), esc(sql)],
            Step::Parse { name, sql } => vec!["Parse".into(), esc(name), esc(sql)],
            Step::Bind {
                portal,
                stmt,
                params,
            } => {
                let mut v = vec!["Bind".into(), esc(portal), esc(stmt)];
                v.extend(list(params));
                v
            }
            Step::Describe { kind, name } => {
                vec!["Describe".into(), (*kind as char).to_string(), esc(name)]
            }
            Step::Execute { portal, max_rows } => {
                vec!["Execute".into(), esc(portal), max_rows.to_string()]
            }
            Step::Close { kind, name } => {
                vec!["Close".into(), (*kind as char).to_string(), esc(name)]
            }
            Step::Sync => vec!["Sync".into()],
            Step::Flush => vec!["Flush".into()],
            Step::CopyData(d) => vec!["CopyData".into(), esc(d)],
            Step::CopyDone => vec!["CopyDone".into()],
            Step::CopyFail(m) => vec!["CopyFail".into(), esc(m)],
            Step::FunctionCall { oid, args } => {
                let mut v = vec!["FunctionCall".into(), oid.to_string()];
                v.extend(list(args));
                v
            }
            Step::Terminate => vec!["Terminate".into()],
            Step::Truncated { keep, step } => {
                vec!["Truncated".into(), keep.to_string(), step.to_string()]
            }
            Step::Await(tag) => vec!["Await".into(), (*tag as char).to_string()],
            Step::Sleep(ms) => vec!["Sleep".into(), ms.to_string()],
            Step::Vanish => vec!["Vanish".into()],
            Step::RawStartup(bytes) => vec!["RawStartup".into(), hex(bytes)],
        };
        f.write_str(&fields.join("\t"))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn unhex(s: &str) -> Result<Vec<u8>, String> {
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad hex {s:?}"))
        })
        .collect()
}

fn kind_of(s: &str) -> Result<u8, String> {
    match s {
        "S" | "P" => Ok(s.as_bytes()[0]),
        _ => Err(format!("bad kind {s:?}")),
    }
}

impl std::str::FromStr for Step {
    type Err = String;

    fn from_str(line: &str) -> Result<Step, String> {
        let (head, rest) = line.split_once('\t').unwrap_or((line, ""));
        if head == "Truncated" {
            let (keep, inner) = rest.split_once('\t').ok_or("Truncated needs a step")?;
            return Ok(Step::Truncated {
                keep: keep.parse().map_err(|e| format!("{e}"))?,
                step: Box::new(inner.parse()?),
            });
        }
        let f: Vec<&str> = if line.contains('\t') {
            rest.split('\t').collect()
        } else {
            Vec::new()
        };
        from_fields(line, head, &f)
    }
}

/// The step named `head` with fields `f` (the tab-separated rest of `line`).
fn from_fields(line: &str, head: &str, f: &[&str]) -> Result<Step, String> {
    let at = |i: usize| -> Result<&str, String> {
        f.get(i)
            .copied()
            .ok_or_else(|| format!("{line:?}: field {i} missing"))
    };
    let num =
        |i: usize| -> Result<i64, String> { at(i)?.parse().map_err(|e| format!("{line:?}: {e}")) };
    Ok(match head {
        "Query" => Step::Query(unesc(at(0)?)),
        "Parse" => Step::Parse {
            name: unesc(at(0)?),
            sql: unesc(at(1)?),
        },
        "Bind" => Step::Bind {
            portal: unesc(at(0)?),
            stmt: unesc(at(1)?),
            params: f.iter().skip(2).map(|s| unopt(s)).collect(),
        },
        "Describe" => Step::Describe {
            kind: kind_of(at(0)?)?,
            name: unesc(at(1)?),
        },
        "Execute" => Step::Execute {
            portal: unesc(at(0)?),
            max_rows: num(1)? as i32,
        },
        "Close" => Step::Close {
            kind: kind_of(at(0)?)?,
            name: unesc(at(1)?),
        },
        "Sync" => Step::Sync,
        "Flush" => Step::Flush,
        "CopyData" => Step::CopyData(unesc(at(0)?)),
        "CopyDone" => Step::CopyDone,
        "CopyFail" => Step::CopyFail(unesc(at(0)?)),
        "FunctionCall" => Step::FunctionCall {
            oid: num(0)? as u32,
            args: f.iter().skip(1).map(|s| unopt(s)).collect(),
        },
        "Terminate" => Step::Terminate,
        "Await" => Step::Await(*at(0)?.as_bytes().first().ok_or("empty Await")?),
        "Sleep" => Step::Sleep(num(0)? as u64),
        "Vanish" => Step::Vanish,
        "RawStartup" => Step::RawStartup(unhex(at(0)?)?),
        other => return Err(format!("unknown step {other:?}")),
    })
}

/// A generated (or replayed) sequence and where it came from.
#[derive(Debug, Clone)]
pub struct Case {
    pub family: String,
    /// `seed/index` for generated cases, the file name for replayed ones.
    pub origin: String,
    pub steps: Vec<Step>,
}

impl Case {
    /// The regression-file form: `# family` and `# origin` lines, then one step a line.
    pub fn to_text(&self) -> String {
        let mut s = format!("# family: {}\n# origin: {}\n", self.family, self.origin);
        for step in &self.steps {
            let _ = writeln!(s, "{step}");
        }
        s
    }

    pub fn from_text(text: &str, origin: &str) -> Result<Case, String> {
        let mut family = None;
        let mut steps = Vec::new();
        for line in text.lines() {
            if let Some(f) = line.strip_prefix("# family: ") {
                family = Some(f.trim().to_owned());
            } else if !line.starts_with('#') && !line.trim().is_empty() {
                steps.push(line.parse()?);
            }
        }
        Ok(Case {
            family: family.ok_or("no `# family:` line")?,
            origin: origin.to_owned(),
            steps,
        })
    }
}

/// splitmix64: a generator whose sequence never changes with a dependency's version, so a
/// seed printed today replays the same cases later.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64, index: u64) -> Rng {
        let mut r = Rng(seed ^ index.wrapping_mul(0xA076_1D64_78BD_642F));
        r.next();
        r
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips() {
        let steps = vec![
            Step::Query("SELECT 'a\tb\\n'\n".into()),
            Step::Bind {
                portal: "".into(),
                stmt: "s1".into(),
                params: vec![None, Some("".into())],
            },
            Step::Truncated {
                keep: 3,
                step: Box::new(Step::Query("x".into())),
            },
            Step::RawStartup(vec![0, 1, 255]),
            Step::Await(b'G'),
        ];
        for s in steps {
            assert_eq!(s.to_string().parse::<Step>().unwrap(), s);
        }
    }
}
