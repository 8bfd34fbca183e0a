//! Client connections per user and per database, for `limits.max_connections_per_user` and
//! `limits.max_connections_per_database`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::Limit;

#[derive(Debug, Default)]
struct Counts {
    users: HashMap<String, usize>,
    databases: HashMap<String, usize>,
}

/// How many sessions each user and database has.
#[derive(Debug, Default)]
pub struct Slots {
    counts: Mutex<Counts>,
}

/// One session's place in [`Slots`], given back when dropped.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
    user: String,
    database: String,
}

impl Slots {
    /// Takes a place for a session of `user` on `database`, unless either already has its
    /// maximum (`0`: no limit).
    pub fn take(
        self: &Arc<Self>,
        user: &str,
        database: &str,
        max_per_user: usize,
        max_per_database: usize,
    ) -> Result<Slot, Limit> {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let users = c.users.get(user).copied().unwrap_or(0);
        if max_per_user > 0 && users >= max_per_user {
            return Err(Limit::PerUser(user.to_owned()));
        }
        let databases = c.databases.get(database).copied().unwrap_or(0);
        if max_per_database > 0 && databases >= max_per_database {
            return Err(Limit::PerDatabase(database.to_owned()));
        }
        *c.users.entry(user.to_owned()).or_default() += 1;
        *c.databases.entry(database.to_owned()).or_default() += 1;
        Ok(Slot {
            slots: self.clone(),
            user: user.to_owned(),
            database: database.to_owned(),
        })
    }
}

fn give_back(map: &mut HashMap<String, usize>, key: &str) {
    if let Some(n) = map.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(key);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.slots.counts.lock().unwrap_or_else(|e| e.into_inner());
        give_back(&mut c.users, &self.user);
        give_back(&mut c.databases, &self.database);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_count_per_user_and_database_and_free_on_drop() {
        let slots = Arc::new(Slots::default());
        let a = slots.take("app", "shop", 2, 3).expect("first");
        let _b = slots.take("app", "shop", 2, 3).expect("second");
        assert_eq!(
            slots.take("app", "shop", 2, 3).unwrap_err(),
            Limit::PerUser("app".into())
        );
        let _c = slots.take("other", "shop", 2, 3).expect("another user");
        assert_eq!(
            slots.take("third", "shop", 2, 3).unwrap_err(),
            Limit::PerDatabase("shop".into())
        );
        drop(a);
        assert!(slots.take("app", "crm", 2, 3).is_ok(), "a place was freed");
        assert!(slots.take("x", "y", 0, 0).is_ok(), "0: no limit");
        assert!(
            !slots.counts.lock().unwrap().users.contains_key("x"),
            "dropped at once"
        );
    }
}
