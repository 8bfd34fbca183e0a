//! A pending batch decoded while the fate of a client statement name on the server was still
//! unknown: a Parse the server then discarded (an earlier error in its group) or a Close it
//! skipped. Its messages took the name as it would have been; they are brought in line with
//! what the server has, by the client's statement name (statements with the same text share
//! one [`Statement`], so only the name tells them apart).

use std::sync::Arc;

use bytes::Bytes;

use super::{Batch, ExtMsg, StmtRef};
use crate::classify::Classification;
use crate::protocol::Body;
use crate::session::statements::Statement;

impl Batch {
    /// The client's statement `name` is `meaning` (None: the server has none) before this
    /// batch's messages. Rewrites what they refer to under that name — Bind, Describe, Close,
    /// and a Parse of it, which becomes a duplicate (42P05) or a new statement (`intern`
    /// registers its text) — and returns what the name means after them.
    pub fn rebind(
        &mut self,
        name: &str,
        mut meaning: Option<Arc<Statement>>,
        intern: impl Fn(&Bytes) -> Arc<Statement>,
    ) -> Option<Arc<Statement>> {
        if name.is_empty() {
            return meaning;
        }
        // The class a rebound Bind gives the Executes after it (until the next Bind).
        let mut bound: Option<Option<Arc<Classification>>> = None;
        let mut noted = Vec::new();
        for msg in self.msgs.iter_mut() {
            match msg {
                ExtMsg::Bind { frame, stmt } => {
                    bound = None;
                    if statement_name(frame) == Some(name) {
                        *stmt = reference(name, &meaning);
                        bound = Some(meaning.as_ref().map(|s| s.class.clone()));
                        noted.extend(meaning.clone());
                    }
                }
                ExtMsg::DescribeStmt { frame, stmt } if statement_name(frame) == Some(name) => {
                    *stmt = reference(name, &meaning);
                    noted.extend(meaning.clone());
                }
                ExtMsg::Execute { class, .. } => {
                    if let Some(c) = &bound {
                        class.clone_from(c);
                    }
                }
                ExtMsg::CloseNamed {
                    client_name,
                    closed,
                } if client_name == name => *closed = meaning.take(),
                ExtMsg::ParseNamed { client_name, stmt } if client_name == name => match &meaning {
                    Some(existing) => {
                        *msg = ExtMsg::ParseDuplicate {
                            stmt: existing.clone(),
                            client_name: name.to_owned(),
                            after_name: stmt.after_name.clone(),
                        }
                    }
                    None => meaning = Some(stmt.clone()),
                },
                ExtMsg::ParseDuplicate {
                    stmt,
                    client_name,
                    after_name,
                } if client_name == name => match &meaning {
                    Some(existing) => *stmt = existing.clone(),
                    None => {
                        let created = intern(after_name);
                        noted.push(created.clone());
                        meaning = Some(created.clone());
                        *msg = ExtMsg::ParseNamed {
                            client_name: name.to_owned(),
                            stmt: created,
                        };
                    }
                },
                _ => {}
            }
        }
        if let Some(class) = bound {
            self.last_bound = class;
        }
        for stmt in noted {
            self.note(&stmt.class);
            self.add_hints(&stmt.hints);
        }
        meaning
    }
}

/// The statement name a Bind (after its portal name) or a Describe of a statement (after its
/// 'S') carries.
fn statement_name(frame: &[u8]) -> Option<&str> {
    let mut body = Body::of_frame(frame);
    match frame.first() {
        Some(b'B') => body.cstr("Bind").ok()?,
        _ => {
            body.u8("Describe").ok()?;
            ""
        }
    };
    body.cstr("statement name").ok()
}

fn reference(name: &str, meaning: &Option<Arc<Statement>>) -> StmtRef {
    match meaning {
        Some(stmt) => StmtRef::Named(stmt.clone()),
        None => StmtRef::Unknown(name.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::statements::{ClassCache, Registry};
    use bytes::{BufMut, BytesMut};

    fn frame(tag: u8, parts: &[&[u8]]) -> BytesMut {
        let body: Vec<u8> = parts.concat();
        let mut f = BytesMut::new();
        f.put_u8(tag);
        f.put_i32(body.len() as i32 + 4);
        f.put_slice(&body);
        f
    }

    fn bind(stmt: &str) -> BytesMut {
        frame(b'B', &[b"p\0", stmt.as_bytes(), b"\0\0\0\0\0\0\0"])
    }

    fn describe(stmt: &str) -> BytesMut {
        frame(b'D', &[b"S", stmt.as_bytes(), b"\0"])
    }

    fn after_name(sql: &str) -> Bytes {
        Bytes::from([sql.as_bytes(), b"\0\0\0"].concat())
    }

    struct Fixture {
        cache: ClassCache,
        registry: Registry,
    }

    impl Fixture {
        fn new() -> Self {
            Fixture {
                cache: ClassCache::new(16),
                registry: Registry::default(),
            }
        }

        fn stmt(&self, sql: &str) -> Arc<Statement> {
            self.registry
                .intern(after_name(sql), Some(sql), &self.cache)
        }

        fn intern(&self) -> impl Fn(&Bytes) -> Arc<Statement> + '_ {
            |after: &Bytes| {
                let text = after.split(|b| *b == 0).next().unwrap_or_default();
                let sql = std::str::from_utf8(text).ok();
                self.registry.intern(after.clone(), sql, &self.cache)
            }
        }
    }

    fn batch(msgs: Vec<ExtMsg>) -> Batch {
        Batch {
            msgs,
            ..Batch::default()
        }
    }

    fn is_unknown(r: &StmtRef, name: &str) -> bool {
        matches!(r, StmtRef::Unknown(n) if n == name)
    }

    fn is_named(r: &StmtRef, stmt: &Arc<Statement>) -> bool {
        matches!(r, StmtRef::Named(s) if Arc::ptr_eq(s, stmt))
    }

    #[test]
    fn uses_of_a_discarded_parse_refer_to_no_statement_by_the_clients_name() {
        // s1 and s2 share one statement (same text); only s1's Parse was discarded.
        let f = Fixture::new();
        let shared = f.stmt("SELECT 1");
        let mut batch = batch(vec![
            ExtMsg::Bind {
                frame: bind("s1"),
                stmt: StmtRef::Named(shared.clone()),
            },
            ExtMsg::Bind {
                frame: bind("s2"),
                stmt: StmtRef::Named(shared.clone()),
            },
            ExtMsg::DescribeStmt {
                frame: describe("s1"),
                stmt: StmtRef::Named(shared.clone()),
            },
            ExtMsg::CloseNamed {
                client_name: "s1".into(),
                closed: Some(shared.clone()),
            },
        ]);
        assert!(batch.rebind("s1", None, f.intern()).is_none());
        let [ExtMsg::Bind { stmt: b1, .. }, ExtMsg::Bind { stmt: b2, .. }, ExtMsg::DescribeStmt { stmt: d1, .. }, ExtMsg::CloseNamed { closed, .. }] =
            &batch.msgs[..]
        else {
            panic!("{:?}", batch.msgs);
        };
        assert!(is_unknown(b1, "s1"));
        assert!(is_named(b2, &shared));
        assert!(is_unknown(d1, "s1"));
        assert!(
            closed.is_none(),
            "a Close of a statement that never existed restores nothing"
        );
    }

    #[test]
    fn a_duplicate_parse_of_a_discarded_name_prepares_it_and_later_uses_take_it() {
        let f = Fixture::new();
        let old = f.stmt("SELECT 1");
        let mut batch = batch(vec![
            ExtMsg::Bind {
                frame: bind("s1"),
                stmt: StmtRef::Named(old.clone()),
            },
            ExtMsg::ParseDuplicate {
                stmt: old.clone(),
                client_name: "s1".into(),
                after_name: after_name("INSERT INTO t VALUES (1)"),
            },
            ExtMsg::Bind {
                frame: bind("s1"),
                stmt: StmtRef::Named(old.clone()),
            },
            ExtMsg::Execute {
                frame: frame(b'E', &[b"p\0\0\0\0\0"]),
                class: Some(old.class.clone()),
            },
        ]);
        let now = batch
            .rebind("s1", None, f.intern())
            .expect("s1 is prepared again");
        assert_eq!(now.after_name, after_name("INSERT INTO t VALUES (1)"));
        let [ExtMsg::Bind { stmt: before, .. }, ExtMsg::ParseNamed { stmt: parsed, .. }, ExtMsg::Bind { stmt: after, .. }, ExtMsg::Execute { class, .. }] =
            &batch.msgs[..]
        else {
            panic!("{:?}", batch.msgs);
        };
        assert!(is_unknown(before, "s1"));
        assert!(Arc::ptr_eq(parsed, &now));
        assert!(is_named(after, &now));
        assert!(class.as_ref().is_some_and(|c| Arc::ptr_eq(c, &now.class)));
        assert_eq!(batch.target, Some(crate::classify::Target::Write));
    }

    #[test]
    fn a_skipped_close_gives_the_name_back_until_a_close_in_the_batch() {
        let f = Fixture::new();
        let stmt = f.stmt("SELECT 1");
        let mut batch = batch(vec![
            ExtMsg::Bind {
                frame: bind("s1"),
                stmt: StmtRef::Unknown("s1".into()),
            },
            ExtMsg::CloseNamed {
                client_name: "s1".into(),
                closed: None,
            },
            ExtMsg::DescribeStmt {
                frame: describe("s1"),
                stmt: StmtRef::Unknown("s1".into()),
            },
        ]);
        assert!(batch.rebind("s1", Some(stmt.clone()), f.intern()).is_none());
        let [ExtMsg::Bind { stmt: b, .. }, ExtMsg::CloseNamed { closed, .. }, ExtMsg::DescribeStmt { stmt: d, .. }] =
            &batch.msgs[..]
        else {
            panic!("{:?}", batch.msgs);
        };
        assert!(is_named(b, &stmt));
        assert!(closed.as_ref().is_some_and(|c| Arc::ptr_eq(c, &stmt)));
        assert!(is_unknown(d, "s1"));
    }
}
