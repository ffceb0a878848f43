//! A real `redis-server` for the tests: on a free loopback port, without
//! persistence, in a private directory, stopped by its PID when dropped.

use redis::aio::MultiplexedConnection;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const REQUIRE_VARIABLE: &str = "REQUIRE_REDIS_TESTS";
/// A fresh redis-server answers within milliseconds; this is for loaded CI.
const START_LIMIT: Duration = Duration::from_secs(10);

pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    password: Option<String>,
    dir: PathBuf,
}

/// Is `redis-server` installed? When not, prints a NOTICE past the test
/// harness's capture and says no, unless `REQUIRE_REDIS_TESTS=1` (then panics).
pub fn redis_installed() -> bool {
    let installed = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        let required = std::env::var(REQUIRE_VARIABLE).is_ok_and(|v| v.trim() == "1");
        assert!(
            !required,
            "`redis-server` is not installed and {REQUIRE_VARIABLE}=1 \
             (install it: apt-get install redis-server)"
        );
        let _ = writeln!(
            std::io::stderr(),
            "NOTICE: skipping a Redis test: `redis-server` is not installed \
             (apt-get install redis-server; set {REQUIRE_VARIABLE}=1 to make this an error)"
        );
    }
    installed
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl RedisServer {
    /// Starts a server and waits until it answers; `None` when redis-server is
    /// not installed (see [`redis_installed`]).
    pub async fn start(test: &str) -> Option<RedisServer> {
        RedisServer::start_with_password(test, None).await
    }

    /// As [`RedisServer::start`], with `requirepass` set.
    pub async fn start_with_password(test: &str, password: Option<&str>) -> Option<RedisServer> {
        if !redis_installed() {
            return None;
        }
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "redis-{test}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("redis dir");
        let mut server = RedisServer {
            child: None,
            port: free_port(),
            password: password.map(str::to_owned),
            dir,
        };
        server.spawn().await;
        Some(server)
    }

    async fn spawn(&mut self) {
        let mut command = Command::new("redis-server");
        command
            .args(["--save", "", "--appendonly", "no"])
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(password) = &self.password {
            command.args(["--requirepass", password]);
        }
        self.child = Some(command.spawn().expect("redis-server starts"));
        let started = Instant::now();
        loop {
            let ping = async {
                let mut conn = self.try_connection().await?;
                redis::cmd("PING").query_async::<String>(&mut conn).await
            };
            if tokio::time::timeout(Duration::from_secs(1), ping)
                .await
                .is_ok_and(|r| r.is_ok())
            {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("redis-server on port {} exited: {status}", self.port);
            }
            assert!(
                started.elapsed() < START_LIMIT,
                "redis-server did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The URL the service is given (with the password, when there is one).
    pub fn url(&self) -> String {
        match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    async fn try_connection(&self) -> redis::RedisResult<MultiplexedConnection> {
        redis::Client::open(self.url())?
            .get_multiplexed_async_connection()
            .await
    }

    /// A connection for the test itself, to look at (or change) what the
    /// service wrote.
    pub async fn connection(&self) -> MultiplexedConnection {
        self.try_connection().await.expect("redis connection")
    }

    /// Kills the server (SIGKILL, by its PID: no goodbye to its clients).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, empty.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
