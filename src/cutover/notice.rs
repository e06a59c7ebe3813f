//! The warning every command gives first when a cutover left the source
//! frozen and did not finish (after `kill -9`, a lost terminal, a failed
//! rollback): the application cannot write, and nothing else would say so.
//! The freeze is reported only when the settings read back as frozen.

use std::path::Path;

use super::actions::freeze::{self, FreezeRecord};
use super::journal::{self, Journal, JournalState};
use crate::pg_conn::client;
use crate::plan::Plan;
use crate::source::postgres::identity;

/// The notice for `plan`'s source, when its journal records a freeze of a
/// run that did not finish well and the settings read back as frozen.
/// `None` also when nothing can be read (no state directory, source down):
/// the command that asked goes on and reports its own errors.
pub async fn frozen_source(plan: &Plan) -> Option<String> {
    let c = client::connect(&plan.source.url, "xdb").await.ok()?;
    let id = identity::read(&c).await.ok()?;
    let path = journal::default_path(&crate::state_dir::root().ok()?, &plan.name, &id);
    let state = JournalState::replay(&Journal::read(&path).ok()?);
    let record = state.freeze.as_ref().filter(|r| r.source.as_ref().is_none_or(|s| *s == id))?;
    if state.finished_ok {
        // A finished cutover leaves the source read-only on purpose.
        return None;
    }
    let read = freeze::read_back(&c, record).await;
    message(
        plan,
        &state,
        record,
        &path,
        read.as_ref().map_err(|e| e.to_string()).as_ref().map(|r| *r).map_err(|e| e.as_str()),
    )
}

/// The notice text; `None` when the settings read back as not frozen.
pub fn message(
    plan: &Plan,
    state: &JournalState,
    record: &FreezeRecord,
    journal: &Path,
    read: Result<&freeze::ReadBack, &str>,
) -> Option<String> {
    let detail = match read {
        Ok(r) if !r.frozen => return None,
        Ok(r) => format!("read back: {}", r.changed.join(", ")),
        Err(e) => format!("recorded in the journal; the settings could not be read back: {e}"),
    };
    let roles = if record.roles.is_empty() { "every role but xdb's own".to_string() } else { record.roles.join(", ") };
    let how = if state.unfinished {
        "did not finish (killed or interrupted)"
    } else {
        "failed and its rollback did not resume writes"
    };
    let plan_file = plan.file.display();
    Some(format!(
        "source writes are FROZEN: a cutover stopped writes on database {} for {roles} and {how} ({detail}; journal {}).\n  \
         continue the cutover:  xdb cutover --plan {plan_file} --resume\n  \
         or undo it:            xdb cutover --plan {plan_file} --rollback",
        record.database,
        journal.display()
    ))
}
