//! Running the `xdb` binary: the one helper that runs a command on a plan,
//! a spawned `sync` and its kill -9, and waiting for a condition.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::PlanFile;

/// Runs `xdb <command> --plan <plan> <rest…>` and returns its output.
pub fn xdb(plan: &PlanFile, args: &[&str]) -> Output {
    let mut full = vec![args[0], "--plan", plan.path.to_str().unwrap()];
    full.extend(&args[1..]);
    output_within(xdb_command().args(&full), COMMAND_LIMIT)
}

/// The longest one xdb command of a test may run: a command that hangs
/// fails its test with its output instead of holding the suite past the
/// CI budget (`XDB_TEST_COMMAND_LIMIT_S` raises it for a slow machine).
const COMMAND_LIMIT: Duration = Duration::from_secs(900);

/// Runs `cmd` to its end as [`Command::output`] does, but kills it (-9) and
/// panics with what it printed so far when it runs past `limit`.
pub fn output_within(cmd: &mut Command, limit: Duration) -> Output {
    let limit = std::env::var("XDB_TEST_COMMAND_LIMIT_S")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(limit);
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("run xdb");
    let drain = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(child.stdout.take().map(|r| Box::new(r) as _));
    let err = drain(child.stderr.take().map(|r| Box::new(r) as _));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for xdb") {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let (out, err) = (out.join().unwrap_or_default(), err.join().unwrap_or_default());
            panic!(
                "{cmd:?} still ran after {} s (a hang): killed; it printed:\n{}\n{}",
                limit.as_secs(),
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output { status, stdout: out.join().unwrap_or_default(), stderr: err.join().unwrap_or_default() }
}

pub fn spawn(plan: &PlanFile, args: &[&str]) -> Child {
    let mut full = vec![args[0], "--plan", plan.path.to_str().unwrap()];
    full.extend(&args[1..]);
    xdb_command().args(&full).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn xdb")
}

pub fn kill9(child: &mut Child) {
    let _ = Command::new("kill").args(["-KILL", &child.id().to_string()]).status();
    let _ = child.wait();
}

pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn ok(out: &Output) {
    assert!(out.status.success(), "xdb failed: {}", super::text(out));
}

/// The `xdb` binary as a command to add arguments, environment or pipes
/// to: every test starts xdb through here or through [`xdb`].
pub fn xdb_command() -> Command {
    Command::new(env!("CARGO_BIN_EXE_xdb"))
}

/// Runs `xdb sync --until-caught-up` on `plan` while `alter` (statements,
/// no COMMIT) is held open in a transaction, committed once the plan's
/// slot exists: the slot's creation waited for it, after xdb had read the
/// tables' columns. Returns what `sync` printed; it must have succeeded.
pub async fn sync_across_an_alter_at_the_snapshot(db: &super::PgDb, plan: &PlanFile, alter: &str) -> String {
    let blocker = db.super_client().await;
    blocker.batch_execute(&format!("BEGIN; {alter}")).await.unwrap();
    let mut child = spawn(plan, &["sync", "--until-caught-up"]);
    let slot = format!("{}_slot", db.name);
    let c = db.super_client().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while c.query_opt("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", &[&slot]).await.unwrap().is_none() {
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            kill9(&mut child);
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            panic!("no slot {slot}: {err}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    blocker.batch_execute("COMMIT").await.unwrap();
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(status.success(), "sync: {err}");
    err
}
