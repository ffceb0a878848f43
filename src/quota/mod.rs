//! Client quotas (docs/keys-file.md#quotas): tokens per minute, requests and
//! tokens per calendar day, for a client as a whole and for groups of its
//! models counted apart.
//!
//! The request bucket (`requests_per_minute` / `burst`) stays in
//! [`crate::keys::limiter`]; this module keeps the windows beside it. A request
//! is admitted while every window it falls in is below its limit; tokens are
//! charged when its answer ends, from what Gemini reported.

pub mod charge;
pub mod clock;
pub mod limits;
pub mod state_file;
pub mod usage;
pub mod window;

pub use charge::Charge;
pub use clock::{Days, WallClock};
pub use limits::{QuotaGroup, QuotaLimits, Quotas, WindowKind};
pub use usage::{ClientUsage, QuotaRefusal, UsageStore};
pub use window::WindowUsage;
