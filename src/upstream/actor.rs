//! The upstream actor: owns one awc client (and so one connection pool) on its
//! own thread, and makes the calls handlers hand it.

use super::client::UpstreamConnect;
use super::egress::Clients;
use super::h2pool::H2Pool;
use super::live::{self, LiveCall, LiveOutcome};
use super::pipeline::{self, CallOutcome, UpstreamCall, UpstreamContext};
use super::pool::Permit;
use super::upload::{self, UploadCall, UploadReply};
use crate::errors::ApiError;
use actix::prelude::*;
use std::sync::Arc;
use tokio::sync::oneshot;

/// Asks the actor to make a call to Gemini and answer how it ended: the
/// answer whole (unary) or as a relay the actor keeps filling after it
/// answers (streams). Sent by [`super::UpstreamPool`] on behalf of a handler,
/// with the handler's in-flight `permit`; `cancelled` resolves when the
/// handler goes away (its client disconnected), which abandons the call.
///
/// The outcome comes back boxed: the channel that carries it is allocated
/// when the call is sent, with room for the answer, and every call in flight
/// holds it.
#[derive(Message)]
#[rtype(result = "Box<CallOutcome>")]
pub struct Call {
    pub call: Box<UpstreamCall>,
    pub permit: Permit,
    pub cancelled: oneshot::Receiver<()>,
}

pub struct UpstreamActor {
    /// One per egress proxy (or the one direct client).
    clients: Clients,
    /// Calls to an HTTP/2 origin share its connections here (awc would hold
    /// one per call); one pool per egress proxy too.
    h2: Clients<H2Pool>,
    /// HTTP/1.1 only, for the Live API's WebSockets; one per egress proxy too.
    ws_clients: Clients,
    context: Arc<UpstreamContext>,
}

/// Asks the actor to open a Live API session to Gemini and relay it until it
/// ends; answers how it ended.
#[derive(Message)]
#[rtype(result = "LiveOutcome")]
pub struct Live {
    pub call: LiveCall,
    pub permit: Permit,
}

impl UpstreamActor {
    /// Must run on the actor's own arbiter: awc clients cannot move between threads.
    pub fn new(context: Arc<UpstreamContext>, connect: &UpstreamConnect) -> Self {
        UpstreamActor {
            clients: Clients::build(&context.egress, |proxy| {
                super::client::build(connect, proxy)
            }),
            h2: Clients::build(&context.egress, |proxy| {
                H2Pool::new(connect.http_tls(), connect.timeout(), proxy)
            }),
            ws_clients: Clients::build(&context.egress, |proxy| {
                super::client::build_for_websockets(connect, proxy)
            }),
            context,
        }
    }
}

impl Actor for UpstreamActor {
    type Context = Context<Self>;
}

impl Handler<Call> for UpstreamActor {
    // A plain future, not AtomicResponse: calls must run concurrently.
    type Result = ResponseFuture<Box<CallOutcome>>;

    fn handle(&mut self, msg: Call, _: &mut Context<Self>) -> Self::Result {
        let clients = self.clients.clone();
        let h2 = self.h2.clone();
        let context = self.context.clone();
        Box::pin(async move {
            let work = pipeline::run(&clients, &h2, &context, msg.call, msg.permit);
            Box::new(tokio::select! {
                outcome = work => outcome,
                // Dropping `work` drops the request: awc closes its connection, h2
                // resets its stream.
                _ = msg.cancelled => CallOutcome::cancelled(),
            })
        })
    }
}

/// Asks the actor to pass one request of a resumable upload to Gemini,
/// streaming its body; answers Gemini's reply.
#[derive(Message)]
#[rtype(result = "Result<UploadReply, ApiError>")]
pub struct Upload {
    pub call: UploadCall,
    pub permit: Permit,
}

impl Handler<Upload> for UpstreamActor {
    type Result = ResponseFuture<Result<UploadReply, ApiError>>;

    fn handle(&mut self, msg: Upload, _: &mut Context<Self>) -> Self::Result {
        let clients = self.clients.clone();
        let context = self.context.clone();
        Box::pin(async move { upload::run(&clients, &context, msg.call, msg.permit).await })
    }
}

impl Handler<Live> for UpstreamActor {
    type Result = ResponseFuture<LiveOutcome>;

    fn handle(&mut self, msg: Live, _: &mut Context<Self>) -> Self::Result {
        let clients = self.ws_clients.clone();
        let context = self.context.clone();
        Box::pin(async move { live::run(&clients, &context, msg.call, msg.permit).await })
    }
}
