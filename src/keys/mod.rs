//! Client keys: who may call the service, how fast, and with which models.

pub mod file;
mod file_quota;
pub mod limiter;
pub mod policy;
pub mod quota_gate;
pub mod redis_health;
pub mod redis_limiter;
pub mod redis_quota;
pub mod registry;
pub mod reload;
pub mod worker;

pub use limiter::RateLimitSnapshot;
pub use policy::{ClientPolicy, KeyHash, Limits, PolicyError};
pub use registry::{
    Admission, Admit, KeyRegistry, ReadUsage, Refusal, ReplaceClients, UsageReport,
};
