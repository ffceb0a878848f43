//! What the resource check costs a body that names no resource: the scan of
//! a 200 KB generateContent body (a 150 KB inline image, base64).
//!
//!     cargo run --release --example reference_scan

use std::time::Instant;
fn main() {
    let mut r: u64 = 7;
    let raw: Vec<u8> = (0..150_000)
        .map(|_| {
            r = r
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (r >> 33) as u8
        })
        .collect();
    use base64::Engine;
    let data = base64::engine::general_purpose::STANDARD.encode(&raw);
    let body = format!("{{\"contents\":[{{\"role\":\"user\",\"parts\":[{{\"inlineData\":{{\"mimeType\":\"image/png\",\"data\":\"{data}\"}}}},{{\"text\":\"describe\"}}]}}]}}");
    let n = 2000;
    let t = Instant::now();
    for _ in 0..n {
        let scanned = gemini_proxy::ownership::scan(std::hint::black_box(body.as_bytes()));
        assert!(matches!(scanned, Ok(refs) if refs.is_empty()));
    }
    println!(
        "scan of {} bytes: {:.1} µs",
        body.len(),
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );
}
