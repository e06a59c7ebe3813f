//! Running the `xdb` binary: the one helper that runs a command on a plan,
//! a spawned `sync` and its kill -9, and waiting for a condition.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::PlanFile;

/// Runs `xdb <command> --plan <plan> <rest…>` and returns its output.
pub fn xdb(plan: &PlanFile, args: &[&str]) -> Output {
    let mut full = vec![args[0], "--plan", plan.path.to_str().unwrap()];
    full.extend(&args[1..]);
    let out = xdb_command().args(&full).output().expect("run xdb");
    out
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
