//! Unit tests of `stream_reader`, kept apart so the module itself stays short.

use super::*;

fn read(framing: Framing, chunks: &[&[u8]]) -> (bool, Option<Tokens>) {
    let mut reader = StreamReader::new(framing, None);
    for chunk in chunks {
        reader.observe(chunk);
    }
    (reader.finish().is_ok(), reader.tokens())
}

fn check(framing: Framing, chunks: &[&str]) -> bool {
    let chunks: Vec<&[u8]> = chunks.iter().map(|c| c.as_bytes()).collect();
    read(framing, &chunks).0
}

fn tokens(prompt: u64, response: u64, thoughts: u64, total: u64) -> Option<Tokens> {
    Some(Tokens {
        prompt,
        response,
        thoughts,
        total,
    })
}

/// Split in two at every byte, and fed one byte at a time, the stream reads as it does whole.
fn reads_alike_however_split(framing: Framing, stream: &[u8]) -> (bool, Option<Tokens>) {
    let whole = read(framing, &[stream]);
    for at in 0..=stream.len() {
        let (a, b) = stream.split_at(at);
        assert_eq!(read(framing, &[a, b]), whole, "{framing:?} split at {at}");
    }
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(read(framing, &bytes), whole, "{framing:?} byte by byte");
    whole
}

/// Every cut before `end` (where the last end marker is complete) is broken.
fn every_cut_before_is_broken(framing: Framing, stream: &[u8], end: usize) {
    for at in 1..end {
        assert!(
            !read(framing, &[&stream[..at]]).0,
            "{framing:?} cut at {at}"
        );
    }
}

fn gemini_sse(eol: &str) -> String {
    let events = [
        r#"{"candidates": [{"content": {"parts": [{"text": "a \"]}{[ data: \n\"finishReason\": 1"}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 4,"candidatesTokenCount": 1,"totalTokenCount": 5}}"#,
        r#"{"candidates": [{"content": {"parts": [{"text": "b"}],"role": "model"},"finishReason": "STOP","index": 0}],"usageMetadata": {"promptTokenCount": 4,"candidatesTokenCount": 49,"totalTokenCount": 2095,"promptTokensDetails": [{"modality": "TEXT","tokenCount": 4}],"thoughtsTokenCount": 2042},"modelVersion": "gemini-2.5-flash"}"#,
    ];
    events
        .iter()
        .map(|e| format!("data: {e}{eol}{eol}"))
        .collect()
}

const JSON_ARRAY: &str = "[{\n  \"candidates\": [{\"content\": {\"parts\": [{\"text\": \"x ] , [ { \\\" }\"}]}}],\n  \"usageMetadata\": {\"promptTokenCount\": 3, \"candidatesTokenCount\": 1, \"totalTokenCount\": 4}\n}\n,\n{\n  \"candidates\": [{\"content\": {\"parts\": [{\"text\": \"]\"}]}, \"finishReason\": \"STOP\"}],\n  \"usageMetadata\": {\"promptTokenCount\": 3, \"candidatesTokenCount\": 7, \"thoughtsTokenCount\": 5}\n}\n]\n";

const OPENAI_SSE: &str = concat!(
    "data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"usage\"}}],\"usage\":null}\n\n",
    "data: {\"choices\":[{\"delta\":{\"content\":\"[DONE]\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7,\"total_tokens\":20}}\n\n",
    "data: [DONE]\n\n",
);

const GEMINI_UNARY: &str = "{\n  \"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hello!\"}], \"role\": \"model\"}, \"finishReason\": \"STOP\"}],\n  \"usageMetadata\": {\n    \"promptTokenCount\": 4,\n    \"candidatesTokenCount\": 49,\n    \"totalTokenCount\": 2095,\n    \"thoughtsTokenCount\": 2042,\n    \"promptTokensDetails\": [{\"modality\": \"TEXT\", \"tokenCount\": 4}]\n  },\n  \"modelVersion\": \"gemini-2.5-flash\"\n}\n";

// Ported from stream_check.rs.
#[test]
fn a_gemini_sse_stream_is_complete_after_its_final_event() {
    let first = "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"a\"}]}}]}\r\n\r\n";
    let last = "data: {\"candidates\": [{\"finishReason\": \"STOP\"}]}\r\n\r\n";
    let error = "data: {\"error\": {\"code\": 500}}\r\n\r\n";
    assert!(check(Framing::GeminiSse, &[first, last]));
    assert!(check(Framing::GeminiSse, &[first, error]));
    let blocked = "data: {\"promptFeedback\": {\"blockReason\": \"PROHIBITED_CONTENT\"}}\r\n\r\n";
    assert!(
        check(Framing::GeminiSse, &[blocked]),
        "a blocked prompt's only event"
    );
    assert!(
        !check(Framing::GeminiSse, &[first, first]),
        "cut after two events"
    );
    assert!(
        !check(Framing::GeminiSse, &[last, first]),
        "finishReason must be last"
    );
}

#[test]
fn a_final_event_split_anywhere_across_chunks_is_still_final() {
    let first = "data: {\"candidates\": [{\"content\": {}}]}\r\n\r\n";
    let last = "data: {\"candidates\": [{\"finishReason\": \"STOP\"}]}\r\n\r\n";
    let stream = format!("{first}{last}");
    for at in 1..stream.len() {
        let (a, b) = stream.split_at(at);
        assert!(check(Framing::GeminiSse, &[a, b]), "split at {at}");
    }
    let cut = format!("{first}{first}");
    for at in 1..cut.len() {
        let (a, b) = cut.split_at(at);
        assert!(!check(Framing::GeminiSse, &[a, b]), "cut, split at {at}");
    }
}

#[test]
fn data_inside_an_events_text_does_not_start_an_event() {
    let last =
        "data: {\"candidates\": [{\"finishReason\": \"STOP\", \"text\": \"x data: y\"}]}\r\n\r\n";
    assert!(check(Framing::GeminiSse, &[last]));
}

#[test]
fn arrays_and_openai_streams_need_their_end_marker() {
    assert!(check(
        Framing::GeminiJsonArray,
        &["[{\"a\": 1}\n", ",\n{}\n]"]
    ));
    assert!(!check(Framing::GeminiJsonArray, &["[{\"a\": 1}\n", ",\n{"]));
    assert!(check(
        Framing::OpenAiSse,
        &["data: {}\n\n", "data: [DONE]\n\n"]
    ));
    assert!(!check(Framing::OpenAiSse, &["data: {}\n\n"]));
}

#[test]
fn a_declared_length_must_be_reached() {
    let mut reader = StreamReader::new(Framing::GeminiJsonArray, Some(10));
    reader.observe(b"[1,2]");
    assert!(reader.finish().is_err());
    reader.observe(b"     ");
    assert!(reader.finish().is_ok());
    reader.observe(b" ");
    assert!(reader.finish().is_err(), "past the declared length");
}

// New.
#[test]
fn gemini_sse_reads_alike_with_any_line_end_and_any_split() {
    for eol in ["\r\n", "\n", "\r"] {
        let stream = gemini_sse(eol);
        let whole = reads_alike_however_split(Framing::GeminiSse, stream.as_bytes());
        assert_eq!(whole, (true, tokens(4, 49, 2042, 2095)), "{eol:?}");
        // The final event's data line ends right before its two line ends.
        let end = stream.len() - 2 * eol.len();
        every_cut_before_is_broken(Framing::GeminiSse, stream.as_bytes(), end + 1);
        assert!(
            check(Framing::GeminiSse, &[&stream[..end + eol.len()]]),
            "no blank line"
        );
    }
}

#[test]
fn a_json_array_reads_alike_however_split_and_is_cut_until_it_closes() {
    let whole = reads_alike_however_split(Framing::GeminiJsonArray, JSON_ARRAY.as_bytes());
    assert_eq!(whole, (true, tokens(3, 7, 5, 15)));
    let end = JSON_ARRAY.rfind(']').unwrap_or(0);
    every_cut_before_is_broken(Framing::GeminiJsonArray, JSON_ARRAY.as_bytes(), end + 1);
    assert!(
        !check(Framing::GeminiJsonArray, &[JSON_ARRAY, "[]"]),
        "bytes after the end"
    );
    assert!(!check(Framing::GeminiJsonArray, &["]"]), "nothing to close");
    assert!(!check(Framing::GeminiJsonArray, &[""]));
}

#[test]
fn an_openai_stream_reads_alike_however_split_and_ends_with_done() {
    let whole = reads_alike_however_split(Framing::OpenAiSse, OPENAI_SSE.as_bytes());
    assert_eq!(whole, (true, tokens(5, 7, 8, 20)));
    let end = OPENAI_SSE.len() - 2;
    every_cut_before_is_broken(Framing::OpenAiSse, OPENAI_SSE.as_bytes(), end + 1);
    let crs = OPENAI_SSE.replace('\n', "\r");
    assert_eq!(read(Framing::OpenAiSse, &[crs.as_bytes()]), whole);
    assert!(
        !check(Framing::OpenAiSse, &[OPENAI_SSE, "data: {}\n\n"]),
        "[DONE] not last"
    );
    assert!(!check(Framing::OpenAiSse, &["data: [DONE]x\n\n"]));
    assert!(!check(Framing::OpenAiSse, &[""]));
}

#[test]
fn a_unary_answer_is_always_complete_and_reads_alike_however_split() {
    let whole = reads_alike_however_split(Framing::Unary, GEMINI_UNARY.as_bytes());
    assert_eq!(whole, (true, tokens(4, 49, 2042, 2095)));
    assert!(check(Framing::Unary, &["{\"candi"]));
}

#[test]
fn sse_fields_follow_the_whatwg_rules() {
    let last = "{\"candidates\": [{\"finishReason\": \"STOP\"}]}";
    assert!(
        check(Framing::GeminiSse, &[&format!("data:{last}\n\n")]),
        "no space"
    );
    let noise = format!(": keepalive\n\nevent: x\nid: 1\ndata: {last}\n\n: bye\n\n");
    assert!(
        check(Framing::GeminiSse, &[&noise]),
        "comments and other fields"
    );
    let split = "data: {\"candidates\": [{\"finishReason\":\r\ndata: \"STOP\"}]}\r\n\r\n";
    assert!(check(Framing::GeminiSse, &[split]), "data lines joined");
    assert!(!check(Framing::GeminiSse, &[&format!("datum: {last}\n\n")]));
    assert!(!check(
        Framing::GeminiSse,
        &[&format!("data: {last}\n\ndata\n\n")]
    ));
    assert!(check(Framing::GeminiSse, &[""]), "no event at all");
    assert!(
        !check(Framing::GeminiSse, &["\r\n\r\n"]),
        "no event, but bytes"
    );
    assert!(
        !check(Framing::GeminiSse, &[&format!("data: {last}")]),
        "cut mid-line"
    );
    assert!(
        !check(Framing::OpenAiSse, &["data: [DONE]"]),
        "cut mid-line"
    );
    assert!(
        check(Framing::OpenAiSse, &["data:[DONE]\r"]),
        "a lone CR ends the line"
    );
}

#[test]
fn only_a_real_key_makes_an_event_final() {
    let text = "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"\\\"finishReason\\\": \\\"STOP\\\"\"}, {\"text\": \"error\"}]}}]}\n\n";
    assert!(!check(Framing::GeminiSse, &[text]));
    let args = "data: {\"candidates\": [{\"content\": {\"parts\": [{\"functionCall\": {\"args\": {\"error\": 1, \"finishReason\": 2}}}]}}]}\n\n";
    assert!(
        !check(Framing::GeminiSse, &[args]),
        "keys of a function's arguments"
    );
}

#[test]
fn a_blocked_prompt_is_complete_with_its_tokens() {
    let blocked = b"data: {\"promptFeedback\": {\"blockReason\": \"SAFETY\", \"safetyRatings\": []}, \"usageMetadata\": {\"promptTokenCount\": 7, \"totalTokenCount\": 7}}\r\n\r\n";
    assert_eq!(
        read(Framing::GeminiSse, &[blocked]),
        (true, tokens(7, 0, 0, 7))
    );
}

#[test]
fn usage_split_across_chunks_is_read() {
    let stream = gemini_sse("\r\n");
    let at = stream.rfind("usageMeta").unwrap_or(0) + 5;
    let (a, b) = stream.split_at(at);
    let (_, found) = read(Framing::GeminiSse, &[a.as_bytes(), b.as_bytes()]);
    assert_eq!(found, tokens(4, 49, 2042, 2095));
    // A cut stream still tells the last usage it completed.
    let (ok, found) = read(Framing::GeminiSse, &[a.as_bytes()]);
    assert_eq!((ok, found), (false, tokens(4, 1, 0, 5)));
}

#[test]
fn openai_usage_with_and_without_reasoning_tokens() {
    let chunk = |usage: &str| format!("data: {{\"choices\":[],\"usage\":{usage}}}\n\n");
    let plain = chunk("{\"prompt_tokens\":5,\"completion_tokens\":7,\"total_tokens\":20}");
    let reasoning = chunk("{\"prompt_tokens\":5,\"completion_tokens\":7,\"total_tokens\":20,\"completion_tokens_details\":{\"reasoning_tokens\":6}}");
    let null = chunk("null");
    let tokens_of = |chunks: &[&str]| {
        let chunks: Vec<&[u8]> = chunks.iter().map(|c| c.as_bytes()).collect();
        read(Framing::OpenAiSse, &chunks).1
    };
    assert_eq!(
        tokens_of(&[&null, &plain, "data: [DONE]\n\n"]),
        tokens(5, 7, 8, 20)
    );
    assert_eq!(tokens_of(&[&reasoning]), tokens(5, 7, 6, 20));
    assert_eq!(
        tokens_of(&[&plain, &null]),
        tokens(5, 7, 8, 20),
        "null is no usage"
    );
    assert_eq!(tokens_of(&[&null, &null]), None);
    let odd = chunk("{\"prompt_tokens\":9,\"completion_tokens\":1,\"total_tokens\":3}");
    assert_eq!(tokens_of(&[&odd]), tokens(9, 1, 0, 3), "saturating");
}

#[test]
fn unary_tokens_of_both_surfaces() {
    assert_eq!(
        unary_tokens(GEMINI_UNARY.as_bytes()),
        tokens(4, 49, 2042, 2095)
    );
    let no_total = br#"{"usageMetadata": {"promptTokenCount": 2, "candidatesTokenCount": 3}}"#;
    assert_eq!(unary_tokens(no_total), tokens(2, 3, 0, 5));
    let openai = br#"{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":9,"completion_tokens_details":{"reasoning_tokens":4}}}"#;
    assert_eq!(unary_tokens(openai), tokens(3, 2, 4, 9));
    let openai_no_total = br#"{"usage":{"prompt_tokens":3,"completion_tokens":2}}"#;
    assert_eq!(unary_tokens(openai_no_total), tokens(3, 2, 0, 5));
    let error = br#"[{"error": {"code": 400, "message": "usage", "status": "INVALID_ARGUMENT"}}]"#;
    assert_eq!(unary_tokens(error), None);
    assert_eq!(unary_tokens(br#"{"usage": null}"#), None);
    assert_eq!(
        unary_tokens(br#"{"usageMetadata": {"promptTokenCount": "x"}}"#),
        None
    );
    assert_eq!(
        unary_tokens(br#"{"a": {"usage": {"prompt_tokens": 1}}}"#),
        None,
        "nested"
    );
    assert_eq!(unary_tokens(b"not json"), None);
    assert_eq!(
        unary_tokens(br#"{"usageMetadata": {}}"#),
        tokens(0, 0, 0, 0)
    );
}

fn buffered(reader: &StreamReader) -> usize {
    let usage = reader
        .json
        .usage
        .as_ref()
        .map_or(0, |(_, bytes)| bytes.capacity());
    reader.json.capture.capacity() + usage
}

#[test]
fn a_huge_event_is_not_buffered_and_keeps_the_framing() {
    let text = "x".repeat(3 << 20);
    let usage = "\"usageMetadata\": {\"promptTokenCount\": 1, \"totalTokenCount\": 2}";
    let event = format!("data: {{\"candidates\": [{{\"content\": {{\"parts\": [{{\"text\": \"{text}\"}}]}}, \"finishReason\": \"STOP\"}}], {usage}}}\r\n\r\n");
    let mut reader = StreamReader::new(Framing::GeminiSse, None);
    for chunk in event.as_bytes().chunks(64 << 10) {
        reader.observe(chunk);
        assert!(buffered(&reader) < 4096);
    }
    assert_eq!(
        (reader.finish(), reader.tokens()),
        (Ok(()), tokens(1, 0, 0, 2))
    );
    // A usage object past the cap is dropped, not buffered; the one before stays.
    let huge = format!("data: {{\"candidates\": [{{\"finishReason\": \"STOP\"}}], \"usageMetadata\": {{\"pad\": \"{text}\"}}}}\r\n\r\n");
    for chunk in huge.as_bytes().chunks(64 << 10) {
        reader.observe(chunk);
        assert!(buffered(&reader) <= MAX_CAPTURE + 4096);
    }
    assert_eq!(
        (reader.finish(), reader.tokens()),
        (Ok(()), tokens(1, 0, 0, 2))
    );
    let array = format!("[{{\"usageMetadata\": {{\"pad\": \"{text}\"}}}}\n]");
    let mut reader = StreamReader::new(Framing::GeminiJsonArray, None);
    for chunk in array.as_bytes().chunks(64 << 10) {
        reader.observe(chunk);
        assert!(buffered(&reader) <= MAX_CAPTURE);
    }
    assert_eq!((reader.finish(), reader.tokens()), (Ok(()), None));
}

#[test]
fn a_whole_body_of_events_gives_the_last_usage() {
    let body = "data: {\"usageMetadata\": {\"promptTokenCount\": 1, \"totalTokenCount\": 2}}\r\n\r\n\
                data: {\"candidates\": [{\"finishReason\": \"STOP\"}], \"usageMetadata\": {\"promptTokenCount\": 1, \"candidatesTokenCount\": 4, \"totalTokenCount\": 5}}\r\n\r\n";
    // A unary method answered as events (`alt=sse`) is read whole: its
    // tokens count all the same.
    assert_eq!(unary_tokens(body.as_bytes()), tokens(1, 4, 0, 5));
}
