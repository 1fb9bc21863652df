//! `tdmon tail [--bind KEY]... [--format json|table]`: prints what the
//! results exchange carries, from a queue of its own (exclusive, deleted when
//! it ends), until Ctrl-C. It is the worked example for downstream authors
//! (docs/MESSAGES.md): bind the keys you need, read JSON, be idempotent.
//!
//! A broker that cannot be reached is an error at once (exit 3) rather than a
//! wait: this is a command someone is watching.

use std::io::Write as _;

use anyhow::Context as _;
use serde_json::Value;
use tdmon_bus_amqp::AmqpBus;

use crate::Exit;
use crate::cli::{TailArgs, TailFormat};
use crate::config::Config;

pub(crate) fn run(args: TailArgs, config: &Config) -> anyhow::Result<Exit> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let bus = AmqpBus::try_connect(config.bus.clone(), "tail").await?;
        let mut tail = bus.tail(args.bindings.clone()).await?;
        eprintln!(
            "tdmon tail: bound {} on {}; Ctrl-C to stop",
            args.bindings.join(", "),
            bus.topology().results()
        );
        let stdout = std::io::stdout();
        loop {
            let message = tokio::select! {
                message = tail.next() => message,
                _ = tokio::signal::ctrl_c() => None,
            };
            let Some(message) = message else { break };
            let line = match args.format {
                TailFormat::Json => String::from_utf8_lossy(&message.body).into_owned(),
                TailFormat::Table => table_line(&message.routing_key, &message.body),
            };
            writeln!(stdout.lock(), "{line}").context("cannot write to standard output")?;
        }
        bus.close().await;
        Ok(Exit::Success)
    })
}

/// One line for people: time, routing key, hoster, the event's bracket or the
/// observation's outcome, and the URL.
fn table_line(routing_key: &str, body: &[u8]) -> String {
    let Ok(json) = serde_json::from_slice::<Value>(body) else {
        return format!("{routing_key:<28} (not JSON: {} bytes)", body.len());
    };
    let text = |key: &str| json.get(key).and_then(Value::as_str).unwrap_or("-");
    let detail = if routing_key.starts_with("event.") {
        match json.get("bracket").filter(|b| !b.is_null()) {
            Some(bracket) => {
                let end = |key: &str| bracket.get(key).and_then(Value::as_str).unwrap_or("notice");
                format!("({}, {}]", end("from"), end("to"))
            }
            None => String::new(),
        }
    } else {
        format!("{} {}", text("outcome"), text("ip"))
    };
    let at = if routing_key.starts_with("event.") {
        text("at")
    } else {
        text("started_at")
    };
    format!(
        "{at:<32} {routing_key:<28} {:<24} {detail:<60} {}",
        text("hoster"),
        text("url")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_and_observations_get_one_readable_line_each() {
        let event = br#"{"schema":1,"kind":"takedown","url_id":3,"url":"http://a.test/x.jpg","notice_id":null,"notified_at":"2026-01-01T00:00:00Z","at":"2026-01-01T05:00:01Z","bracket":{"from":"2026-01-01T04:00:00Z","to":"2026-01-01T05:00:01Z"},"evidence":"offline","time_to_takedown_s":18001.0,"hoster":"Alpha B.V.","asn":64500}"#;
        let line = table_line("event.takedown", event);
        assert!(line.starts_with("2026-01-01T05:00:01Z"), "{line}");
        assert!(line.contains("event.takedown"), "{line}");
        assert!(line.contains("Alpha B.V."), "{line}");
        assert!(
            line.contains("(2026-01-01T04:00:00Z, 2026-01-01T05:00:01Z]"),
            "{line}"
        );
        assert!(line.ends_with("http://a.test/x.jpg"), "{line}");
        let observation = br#"{"started_at":"2026-01-01T06:00:00Z","outcome":"http_not_found","ip":"127.10.0.1","hoster":null,"url":"http://a.test/y"}"#;
        let line = table_line("observation.offline", observation);
        assert!(line.contains("http_not_found 127.10.0.1"), "{line}");
        assert!(table_line("event.x", b"\xff").contains("not JSON"));
    }
}
