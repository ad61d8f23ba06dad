//! The node's HTTP API through hyper's client, with the bearer token from
//! the data directory on every request.

use std::path::PathBuf;

use http_body_util::{BodyExt, Full};
use hyper::{Request, body::Bytes};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use serde_json::Value;

use super::Remote;
use crate::NodeError;

/// A client of one node: its address and its token.
#[derive(Debug, Clone)]
pub struct NodeClient {
    addr: String,
    token: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl NodeClient {
    /// A client of the node `remote` names; the token is read from its
    /// data directory (the error says where it looked).
    pub fn new(remote: &Remote) -> Result<Self, NodeError> {
        let path: PathBuf = remote.data_dir.join("token");
        let token = std::fs::read_to_string(&path).map_err(|e| NodeError::Request {
            addr: remote.http.clone(),
            message: format!(
                "no token at {} ({e}): pass --data-dir DIR, the directory the node was started with",
                path.display()
            ),
        })?;
        Ok(NodeClient {
            addr: remote.http.clone(),
            token: token.trim().to_owned(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    fn fail(&self, message: String) -> NodeError {
        NodeError::Request {
            addr: self.addr.clone(),
            message,
        }
    }

    /// Sends `method path` with an optional JSON body; the status and body.
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), NodeError> {
        let uri = format!("http://{}{path}", self.addr);
        let payload = body.map(Value::to_string).unwrap_or_default();
        let mut request = Request::builder()
            .method(method)
            .uri(&uri)
            .header("authorization", format!("Bearer {}", self.token));
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(payload)))
            .map_err(|e| self.fail(format!("bad request {uri}: {e}")))?;
        let response = self.client.request(request).await.map_err(|e| {
            self.fail(format!(
                "no node answers at {} ({e}): is it running? Start one with `mabeam run`, or pass --http ADDR",
                self.addr
            ))
        })?;
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| self.fail(format!("reading the answer to {uri}: {e}")))?
            .to_bytes();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok((status, value))
    }

    /// `GET path`, accepting the statuses in `ok`.
    pub async fn get_json(&self, path: &str, ok: &[u16]) -> Result<Value, NodeError> {
        let (status, value) = self.call("GET", path, None).await?;
        if ok.contains(&status) {
            Ok(value)
        } else {
            Err(self.refused(status, &value))
        }
    }

    /// `method path` with `body`; a 2xx answer's body.
    pub async fn send_json(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, NodeError> {
        let (status, value) = self.call(method, path, body).await?;
        if (200..300).contains(&status) {
            Ok(value)
        } else {
            Err(self.refused(status, &value))
        }
    }

    /// The node's refusal, with its typed error when it sent one.
    fn refused(&self, status: u16, value: &Value) -> NodeError {
        let hint = if status == 401 {
            ": the token was refused; pass --data-dir DIR of this node"
        } else {
            ""
        };
        let message = match value["message"].as_str() {
            Some(message) => format!(
                "status {status}, error {} {}: {message}{hint}",
                value["code"],
                value["error"].as_str().unwrap_or("")
            ),
            None => format!("status {status}: {value}{hint}"),
        };
        self.fail(message)
    }
}
