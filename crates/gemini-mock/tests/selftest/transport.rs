//! Scenarios that change how the answer travels: hangs, cuts, delays, redirects.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;

use crate::helpers::{
    call, client, eventually, generate, raw, raw_exchange, start, with_scenario, BODY,
};

#[actix_rt::test]
async fn reset_scenarios_cut_the_message_short() {
    let mock = start().await;
    let path = "/v1beta/models/gemini-2.5-flash:generateContent";
    let (head, body) = raw_exchange(&mock, path, "reset-mid-body").await;
    assert!(head.starts_with("http/1.1 200 ok"), "{head}");
    let declared: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    assert_eq!(body.len(), declared / 2);

    let (head, body) = raw_exchange(&mock, path, "reset-before-headers").await;
    assert!(head.is_empty() && body.is_empty(), "{head}");
    let res = client()
        .post(format!("{}{path}", mock.base_url()))
        .insert_header(("x-goog-api-key", "k"))
        .insert_header(("x-mock-scenario", "reset-before-headers"))
        .send_body(BODY)
        .await;
    assert!(res.is_err(), "got a response");
    mock.stop().await;
}

#[actix_rt::test]
async fn hang_ends_when_the_client_times_out() {
    let mock = start().await;
    let url = format!("{}/v1/models/mock-hang:generateContent", mock.base_url());
    let short = awc::Client::builder()
        .timeout(Duration::from_millis(300))
        .finish();
    let res = short
        .post(url)
        .insert_header(("x-goog-api-key", "k"))
        .send_body(BODY)
        .await;
    assert!(
        matches!(res, Err(awc::error::SendRequestError::Timeout)),
        "{res:?}"
    );
    assert_eq!(mock.request_count(), 1);
    eventually("in_flight back to 0", || mock.in_flight() == 0).await;
    mock.stop().await;
}

#[actix_rt::test]
async fn broken_bodies_arrive_as_complete_http_messages() {
    let mock = start().await;
    let (status, body) = raw(&mock, "truncated-json").await;
    assert_eq!(status, 200);
    let body = body.unwrap();
    assert!(body.starts_with(b"{\n  \"candidates\""));
    assert!(serde_json::from_slice::<Value>(&body).is_err());

    let r = with_scenario(&mock, "non-json").await;
    assert_eq!(
        (r.status, r.header("content-type").unwrap_or_default()),
        (200, "text/html; charset=UTF-8")
    );
    assert!(r.text().starts_with("<html>"));

    let (status, body) = raw(&mock, "oversize").await;
    assert_eq!(status, 200);
    assert!(body.unwrap().len() > 33 * 1024 * 1024);
    mock.stop().await;
}

#[actix_rt::test]
async fn redirect_points_at_a_recorded_target_nobody_followed() {
    let mock = start().await;
    let r = with_scenario(&mock, "redirect").await;
    assert_eq!(r.status, 307);
    let target = format!("{}/__mock/redirect-target", mock.base_url());
    assert_eq!(r.header("location"), Some(target.as_str()));
    assert!(mock
        .requests()
        .iter()
        .all(|q| q.path_and_query != "/__mock/redirect-target"));
    let followed = call(&mock, "POST", "/__mock/redirect-target", &[], Some(BODY)).await;
    assert_eq!(followed.status, 200);
    let paths: Vec<String> = mock
        .requests()
        .into_iter()
        .map(|q| q.path_and_query)
        .collect();
    assert_eq!(
        paths.last().map(String::as_str),
        Some("/__mock/redirect-target")
    );
    mock.stop().await;
}

#[actix_rt::test]
async fn slow_scenarios_delay_the_headers_or_trickle_the_body() {
    let mock = start().await;
    let started = Instant::now();
    let r = generate(
        &mock,
        &[
            ("x-mock-scenario", "slow-first-byte"),
            ("x-mock-first-byte-delay-ms", "150"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(150));

    let url = format!(
        "{}/v1beta/models/mock-trickle:generateContent",
        mock.base_url()
    );
    let started = Instant::now();
    let mut res = client()
        .post(url)
        .insert_header(("x-goog-api-key", "k"))
        .send_body(BODY)
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert!(
        started.elapsed() < Duration::from_millis(150),
        "headers were not sent at once"
    );
    let first = res.next().await.unwrap().unwrap();
    assert_eq!(&first[..], b"{");
    drop(res);
    eventually("trickle cancelled", || mock.streams_cancelled() == 1).await;
    mock.stop().await;
}
