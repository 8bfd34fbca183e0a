//! Prepared statements across pooled server connections, and the classification cache.
//!
//! A client's named statement `s1` is prepared on servers under pgroute's own name `pgr_<id>`,
//! where `id` is unique per distinct (query text, parameter types) in this process. Clients that
//! prepare the same text share the server-side statement; each server connection remembers which
//! ids it holds, so a Bind landing on a connection that lacks the statement gets a Parse injected
//! in front of it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::classify::fingerprint::fingerprint;
use crate::classify::{classify, Classification};
use crate::consistency::{parse_hints, Hints};

/// Classifications cached by statement fingerprint (the text with literal values replaced):
/// parse once per statement shape, not per execution.
pub struct ClassCache {
    cache: quick_cache::sync::Cache<String, Arc<Classification>>,
    /// For statement text pgroute cannot read (not UTF-8: another client encoding).
    unreadable: Arc<Classification>,
    /// Lookups that found the text's classification, and that had to classify it.
    hits: AtomicU64,
    misses: AtomicU64,
}

impl ClassCache {
    pub fn new(capacity: usize) -> Self {
        // Not provably a read, so it goes to the primary; the server judges the text itself.
        let mut unreadable = classify("");
        unreadable.target = crate::classify::Target::Write;
        unreadable.parsed = false;
        unreadable.statements = 1;
        ClassCache {
            cache: quick_cache::sync::Cache::new(capacity),
            unreadable: Arc::new(unreadable),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The classification of SQL text given as bytes (None: not UTF-8, so unreadable here).
    pub fn classify_text(&self, sql: Option<&str>) -> Arc<Classification> {
        match sql {
            Some(sql) => self.classify(sql),
            None => self.unreadable.clone(),
        }
    }

    pub fn classify(&self, sql: &str) -> Arc<Classification> {
        let key = fingerprint(sql);
        if let Some(c) = self.cache.get(&key) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            // SET values are the one part of a classification that literals decide.
            if c.params.is_empty() {
                return c;
            }
            return Arc::new(classify(sql));
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let c = Arc::new(classify(sql));
        self.cache.insert(key, c.clone());
        c
    }

    /// Lookups so far: (found in the cache, classified anew).
    pub fn hits_misses(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }
}

/// A statement as pgroute prepares it on servers.
#[derive(Debug)]
pub struct Statement {
    pub id: u64,
    /// The name used on servers: `pgr_<id>`.
    pub server_name: String,
    /// The client's Parse body after the statement name: query text, NUL, parameter types.
    pub after_name: Bytes,
    pub class: Arc<Classification>,
    /// Read hints from the statement's leading comments.
    pub hints: Hints,
}

/// Process-wide registry of named statements, keyed by (query text, parameter types).
#[derive(Default)]
pub struct Registry {
    inner: Mutex<RegistryInner>,
}

#[derive(Default)]
struct RegistryInner {
    by_body: HashMap<Bytes, Arc<Statement>>,
    next_id: u64,
}

impl Registry {
    /// The statement for this Parse body, registering it on first sight.
    pub fn intern(
        &self,
        after_name: Bytes,
        query: Option<&str>,
        cache: &ClassCache,
    ) -> Arc<Statement> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = inner.by_body.get(&after_name) {
            return s.clone();
        }
        inner.next_id += 1;
        let id = inner.next_id;
        let stmt = Arc::new(Statement {
            id,
            server_name: format!("pgr_{id}"),
            after_name: after_name.clone(),
            class: cache.classify_text(query),
            hints: query.map(parse_hints).unwrap_or_default(),
        });
        inner.by_body.insert(after_name, stmt.clone());
        stmt
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Target;

    #[test]
    fn statements_differing_in_literals_share_a_class_but_set_values_do_not() {
        let cache = ClassCache::new(16);
        let a = cache.classify("SELECT * FROM t WHERE id = 1");
        let b = cache.classify("SELECT * FROM t WHERE id = 2");
        assert!(Arc::ptr_eq(&a, &b));
        cache.classify("SET application_name = 'a'");
        let set = cache.classify("SET application_name = 'b'");
        assert_eq!(
            set.params,
            vec![crate::classify::ParamChange::Set {
                name: "application_name".into(),
                value: "'b'".into()
            }]
        );
    }

    #[test]
    fn same_text_and_types_share_one_server_statement() {
        let cache = ClassCache::new(16);
        let reg = Registry::default();
        let a = reg.intern(
            Bytes::from_static(b"SELECT 1\0\0\0"),
            Some("SELECT 1"),
            &cache,
        );
        let b = reg.intern(
            Bytes::from_static(b"SELECT 1\0\0\0"),
            Some("SELECT 1"),
            &cache,
        );
        let c = reg.intern(
            Bytes::from_static(b"SELECT 1\0\0\x01\0\0\0\x17"),
            Some("SELECT 1"),
            &cache,
        );
        assert_eq!(a.id, b.id);
        assert_ne!(a.id, c.id);
        assert_eq!(a.server_name, format!("pgr_{}", a.id));
        assert_eq!(a.class.target, Target::Read);
    }
}
