//! The connection of `tern` to a cluster: the SDK's [`Admin`] plus what only the command line
//! needs (the NameServer check with its start hint, optional routes, master listings and
//! errors in words).
//!
//! Every admin request goes through [`Admin`]; the serialize type of its headers and bodies
//! is chosen with `--serialize-type` (JSON by default, so the same commands work against an
//! Apache RocketMQ cluster).

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use clap::ValueEnum;
use tern_client::{Admin, ClientError};
use tern_common::protocol::{RemotingCommand, RequestCode, ResponseCode, SerializeType};
use tern_common::remoting::RemotingError;
use tern_common::route::TopicRouteData;

/// How the error for an unreachable NameServer reads; tests match on its first words.
pub(crate) const NO_NAMESRV: &str = "no NameServer answers at";

/// The `--serialize-type` choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Encoding {
    /// JSON headers and bodies (Apache RocketMQ and Tern).
    Json,
    /// MessagePack headers and bodies (Tern only).
    Msgpack,
}

impl From<Encoding> for SerializeType {
    fn from(e: Encoding) -> Self {
        match e {
            Encoding::Json => SerializeType::Json,
            Encoding::Msgpack => SerializeType::MsgPack,
        }
    }
}

/// The SDK admin client plus the NameServer list.
#[derive(Debug, Clone)]
pub(crate) struct AdminClient {
    admin: Admin,
    namesrv: Vec<String>,
}

impl AdminClient {
    /// A client for the NameServers in `namesrv` (`HOST:PORT[;HOST:PORT]`), each request
    /// waiting at most `timeout`, encoded as `encoding`.
    pub(crate) async fn new(namesrv: &str, timeout: Duration, encoding: Encoding) -> Result<Self> {
        let list = parse_namesrv_list(namesrv)?;
        let admin = Admin::builder()
            .namesrv_addr(&list.join(";"))
            .rpc_timeout(timeout)
            .serialize_type(encoding.into())
            .build()
            .await?;
        Ok(AdminClient {
            admin,
            namesrv: list,
        })
    }

    /// The SDK client, for the requests the commands send.
    pub(crate) fn sdk(&self) -> &Admin {
        &self.admin
    }

    /// The NameServer list as given.
    pub(crate) fn namesrv(&self) -> &[String] {
        &self.namesrv
    }

    /// The NameServer list joined with `;`, as the SDK builders take it.
    pub(crate) fn namesrv_joined(&self) -> String {
        self.namesrv.join(";")
    }

    /// Checks that at least one NameServer accepts a connection and answers; otherwise the
    /// error says which addresses were tried and how to start a NameServer.
    pub(crate) async fn ensure_namesrv(&self) -> Result<()> {
        let mut causes = Vec::new();
        for addr in &self.namesrv {
            let request = RemotingCommand::request_empty(RequestCode::GetBrokerClusterInfo);
            match self.admin.invoke_raw(addr, request).await {
                Ok(_) => return Ok(()),
                Err(err) => causes.push(describe_client_error(&err)),
            }
        }
        bail!(
            "{NO_NAMESRV} {} ({}).\n\
             Start a local cluster with `deploy/local-cluster.sh start` (or run `tern-nameserver`),\n\
             or point tern at a running NameServer with `-n HOST:PORT` or NAMESRV_ADDR.",
            self.namesrv.join(";"),
            causes.join("; ")
        )
    }

    /// The route of `topic`; `Ok(None)` when the NameServer knows no such topic.
    pub(crate) async fn topic_route(&self, topic: &str) -> Result<Option<TopicRouteData>> {
        match self.admin.topic_route(topic).await {
            Ok(route) => Ok(Some(route)),
            Err(ClientError::NoRoute { .. }) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// The route of `topic`, or an error naming the topic.
    pub(crate) async fn require_route(&self, topic: &str) -> Result<TopicRouteData> {
        self.topic_route(topic)
            .await?
            .ok_or_else(|| anyhow!("topic `{topic}` does not exist (no route on the NameServer)"))
    }

    /// Master addresses of every broker in the cluster info (optionally of one cluster),
    /// sorted by broker name: `(cluster, broker name, address)`.
    pub(crate) async fn master_brokers(
        &self,
        cluster: Option<&str>,
    ) -> Result<Vec<(String, String, String)>> {
        let info = self.admin.cluster_info().await?;
        let mut out = Vec::new();
        for (name, data) in &info.broker_addr_table {
            if cluster.is_some_and(|c| c != data.cluster) {
                continue;
            }
            if let Some(addr) = data.master_addr() {
                out.push((data.cluster.clone(), name.clone(), addr.to_string()));
            }
        }
        if let Some(c) = cluster {
            if out.is_empty() && !info.cluster_addr_table.contains_key(c) {
                bail!("cluster `{c}` is unknown to the NameServer");
            }
        }
        Ok(out)
    }

    /// Closes the connections.
    pub(crate) async fn shutdown(&self) {
        self.admin.shutdown().await;
    }
}

/// Splits `HOST:PORT[;HOST:PORT]`, rejecting empty lists and entries without a port.
pub(crate) fn parse_namesrv_list(text: &str) -> Result<Vec<String>> {
    let list: Vec<String> = text
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if list.is_empty() {
        bail!("no NameServer address: pass -n HOST:PORT or set NAMESRV_ADDR");
    }
    for addr in &list {
        let port = addr.rsplit_once(':').map(|(_, p)| p);
        if port.and_then(|p| p.parse::<u16>().ok()).is_none() {
            bail!("NameServer address `{addr}` is not HOST:PORT");
        }
    }
    Ok(list)
}

/// An SDK error in words: error responses name their code (`TOPIC_NOT_EXIST`), transport
/// errors their cause (connection refused, timed out, ...).
pub(crate) fn describe_client_error(err: &ClientError) -> String {
    match err {
        ClientError::Broker { addr, code, remark } => {
            let name = ResponseCode::try_from(*code)
                .map(|c| c.to_string())
                .unwrap_or_else(|_| format!("code {code}"));
            format!("{addr} answered {name}: {}", remark.trim())
        }
        ClientError::Remoting {
            addr,
            source: RemotingError::Connect { source, .. },
        } => format!("{addr}: cannot connect: {source}"),
        ClientError::Remoting { addr, source } => format!("{addr}: {source}"),
        other => other.to_string(),
    }
}

/// The message `tern` prints for a failed command: the context chain, with an SDK error at its
/// root described by [`describe_client_error`].
pub(crate) fn describe_error(err: &anyhow::Error) -> String {
    let Some(client) = err.root_cause().downcast_ref::<ClientError>() else {
        return format!("{err:#}");
    };
    let mut parts: Vec<String> = err
        .chain()
        .take_while(|e| e.downcast_ref::<ClientError>().is_none())
        .map(ToString::to_string)
        .collect();
    parts.push(describe_client_error(client));
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namesrv_list_splits_and_validates() {
        assert_eq!(
            parse_namesrv_list("127.0.0.1:9876; 10.0.0.2:9876").unwrap(),
            vec!["127.0.0.1:9876".to_string(), "10.0.0.2:9876".to_string()]
        );
        assert!(parse_namesrv_list(" ; ").is_err());
        assert!(parse_namesrv_list("localhost").is_err());
        assert!(parse_namesrv_list("localhost:99999").is_err());
    }

    #[test]
    fn error_responses_name_their_code() {
        let err = anyhow::Error::from(ClientError::Broker {
            addr: "h:1".into(),
            code: i32::from(ResponseCode::TopicNotExist),
            remark: "no such topic ".into(),
        })
        .context("reading stats");
        let text = describe_error(&err);
        assert!(text.starts_with("reading stats: h:1 answered "), "{text}");
        assert!(text.contains("TOPIC_NOT_EXIST"), "{text}");
        assert!(text.ends_with("no such topic"), "{text}");
        let plain = anyhow!("plain failure").context("outer");
        assert_eq!(describe_error(&plain), "outer: plain failure");
    }

    #[tokio::test]
    async fn unreachable_namesrv_error_says_how_to_start_one() {
        // Bind then drop a listener: the port is free and nothing answers there.
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let admin = AdminClient::new(&addr.to_string(), Duration::from_secs(2), Encoding::Json)
            .await
            .unwrap();
        let err = admin.ensure_namesrv().await.unwrap_err().to_string();
        assert!(err.starts_with(NO_NAMESRV), "{err}");
        assert!(err.contains(&addr.to_string()), "{err}");
        assert!(err.contains("local-cluster.sh start"), "{err}");
    }
}
