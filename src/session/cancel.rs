//! CancelRequest: pgroute gives each client its own BackendKeyData and forwards a cancel to the
//! server connection that is running that client's work at the time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Where a cancel for a session goes: the node's address and the server's own key.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: std::sync::Arc<str>,
    pub pid: i32,
    pub secret: i32,
}

#[derive(Debug, Default)]
struct Slot {
    secret: i32,
    target: Mutex<Option<Target>>,
}

/// A session's registration; removed from the registry when dropped.
#[derive(Debug, Default)]
pub struct Handle {
    key: Option<(i32, Arc<Slot>)>,
    registry: Option<Arc<Registry>>,
}

impl Handle {
    pub fn key(&self) -> (i32, i32) {
        self.key
            .as_ref()
            .map(|(pid, slot)| (*pid, slot.secret))
            .unwrap_or((0, 0))
    }

    /// Records which server connection a cancel should reach now (None when idle).
    pub fn set_target(&self, target: Option<Target>) {
        if let Some((_, slot)) = &self.key {
            *slot.target.lock().unwrap_or_else(|e| e.into_inner()) = target;
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let (Some((pid, _)), Some(reg)) = (&self.key, &self.registry) {
            reg.slots
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(pid);
        }
    }
}

/// Every connected session's cancel key.
#[derive(Debug, Default)]
pub struct Registry {
    slots: Mutex<HashMap<i32, Arc<Slot>>>,
}

impl Registry {
    /// A fresh, unguessable key for a new session.
    pub fn register(self: &Arc<Self>) -> Handle {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let pid = loop {
            let pid = rand::random::<i32>() & 0x7fff_ffff;
            if pid != 0 && !slots.contains_key(&pid) {
                break pid;
            }
        };
        let slot = Arc::new(Slot {
            secret: rand::random(),
            target: Mutex::new(None),
        });
        slots.insert(pid, slot.clone());
        Handle {
            key: Some((pid, slot)),
            registry: Some(self.clone()),
        }
    }

    /// Forwards a client's CancelRequest. "For security reasons, no direct reply is made to
    /// the cancel request message": an unknown key or an idle session is silently ignored.
    pub async fn cancel(&self, pid: i32, secret: i32) {
        let target = {
            let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            match slots.get(&pid) {
                Some(slot) if slot.secret == secret => slot
                    .target
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone(),
                _ => None,
            }
        };
        let Some(target) = target else {
            tracing::debug!(
                pid,
                "cancel request for an unknown key or idle session ignored"
            );
            return;
        };
        let mut msg = BytesMut::new();
        postgres_protocol::message::frontend::cancel_request(target.pid, target.secret, &mut msg);
        match TcpStream::connect(&*target.addr).await {
            Ok(mut s) => {
                if let Err(e) = s.write_all(&msg).await {
                    tracing::warn!(error = %e, addr = %target.addr, "failed to forward cancel");
                }
            }
            Err(e) => tracing::warn!(error = %e, addr = %target.addr, "failed to forward cancel"),
        }
    }
}
