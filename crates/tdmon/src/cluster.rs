//! The distributed deployment on one machine, as child processes: what
//! `tdmon demo --distributed` runs. One dispatcher, two workers and one
//! collector, each the `tdmon` binary itself with one configuration file,
//! over this machine's RabbitMQ and PostgreSQL, in a fresh name prefix and a
//! fresh schema that are removed at the end.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use tdmon_bus::Bus as _;
use tdmon_bus_amqp::AmqpBus;
use tdmon_core::notice::Notice;
use tdmon_store::Store;
use toml::{Table, Value};

use crate::config::Config;

/// The processes started, by role.
const MEMBERS: [(&str, usize); 3] = [("dispatcher", 1), ("worker", 2), ("collector", 1)];
/// How long the members get to stop cleanly before they are killed.
const STOP_BOUND: Duration = Duration::from_secs(30);

/// The settings a cluster of its own imposes: a fresh schema and bus prefix.
/// `store.url` must name PostgreSQL: the roles share it across processes.
pub(crate) fn fresh_layer(config: &Config) -> anyhow::Result<Table> {
    if !config.store.url.starts_with("postgres") {
        bail!(crate::UsageError(
            "the distributed demo needs PostgreSQL: set store.url, e.g. \
             TDMON_STORE__URL=postgres://postgres@127.0.0.1:5432/test"
                .into()
        ));
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    let mut store = Table::new();
    store.insert("url".into(), Value::String(config.store.url.clone()));
    store.insert(
        "schema".into(),
        Value::String(format!("tdmon_demo_{}", &id[..12])),
    );
    let mut bus = Table::new();
    bus.insert(
        "prefix".into(),
        Value::String(format!("tdmon-demo-{}", &id[..12])),
    );
    let mut layer = Table::new();
    layer.insert("store".into(), Value::Table(store));
    layer.insert("bus".into(), Value::Table(bus));
    Ok(layer)
}

/// A running cluster.
#[derive(Debug)]
pub(crate) struct Cluster {
    members: Vec<(String, Child)>,
    bus: AmqpBus,
    store: Store,
    logs: PathBuf,
}

impl Cluster {
    /// Checks that the broker and the database answer (a clear error if not),
    /// writes `settings` as the members' only configuration file into `dir`
    /// (it holds the broker's and the database's passwords: readable by the
    /// owner only), and starts the members, their logs in `dir`.
    pub(crate) async fn start(
        config: &Config,
        settings: &Table,
        dir: &Path,
    ) -> anyhow::Result<Cluster> {
        let bus = AmqpBus::try_connect(config.bus.clone(), "demo")
            .await
            .context("the distributed demo needs RabbitMQ (bus.url)")?;
        let store = crate::commands::run::open(&config.store.url, config)
            .await
            .context("the distributed demo needs PostgreSQL (store.url)")?;
        let file = dir.join("cluster.toml");
        write_private(&file, &toml::to_string(settings)?)?;
        let exe = std::env::current_exe().context("cannot find the tdmon binary")?;
        let mut members = Vec::new();
        for (role, count) in MEMBERS {
            for n in 1..=count {
                let name = format!("{role}-{n}");
                let log = std::fs::File::create(dir.join(format!("{name}.log")))
                    .with_context(|| format!("cannot create the log of {name}"))?;
                let mut command = Command::new(&exe);
                // The file holds every layer already: nothing may override it.
                for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("TDMON_")) {
                    if key != "TDMON_LOG" {
                        command.env_remove(key);
                    }
                }
                let child = command
                    .arg("--config")
                    .arg(&file)
                    .arg(role)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()
                    .with_context(|| format!("cannot start {name}"))?;
                members.push((name, child));
            }
        }
        Ok(Cluster {
            members,
            bus,
            store,
            logs: dir.to_owned(),
        })
    }

    /// The store the members share.
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// Hands notices to the cluster the way other systems do: one message
    /// each on the intake queue.
    pub(crate) async fn notify(&self, notices: Vec<Notice>) -> anyhow::Result<()> {
        for chunk in notices.chunks(500) {
            self.bus.publish_notices(chunk.to_vec()).await?;
        }
        Ok(())
    }

    /// Stops every member with SIGTERM (killing one that does not stop within
    /// [`STOP_BOUND`]) and says which did not exit cleanly.
    pub(crate) async fn stop(&mut self) -> anyhow::Result<()> {
        for (_, child) in &self.members {
            signal(child, "TERM");
        }
        let deadline = tokio::time::Instant::now() + STOP_BOUND;
        let mut failed = Vec::new();
        for (name, child) in &mut self.members {
            let status = loop {
                if let Some(status) = child.try_wait()? {
                    break Some(status);
                }
                if tokio::time::Instant::now() > deadline {
                    let _ = child.kill();
                    break None;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            if !status.is_some_and(|s| s.success()) {
                failed.push(format!("{name} ({status:?})"));
            }
        }
        if !failed.is_empty() {
            bail!(
                "{} did not stop cleanly; see their logs in {}",
                failed.join(", "),
                self.logs.display()
            );
        }
        Ok(())
    }

    /// Removes the cluster's queues, exchanges and schema.
    pub(crate) async fn remove(self) -> anyhow::Result<()> {
        self.bus.delete_topology().await?;
        self.bus.close().await;
        self.store.drop_schema().await?;
        Ok(())
    }
}

fn signal(child: &Child, name: &str) {
    // std sends only SIGKILL; the members need a SIGTERM to stop cleanly.
    let sent = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status();
    if !sent.is_ok_and(|s| s.success()) {
        tracing::warn!(pid = child.id(), "cannot send SIG{name}");
    }
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}
