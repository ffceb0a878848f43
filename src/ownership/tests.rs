use super::memory::{AtShare, Memory};
use super::*;
use std::time::{Duration, Instant};

fn server(client: &str, key: &[u8]) -> Owner {
    Owner {
        client: client.into(),
        key: KeyRef::Server(fingerprint(key)),
    }
}

fn own(client: &str) -> Owner {
    Owner {
        client: client.into(),
        key: KeyRef::Own,
    }
}

const HOUR: Duration = Duration::from_secs(3600);

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn a_fingerprint_is_the_hex_of_the_first_8_bytes_of_sha256() {
    // SHA-256("abc") = ba7816bf8f01cfea414140de5dae2223…
    assert_eq!(fingerprint(b"abc").as_str(), "ba7816bf8f01cfea");
    assert_eq!(fingerprint(b"abc"), fingerprint(b"abc"));
    assert_ne!(fingerprint(b"key-1"), fingerprint(b"key-2"));
    assert!(!format!("{:?}", fingerprint(b"AIza-secret")).contains("AIza"));
    assert_eq!(
        KeyFingerprint::parse("ba7816bf8f01cfea"),
        Some(fingerprint(b"abc"))
    );
}

#[tokio::test]
async fn a_recorded_resource_is_found_until_it_is_forgotten() {
    let ownership = Ownership::memory(100);
    let owner = server("alice", b"key-1");
    ownership
        .record(Kind::File, "abc-123", owner.clone(), HOUR)
        .await;
    assert_eq!(ownership.lookup(Kind::File, "abc-123").await, Some(owner));
    assert_eq!(
        ownership.lookup(Kind::File, "ABC-123").await,
        None,
        "ids are case-sensitive"
    );
    let clone = ownership.clone();
    clone.forget(Kind::File, "abc-123").await;
    assert_eq!(
        ownership.lookup(Kind::File, "abc-123").await,
        None,
        "clones share records"
    );
}

#[tokio::test]
async fn kinds_are_separate_namespaces() {
    let ownership = Ownership::memory(100);
    ownership.record(Kind::File, "x1", own("alice"), HOUR).await;
    ownership
        .record(Kind::Batch, "x1", server("bob", b"k"), HOUR)
        .await;
    assert_eq!(ownership.lookup(Kind::File, "x1").await, Some(own("alice")));
    assert_eq!(
        ownership.lookup(Kind::Batch, "x1").await,
        Some(server("bob", b"k"))
    );
    assert_eq!(ownership.lookup(Kind::CachedContent, "x1").await, None);
    ownership.forget(Kind::File, "x1").await;
    assert!(ownership.lookup(Kind::Batch, "x1").await.is_some());
}

#[tokio::test]
async fn ids_the_store_refuses_are_neither_recorded_nor_looked_up() {
    let ownership = Ownership::memory(100);
    let long = "a".repeat(MAX_ID_LEN + 1);
    for id in ["", "a/b", "a:b", "a*", "a b", "é", "a\nb", long.as_str()] {
        ownership.record(Kind::File, id, own("alice"), HOUR).await;
        assert_eq!(ownership.lookup(Kind::File, id).await, None, "{id:?}");
    }
    assert_eq!(ownership.inner.memory.len(), 0);
    let longest = "a".repeat(MAX_ID_LEN);
    ownership
        .record(Kind::Upload, &longest, own("alice"), HOUR)
        .await;
    assert!(ownership.lookup(Kind::Upload, &longest).await.is_some());
}

#[tokio::test]
async fn a_zero_ttl_records_nothing_and_an_extension_to_zero_forgets() {
    let ownership = Ownership::memory(100);
    ownership
        .record(Kind::File, "a", own("alice"), Duration::ZERO)
        .await;
    assert_eq!(ownership.lookup(Kind::File, "a").await, None);
    ownership.record(Kind::File, "a", own("alice"), HOUR).await;
    ownership.extend(Kind::File, "a", Duration::ZERO).await;
    assert_eq!(ownership.lookup(Kind::File, "a").await, None);
}

#[tokio::test]
async fn a_huge_ttl_is_capped_rather_than_overflowing() {
    let ownership = Ownership::memory(100);
    ownership
        .record(Kind::Batch, "b", own("alice"), Duration::MAX)
        .await;
    ownership.extend(Kind::Batch, "b", Duration::MAX).await;
    assert!(ownership.lookup(Kind::Batch, "b").await.is_some());
}

#[test]
fn an_entry_expires_at_its_ttl() {
    let memory = Memory::new(10, 10, AtShare::EvictOwn);
    let t0 = Instant::now();
    memory.insert(Kind::File, "a", own("alice"), secs(10), t0);
    assert!(memory.get(Kind::File, "a", t0 + secs(9)).is_some());
    assert_eq!(memory.get(Kind::File, "a", t0 + secs(10)), None);
}

#[test]
fn extend_moves_the_expiry_of_a_live_entry_only() {
    let memory = Memory::new(10, 10, AtShare::EvictOwn);
    let t0 = Instant::now();
    memory.insert(Kind::CachedContent, "c", own("alice"), secs(10), t0);
    memory.extend(Kind::CachedContent, "c", secs(20), t0 + secs(5));
    assert!(memory
        .get(Kind::CachedContent, "c", t0 + secs(24))
        .is_some());
    assert_eq!(memory.get(Kind::CachedContent, "c", t0 + secs(25)), None);
    // Shortening works too.
    memory.insert(Kind::CachedContent, "d", own("alice"), secs(100), t0);
    memory.extend(Kind::CachedContent, "d", secs(1), t0);
    assert_eq!(memory.get(Kind::CachedContent, "d", t0 + secs(2)), None);
    // An expired entry does not come back, an unknown one is not created.
    memory.insert(Kind::File, "e", own("alice"), secs(1), t0);
    memory.extend(Kind::File, "e", secs(100), t0 + secs(2));
    assert_eq!(memory.get(Kind::File, "e", t0 + secs(3)), None);
    memory.extend(Kind::File, "never", secs(100), t0);
    assert_eq!(memory.get(Kind::File, "never", t0), None);
}

#[test]
fn expired_entries_are_swept_by_later_inserts() {
    let memory = Memory::new(1000, 1000, AtShare::EvictOwn);
    let t0 = Instant::now();
    for i in 0..100 {
        memory.insert(Kind::File, &format!("f{i}"), own("alice"), secs(10), t0);
    }
    memory.insert(Kind::File, "long", own("alice"), HOUR, t0);
    assert_eq!(memory.len(), 101);
    memory.insert(Kind::Batch, "later", own("alice"), HOUR, t0 + secs(11));
    assert_eq!(memory.len(), 2, "only the live ones stay");
}

#[test]
fn a_full_table_evicts_the_entries_that_expire_soonest() {
    let memory = Memory::new(3, 3, AtShare::EvictOwn);
    let t0 = Instant::now();
    memory.insert(Kind::File, "a", own("alice"), secs(30), t0);
    memory.insert(Kind::File, "b", own("alice"), secs(10), t0);
    memory.insert(Kind::File, "c", own("alice"), secs(20), t0);
    memory.insert(Kind::File, "d", own("alice"), secs(40), t0);
    assert_eq!(memory.len(), 3);
    assert_eq!(
        memory.get(Kind::File, "b", t0),
        None,
        "the soonest to expire"
    );
    for id in ["a", "c", "d"] {
        assert!(memory.get(Kind::File, id, t0).is_some(), "{id}");
    }
    // Recording an id again replaces it and evicts nothing.
    memory.insert(Kind::File, "c", own("bob"), secs(50), t0);
    assert_eq!(memory.len(), 3);
    assert_eq!(memory.get(Kind::File, "c", t0), Some(own("bob")));
    assert!(memory.get(Kind::File, "a", t0).is_some());
}

#[test]
fn a_table_of_size_zero_keeps_nothing() {
    let memory = Memory::new(0, 0, AtShare::EvictOwn);
    memory.insert(Kind::File, "a", own("alice"), HOUR, Instant::now());
    assert_eq!(memory.len(), 0);
}

#[test]
fn held_by_counts_the_live_records_of_one_server_key() {
    let memory = Memory::new(100, 100, AtShare::EvictOwn);
    let t0 = Instant::now();
    memory.insert(Kind::File, "a", server("alice", b"k1"), HOUR, t0);
    memory.insert(Kind::Batch, "a", server("bob", b"k1"), HOUR, t0);
    memory.insert(Kind::File, "b", server("alice", b"k2"), HOUR, t0);
    memory.insert(Kind::File, "c", own("alice"), HOUR, t0);
    memory.insert(Kind::File, "d", server("alice", b"k1"), secs(1), t0);
    assert_eq!(memory.held_by(&fingerprint(b"k1"), t0), 3);
    assert_eq!(
        memory.held_by(&fingerprint(b"k1"), t0 + secs(2)),
        2,
        "d expired"
    );
    assert_eq!(memory.held_by(&fingerprint(b"k2"), t0), 1);
    assert_eq!(memory.held_by(&fingerprint(b"k3"), t0), 0);
}

#[tokio::test]
async fn held_by_is_answered_by_the_handle() {
    let ownership = Ownership::memory(100);
    ownership
        .record(Kind::Interaction, "v1_Abc", server("alice", b"k1"), HOUR)
        .await;
    assert_eq!(ownership.held_by(&fingerprint(b"k1")), 1);
}

#[test]
fn the_handle_is_shared_across_threads() {
    fn shared<T: Send + Sync + Clone + 'static>() {}
    shared::<Ownership>();
}

#[test]
fn ids_are_checked_per_kind() {
    let cases = [
        (Kind::File, "abc-123", true, "Gemini's file id"),
        (Kind::File, &"a".repeat(40), true, "40 characters"),
        (
            Kind::File,
            "batch-0123456789abcdefghijklmnopqrstuvwxyz0123",
            true,
            "a batch's output",
        ),
        (Kind::File, &"a".repeat(257), false, "257 characters"),
        (Kind::File, "Abc", false, "uppercase"),
        (Kind::File, "a_b", false, "underscore"),
        (Kind::File, "", false, "empty"),
        (
            Kind::CachedContent,
            &"a".repeat(64),
            true,
            "no documented limit",
        ),
        (Kind::CachedContent, "a.b", false, "dot"),
        (Kind::Batch, "Abc_123-x", true, "mixed case"),
        (Kind::Batch, "a.b", false, "dot"),
        (
            Kind::Interaction,
            "v1_ChdTb21lT3BhcXVlSWQ",
            true,
            "Gemini's interaction id",
        ),
        (Kind::Interaction, "v1/x", false, "slash"),
        (Kind::Upload, "AFiumC5-x_y.z", true, "an opaque token"),
        (Kind::Upload, "a:b", false, "colon"),
    ];
    for (kind, id, valid, why) in cases {
        assert_eq!(valid_id(kind, id), valid, "{kind} {id}: {why}");
        if valid {
            assert!(is_resource_id(id), "{kind} {id}: a valid id is storable");
        }
    }
}

#[path = "redis_tests.rs"]
mod redis_tests;

/// Upload sessions cost a client nothing at Gemini, so they live in a table
/// of their own: however many a client opens, no resource record of another
/// client makes room for them.
#[tokio::test]
async fn upload_sessions_never_evict_another_clients_resources() {
    let ownership = Ownership::memory(3);
    ownership
        .record(Kind::CachedContent, "a-cache", server("a", b"k0"), HOUR)
        .await;
    for n in 0..10 {
        ownership
            .record(
                Kind::Upload,
                &format!("b-session-{n}"),
                server("b", b"k1"),
                48 * HOUR,
            )
            .await;
    }
    assert_eq!(
        ownership.lookup(Kind::CachedContent, "a-cache").await,
        Some(server("a", b"k0"))
    );
}

/// A record is never taken over by another client naming the same id.
#[tokio::test]
async fn a_record_stays_with_the_client_that_made_it() {
    let ownership = Ownership::memory(10);
    ownership
        .record(Kind::File, "abc", server("a", b"k0"), HOUR)
        .await;
    ownership
        .record(Kind::File, "abc", server("b", b"k1"), HOUR)
        .await;
    assert_eq!(
        ownership.lookup(Kind::File, "abc").await,
        Some(server("a", b"k0"))
    );
}

/// No client can take more than its share of a table: a fifth of the
/// resource records, a thousand open uploads.
#[tokio::test]
async fn a_client_holds_at_most_its_share_of_each_table() {
    let ownership = Ownership::memory(10_000);
    for n in 0..2_000 {
        assert!(
            ownership
                .record(Kind::File, &format!("a-{n}"), server("a", b"k0"), HOUR)
                .await
        );
    }
    // Past its share, a client's new resource takes the place of its own
    // record that expires soonest, never another client's.
    assert!(
        ownership
            .record(Kind::File, "b-1", server("b", b"k0"), HOUR)
            .await
    );
    assert!(
        ownership
            .record(Kind::File, "a-more", server("a", b"k0"), 2 * HOUR)
            .await
    );
    assert!(ownership.lookup(Kind::File, "a-more").await.is_some());
    assert_eq!(ownership.lookup(Kind::File, "a-0").await, None);
    assert!(ownership.lookup(Kind::File, "b-1").await.is_some());
    for n in 0..MAX_UPLOADS_PER_CLIENT {
        assert!(
            ownership
                .record(Kind::Upload, &format!("u-{n}"), server("b", b"k1"), HOUR)
                .await
        );
    }
    assert!(
        !ownership
            .record(Kind::Upload, "u-more", server("b", b"k1"), HOUR)
            .await
    );
    assert!(
        ownership
            .record(Kind::Upload, "u-a", server("a", b"k1"), HOUR)
            .await
    );
}
