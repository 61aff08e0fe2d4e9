//! The server's lifecycle: bind the doors, recover the broker, serve, shut down gracefully.
//!
//! ```text
//! bind HTTP door ──► log "listening door=http addr=…" ──► /healthz is 200
//!   └─► Broker::open on a blocking thread (recovery) ──► /readyz is 200, queue calls served
//!         └─► shutdown signal ──► stop accepting, new queue calls get 503 ShuttingDown
//!               ──► wait for ordinary in-flight requests ──► broker.shutdown() wakes long
//!                   polls (they return empty), flushes ──► HTTP drains ──► Ok(())
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use ferry_broker::{Broker, BrokerConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{Durability, ServerConfig};
use crate::http::{self, AppState};

/// How long shutdown waits for ordinary (not long-poll) requests before waking the polls.
pub const SHUTDOWN_REQUEST_GRACE: Duration = Duration::from_secs(10);
/// How long shutdown waits for the HTTP door to drain after the broker stopped.
pub const SHUTDOWN_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

impl Durability {
    /// The storage engine's equivalent.
    pub fn to_log(self) -> ferry_log::Durability {
        match self {
            Durability::Always => ferry_log::Durability::Always,
            Durability::Interval(d) => ferry_log::Durability::Interval(d),
            Durability::Never => ferry_log::Durability::Never,
        }
    }
}

/// A running server's addresses, reported once its doors listen.
#[derive(Debug, Clone, Copy)]
pub struct Listening {
    pub http: SocketAddr,
    pub aws: SocketAddr,
    pub kafka: SocketAddr,
}

/// Runs the server until `shutdown` resolves, then shuts down gracefully.
///
/// Returns an error when a door cannot bind or the data directory cannot be opened (for
/// example because another server holds its lock); the caller prints it and exits non-zero.
pub async fn run(
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_listening: impl FnOnce(Listening) + Send,
) -> anyhow::Result<()> {
    let metrics = crate::metrics::install();
    let upkeep = tokio::spawn({
        let metrics = metrics.clone();
        async move {
            let mut tick = tokio::time::interval(crate::metrics::UPKEEP_INTERVAL);
            loop {
                tick.tick().await;
                metrics.run_upkeep();
            }
        }
    });

    let listener = TcpListener::bind(&config.http_addr)
        .await
        .with_context(|| format!("cannot listen on {} (http door)", config.http_addr))?;
    let http_addr = listener
        .local_addr()
        .context("cannot read the http door's address")?;
    tracing::info!(door = %"http", addr = %http_addr, "listening");
    let aws_listener = TcpListener::bind(&config.aws_addr)
        .await
        .with_context(|| format!("cannot listen on {} (aws door)", config.aws_addr))?;
    let aws_addr = aws_listener
        .local_addr()
        .context("cannot read the aws door's address")?;
    tracing::info!(door = %"aws", addr = %aws_addr, "listening");
    let kafka_listener = TcpListener::bind(&config.kafka_addr)
        .await
        .with_context(|| format!("cannot listen on {} (kafka door)", config.kafka_addr))?;
    let kafka_addr = kafka_listener
        .local_addr()
        .context("cannot read the kafka door's address")?;
    tracing::info!(door = %"kafka", addr = %kafka_addr, "listening");
    if config.aws.credentials.is_empty() {
        tracing::warn!(
            door = "aws",
            "no AWS credentials configured: the AWS door is in open mode (any or no signature, loopback peers only)"
        );
    }
    on_listening(Listening {
        http: http_addr,
        aws: aws_addr,
        kafka: kafka_addr,
    });

    let state = AppState::new(metrics);
    let (stop_http, mut http_stopped) = watch::channel(false);
    let server = tokio::spawn({
        let app = http::router(state.clone());
        async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = http_stopped.wait_for(|stop| *stop).await;
                })
                .await
        }
    });

    let aws_door = crate::aws::AwsDoor::new(state.clone(), config.aws.clone());
    let aws_server = tokio::spawn({
        let app = crate::aws::router(aws_door.clone());
        let mut aws_stopped = stop_http.subscribe();
        async move {
            // Small request/response exchanges: do not let Nagle hold back the last segment.
            let aws_listener = axum::serve::ListenerExt::tap_io(aws_listener, |tcp| {
                let _ = tcp.set_nodelay(true);
            });
            axum::serve(
                aws_listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move {
                let _ = aws_stopped.wait_for(|stop| *stop).await;
            })
            .await
        }
    });

    // Shutdown may be requested while recovery is still running.
    let (shutdown_tx, mut shutdown_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = shutdown_tx.send(true);
    });

    let broker_config = BrokerConfig {
        default_durability: config.durability.to_log(),
        on_sync: Some(crate::metrics::fsync_observer()),
        ..BrokerConfig::new(&config.data_dir)
    };
    tracing::info!(
        data_dir = %config.data_dir.display(),
        durability = %config.durability,
        "opening data directory (recovery)"
    );
    let started = Instant::now();
    let open = tokio::task::spawn_blocking(move || Broker::open(broker_config));
    let broker = tokio::select! {
        opened = open => opened,
        _ = shutdown_rx.wait_for(|stop| *stop) => {
            tracing::info!("shutdown requested during recovery");
            state.begin_shutdown();
            let _ = stop_http.send(true);
            let _ = tokio::time::timeout(SHUTDOWN_DRAIN_TIMEOUT, server).await;
            let _ = tokio::time::timeout(SHUTDOWN_DRAIN_TIMEOUT, aws_server).await;
            upkeep.abort();
            return Ok(());
        }
    };
    let broker = match broker {
        Ok(Ok(broker)) => broker,
        Ok(Err(err)) => {
            let _ = stop_http.send(true);
            upkeep.abort();
            return Err(anyhow::Error::new(err).context(format!(
                "cannot open data directory {}",
                config.data_dir.display()
            )));
        }
        Err(join) => {
            let _ = stop_http.send(true);
            upkeep.abort();
            return Err(anyhow::anyhow!(
                "opening data directory {} panicked: {join}",
                config.data_dir.display()
            ));
        }
    };
    // Streams open before topics: topic fan-outs interrupted by a crash may target a stream,
    // and topics complete them before the server is ready.
    let (streams, stop_kafka, kafka_server, stream_upkeep) =
        match crate::kafka::start(&config, kafka_listener).await {
            Ok(started) => started,
            Err(e) => {
                let _ = stop_http.send(true);
                upkeep.abort();
                let _ = broker.shutdown().await;
                return Err(e);
            }
        };
    state.set_streams(streams.clone());
    let topics = match crate::aws::sns::start_topics(&config, &broker, &streams, aws_addr).await {
        Ok(topics) => topics,
        Err(e) => {
            let _ = stop_http.send(true);
            upkeep.abort();
            crate::kafka::stop(streams, stop_kafka, kafka_server, stream_upkeep).await;
            let _ = broker.shutdown().await;
            return Err(e);
        }
    };
    state.set_topics(topics.clone());
    state.set_ready(broker.clone());
    tracing::info!(
        queues = broker.list_queues(None).len(),
        recovery_ms = started.elapsed().as_millis() as u64,
        "ready"
    );

    let _ = shutdown_rx.wait_for(|stop| *stop).await;
    tracing::info!("shutting down");
    state.begin_shutdown();
    let _ = stop_http.send(true);

    // Let ordinary requests (sends, deletes) finish against a live broker before it stops.
    let grace_end = Instant::now() + SHUTDOWN_REQUEST_GRACE;
    while (state.busy_requests() > 0 || aws_door.busy_requests() > 0) && Instant::now() < grace_end
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Wakes the long polls (they return empty), refuses new work, flushes and checkpoints.
    crate::kafka::stop(streams, stop_kafka, kafka_server, stream_upkeep).await;
    if let Err(e) = topics.shutdown().await {
        tracing::warn!(error = %e, "stopping the topic router");
    }
    let broker_result = broker.shutdown().await;
    match tokio::time::timeout(SHUTDOWN_DRAIN_TIMEOUT, server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "http door stopped with an error"),
        Ok(Err(e)) => tracing::warn!(error = %e, "http door task failed"),
        Err(_) => tracing::warn!("http door did not drain in time; closing open connections"),
    }
    match tokio::time::timeout(SHUTDOWN_DRAIN_TIMEOUT, aws_server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "aws door stopped with an error"),
        Ok(Err(e)) => tracing::warn!(error = %e, "aws door task failed"),
        Err(_) => tracing::warn!("aws door did not drain in time; closing open connections"),
    }
    upkeep.abort();
    broker_result.context("flushing the broker at shutdown")?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
