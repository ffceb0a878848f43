//! Which files, cached contents and earlier interactions a request body names,
//! so each can be checked against its owner before the body goes to Gemini.
//!
//! It runs on every generateContent, countTokens, batch, cachedContents and
//! interactions body, up to 20 MiB of mostly base64, and almost none of them
//! name a resource. So a body is parsed only when a byte search finds a way it
//! could: a memchr for `%` and `\`, and three substring searches (about 4 ms
//! for 20 MiB of base64 on one core of the development machine). A body that
//! triggers nothing is not parsed at all, whatever it holds.
//!
//! The triggers are chosen against someone smuggling a reference past the check
//! while Gemini still reads it:
//! - `files/` and `cachedContents/`, in any case, the `/` also as JSON's `\/`:
//!   each `s/`, `S/` and `\/` is looked at backwards. Google's paths are
//!   case-sensitive, but what Gemini makes of a `fileUri` is not documented,
//!   and catching `FILES/X` costs next to nothing.
//! - any `\u` escape, which can spell any letter (`"\u0066iles/x"`);
//! - any `%`, which can spell any letter in a URL (`%66iles/x`);
//! - `nteraction`, found in both `previous_interaction_id` and
//!   `previousInteractionId` (proto JSON reads field names exactly, and an
//!   escaped key is caught by `\u`).
//!
//! Other JSON escapes (`\n`, `\\`, …) cannot produce a letter or a slash.
//!
//! A triggered body is walked as a stream of JSON events, not built into a
//! tree: a 20 MiB body costs no copy of its strings, and duplicate keys are
//! all seen (a map would keep only the last, and Gemini might read the first).
//! A body that triggers but cannot be read, or nests deeper than serde_json's
//! recursion limit, is [`Unreadable`]: Gemini's parser might read what ours
//! could not, so the caller refuses it.

use memchr::memmem::Finder;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::collections::HashSet;
use std::fmt;
use std::sync::LazyLock;

use super::{MAX_FILE_ID, MAX_ID_LEN};

/// The resources a body names: ids without their collection, each once, in the
/// order first met. File and cached-content ids are lowercase; interaction ids
/// are as written (they are case-sensitive, and checked by the owner lookup).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct References {
    pub files: Vec<String>,
    pub cached_contents: Vec<String>,
    pub interactions: Vec<String>,
}

impl References {
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.cached_contents.is_empty() && self.interactions.is_empty()
    }
}

/// The body might name a resource but could not be parsed.
#[derive(Debug, PartialEq, Eq)]
pub struct Unreadable;

impl fmt::Display for Unreadable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the request body may name a resource but is not JSON this service can read")
    }
}

impl std::error::Error for Unreadable {}

/// Percent-decoding rounds: a path may be decoded more than once on its way
/// (a URL inside a URL), and we cannot know how often Gemini decodes; past
/// this, a string still changing is refused as a reference anyway.
const DECODE_ROUNDS: usize = 4;

const INTERACTION_KEYS: [&str; 2] = ["previous_interaction_id", "previousInteractionId"];

/// The resources `body` names. A body that holds no trigger is not parsed and
/// names nothing, whatever it is.
pub fn scan(body: &[u8]) -> Result<References, Unreadable> {
    if !triggers(body) {
        return Ok(References::default());
    }
    let mut found = Found::default();
    let mut de = serde_json::Deserializer::from_slice(body);
    Node {
        found: &mut found,
        interaction: false,
    }
    .deserialize(&mut de)
    .map_err(|_| Unreadable)?;
    de.end().map_err(|_| Unreadable)?;
    Ok(found.refs)
}

/// Could the body name a resource? See the module comment for the triggers.
fn triggers(body: &[u8]) -> bool {
    // Both collection names end in `s`: `s/` is rare enough in base64 (one in
    // 4096 bytes) that looking backwards at each is cheap, and it makes the
    // match case-insensitive, which searching for `files/` would not.
    static LOWER_S: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new("s/"));
    static UPPER_S: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new("S/"));
    static INTERACTION: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new("nteraction"));
    // Neither `%` nor `\` occurs in base64: this pass is one memchr.
    for at in memchr::memchr2_iter(b'%', b'\\', body) {
        match (body.get(at), body.get(at + 1)) {
            (Some(b'%'), _) | (_, Some(b'u')) => return true,
            (_, Some(b'/')) if names_a_collection(body.get(..at).unwrap_or_default()) => {
                return true
            }
            _ => {}
        }
    }
    let slash_after_s = [&*LOWER_S, &*UPPER_S].into_iter().any(|finder| {
        finder
            .find_iter(body)
            .any(|at| names_a_collection(body.get(..=at).unwrap_or_default()))
    });
    slash_after_s || INTERACTION.find(body).is_some()
}

/// Does the text before a slash end in a collection's name, in any case?
fn names_a_collection(before: &[u8]) -> bool {
    ends_with_ignoring_case(before, b"files") || ends_with_ignoring_case(before, b"cachedcontents")
}

fn ends_with_ignoring_case(text: &[u8], suffix: &[u8]) -> bool {
    text.len() >= suffix.len()
        && text
            .get(text.len() - suffix.len()..)
            .is_some_and(|end| end.eq_ignore_ascii_case(suffix))
}

/// What the walk collects, deduplicated.
#[derive(Default)]
struct Found {
    refs: References,
    seen: HashSet<(Collection, String)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Collection {
    Files,
    CachedContents,
    Interactions,
}

impl Found {
    fn add(&mut self, collection: Collection, id: String) {
        if self.seen.insert((collection, id.clone())) {
            let list = match collection {
                Collection::Files => &mut self.refs.files,
                Collection::CachedContents => &mut self.refs.cached_contents,
                Collection::Interactions => &mut self.refs.interactions,
            };
            list.push(id);
        }
    }
}

/// One JSON value, and whether it is the value of an interaction key.
struct Node<'f> {
    found: &'f mut Found,
    interaction: bool,
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_str<E>(self, value: &str) -> Result<(), E> {
        // An empty id continues nothing (some clients send "" for "none").
        if self.interaction && !value.is_empty() {
            self.found.add(Collection::Interactions, value.to_owned());
        }
        if let Some((collection, id)) = reference(value) {
            self.found.add(collection, id);
        }
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let found = self.found;
        while seq
            .next_element_seed(Node {
                found: &mut *found,
                interaction: false,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let found = self.found;
        while let Some(interaction) = map.next_key_seed(InteractionKey)? {
            map.next_value_seed(Node {
                found: &mut *found,
                interaction,
            })?;
        }
        Ok(())
    }
}

/// Reads a key as "is it an interaction key?", without copying it.
struct InteractionKey;

impl<'de> DeserializeSeed<'de> for InteractionKey {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for InteractionKey {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, key: &str) -> Result<bool, E> {
        Ok(INTERACTION_KEYS.contains(&key))
    }
}

/// The file or cached content a string value names: exactly `files/<id>`, or a
/// URL or path ending in `/files/<id>` (a query or fragment after it ignored),
/// the same for `cachedContents`, after percent-decoding, in any case. Prose
/// that mentions one (anything with whitespace inside) names nothing.
fn reference(value: &str) -> Option<(Collection, String)> {
    let raw = value.as_bytes();
    if !raw.iter().any(|&b| b == b'/' || b == b'%') {
        return None;
    }
    let decoded = percent_decoded(raw)?;
    let text = decoded.trim_ascii();
    if text.iter().any(u8::is_ascii_whitespace) {
        return None;
    }
    let path = match text.iter().position(|&b| b == b'?' || b == b'#') {
        Some(end) => text.get(..end)?,
        None => text,
    };
    // Lenient where Gemini might be: dot segments resolved, a trailing slash,
    // a `:method` suffix.
    let resolved = without_dot_segments(path);
    let path = trim_trailing_slashes(&resolved);
    let slash = path.iter().rposition(|&b| b == b'/')?;
    let (before, last) = (path.get(..slash)?, path.get(slash + 1..)?);
    let id = match last.iter().position(|&b| b == b':') {
        Some(colon) => last.get(..colon)?,
        None => last,
    };
    let collection_name = match before.iter().rposition(|&b| b == b'/') {
        Some(slash) => before.get(slash + 1..)?,
        None => before,
    };
    let (collection, max) = if collection_name.eq_ignore_ascii_case(b"files") {
        (Collection::Files, MAX_FILE_ID)
    } else if collection_name.eq_ignore_ascii_case(b"cachedcontents") {
        (Collection::CachedContents, MAX_ID_LEN)
    } else {
        return None;
    };
    let well_formed =
        (1..=max).contains(&id.len()) && id.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-');
    if !well_formed {
        return None;
    }
    let id = id
        .iter()
        .map(|&b| char::from(b.to_ascii_lowercase()))
        .collect();
    Some((collection, id))
}

/// `a/b/../c/./d` → `a/c/d`, as a URL parser would read the path.
fn without_dot_segments(path: &[u8]) -> Vec<u8> {
    if memchr::memmem::find(path, b"/.").is_none() && !path.starts_with(b".") {
        return path.to_vec();
    }
    let mut kept: Vec<&[u8]> = Vec::new();
    for segment in path.split(|&b| b == b'/') {
        match segment {
            b"." => {}
            b".." => {
                kept.pop();
            }
            other => kept.push(other),
        }
    }
    kept.join(&b'/')
}

fn trim_trailing_slashes(mut path: &[u8]) -> &[u8] {
    while let Some(rest) = path.strip_suffix(b"/") {
        path = rest;
    }
    path
}

/// Percent-decodes until nothing changes, at most [`DECODE_ROUNDS`] times;
/// `None` when it still changes after that.
fn percent_decoded(raw: &[u8]) -> Option<Vec<u8>> {
    let mut text = raw.to_vec();
    for _ in 0..DECODE_ROUNDS {
        match decode_once(&text) {
            Some(next) => text = next,
            None => return Some(text),
        }
    }
    decode_once(&text).is_none().then_some(text)
}

/// One round of percent-decoding; `None` when there was nothing to decode.
fn decode_once(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let mut changed = false;
    let mut i = 0;
    while let Some(&b) = text.get(i) {
        let escaped = (b == b'%')
            .then(|| Some((hex(*text.get(i + 1)?)?, hex(*text.get(i + 2)?)?)))
            .flatten();
        match escaped {
            Some((high, low)) => {
                out.push(high << 4 | low);
                changed = true;
                i += 3;
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    changed.then_some(out)
}

fn hex(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
#[path = "references_tests.rs"]
mod tests;
