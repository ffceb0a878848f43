//! Against a real `redis-server`, started here on a free loopback port; skipped
//! with a notice when it is not installed, unless `REQUIRE_REDIS_TESTS=1`.

use super::super::*;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_millis(200);
/// Scheduling slack on a loaded machine, on top of the timeout.
const SLACK: Duration = Duration::from_millis(150);

struct Server {
    child: Option<Child>,
    port: u16,
}

impl Server {
    async fn start() -> Option<Server> {
        let installed = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !installed {
            let required = std::env::var("REQUIRE_REDIS_TESTS").is_ok_and(|v| v.trim() == "1");
            assert!(
                !required,
                "redis-server is not installed and REQUIRE_REDIS_TESTS=1"
            );
            eprintln!("NOTICE: skipping a Redis test: `redis-server` is not installed");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"])
            .args(["--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = Server {
            child: Some(child),
            port,
        };
        let started = Instant::now();
        loop {
            let ping = async {
                let mut conn = server.client().get_multiplexed_async_connection().await?;
                redis::cmd("PING").query_async::<String>(&mut conn).await
            };
            if tokio::time::timeout(Duration::from_secs(1), ping)
                .await
                .is_ok_and(|r| r.is_ok())
            {
                return Some(server);
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn client(&self) -> redis::Client {
        redis::Client::open(format!("redis://127.0.0.1:{}", self.port)).unwrap()
    }

    fn ownership(&self) -> Ownership {
        Ownership::redis(connect(self.client()).unwrap(), TIMEOUT, 1000)
    }

    /// Stops the server without killing it: it accepts connections (the kernel
    /// does) and answers nothing, the worst case for a caller.
    fn freeze(&self) {
        self.signal(libc::SIGSTOP);
    }

    fn signal(&self, signal: libc::c_int) {
        if let Some(child) = &self.child {
            let pid = libc::pid_t::try_from(child.id()).unwrap();
            // SAFETY: kill(2) on the PID of a child we started and have not reaped.
            assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
        }
    }

    /// Kills the server by its PID (a frozen one is woken first, to die).
    fn kill(&mut self) {
        self.signal(libc::SIGCONT);
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn owner(client: &str, key: &[u8]) -> Owner {
    Owner {
        client: client.into(),
        key: KeyRef::Server(fingerprint(key)),
    }
}

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn two_replicas_on_one_redis_see_each_others_records() {
    let Some(server) = Server::start().await else {
        return;
    };
    let (one, two) = (server.ownership(), server.ownership());
    one.record(Kind::File, "abc", owner("alice", b"k1"), HOUR)
        .await;
    two.record(
        Kind::Interaction,
        "v1_Xyz",
        Owner {
            client: "bob".into(),
            key: KeyRef::Own,
        },
        HOUR,
    )
    .await;
    assert_eq!(
        two.lookup(Kind::File, "abc").await,
        Some(owner("alice", b"k1"))
    );
    assert_eq!(
        one.lookup(Kind::Interaction, "v1_Xyz").await.map(|o| o.key),
        Some(KeyRef::Own)
    );
    assert_eq!(two.lookup(Kind::Batch, "abc").await, None, "another kind");

    let mut conn = server
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let stored: String = redis::cmd("GET")
        .arg("gemini-proxy:own:file:abc")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(stored, format!("alice|{}", fingerprint(b"k1")));

    two.extend(Kind::File, "abc", Duration::from_secs(10)).await;
    let pttl: i64 = redis::cmd("PTTL")
        .arg("gemini-proxy:own:file:abc")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((1..=10_000).contains(&pttl), "{pttl}");

    two.forget(Kind::File, "abc").await;
    let three = server.ownership();
    assert_eq!(
        three.lookup(Kind::File, "abc").await,
        None,
        "gone from Redis"
    );
    assert_eq!(
        two.lookup(Kind::File, "abc").await,
        None,
        "and from the replica that forgot"
    );
}

#[tokio::test]
async fn a_record_expires_in_redis_and_in_the_copy_a_lookup_kept() {
    let Some(server) = Server::start().await else {
        return;
    };
    let (one, two) = (server.ownership(), server.ownership());
    let ttl = Duration::from_millis(400);
    one.record(Kind::CachedContent, "c1", owner("alice", b"k"), ttl)
        .await;
    assert!(
        two.lookup(Kind::CachedContent, "c1").await.is_some(),
        "kept locally now"
    );
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    assert_eq!(two.lookup(Kind::CachedContent, "c1").await, None);
    assert_eq!(one.lookup(Kind::CachedContent, "c1").await, None);
}

#[tokio::test]
async fn a_redis_that_does_not_answer_leaves_local_memory_answering_within_the_timeout() {
    let Some(mut server) = Server::start().await else {
        return;
    };
    let (one, two) = (server.ownership(), server.ownership());
    one.record(Kind::File, "mine", owner("alice", b"k"), HOUR)
        .await;
    // Open two's connection while Redis answers, so the freeze hits a live one.
    assert!(two.lookup(Kind::File, "mine").await.is_some());
    two.forget(Kind::Batch, "nothing").await;

    server.freeze();
    let started = Instant::now();
    assert!(
        one.lookup(Kind::File, "mine").await.is_some(),
        "from local memory"
    );
    assert!(started.elapsed() < SLACK, "no Redis wait on a local hit");
    for call in 0..3 {
        let started = Instant::now();
        match call {
            0 => assert_eq!(two.lookup(Kind::File, "unknown").await, None),
            1 => assert!(
                two.record(Kind::File, "new", owner("bob", b"k"), HOUR)
                    .await
            ),
            _ => two.extend(Kind::File, "new", HOUR).await,
        }
        let waited = started.elapsed();
        assert!(waited < TIMEOUT + SLACK, "call {call} waited {waited:?}");
    }
    assert!(
        two.lookup(Kind::File, "new").await.is_some(),
        "recorded locally all the same"
    );

    // Killed outright: refused connections, still answered from memory.
    server.kill();
    let three = server.ownership();
    let started = Instant::now();
    assert_eq!(
        three.lookup(Kind::File, "mine").await,
        None,
        "a miss is not found"
    );
    assert!(one.lookup(Kind::File, "mine").await.is_some());
    assert!(started.elapsed() < TIMEOUT + SLACK);
}
