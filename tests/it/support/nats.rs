//! A three-node NATS JetStream cluster on loopback, run as the unprivileged
//! dev user (as `scripts/dev-dbs.sh` runs the databases): started for one
//! test, nodes stoppable and restartable, all stopped and removed on drop.
//! Client ports from `XDB_NATS_PORT` (default 61220), cluster ports from
//! `XDB_NATS_CLUSTER_PORT` (default 62220), three per cluster: both above
//! Linux's ephemeral range (32768–60999), where a client connection of a
//! test running beside could hold the port a node is about to listen on.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{as_dev, unique};

pub struct NatsCluster {
    slot: u16,
    dir: PathBuf,
    /// The `runuser` (or server) process per node, waited for when stopped.
    children: std::sync::Mutex<Vec<(usize, std::process::Child)>>,
    pub ports: Vec<u16>,
    cluster_ports: Vec<u16>,
}

/// Port slots in use (each takes three ports of each range): 10 ports per
/// range (61220–61229, 62220–62229) make three clusters at a time; a
/// fourth test waits for a slot.
static SLOTS: Mutex<[bool; 3]> = Mutex::new([false; 3]);

async fn take_slot() -> u16 {
    loop {
        {
            let mut s = SLOTS.lock().unwrap();
            if let Some(k) = s.iter().position(|used| !used) {
                s[k] = true;
                return k as u16;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn port_base(var: &str, default: u16) -> u16 {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn nats_server() -> PathBuf {
    for p in ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"] {
        if Path::new(p).is_file() {
            return p.into();
        }
    }
    panic!("nats-server is not installed: run scripts/test.sh (it installs it) or apt-get install -y nats-server")
}

impl NatsCluster {
    /// Starts three nodes and waits until the cluster accepts a stream
    /// with three replicas.
    pub async fn start() -> NatsCluster {
        let k = take_slot().await;
        let base = port_base("XDB_NATS_PORT", 61220) + k * 3;
        let cbase = port_base("XDB_NATS_CLUSTER_PORT", 62220) + k * 3;
        let dir = std::env::temp_dir().join(unique("xdb_nats"));
        std::fs::create_dir_all(&dir).unwrap();
        let user = std::env::var("XDB_DEV_USER").unwrap_or_else(|_| "xdbdev".into());
        let c = NatsCluster {
            slot: k,
            dir,
            children: Default::default(),
            ports: (0..3).map(|i| base + i).collect(),
            cluster_ports: (0..3).map(|i| cbase + i).collect(),
        };
        for i in 0..3 {
            let routes: Vec<String> = c
                .cluster_ports
                .iter()
                .filter(|p| **p != c.cluster_ports[i])
                .map(|p| format!("nats-route://127.0.0.1:{p}"))
                .collect();
            let conf = format!(
                "server_name: n{i}\nlisten: 127.0.0.1:{}\njetstream {{ store_dir: \"{}\" }}\n\
                 cluster {{\n  name: xdbtest\n  listen: 127.0.0.1:{}\n  routes: [{}]\n}}\n",
                c.ports[i],
                c.dir.join(format!("n{i}")).display(),
                c.cluster_ports[i],
                routes.join(", ")
            );
            std::fs::write(c.dir.join(format!("n{i}.conf")), conf).unwrap();
        }
        let _ = Command::new("chown").args(["-R", &user]).arg(&c.dir).status();
        for i in 0..3 {
            c.start_node(i);
        }
        c.wait_ready().await;
        c
    }

    /// `nats://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3`
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        format!("nats://{}", hosts.join(","))
    }

    /// A client of the cluster (any node).
    pub async fn client(&self) -> Result<async_nats::Client, async_nats::ConnectError> {
        let addrs: Vec<async_nats::ServerAddr> =
            self.ports.iter().map(|p| format!("nats://127.0.0.1:{p}").parse().unwrap()).collect();
        async_nats::connect(addrs).await
    }

    /// Starts node `i`; tries again for a minute when it exits at once:
    /// its port can be held by a socket in TIME-WAIT from the previous
    /// cluster on it, or by another process's outgoing connection (these
    /// ports lie in the ephemeral range).
    pub fn start_node(&self, i: usize) {
        let pid = self.dir.join(format!("n{i}.pid"));
        for attempt in 1..=70 {
            let _ = std::fs::remove_file(&pid);
            let mut child = as_dev(&nats_server())
                .arg("-c")
                .arg(self.dir.join(format!("n{i}.conf")))
                .arg("-P")
                .arg(&pid)
                .arg("-l")
                .arg(self.dir.join(format!("n{i}.log")))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start nats-server");
            let start = Instant::now();
            // Up when it accepts connections; gone when it exited.
            loop {
                if std::net::TcpStream::connect(("127.0.0.1", self.ports[i])).is_ok() && pid.is_file() {
                    self.children.lock().unwrap().push((i, child));
                    return;
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "nats-server n{i} did not start: see {}",
                    self.dir.display()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            let log = std::fs::read_to_string(self.dir.join(format!("n{i}.log"))).unwrap_or_default();
            let last = log.lines().rev().take(3).collect::<Vec<_>>().join("\n");
            assert!(attempt < 70, "nats-server n{i} did not stay up for 70 s; its log ends:\n{last}");
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// kill -9 of one node.
    pub fn kill_node(&self, i: usize) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join(format!("n{i}.pid"))) {
            let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
        }
        let mut children = self.children.lock().unwrap();
        for (_, c) in children.iter_mut().filter(|(n, _)| *n == i) {
            let _ = c.wait();
        }
        children.retain(|(n, _)| *n != i);
        std::thread::sleep(Duration::from_millis(200));
    }

    /// Waits until a stream with three replicas can be created (meta
    /// leader elected, every node a JetStream peer).
    pub async fn wait_ready(&self) {
        let start = Instant::now();
        loop {
            if let Ok(client) = self.client().await {
                let js = async_nats::jetstream::new(client);
                let cfg = async_nats::jetstream::stream::Config {
                    name: "xdb_ready".into(),
                    subjects: vec!["xdb_ready.>".into()],
                    num_replicas: 3,
                    storage: async_nats::jetstream::stream::StorageType::Memory,
                    ..Default::default()
                };
                if js.create_stream(cfg).await.is_ok() {
                    let _ = js.delete_stream("xdb_ready").await;
                    return;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "NATS cluster not ready: logs in {}",
                self.dir.display()
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Every message of `stream`, in order: (subject, Nats-Msg-Id, payload).
    pub async fn messages(&self, stream: &str) -> Vec<(String, String, serde_json::Value)> {
        use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
        use futures_util::StreamExt;
        let client = self.client().await.expect("connect to NATS");
        let js = async_nats::jetstream::new(client);
        let mut s = js.get_stream(stream).await.expect("stream");
        let last = s.info().await.expect("stream info").state.last_sequence;
        let mut out = Vec::new();
        if last == 0 {
            return out;
        }
        // One ordered consumer streams them all: a request per message
        // took minutes for a copy's 100,000 events on a loaded machine.
        let config = OrderedConfig { deliver_policy: DeliverPolicy::All, ..Default::default() };
        let consumer = s.create_consumer(config).await.expect("ordered consumer");
        let mut messages = consumer.messages().await.expect("consumer messages");
        loop {
            let m = tokio::time::timeout(Duration::from_secs(60), messages.next())
                .await
                .unwrap_or_else(|_| panic!("stream {stream}: no message within 60 s before sequence {last}"))
                .expect("consumer ended")
                .expect("message");
            let seq = m.info().expect("message info").stream_sequence;
            let id = m
                .headers
                .as_ref()
                .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
                .map(|v| v.as_str().to_string())
                .unwrap_or_default();
            let v: serde_json::Value = serde_json::from_slice(&m.payload).expect("JSON message");
            out.push((m.subject.to_string(), id, v));
            if seq >= last {
                return out;
            }
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..3 {
            self.kill_node(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Ok(mut s) = SLOTS.lock() {
            s[self.slot as usize] = false;
        }
    }
}
