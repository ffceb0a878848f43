use super::*;

fn files(ids: &[&str]) -> References {
    References {
        files: ids.iter().map(|s| s.to_string()).collect(),
        ..References::default()
    }
}

fn caches(ids: &[&str]) -> References {
    References {
        cached_contents: ids.iter().map(|s| s.to_string()).collect(),
        ..References::default()
    }
}

fn interactions(ids: &[&str]) -> References {
    References {
        interactions: ids.iter().map(|s| s.to_string()).collect(),
        ..References::default()
    }
}

fn scanned(body: &str) -> References {
    scan(body.as_bytes()).unwrap_or_else(|_| panic!("unreadable: {body}"))
}

#[test]
fn references_are_found_wherever_they_sit() {
    let cases = [
        (
            "camelCase fileData.fileUri in contents[].parts[]",
            r#"{"contents":[{"role":"user","parts":[{"text":"hi"},{"fileData":{"mimeType":"image/png","fileUri":"files/abc-1"}}]}]}"#,
            files(&["abc-1"]),
        ),
        (
            "snake_case file_data.file_uri",
            r#"{"contents":[{"parts":[{"file_data":{"file_uri":"files/abc"}}]}]}"#,
            files(&["abc"]),
        ),
        (
            "a full URL",
            r#"{"x":"https://generativelanguage.googleapis.com/v1beta/files/x"}"#,
            files(&["x"]),
        ),
        (
            "a URL with a query and a fragment",
            r#"{"x":"https://host/v1beta/files/x1?alt=media#frag"}"#,
            files(&["x1"]),
        ),
        (
            "a download URL with a method suffix",
            r#"{"x":"https://host/v1beta/files/x2:download?alt=media"}"#,
            files(&["x2"]),
        ),
        (
            "batch input file",
            r#"{"batch":{"inputConfig":{"fileName":"files/x"}}}"#,
            files(&["x"]),
        ),
        (
            "cachedContent of generateContent",
            r#"{"cachedContent":"cachedContents/c-9","contents":[]}"#,
            caches(&["c-9"]),
        ),
        (
            "a cache named by URL",
            r#"{"cached_content":"https://host/v1beta/cachedContents/c1"}"#,
            caches(&["c1"]),
        ),
        (
            "previous_interaction_id at the top",
            r#"{"model":"m","previous_interaction_id":"v1_ChdTb21lT3BhcXVlSWQ","input":"hi"}"#,
            interactions(&["v1_ChdTb21lT3BhcXVlSWQ"]),
        ),
        (
            "previousInteractionId deep inside",
            r#"{"a":[{"b":{"previousInteractionId":"v1_Deep"}}]}"#,
            interactions(&["v1_Deep"]),
        ),
        (
            "an empty interaction id names nothing",
            r#"{"previous_interaction_id":"","previousInteractionId":null}"#,
            References::default(),
        ),
        (
            "an interaction id is kept as written, for the lookup to refuse",
            r#"{"previous_interaction_id":"v1/Odd Id"}"#,
            interactions(&["v1/Odd Id"]),
        ),
        (
            "an interaction key whose value is no string names nothing",
            r#"{"previous_interaction_id":{"x":1}}"#,
            References::default(),
        ),
        (
            "a key of any name, in arrays of arrays",
            r#"{"whatever":[["files/q1"],[{"k":"files/q2"}]],"n":[1,2.5,true,null]}"#,
            files(&["q1", "q2"]),
        ),
        (
            "duplicates once, in order",
            r#"{"a":"files/b","c":["files/a","files/b","FILES/A"]}"#,
            files(&["b", "a"]),
        ),
        (
            "a duplicate key is seen both times",
            r#"{"fileData":{"fileUri":"files/first","fileUri":"files/second"}}"#,
            files(&["first", "second"]),
        ),
        (
            "everything at once",
            r#"{"cachedContent":"cachedContents/c","previousInteractionId":"i","x":"files/f"}"#,
            References {
                files: vec!["f".into()],
                cached_contents: vec!["c".into()],
                interactions: vec!["i".into()],
            },
        ),
    ];
    for (why, body, expected) in cases {
        assert_eq!(scanned(body), expected, "{why}");
    }
}

#[test]
fn smuggled_references_are_found() {
    let cases = [
        (
            "a \\u escape spells a letter",
            r#"{"x":"\u0066iles/x"}"#,
            "x",
        ),
        (
            "every letter escaped",
            r#"{"x":"\u0066\u0069\u006c\u0065\u0073\u002f\u0078"}"#,
            "x",
        ),
        ("an escaped slash", r#"{"x":"files\/x"}"#, "x"),
        ("percent-encoded letter", r#"{"x":"%66iles/x"}"#, "x"),
        ("percent-encoded slash", r#"{"x":"files%2Fx"}"#, "x"),
        ("percent-encoded twice", r#"{"x":"files%252Fx"}"#, "x"),
        ("upper case", r#"{"x":"FILES/X"}"#, "x"),
        (
            "mixed case in a URL",
            r#"{"x":"https://h/v1beta/fIlEs/Ab"}"#,
            "ab",
        ),
        ("surrounding whitespace", r#"{"x":"  files/x\n"}"#, "x"),
        ("a trailing slash", r#"{"x":"files/x/"}"#, "x"),
        (
            "an escaped key still reads as fileUri",
            r#"{"fileData":{"file\u0055ri":"files/x"}}"#,
            "x",
        ),
    ];
    for (why, body, id) in cases {
        assert_eq!(scanned(body), files(&[id]), "{why}: {body}");
    }
    assert_eq!(
        scanned(r#"{"x":"CachedContents\/C1"}"#),
        caches(&["c1"]),
        "escaped slash, any case"
    );
    assert_eq!(
        scanned(r#"{"previous\u005finteraction_id":"v1_X"}"#),
        interactions(&["v1_X"]),
        "an escaped key"
    );
}

#[test]
fn strings_that_only_mention_a_resource_name_nothing() {
    let cases = [
        ("prose", r#"{"text":"summarise files/abc please"}"#),
        ("prose ending in a reference", r#"{"text":"see files/abc"}"#),
        (
            "prose ending in a URL",
            r#"{"text":"see https://h/files/abc"}"#,
        ),
        ("another collection", r#"{"x":"myfiles/abc"}"#),
        ("a nested path", r#"{"x":"files/a/b"}"#),
        ("no id", r#"{"x":"files/"}"#),
        (
            "an id longer than any the store takes",
            &format!(r#"{{"x":"files/{}"}}"#, "a".repeat(257)),
        ),
        ("a character Gemini never uses", r#"{"x":"files/a_b"}"#),
        ("a key is not a value", r#"{"files/abc":1}"#),
        (
            "a YouTube URL",
            r#"{"fileUri":"https://www.youtube.com/watch?v=files/abc"}"#,
        ),
    ];
    for (why, body) in cases {
        assert_eq!(scanned(body), References::default(), "{why}: {body}");
    }
}

#[test]
fn a_triggered_body_that_cannot_be_read_is_unreadable() {
    let deep = format!("{}\"files/x\"{}", "[".repeat(200), "]".repeat(200));
    let cases = [
        ("not JSON", "files/x".to_owned()),
        ("truncated", r#"{"x":"files/x""#.to_owned()),
        ("trailing garbage", r#"{"x":"files/x"} {"#.to_owned()),
        ("a bad escape", r#"{"x":"\u00zz files/"}"#.to_owned()),
        ("deeper than the recursion limit", deep),
        (
            "a percent sign in text that is not JSON",
            "100% sure".to_owned(),
        ),
    ];
    for (why, body) in cases {
        assert_eq!(scan(body.as_bytes()), Err(Unreadable), "{why}");
    }
    let mut invalid_utf8 = br#"{"x":"files/x "#.to_vec();
    invalid_utf8.extend([0xff, b'"', b'}']);
    assert_eq!(scan(&invalid_utf8), Err(Unreadable), "invalid UTF-8");
}

#[test]
fn a_body_without_a_trigger_is_not_parsed() {
    for body in [
        "not json at all {{{",
        r#"{"contents":[{"parts":[{"text":"hello / world"}]}]}"#,
        r#"{"x":"fil es/abc"}"#,
        "",
        r#"{"x":"files\\abc"}"#,
    ] {
        assert_eq!(scan(body.as_bytes()), Ok(References::default()), "{body}");
    }
    for body in [
        "files/",
        "FILES\\/",
        "cachedcontents/",
        "CACHEDCONTENTS/",
        "cachedContents\\/",
        "xfiles/",
        "\\u",
        "%",
        "previous_interaction_id",
        "previousInteractionId",
    ] {
        assert!(triggers(body.as_bytes()), "{body}");
    }
    for body in [
        "files",
        "iles/",
        "ontents/",
        "\\n",
        "files\\\\/",
        "/files",
        "abcs/xyz",
        "fileS /",
    ] {
        assert!(!triggers(body.as_bytes()), "{body}");
    }
}

#[test]
fn a_large_inline_image_triggers_nothing() {
    // 3 MiB of base64 (slashes included) in the usual inlineData shape, with
    // lowercase letters before many slashes, none of them spelling `files`.
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let data: String = (0..3 * 1024 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(alphabet[(state % 64) as usize])
        })
        .collect();
    let data = data
        .replace("files/", "filesX")
        .replace("nteraction", "nteractioX");
    let body = format!(
        r#"{{"contents":[{{"parts":[{{"inlineData":{{"mimeType":"image/png","data":"{data}"}}}},{{"text":"what is this?"}}]}}]}}"#
    );
    assert!(body.len() > 3 * 1024 * 1024);
    assert!(!triggers(body.as_bytes()));
    assert_eq!(scan(body.as_bytes()), Ok(References::default()));
    // The same body naming a file is parsed and found.
    let named = body.replace(
        r#"{"text":"what is this?"}"#,
        r#"{"fileData":{"fileUri":"files/big"}}"#,
    );
    assert_eq!(scan(named.as_bytes()), Ok(files(&["big"])));
}

#[test]
fn percent_decoding_stops_at_a_fixed_point() {
    assert_eq!(percent_decoded(b"a%2Fb").as_deref(), Some(&b"a/b"[..]));
    assert_eq!(
        percent_decoded(b"100%").as_deref(),
        Some(&b"100%"[..]),
        "a lone % stays"
    );
    assert_eq!(percent_decoded(b"%zz").as_deref(), Some(&b"%zz"[..]));
    let layered = "files%25252525252Fx";
    assert_eq!(percent_decoded(layered.as_bytes()), None, "still changing");
}

#[test]
fn any_path_ending_in_a_file_names_it() {
    // Which of these Gemini resolves is not known: each could reach a file
    // through a key that holds it, so each is checked (a web page that
    // happens to sit at `/files/<word>` is refused as a file nobody owns).
    let named = [
        r#"{"t":"files/abc"}"#,
        r#"{"t":"/files/abc"}"#,
        r#"{"t":"https://generativelanguage.googleapis.com/v1beta/files/abc"}"#,
        r#"{"t":"https://generativelanguage.mtls.googleapis.com/files/abc"}"#,
        r#"{"t":"https://example.com/files/abc"}"#,
        r#"{"t":"http://127.0.0.1:9/v1/files/abc"}"#,
        r#"{"t":"https://generativelanguage.googleapis.com/v1beta/files/abc/x/.."}"#,
        r#"{"t":"https://x.example/v1beta/other/../files/abc"}"#,
    ];
    for body in named {
        assert_eq!(scanned(body).files, vec!["abc".to_owned()], "{body}");
    }
    // A file name Gemini could not have made (a dot), or prose.
    for body in [
        r#"{"t":"https://example.com/files/report.pdf"}"#,
        r#"{"t":"see /home/alice/files/notes"}"#,
    ] {
        assert_eq!(scanned(body), References::default(), "{body}");
    }
}
