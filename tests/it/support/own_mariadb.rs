//! A MariaDB server of the test's own, with the binary log the way back
//! reads (ROW, FULL images, `log_slave_updates` so a replica's binlog holds
//! its primary's transactions with their GTIDs): it can be restarted,
//! purged, made a replica of another and promoted — what the shared dev
//! server must never be. Stopped and removed on drop, even on panic.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{as_dev, unique};

pub const PW: &str = "xdb-own-my-pw";

pub struct OwnMariaDb {
    dir: PathBuf,
    pub port: u16,
    pub server_id: u32,
    child: Option<Child>,
}

fn mariadbd() -> &'static str {
    if Path::new("/usr/sbin/mariadbd").exists() {
        "/usr/sbin/mariadbd"
    } else {
        "mariadbd"
    }
}

/// `mariadb-install-db` into `data`, owned by the dev user. Its bootstrap
/// server gets `data` as its tmpdir: a MariaDB starting up deletes every
/// `#sql*` file in its tmpdir, so two installs sharing /tmp failed each
/// other ("Error on delete of '/tmp/#sql-temptable-…'"). One at a time as
/// well, for whatever else they share.
pub fn install(data: &Path) {
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let out = as_dev(Path::new("mariadb-install-db"))
        .arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--tmpdir={}", data.display()))
        .args(["--auth-root-authentication-method=socket", "--skip-test-db"])
        .output()
        .unwrap();
    assert!(out.status.success(), "mariadb-install-db: {}", super::text(&out));
}

impl OwnMariaDb {
    /// A fresh server with `server_id`, user `xdb` (all privileges) and a
    /// database `app`.
    pub fn start(server_id: u32) -> OwnMariaDb {
        let dir = std::env::temp_dir().join(unique("xdb_own_my"));
        std::fs::create_dir_all(&dir).unwrap();
        let user = std::env::var("XDB_DEV_USER").unwrap_or_else(|_| "xdbdev".into());
        let _ = Command::new("chown").arg(&user).arg(&dir).status();
        install(&dir.join("data"));
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut my = OwnMariaDb { dir, port, server_id, child: None };
        my.run();
        // Not in the binlog: a replica made later must not replay it.
        my.admin(&format!(
            "SET sql_log_bin = 0; CREATE USER 'xdb'@'127.0.0.1' IDENTIFIED BY '{PW}'; GRANT ALL PRIVILEGES ON *.* TO 'xdb'@'127.0.0.1'; \
             CREATE DATABASE app CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;"
        ));
        my
    }

    fn run(&mut self) {
        let child = as_dev(Path::new(mariadbd()))
            .arg("--no-defaults")
            .arg(format!("--datadir={}", self.dir.join("data").display()))
            // Its own tmpdir: a MariaDB starting up deletes every `#sql*`
            // file in its tmpdir, and /tmp is shared with the other
            // servers the tests run (their temporary tables vanished).
            .arg(format!("--tmpdir={}", self.dir.join("data").display()))
            .arg(format!("--port={}", self.port))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--socket={}", self.sock().display()))
            .arg(format!("--pid-file={}", self.dir.join("pid").display()))
            .arg(format!("--log-error={}", self.dir.join("err.log").display()))
            .arg(format!("--server-id={}", self.server_id))
            .arg(format!("--log-bin={}", self.dir.join("data").join("binlog").display()))
            .args([
                "--binlog-format=ROW",
                "--binlog-row-image=FULL",
                "--log-slave-updates=ON",
                "--innodb-buffer-pool-size=32M",
                "--innodb-flush-log-at-trx-commit=2",
                "--skip-name-resolve",
                "--character-set-server=utf8mb4",
                "--collation-server=utf8mb4_bin",
                "--local-infile=1",
                "--max-allowed-packet=256M",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mariadbd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.try_admin("SELECT 1") {
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(self.dir.join("err.log")).unwrap_or_default();
                panic!("the own MariaDB did not start: {log}");
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn sock(&self) -> PathBuf {
        self.dir.join("sock")
    }

    fn try_admin(&self, sql: &str) -> bool {
        as_dev(Path::new("mariadb"))
            .arg("--no-defaults")
            .arg("-S")
            .arg(self.sock())
            .args(["-e", sql])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    /// Runs `sql` as the server's administrator (socket authentication).
    pub fn admin(&self, sql: &str) {
        let out = as_dev(Path::new("mariadb"))
            .arg("--no-defaults")
            .arg("-S")
            .arg(self.sock())
            .args(["-e", sql])
            .output()
            .unwrap();
        assert!(out.status.success(), "{sql}: {}", super::text(&out));
    }

    /// The URL of database `app` as `xdb`.
    pub fn url(&self) -> String {
        format!("mysql://xdb:{PW}@127.0.0.1:{}/app", self.port)
    }

    /// Stops the server (a clean shutdown, or `kill -9` with `crash`).
    pub fn stop(&mut self, crash: bool) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("pid")) {
            let pid = pid.trim().to_string();
            let _ = Command::new("kill").args([if crash { "-KILL" } else { "-TERM" }, &pid]).output();
            let deadline = Instant::now() + Duration::from_secs(60);
            while Command::new("kill").args(["-0", &pid]).output().is_ok_and(|o| o.status.success()) {
                if Instant::now() > deadline {
                    let _ = Command::new("kill").args(["-9", &pid]).output();
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.dir.join("pid"));
    }

    /// Starts it again on the same data and port.
    pub fn restart(&mut self, crash: bool) {
        self.stop(crash);
        self.run();
    }

    /// Makes this server a GTID replica of `primary` and starts it.
    pub fn replicate_from(&self, primary: &OwnMariaDb) {
        self.admin(&format!(
            "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={}, MASTER_USER='xdb', MASTER_PASSWORD='{PW}', \
             MASTER_USE_GTID=slave_pos; START SLAVE;",
            primary.port
        ));
    }

    /// Promotes a replica: stops and forgets its replication.
    pub fn promote(&self) {
        self.admin("STOP SLAVE; RESET SLAVE ALL;");
    }
}

impl Drop for OwnMariaDb {
    fn drop(&mut self) {
        self.stop(true);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
