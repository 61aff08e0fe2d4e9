//! Kept-alive HTTP/1.1 connections for the bench targets, each driven inside the task that
//! sends on it.
//!
//! A general-purpose client (reqwest over hyper's pool) runs every connection as a task of its
//! own: a request wakes the connection's task, and the answer wakes the request's, often on the
//! other runtime thread. On a two-core machine shared with the server those wake-ups are CPU
//! the server does not get. Here a request borrows an idle connection (or opens one), polls
//! the connection itself until the answer's body is read, and gives it back.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::Poll;
use std::time::Duration;

use anyhow::{anyhow, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Longer than the longest long poll.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

type Driver = Pin<Box<Connection<TokioIo<TcpStream>, Full<Bytes>>>>;

/// The server's address refused or failed the TCP connection (the caller reports it as
/// "cannot connect", apart from errors of requests that reached the server).
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to {authority}")]
pub struct ConnectError {
    authority: String,
    source: std::io::Error,
}

struct Conn {
    sender: SendRequest<Full<Bytes>>,
    driver: Driver,
}

/// Connections to one server (`host:port`), reused one request at a time.
pub struct ConnPool {
    /// Where to connect: `host:port`.
    authority: String,
    /// The `Host` header: `host[:port]` as the URL gives it.
    host: HeaderValue,
    idle: Mutex<Vec<Conn>>,
}

impl ConnPool {
    /// A pool for `url`'s server (`http://host:port[/...]`; only plain HTTP).
    pub fn for_url(url: &reqwest::Url) -> anyhow::Result<ConnPool> {
        if url.scheme() != "http" {
            return Err(anyhow!("{url} is not an http:// URL"));
        }
        let host = url.host_str().ok_or_else(|| anyhow!("{url} has no host"))?;
        let port = url.port_or_known_default().unwrap_or(80);
        let authority = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        Ok(ConnPool {
            host: HeaderValue::from_str(&authority).context("the host is not a header value")?,
            authority: format!("{host}:{port}"),
            idle: Mutex::new(Vec::new()),
        })
    }

    /// The `Host` header every request carries (which SigV4 signs).
    pub fn host(&self) -> &str {
        self.host.to_str().unwrap_or_default()
    }

    /// POSTs `body` to `path_and_query` with the given content type and extra headers;
    /// returns the answer's status and body.
    pub async fn post(
        &self,
        path_and_query: &str,
        content_type: &'static str,
        headers: &[(&'static str, HeaderValue)],
        body: Vec<u8>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(path_and_query)
            .header(HOST, self.host.clone())
            .header(CONTENT_TYPE, content_type);
        for (name, value) in headers {
            request = request.header(*name, value.clone());
        }
        let request = request.body(Full::new(Bytes::from(body)))?;
        let mut conn = self.checkout().await?;
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, conn.round_trip(request))
            .await
            .map_err(|_| anyhow!("no answer within {REQUEST_TIMEOUT:?}"))??;
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(conn);
        }
        Ok(answer)
    }

    /// An idle connection that can take a request (one the server closed meanwhile is
    /// dropped), or a new one.
    async fn checkout(&self) -> anyhow::Result<Conn> {
        loop {
            let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
            let Some(mut conn) = idle else {
                return self.connect().await;
            };
            if drive(&mut conn.driver, conn.sender.ready())
                .await
                .is_ok_and(|ready| ready.is_ok())
            {
                return Ok(conn);
            }
        }
    }

    async fn connect(&self) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect(&self.authority)
            .await
            .map_err(|source| ConnectError {
                authority: self.authority.clone(),
                source,
            })?;
        stream.set_nodelay(true)?;
        let (mut sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        let mut driver: Driver = Box::pin(connection);
        drive(&mut driver, sender.ready()).await??;
        Ok(Conn { sender, driver })
    }
}

impl Conn {
    async fn round_trip(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let response = drive(&mut self.driver, self.sender.send_request(request)).await??;
        let status = response.status();
        let body = drive(&mut self.driver, response.into_body().collect())
            .await??
            .to_bytes();
        Ok((status, body))
    }
}

/// Runs `work` while polling the connection it needs; an error if the connection ends before
/// `work` is done. A server that closes the connection after an answer (`Connection: close`)
/// ends it right after handing over the answer's last bytes, so `work` gets one more poll.
async fn drive<F: Future>(driver: &mut Driver, work: F) -> anyhow::Result<F::Output> {
    tokio::pin!(work);
    tokio::select! {
        biased;
        out = &mut work => Ok(out),
        ended = driver.as_mut() => match ended {
            Ok(()) => match std::future::poll_fn(|cx| Poll::Ready(work.as_mut().poll(cx))).await {
                Poll::Ready(out) => Ok(out),
                Poll::Pending => Err(anyhow!("the server closed the connection")),
            },
            Err(e) => Err(e.into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A server answering each request on a new connection and closing it, as HTTP/1.0-style
    /// servers (moto's, for one) do: every request still gets its answer.
    #[tokio::test]
    async fn a_server_that_closes_after_each_answer_is_reconnected_to() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url =
            reqwest::Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        let server = tokio::spawn(async move {
            for n in 0..3 {
                let (mut stream, _) = listener.accept().await.unwrap();
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.ends_with(b"\r\n\r\nping") {
                    let read = stream.read(&mut buf).await.unwrap();
                    assert!(read > 0, "the client closed before sending its request");
                    request.extend_from_slice(&buf[..read]);
                }
                let body = format!("pong {n}");
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(answer.as_bytes()).await.unwrap();
                stream.shutdown().await.unwrap();
            }
        });
        let pool = ConnPool::for_url(&url).unwrap();
        for n in 0..3 {
            let (status, body) = pool
                .post("/", "text/plain", &[], b"ping".to_vec())
                .await
                .unwrap();
            assert_eq!(status, StatusCode::OK);
            assert_eq!(&body[..], format!("pong {n}").as_bytes());
        }
        server.await.unwrap();
    }
}
