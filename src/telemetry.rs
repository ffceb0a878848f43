//! Logging set-up: `LOG_LEVEL` (or `RUST_LOG`) and `LOG_FORMAT` (text or JSON lines).
//!
//! Structured fields travel as `log` key-values, so the access log is one record
//! whichever format is chosen: `key=value` pairs in text, JSON fields in JSON.

use crate::settings::{LogFormat, LogLevel};
use log::kv::{Key, Value, VisitSource};
use std::io::Write;

/// Installs the global logger; a second call (tests) is a no-op.
pub fn init(level: &LogLevel, format: LogFormat) {
    let mut builder = env_logger::Builder::new();
    match level {
        LogLevel::Filter(filter) => {
            builder.parse_filters(filter);
        }
        LogLevel::Level(level) => {
            // Dependencies' debug chatter (connection pools, TLS) is noise for operators.
            builder.filter_level(*level);
            if *level > log::LevelFilter::Info {
                builder.filter_module("rustls", log::LevelFilter::Info);
                builder.filter_module("h2", log::LevelFilter::Info);
                builder.filter_module("mio", log::LevelFilter::Info);
            }
        }
    }
    match format {
        LogFormat::Text => builder.format(|buf, record| {
            write!(
                buf,
                "{} {:<5} {}: {}",
                buf.timestamp_millis(),
                record.level(),
                record.target(),
                record.args()
            )?;
            let mut fields = TextFields(String::new());
            let _ = record.key_values().visit(&mut fields);
            writeln!(buf, "{}", fields.0)
        }),
        LogFormat::Json => builder.format(|buf, record| {
            let mut line = format!(
                "{{\"ts\":\"{}\",\"level\":\"{}\",\"target\":{},\"msg\":{}",
                buf.timestamp_millis(),
                record.level(),
                json_string(record.target()),
                json_string(&record.args().to_string()),
            );
            let mut fields = JsonFields(&mut line);
            let _ = record.key_values().visit(&mut fields);
            line.push('}');
            writeln!(buf, "{line}")
        }),
    };
    let _ = builder.try_init();
}

fn json_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}

struct TextFields(String);

impl<'kvs> VisitSource<'kvs> for TextFields {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        use std::fmt::Write;
        let _ = write!(self.0, " {key}={value}");
        Ok(())
    }
}

struct JsonFields<'a>(&'a mut String);

impl<'kvs> VisitSource<'kvs> for JsonFields<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        self.0.push(',');
        self.0.push_str(&json_string(key.as_str()));
        self.0.push(':');
        if let Some(n) = value.to_u64() {
            self.0.push_str(&n.to_string());
        } else if let Some(n) = value.to_i64() {
            self.0.push_str(&n.to_string());
        } else {
            self.0.push_str(&json_string(&value.to_string()));
        }
        Ok(())
    }
}
