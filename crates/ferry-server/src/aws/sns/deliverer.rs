//! The HTTP client behind push delivery: implements the broker's
//! [`Deliverer`](ferry_broker::topic::delivery::Deliverer) with reqwest, and records the
//! delivery latency metric. HTTPS uses rustls with the platform's trust store
//! (`SSL_CERT_FILE` / `SSL_CERT_DIR` override it, as for OpenSSL).

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use ferry_broker::topic::delivery::{Deliverer, HttpPost};

pub struct HttpDeliverer {
    client: reqwest::Client,
}

impl HttpDeliverer {
    pub fn new() -> HttpDeliverer {
        HttpDeliverer {
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(16)
                .build()
                .unwrap_or_default(),
        }
    }
}

impl Default for HttpDeliverer {
    fn default() -> Self {
        HttpDeliverer::new()
    }
}

impl Deliverer for HttpDeliverer {
    fn post(&self, r: HttpPost) -> Pin<Box<dyn Future<Output = Result<u16, String>> + Send>> {
        let mut req = self
            .client
            .post(&r.url)
            .timeout(r.timeout)
            .body(r.body.to_vec());
        for (k, v) in &r.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        Box::pin(async move {
            let started = Instant::now();
            let result = req
                .send()
                .await
                .map(|resp| resp.status().as_u16())
                .map_err(|e| e.to_string());
            crate::metrics::record_sns_delivery(
                started.elapsed(),
                matches!(result, Ok(s) if (200..300).contains(&s)),
            );
            result
        })
    }
}
