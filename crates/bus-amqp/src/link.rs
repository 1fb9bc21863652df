//! One connection to the broker and the channels every role needs on it.
//! A [`Link`] is never repaired: when anything on it fails, the bus opens a
//! new one, which declares the topology again.

use std::time::Duration;

use lapin::options::ConfirmSelectOptions;
use lapin::{Channel, Connection, ConnectionProperties};

use crate::config::BusSettings;
use crate::topology::{self, DeclareError, Topology};

/// How long closing a connection waits for the broker's answer.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// A live connection.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) connection: Connection,
    /// In confirm mode; shared by every publisher of the process.
    pub(crate) publisher: Channel,
    /// Declarations and queue depths.
    pub(crate) control: Channel,
}

/// Why a connection could not be made. Says where it tried, never with the
/// password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    #[error("cannot connect to the broker at {endpoint}")]
    Connect {
        endpoint: String,
        #[source]
        source: lapin::Error,
    },
    #[error("the broker at {endpoint} did not answer within {}", tdmon_core::duration::format(*.after))]
    TimedOut { endpoint: String, after: Duration },
    #[error("cannot open a channel to the broker at {endpoint}")]
    Channel {
        endpoint: String,
        #[source]
        source: lapin::Error,
    },
    /// The broker refuses the topology: retrying cannot help.
    #[error("the broker at {endpoint} refuses tdmon's topology")]
    Topology {
        endpoint: String,
        #[source]
        source: DeclareError,
    },
}

impl Link {
    /// Connects, declares the topology and opens the channels.
    pub(crate) async fn open(
        settings: &BusSettings,
        topology: &Topology,
        name: &str,
    ) -> Result<Link, ConnectError> {
        let endpoint = settings.url().endpoint();
        let mut uri = settings.url().uri().clone();
        uri.query.heartbeat = Some(settings.heartbeat());
        let properties = ConnectionProperties::default().with_connection_name(name.into());
        let connection = tokio::time::timeout(
            settings.connect_timeout(),
            Connection::connect_uri(uri, properties),
        )
        .await
        .map_err(|_| ConnectError::TimedOut {
            endpoint: endpoint.clone(),
            after: settings.connect_timeout(),
        })?
        .map_err(|source| ConnectError::Connect {
            endpoint: endpoint.clone(),
            source,
        })?;
        let channel_error = |source| ConnectError::Channel {
            endpoint: endpoint.clone(),
            source,
        };
        let control = connection.create_channel().await.map_err(channel_error)?;
        if let Err(source) = topology::declare(&control, topology, settings.delivery_limit()).await
        {
            let _ = connection.close(200, "topology refused".into()).await;
            return Err(ConnectError::Topology { endpoint, source });
        }
        let publisher = connection.create_channel().await.map_err(channel_error)?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(channel_error)?;
        Ok(Link {
            connection,
            publisher,
            control,
        })
    }

    pub(crate) fn is_open(&self) -> bool {
        self.connection.status().connected()
            && self.publisher.status().connected()
            && self.control.status().connected()
    }

    /// Closes the connection, if it still is open; the broker then requeues
    /// every delivery not acknowledged on it. A broker that does not answer
    /// is not waited for beyond [`CLOSE_WAIT`]: its heartbeat ends the rest.
    pub(crate) async fn close(&self, reason: &str) {
        if !self.connection.status().connected() {
            return;
        }
        match tokio::time::timeout(CLOSE_WAIT, self.connection.close(200, reason.into())).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "closing a connection failed"),
            Err(_) => tracing::debug!("the broker did not answer the close of a connection"),
        }
    }
}

/// `tdmon-<role>-<host>-<pid>`: what the broker's connection list shows.
pub(crate) fn connection_name(role: &str) -> String {
    let host = whoami::hostname().unwrap_or_else(|_| "unknown-host".to_owned());
    format!("tdmon-{role}-{host}-{}", std::process::id())
}
