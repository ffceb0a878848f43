//! Per-worker key registries for the in-process (memory) backend.
//!
//! The key-registry actor owns the clients and replaces them on reload; it
//! publishes them in a [`ClientTable`]. Each HTTP worker starts a small
//! registry actor of its own on its own thread that admits from that table,
//! so an admission is a message within the worker's thread instead of a round
//! trip to the registry's thread (two context switches a request on a busy
//! core). The buckets are governor's atomic state, shared by all of them, so a
//! client has one bucket whichever worker serves it.

use super::registry::{Admit, ClientTable};
use actix::prelude::*;
use governor::clock::Clock;
use std::cell::RefCell;
use std::sync::Arc;

thread_local! {
    static WORKER_REGISTRY: RefCell<Option<Recipient<Admit>>> = const { RefCell::new(None) };
}

/// Admits from the published clients. Sent `Admit` by the handlers of the
/// worker it lives on.
pub struct WorkerRegistry<C: Clock + Clone> {
    table: Arc<ClientTable<C>>,
}

impl<C: Clock + Clone + Unpin + 'static> Actor for WorkerRegistry<C> {
    type Context = Context<Self>;
}

impl<C: Clock + Clone + Unpin + 'static> Handler<Admit> for WorkerRegistry<C> {
    type Result = MessageResult<Admit>;

    fn handle(&mut self, msg: Admit, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.table.admit(&msg.key_hash))
    }
}

/// Starts this thread's worker registry (call from the App factory).
pub fn start_for_this_worker<C: Clock + Clone + Unpin + 'static>(table: Arc<ClientTable<C>>) {
    let addr = WorkerRegistry { table }.start();
    WORKER_REGISTRY.with(|slot| *slot.borrow_mut() = Some(addr.recipient()));
}

/// This thread's worker registry, if it has one.
pub fn local() -> Option<Recipient<Admit>> {
    WORKER_REGISTRY.with(|slot| slot.borrow().clone())
}
