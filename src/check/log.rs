//! `xdb check` for a log target: the servers answer, JetStream is enabled,
//! the stream exists as the plan wants it (or a probe stream with the
//! plan's replicas can be created, so the cluster has the nodes), and the
//! duplicate window.

use std::time::Duration;

use async_nats::jetstream::stream::{Config as StreamConfig, StorageType};

use super::CheckSection;
use crate::nats::{Log, LogError, NatsTarget};
use crate::plan::{Plan, SecretUrl};

pub async fn check(plan: &Plan, url: &SecretUrl, s: &mut CheckSection) {
    let target = match NatsTarget::parse(url, &plan.name) {
        Ok(t) => t,
        Err(e) => return s.fail(e, "fix target.url (README: Through a replicated log)"),
    };
    let log = match Log::connect(&target).await {
        Ok(l) => l,
        Err(e) => return s.fail(e.to_string(), "start the NATS servers or fix the addresses in target.url"),
    };
    s.pass(format!("connected to NATS ({})", target.servers.join(", ")));
    let found = log.js.get_stream(&target.stream).await;
    match &found {
        Ok(_) => s.pass("JetStream is enabled"),
        Err(e) if not_found(e) => s.pass("JetStream is enabled"),
        Err(e) => {
            return s.fail(
                format!("JetStream is not available: {e}"),
                "start nats-server with JetStream enabled (-js, or `jetstream {}` in its configuration)",
            )
        }
    }
    match found {
        Ok(_) => match log.ensure_stream().await {
            Ok(c) => {
                s.pass(format!(
                    "stream {} exists with {} replicas and subjects {}",
                    target.stream,
                    c.num_replicas,
                    c.subjects.join(",")
                ));
                window(s, c.duplicate_window);
            }
            Err(e @ LogError::StreamDiffers { .. }) => s.fail(e.to_string(), "see the message"),
            Err(e) => s.fail(e.to_string(), "check the NATS cluster's health (nats server report jetstream)"),
        },
        Err(_) => {
            // A probe with the plan's replicas: the only way to know the
            // cluster has that many JetStream nodes is to ask for them.
            let probe = format!("{}_xdb_check_{}", target.stream, std::process::id());
            let config = StreamConfig {
                name: probe.clone(),
                subjects: vec![format!("{probe}.>")],
                num_replicas: target.replicas,
                storage: StorageType::Memory,
                ..Default::default()
            };
            match log.js.create_stream(config).await {
                Ok(_) => {
                    let _ = log.js.delete_stream(&probe).await;
                    s.pass(format!(
                        "stream {} will be created by `sync` with {} replicas (a probe stream with that many was \
                         accepted)",
                        target.stream, target.replicas
                    ));
                    window(s, Duration::from_secs(target.duplicate_window_secs));
                }
                Err(e) => s.fail(
                    format!("a stream with {} replicas cannot be created: {e}", target.replicas),
                    "run a JetStream cluster with at least that many nodes, or lower replicas= in target.url",
                ),
            }
        }
    }
}

/// `xdb check` for a plan that reads the log (`source.url: nats://…`).
pub async fn log_source(plan: &Plan) -> CheckSection {
    let Some(url) = plan.source.log.as_ref() else { return CheckSection::new("Log source") };
    let mut s = CheckSection::new(format!("Log source {}", url.redacted()));
    let target = match NatsTarget::parse(url, &plan.name) {
        Ok(t) => t,
        Err(e) => {
            s.fail(e, "fix source.url (README: Through a replicated log)");
            return s;
        }
    };
    let log = match Log::connect(&target).await {
        Ok(l) => l,
        Err(e) => {
            s.fail(e.to_string(), "start the NATS servers or fix the addresses in source.url");
            return s;
        }
    };
    match log.js.get_stream(&target.stream).await {
        Ok(mut st) => match st.info().await {
            Ok(i) => s.pass(format!(
                "stream {} holds {} messages (sequences {} to {}); subjects {}.>",
                target.stream, i.state.messages, i.state.first_sequence, i.state.last_sequence, target.prefix
            )),
            Err(e) => s.fail(format!("stream {}: {e}", target.stream), "check the NATS cluster's health"),
        },
        Err(e) if not_found(&e) => s.fail(
            format!("stream {} does not exist", target.stream),
            "start the producer first: `xdb sync` with a plan whose target.url is this stream",
        ),
        Err(e) => s.fail(format!("JetStream is not available: {e}"), "start nats-server with JetStream enabled"),
    }
    s
}

fn not_found(e: &async_nats::jetstream::context::GetStreamError) -> bool {
    matches!(e.kind(), async_nats::jetstream::context::GetStreamErrorKind::JetStream(ref j)
        if j.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND)
}

fn window(s: &mut CheckSection, w: Duration) {
    if w < Duration::from_secs(60) {
        s.warn(
            format!("the stream's duplicate window is {w:?}"),
            "xdb resumes from the stream's last message, the window is a second guard: 2 minutes or more is usual",
        );
    } else {
        s.pass(format!("duplicate window {}s (a second guard against repeats after a restart)", w.as_secs()));
    }
}
