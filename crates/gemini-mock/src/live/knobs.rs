//! What one Live session is asked to do: the fault it plays, and how it frames, sizes
//! and paces its answers. `MockConfig` sets the defaults; `x-mock-live-*` headers on the
//! upgrade request override them per connection, because both SDKs put custom headers
//! (`http_options.headers`, `httpOptions.headers`) on the handshake, so one mock serves
//! a suite that mixes faults.

use std::time::Duration;

use actix_web::HttpRequest;

use crate::auth::header_str;
use crate::deliver::{header_flag, header_u64};
use crate::MockConfig;

/// A scripted failure of a Live session, chosen by `MockConfig::live_fault` or per
/// connection by the header `x-mock-live-fault: <name>` (the names below). Unknown names
/// are ignored, as unknown scenarios are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LiveFault {
    /// `goaway`: `{"goAway": {"timeLeft": "10s"}}` right after `setupComplete`; the
    /// session then goes on as usual (the mock never ends it itself).
    GoAway,
    /// `close-mid-session`: every turn sends its first message, then the mock closes
    /// with 1011 "Internal error encountered.".
    CloseMidSession,
    /// `silence`: nothing at all after the client's setup, not even `setupComplete`.
    /// Pings are still answered, as Google's front end would.
    Silence,
    /// `no-answer`: `setupComplete`, then no turn is ever answered.
    NoAnswer,
    /// `refuse-key`: the close of an invalid key, 1007 "API key not valid. Please pass a
    /// valid API key.", whatever the key.
    RefuseKey,
    /// `quota`: the close of an exhausted quota, 1011 with the quota message, in place of
    /// `setupComplete` (as `MockConfig::exhausted` does for a matching key and model).
    Quota,
    /// `quota-mid-session`: every turn sends its first message, then the mock closes with
    /// 1011 and the quota message: a session that ran its quota out.
    QuotaMidSession,
}

impl LiveFault {
    const ALL: [LiveFault; 7] = [
        LiveFault::GoAway,
        LiveFault::CloseMidSession,
        LiveFault::Silence,
        LiveFault::NoAnswer,
        LiveFault::RefuseKey,
        LiveFault::Quota,
        LiveFault::QuotaMidSession,
    ];

    /// The name the header, `/__mock/config` and `MOCK_LIVE_FAULT` use.
    pub fn name(self) -> &'static str {
        match self {
            LiveFault::GoAway => "goaway",
            LiveFault::CloseMidSession => "close-mid-session",
            LiveFault::Silence => "silence",
            LiveFault::NoAnswer => "no-answer",
            LiveFault::RefuseKey => "refuse-key",
            LiveFault::Quota => "quota",
            LiveFault::QuotaMidSession => "quota-mid-session",
        }
    }

    pub fn from_name(name: &str) -> Option<LiveFault> {
        let name = name.trim();
        LiveFault::ALL.into_iter().find(|f| f.name() == name)
    }
}

impl std::str::FromStr for LiveFault {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        LiveFault::from_name(name).ok_or_else(|| format!("unknown Live fault {name:?}"))
    }
}

/// The knobs of one session, read once at the upgrade.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LiveKnobs {
    pub fault: Option<LiveFault>,
    /// Server messages in binary frames rather than text frames.
    pub binary: bool,
    /// `modelTurn` messages per answered turn, at least 1.
    pub chunks: usize,
    /// Text bytes per `modelTurn` message; `None` splits the answer over the messages.
    pub chunk_bytes: Option<usize>,
    /// Pause before each server message of a turn after the first.
    pub delay: Duration,
}

impl LiveKnobs {
    pub fn read(req: &HttpRequest, cfg: &MockConfig) -> LiveKnobs {
        let size = |name| header_u64(req, name).and_then(|n| usize::try_from(n).ok());
        LiveKnobs {
            fault: match header_str(req, "x-mock-live-fault") {
                Some(name) => LiveFault::from_name(name),
                None => cfg.live_fault,
            },
            binary: header_flag(req, "x-mock-live-binary").unwrap_or(cfg.live_binary),
            chunks: size("x-mock-live-chunks").unwrap_or(cfg.live_chunks).max(1),
            chunk_bytes: size("x-mock-live-chunk-bytes").or(cfg.live_chunk_bytes),
            delay: header_u64(req, "x-mock-live-delay-ms")
                .map_or(cfg.live_delay, Duration::from_millis),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_names_round_trip() {
        for f in LiveFault::ALL {
            assert_eq!(LiveFault::from_name(f.name()), Some(f));
        }
        assert_eq!(LiveFault::from_name(" goaway "), Some(LiveFault::GoAway));
        assert_eq!(LiveFault::from_name("GoAway"), None);
        assert_eq!(LiveFault::from_name("hang"), None);
    }
}
