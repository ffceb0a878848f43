#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| gemini_proxy_fuzz_targets::request_body(data));
