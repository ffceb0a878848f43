//! Real proxy servers for the tests, from Debian's packages: `tinyproxy`
//! (HTTP CONNECT, optionally with basic auth) and `microsocks` (SOCKS5,
//! optionally with a user and password). Each runs on a free loopback port
//! with its own config and log in a private directory, and is stopped by its
//! PID when dropped. Without the tools the tests print a NOTICE and pass,
//! unless `REQUIRE_EGRESS_TESTS=1`.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const REQUIRE_VARIABLE: &str = "REQUIRE_EGRESS_TESTS";
/// Both start within milliseconds; this is for a loaded CI machine.
const START_LIMIT: Duration = Duration::from_secs(10);
/// Free ports are found, then bound by the proxy: another test may take one
/// in between.
const START_ATTEMPTS: usize = 5;

/// Is `tool` installed? When not, prints a NOTICE past the test harness's
/// capture and says no, unless `REQUIRE_EGRESS_TESTS=1` (then panics).
pub fn installed(tool: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()));
    if !found {
        let required = std::env::var(REQUIRE_VARIABLE).is_ok_and(|v| v.trim() == "1");
        assert!(
            !required,
            "`{tool}` is not installed and {REQUIRE_VARIABLE}=1 (install it: apt-get install {tool})"
        );
        let _ = writeln!(
            std::io::stderr(),
            "NOTICE: skipping an egress proxy test: `{tool}` is not installed \
             (apt-get install {tool}; set {REQUIRE_VARIABLE}=1 to make this an error)"
        );
    }
    found
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn private_dir(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "egress-{name}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("proxy dir");
    dir
}

/// One proxy process, its port and its log.
pub struct ProxyServer {
    child: Child,
    pub port: u16,
    log: PathBuf,
    dir: PathBuf,
}

impl ProxyServer {
    /// `tinyproxy` in the foreground; with `auth`, `BasicAuth user password`.
    /// No `ConnectPort` line: tinyproxy then allows CONNECT to any port (the
    /// mock's is a random one).
    pub async fn tinyproxy(auth: Option<(&str, &str)>) -> Option<ProxyServer> {
        ProxyServer::tinyproxy_with(auth, "").await
    }

    /// As [`ProxyServer::tinyproxy`], with `extra` lines of configuration.
    pub async fn tinyproxy_with(auth: Option<(&str, &str)>, extra: &str) -> Option<ProxyServer> {
        if !installed("tinyproxy") {
            return None;
        }
        for _ in 0..START_ATTEMPTS {
            if let Some(server) = ProxyServer::try_tinyproxy(auth, extra).await {
                return Some(server);
            }
        }
        panic!("tinyproxy did not start");
    }

    async fn try_tinyproxy(auth: Option<(&str, &str)>, extra: &str) -> Option<ProxyServer> {
        let dir = private_dir("tinyproxy");
        let port = free_port();
        let log = dir.join("tinyproxy.log");
        let mut config = format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 60\nLogFile \"{}\"\nLogLevel Info\n\
             MaxClients 100\nAllow 127.0.0.1\n",
            log.display()
        );
        if let Some((user, password)) = auth {
            config.push_str(&format!("BasicAuth {user} {password}\n"));
        }
        config.push_str(extra);
        std::fs::write(dir.join("tinyproxy.conf"), config).expect("tinyproxy config");
        let child = Command::new("tinyproxy")
            .arg("-d")
            .arg("-c")
            .arg(dir.join("tinyproxy.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tinyproxy starts");
        ProxyServer::ready(child, port, log, dir).await
    }

    /// `microsocks` on loopback; with `auth`, `-u user -P password`. Its
    /// standard error is its log: one `connected to host:port` line a connection.
    pub async fn microsocks(auth: Option<(&str, &str)>) -> Option<ProxyServer> {
        if !installed("microsocks") {
            return None;
        }
        for _ in 0..START_ATTEMPTS {
            if let Some(server) = ProxyServer::try_microsocks(auth).await {
                return Some(server);
            }
        }
        panic!("microsocks did not start");
    }

    async fn try_microsocks(auth: Option<(&str, &str)>) -> Option<ProxyServer> {
        let dir = private_dir("microsocks");
        let port = free_port();
        let log = dir.join("microsocks.log");
        let mut command = Command::new("microsocks");
        command.args(["-i", "127.0.0.1", "-p", &port.to_string()]);
        if let Some((user, password)) = auth {
            command.args(["-u", user, "-P", password]);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("microsocks log"))
            .spawn()
            .expect("microsocks starts");
        ProxyServer::ready(child, port, log, dir).await
    }

    /// The server once its port answers; `None` when the process ended
    /// instead: another test took the free port first (then the caller tries
    /// another), and whatever answers on it is not this proxy.
    async fn ready(child: Child, port: u16, log: PathBuf, dir: PathBuf) -> Option<ProxyServer> {
        let mut server = ProxyServer {
            child,
            port,
            log,
            dir,
        };
        let started = Instant::now();
        loop {
            if !matches!(server.child.try_wait(), Ok(None)) {
                return None;
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            assert!(started.elapsed() < START_LIMIT, "the proxy did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // A proxy that lost the port race exits a moment after the port answered.
        tokio::time::sleep(Duration::from_millis(50)).await;
        matches!(server.child.try_wait(), Ok(None)).then_some(server)
    }

    pub fn url(&self, scheme: &str, auth: Option<(&str, &str)>) -> String {
        match auth {
            Some((user, password)) => {
                format!("{scheme}://{user}:{password}@127.0.0.1:{}", self.port)
            }
            None => format!("{scheme}://127.0.0.1:{}", self.port),
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Tunnels tinyproxy opened to `target` (`host:port`).
    pub fn tunnels_to(&self, target: &str) -> usize {
        self.log()
            .lines()
            .filter(|line| line.contains(&format!("CONNECT {target} HTTP/1.1")))
            .count()
    }

    /// Connections microsocks made to `target` (`host:port`, as the client named it).
    pub fn socks_connections_to(&self, target: &str) -> usize {
        self.log()
            .lines()
            .filter(|line| line.ends_with(&format!("connected to {target}")))
            .count()
    }

    /// Kills the proxy now, cutting every tunnel it holds.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ProxyServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
