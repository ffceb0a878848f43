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
use std::sync::Arc;

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
        MessageResult(self.table.admit(&msg))
    }
}

/// Starts a worker registry on the calling thread (an HTTP worker, from the
/// App factory) and answers where to send that worker's admissions.
pub fn start_for_this_worker<C: Clock + Clone + Unpin + 'static>(
    table: Arc<ClientTable<C>>,
) -> Recipient<Admit> {
    WorkerRegistry { table }.start().recipient()
}
