//! The upstream actor: owns one awc client (and so one connection pool) on its
//! own thread, and makes the calls handlers hand it.

use super::call::{self, CallOutcome, GenerateCall, UpstreamContext};
use super::forward::{self, ForwardCall, ForwardReply};
use actix::prelude::*;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// Asks the actor to make a generateContent call and answer how it ended.
/// Sent by [`super::UpstreamPool`] on behalf of a handler; `cancelled` resolves
/// when the handler goes away (its client disconnected), which abandons the call.
#[derive(Message)]
#[rtype(result = "CallOutcome")]
pub struct Generate {
    pub call: GenerateCall,
    pub cancelled: oneshot::Receiver<()>,
}

pub struct UpstreamActor {
    client: awc::Client,
    context: Arc<UpstreamContext>,
}

impl UpstreamActor {
    /// Must run on the actor's own arbiter: awc clients cannot move between threads.
    pub fn new(context: Arc<UpstreamContext>, connect_timeout: Duration) -> Self {
        UpstreamActor {
            client: super::client::build(connect_timeout),
            context,
        }
    }
}

impl Actor for UpstreamActor {
    type Context = Context<Self>;
}

impl Handler<Generate> for UpstreamActor {
    // A plain future, not AtomicResponse: calls must run concurrently (STACK.md trap 7).
    type Result = ResponseFuture<CallOutcome>;

    fn handle(&mut self, msg: Generate, _: &mut Context<Self>) -> Self::Result {
        let client = self.client.clone();
        let context = self.context.clone();
        Box::pin(async move {
            let work = call::generate(&client, &context, msg.call);
            tokio::select! {
                outcome = work => outcome,
                // Dropping `work` drops the awc request and closes its connection.
                _ = msg.cancelled => CallOutcome::cancelled(),
            }
        })
    }
}

/// Asks the actor to make a pass-through call; answers Gemini's status and
/// headers with the body whole (unary) or as a channel of chunks (streams),
/// which the actor keeps filling after it answers. `cancelled` as in [`Generate`].
#[derive(Message)]
#[rtype(result = "CallOutcome<ForwardReply>")]
pub struct Forward {
    pub call: ForwardCall,
    pub cancelled: oneshot::Receiver<()>,
}

impl Handler<Forward> for UpstreamActor {
    type Result = ResponseFuture<CallOutcome<ForwardReply>>;

    fn handle(&mut self, msg: Forward, _: &mut Context<Self>) -> Self::Result {
        let client = self.client.clone();
        let context = self.context.clone();
        Box::pin(async move {
            let work = forward::forward(&client, &context, msg.call);
            tokio::select! {
                outcome = work => outcome,
                _ = msg.cancelled => CallOutcome::cancelled(),
            }
        })
    }
}
