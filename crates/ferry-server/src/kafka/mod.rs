//! The Kafka door: the Kafka wire protocol over TCP, for librdkafka (confluent-kafka, kcat),
//! kafka-python and Java clients.
//!
//! Architecture invariant: this module knows the wire format and nothing else. Every file
//! decodes one API family's requests (with the `kafka-protocol` crate), calls
//! [`ferry_broker::stream::Streams`], and encodes the answer, mapping domain errors to Kafka
//! error codes ([`error_code`]). The broker never sees a wire type.
//!
//! # Framing
//!
//! ```text
//! request:   i32 size | i16 api_key | i16 api_version | i32 correlation_id | client_id | body
//! response:  i32 size | i32 correlation_id | [tagged fields, flexible versions] | body
//! ```
//!
//! Requests on one connection are answered in order. They are handled one at a time, as
//! Kafka does, except Produce: a Produce is appended as soon as it is read (so appends keep
//! the connection's order) and only its wait for `fdatasync` overlaps with the following
//! Produce requests (up to [`MAX_PIPELINED_PRODUCES`]), so a producer with many requests in
//! flight gets one group commit for all of them. Any other request first waits until earlier
//! produces are answered. A frame
//! that is too large ([`MAX_FRAME_BYTES`]) or negative, truncated, undecodable, or names an
//! API key or version not in [`api_versions::SUPPORTED`] closes that connection with a log
//! line (ApiVersions itself answers `UNSUPPORTED_VERSION` so clients can downgrade). Other
//! connections are unaffected.
//!
//! Ferry is a single-node cluster: node 0 leads every partition and coordinates every group.
//! Metadata advertises the address the client connected to.

pub mod admin;
pub mod api_versions;
pub mod authorized;
pub mod fetch;
pub mod groups;
pub mod init_producer_id;
pub mod list_offsets;
pub mod metadata;
pub mod offsets;
pub mod produce;
pub mod sasl;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use ferry_broker::stream::{GroupError, StreamError, Streams};
use futures_util::stream::{FuturesOrdered, StreamExt};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

/// Largest request frame accepted (Kafka's `socket.request.max.bytes` default).
pub const MAX_FRAME_BYTES: usize = 100 << 20;
/// Smallest valid frame: api key, version, correlation id and client id length.
const MIN_FRAME_BYTES: usize = 10;
/// A connection that sends half a frame and stalls is closed after this long.
pub const FRAME_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Produce requests of one connection whose answers may wait for durability at once. A
/// pending produce holds only its small response (the records are already in the log's
/// queue, itself bounded), so this can be large. It must be: librdkafka with `linger.ms=0`
/// sends one request per record, so 10,000 records/s with a 10 ms `fdatasync` stall means 100
/// requests waiting, and a request not read cannot join the next (overlapping) sync.
pub const MAX_PIPELINED_PRODUCES: usize = 1024;
/// Frames read ahead of the one being handled (bounds a connection's memory to a few frames).
const READ_AHEAD_FRAMES: usize = 2;
/// Most open Kafka connections.
pub const MAX_CONNECTIONS: usize = 10_000;
/// The node id of this broker.
pub const NODE_ID: i32 = 0;
/// The cluster id reported in Metadata.
pub const CLUSTER_ID: &str = "ferry";

/// Kafka error codes used by the door.
pub mod code {
    pub const NONE: i16 = 0;
    pub const UNKNOWN_SERVER_ERROR: i16 = -1;
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const CORRUPT_MESSAGE: i16 = 2;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const MESSAGE_TOO_LARGE: i16 = 10;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const NOT_COORDINATOR: i16 = 16;
    pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
    pub const INVALID_REQUIRED_ACKS: i16 = 21;
    pub const ILLEGAL_GENERATION: i16 = 22;
    pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
    pub const INVALID_GROUP_ID: i16 = 24;
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    pub const INVALID_SESSION_TIMEOUT: i16 = 26;
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    pub const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
    pub const UNSUPPORTED_VERSION: i16 = 35;
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
    pub const INVALID_PARTITIONS: i16 = 37;
    pub const INVALID_REPLICATION_FACTOR: i16 = 38;
    pub const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
    pub const INVALID_CONFIG: i16 = 40;
    pub const INVALID_REQUEST: i16 = 42;
    pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
    pub const INVALID_PRODUCER_EPOCH: i16 = 47;
    pub const KAFKA_STORAGE_ERROR: i16 = 56;
    pub const NON_EMPTY_GROUP: i16 = 68;
    pub const GROUP_ID_NOT_FOUND: i16 = 69;
    pub const MEMBER_ID_REQUIRED: i16 = 79;
    pub const GROUP_MAX_SIZE_REACHED: i16 = 81;
    pub const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;
    pub const FENCED_INSTANCE_ID: i16 = 82;
    pub const INVALID_RECORD: i16 = 87;
    pub const MISMATCHED_ENDPOINT_TYPE: i16 = 114;
    pub const UNSUPPORTED_ENDPOINT_TYPE: i16 = 115;
}

/// Maps a domain error to its Kafka error code.
pub fn error_code(e: &StreamError) -> i16 {
    match e {
        StreamError::UnknownStream(_) | StreamError::UnknownPartition { .. } => {
            code::UNKNOWN_TOPIC_OR_PARTITION
        }
        StreamError::StreamExists(_) => code::TOPIC_ALREADY_EXISTS,
        StreamError::InvalidName(_) => code::INVALID_TOPIC_EXCEPTION,
        StreamError::InvalidConfig(_) => code::INVALID_CONFIG,
        StreamError::InvalidPartitions(_) => code::INVALID_PARTITIONS,
        StreamError::CorruptBatch(_) => code::CORRUPT_MESSAGE,
        StreamError::InvalidBatch(_) => code::INVALID_RECORD,
        StreamError::MessageTooLarge { .. } => code::MESSAGE_TOO_LARGE,
        StreamError::OffsetOutOfRange { .. } => code::OFFSET_OUT_OF_RANGE,
        StreamError::OutOfOrderSequence { .. } => code::OUT_OF_ORDER_SEQUENCE_NUMBER,
        StreamError::InvalidProducerEpoch => code::INVALID_PRODUCER_EPOCH,
        StreamError::Group(g) => group_error_code(*g),
        StreamError::Storage(_) => code::KAFKA_STORAGE_ERROR,
        StreamError::Closed => code::KAFKA_STORAGE_ERROR,
    }
}

pub fn group_error_code(e: GroupError) -> i16 {
    match e {
        GroupError::UnknownMemberId => code::UNKNOWN_MEMBER_ID,
        GroupError::IllegalGeneration => code::ILLEGAL_GENERATION,
        GroupError::RebalanceInProgress => code::REBALANCE_IN_PROGRESS,
        GroupError::InconsistentGroupProtocol => code::INCONSISTENT_GROUP_PROTOCOL,
        GroupError::InvalidSessionTimeout => code::INVALID_SESSION_TIMEOUT,
        GroupError::NonEmptyGroup => code::NON_EMPTY_GROUP,
        GroupError::GroupIdNotFound => code::GROUP_ID_NOT_FOUND,
        GroupError::InvalidGroupId => code::INVALID_GROUP_ID,
        GroupError::GroupMaxSizeReached => code::GROUP_MAX_SIZE_REACHED,
        GroupError::CoordinatorNotAvailable => code::COORDINATOR_NOT_AVAILABLE,
        GroupError::FencedInstanceId => code::FENCED_INSTANCE_ID,
    }
}

/// Settings of the Kafka door.
#[derive(Clone, Debug)]
pub struct KafkaSettings {
    /// Create a missing topic on Metadata (when the client allows it) and on Produce.
    pub auto_create_topics: bool,
    /// Partitions of auto-created topics, and of CreateTopics with `num_partitions = -1`.
    pub default_partitions: u32,
}

/// What every connection shares.
pub struct KafkaDoor {
    pub streams: Streams,
    pub settings: KafkaSettings,
}

/// One connection's view: the door plus the addresses of this connection.
pub struct Conn {
    pub door: Arc<KafkaDoor>,
    /// The address the client connected to: advertised in Metadata and FindCoordinator.
    pub local: SocketAddr,
    pub peer: SocketAddr,
    pub client_id: String,
}

impl Conn {
    pub fn streams(&self) -> &Streams {
        &self.door.streams
    }
    pub fn host(&self) -> StrBytes {
        StrBytes::from_string(self.local.ip().to_string())
    }
    pub fn port(&self) -> i32 {
        i32::from(self.local.port())
    }
    /// Creates `topic` if auto-creation is on; true when it exists afterwards.
    pub fn ensure_topic(&self, topic: &str) -> bool {
        if self.streams().exists(topic) {
            return true;
        }
        if !self.door.settings.auto_create_topics {
            return false;
        }
        match self
            .streams()
            .create(topic, self.door.settings.default_partitions, &[])
        {
            Ok(_) => {
                tracing::info!(stream = topic, "auto-created stream");
                true
            }
            Err(StreamError::StreamExists(_)) => true,
            Err(e) => {
                tracing::debug!(stream = topic, error = %e, "auto-create failed");
                false
            }
        }
    }
}

pub fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// Accepts connections until `shutdown` turns true.
pub async fn serve(listener: TcpListener, door: Arc<KafkaDoor>, shutdown: watch::Receiver<bool>) {
    let mut stopping = shutdown.clone();
    let live = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (socket, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(door = "kafka", error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = Arc::clone(&live).try_acquire_owned() else {
                    tracing::warn!(door = "kafka", %peer, "too many connections; closing");
                    continue;
                };
                let door = Arc::clone(&door);
                let shutdown = shutdown.clone();
                tasks.spawn(async move {
                    let _permit = permit;
                    handle_connection(socket, peer, door, shutdown).await;
                });
                while tasks.try_join_next().is_some() {}
            }
            _ = async { let _ = stopping.wait_for(|s| *s).await; } => break,
        }
    }
    drop(listener);
    // Let in-flight requests finish briefly, then close the rest.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
}

/// Why a connection is closed.
#[derive(Debug)]
enum Close {
    Eof,
    Protocol(String),
    Io(std::io::Error),
    Shutdown,
}

async fn handle_connection(
    socket: TcpStream,
    peer: SocketAddr,
    door: Arc<KafkaDoor>,
    shutdown: watch::Receiver<bool>,
) {
    let _ = socket.set_nodelay(true);
    let local = match socket.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    let mut conn = Conn {
        door,
        local,
        peer,
        client_id: String::new(),
    };
    match serve_connection(socket, &mut conn, shutdown).await {
        Close::Eof | Close::Shutdown => {}
        Close::Protocol(reason) => {
            tracing::warn!(door = "kafka", %peer, client_id = %conn.client_id, reason = %reason, "closing kafka connection: malformed request");
        }
        Close::Io(e) => {
            tracing::debug!(door = "kafka", %peer, error = %e, "kafka connection error");
        }
    }
}

/// Reads frames and hands them to the connection loop; stops at the first bad frame.
/// Running apart from the loop makes reading cancel-safe while responses are written.
async fn read_frames(mut rd: OwnedReadHalf, tx: mpsc::Sender<Result<Bytes, Close>>) {
    loop {
        let mut len_buf = [0u8; 4];
        if let Err(e) = rd.read_exact(&mut len_buf).await {
            let close = if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Close::Eof
            } else {
                Close::Io(e)
            };
            let _ = tx.send(Err(close)).await;
            return;
        }
        let len = i32::from_be_bytes(len_buf);
        if len < MIN_FRAME_BYTES as i32 || len as usize > MAX_FRAME_BYTES {
            let reason =
                format!("frame length {len} outside {MIN_FRAME_BYTES}..={MAX_FRAME_BYTES}");
            let _ = tx.send(Err(Close::Protocol(reason))).await;
            return;
        }
        // Not zero-filled first: read straight into spare capacity, never past this frame.
        let len = len as usize;
        let mut frame = BytesMut::with_capacity(len);
        let read_frame = async {
            while frame.len() < len {
                let remaining = len - frame.len();
                let mut rest = (&mut frame).limit(remaining);
                if rd.read_buf(&mut rest).await? == 0 {
                    return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
                }
            }
            Ok(())
        };
        let close = match tokio::time::timeout(FRAME_READ_TIMEOUT, read_frame).await {
            Ok(Ok(_)) => None,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => Some(Close::Protocol(
                format!("truncated frame: expected {len} bytes"),
            )),
            Ok(Err(e)) => Some(Close::Io(e)),
            Err(_) => Some(Close::Protocol("timed out reading a frame".into())),
        };
        if let Some(close) = close {
            let _ = tx.send(Err(close)).await;
            return;
        }
        if tx.send(Ok(frame.freeze())).await.is_err() {
            return;
        }
    }
}

/// Aborts the frame reader when the connection loop ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Most buffers handed to one vectored write (Linux's `IOV_MAX` is 1024).
const MAX_IOVECS: usize = 1024;

/// Writes one response frame: the size prefix, then `chunks` (the encoded body) with vectored
/// writes, so a Fetch answer's stored batches go to the socket without being copied.
async fn write_frame(wr: &mut OwnedWriteHalf, chunks: &[Bytes]) -> Result<(), Close> {
    let len: usize = chunks.iter().map(Bytes::len).sum();
    let len = i32::try_from(len)
        .map_err(|_| Close::Protocol(format!("a response of {len} bytes is too large")))?;
    let prefix = len.to_be_bytes();
    let mut bufs: Vec<&[u8]> = std::iter::once(&prefix[..])
        .chain(chunks.iter().map(|c| &c[..]))
        .filter(|b| !b.is_empty())
        .collect();
    write_all_vectored(wr, &mut bufs).await.map_err(Close::Io)
}

async fn write_all_vectored(wr: &mut OwnedWriteHalf, bufs: &mut [&[u8]]) -> std::io::Result<()> {
    let mut first = 0;
    while first < bufs.len() {
        let slices: Vec<std::io::IoSlice<'_>> = bufs[first..]
            .iter()
            .take(MAX_IOVECS)
            .map(|b| std::io::IoSlice::new(b))
            .collect();
        let mut written = wr.write_vectored(&slices).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while written > 0 {
            let b = &mut bufs[first];
            if written >= b.len() {
                written -= b.len();
                first += 1;
            } else {
                *b = &b[written..];
                written = 0;
            }
        }
    }
    Ok(())
}

/// A decoded request: either a Produce already appended (its response pending on
/// durability), or any other request, run serially once earlier produces are answered.
enum Decoded {
    Pending(PendingResponse),
    Serial {
        header: RequestHeader,
        api_key: ApiKey,
        request: Box<RequestKind>,
    },
    Immediate(Option<Bytes>),
}

type PendingResponse =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Option<Bytes>, String>> + Send>>;

async fn serve_connection(
    socket: TcpStream,
    conn: &mut Conn,
    mut shutdown: watch::Receiver<bool>,
) -> Close {
    let (rd, mut wr) = socket.into_split();
    let (tx, mut rx) = mpsc::channel(READ_AHEAD_FRAMES);
    let _reader = AbortOnDrop(tokio::spawn(read_frames(rd, tx)));
    let mut produces: FuturesOrdered<PendingResponse> = FuturesOrdered::new();
    loop {
        tokio::select! {
            biased;
            Some(done) = produces.next(), if !produces.is_empty() => {
                match done {
                    Ok(Some(body)) => if let Err(c) = write_frame(&mut wr, std::slice::from_ref(&body)).await { return c },
                    Ok(None) => {}
                    Err(reason) => return Close::Protocol(reason),
                }
            }
            frame = rx.recv(), if produces.len() < MAX_PIPELINED_PRODUCES => {
                let frame = match frame {
                    Some(Ok(frame)) => frame,
                    Some(Err(close)) => {
                        // Answer what was already accepted before closing.
                        while let Some(Ok(Some(body))) = produces.next().await {
                            if write_frame(&mut wr, std::slice::from_ref(&body)).await.is_err() { break; }
                        }
                        return close;
                    }
                    None => return Close::Eof,
                };
                match start_request(frame, conn) {
                    Err(reason) => return Close::Protocol(reason),
                    Ok(Decoded::Pending(fut)) => produces.push_back(fut),
                    Ok(Decoded::Immediate(Some(body))) if produces.is_empty() => {
                        if let Err(c) = write_frame(&mut wr, std::slice::from_ref(&body)).await { return c }
                    }
                    Ok(Decoded::Immediate(body)) => {
                        produces.push_back(Box::pin(async move { Ok(body) }));
                    }
                    Ok(Decoded::Serial { header, api_key, request }) => {
                        while let Some(done) = produces.next().await {
                            match done {
                                Ok(Some(body)) => if let Err(c) = write_frame(&mut wr, std::slice::from_ref(&body)).await { return c },
                                Ok(None) => {}
                                Err(reason) => return Close::Protocol(reason),
                            }
                        }
                        match answer(conn, &header, api_key, *request).await {
                            Ok(Some(chunks)) => if let Err(c) = write_frame(&mut wr, &chunks).await { return c },
                            Ok(None) => {}
                            Err(reason) => return Close::Protocol(reason),
                        }
                    }
                }
            }
            _ = async { let _ = shutdown.wait_for(|s| *s).await; } => return Close::Shutdown,
        }
    }
}

/// Decodes one frame. Produce requests are appended here (in order) and their answers left
/// pending; everything else is returned for serial handling.
fn start_request(mut frame: Bytes, conn: &mut Conn) -> Result<Decoded, String> {
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api_key = ApiKey::try_from(key).map_err(|_| format!("unknown API key {key}"))?;
    if !api_versions::is_supported(api_key, version) {
        if api_key == ApiKey::ApiVersions {
            // KIP-511: answer in v0 with the supported versions so the client can downgrade.
            let body = api_versions::response(code::UNSUPPORTED_VERSION);
            return encode_response(correlation_id, api_key, 0, &ResponseKind::ApiVersions(body))
                .map(|b| Decoded::Immediate(Some(b)));
        }
        return Err(format!("unsupported version {version} of {api_key:?}"));
    }
    let header = RequestHeader::decode(&mut frame, api_key.request_header_version(version))
        .map_err(|e| format!("bad request header for {api_key:?} v{version}: {e}"))?;
    if let Some(id) = &header.client_id {
        if conn.client_id.is_empty() {
            conn.client_id = id.to_string();
        }
    }
    let request = RequestKind::decode(api_key, &mut frame, version)
        .map_err(|e| format!("cannot decode {api_key:?} v{version}: {e}"))?;
    match request {
        RequestKind::Produce(r) => Ok(match produce::start(conn, r) {
            None => Decoded::Immediate(None),
            Some(wait) => Decoded::Pending(Box::pin(async move {
                let response = wait.await;
                encode_response(
                    correlation_id,
                    api_key,
                    version,
                    &ResponseKind::Produce(response),
                )
                .map(Some)
            })),
        }),
        request => Ok(Decoded::Serial {
            header,
            api_key,
            request: Box::new(request),
        }),
    }
}

fn encode_response(
    correlation_id: i32,
    api_key: ApiKey,
    version: i16,
    response: &ResponseKind,
) -> Result<Bytes, String> {
    let mut buf = BytesMut::new();
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    header
        .encode(&mut buf, api_key.response_header_version(version))
        .map_err(|e| format!("cannot encode the response header: {e}"))?;
    response
        .encode(&mut buf, version)
        .map_err(|e| format!("cannot encode {api_key:?} v{version} response: {e}"))?;
    Ok(buf.freeze())
}

/// Runs one request (not pipelined) and encodes its answer as frame body chunks; `None` when
/// it gets no response (`acks=0`).
async fn answer(
    conn: &Conn,
    header: &RequestHeader,
    api_key: ApiKey,
    request: RequestKind,
) -> Result<Option<Vec<Bytes>>, String> {
    let version = header.request_api_version;
    if let RequestKind::Fetch(r) = request {
        // Encoded by the fetch module so stored batches are not copied.
        let answer = fetch::handle(conn, r, version).await;
        return answer.encode(header.correlation_id, version).map(Some);
    }
    match dispatch(conn, header, request).await? {
        Some(r) => {
            encode_response(header.correlation_id, api_key, version, &r).map(|b| Some(vec![b]))
        }
        None => Ok(None),
    }
}

async fn dispatch(
    conn: &Conn,
    header: &RequestHeader,
    request: RequestKind,
) -> Result<Option<ResponseKind>, String> {
    let v = header.request_api_version;
    Ok(Some(match request {
        RequestKind::ApiVersions(_) => {
            ResponseKind::ApiVersions(api_versions::response(code::NONE))
        }
        RequestKind::Metadata(r) => ResponseKind::Metadata(metadata::handle(conn, r, v)),
        RequestKind::DescribeCluster(r) => {
            ResponseKind::DescribeCluster(metadata::describe_cluster(conn, r))
        }
        RequestKind::Produce(r) => match produce::start(conn, r) {
            Some(wait) => ResponseKind::Produce(wait.await),
            None => return Ok(None),
        },
        RequestKind::Fetch(_) => return Err("Fetch is answered by `answer`".into()),
        RequestKind::ListOffsets(r) => ResponseKind::ListOffsets(list_offsets::handle(conn, r)),
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(groups::find_coordinator(conn, r, v))
        }
        RequestKind::JoinGroup(r) => ResponseKind::JoinGroup(groups::join(conn, r, v).await),
        RequestKind::SyncGroup(r) => ResponseKind::SyncGroup(groups::sync(conn, r).await),
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(groups::heartbeat(conn, r)),
        RequestKind::LeaveGroup(r) => ResponseKind::LeaveGroup(groups::leave(conn, r, v)),
        RequestKind::ListGroups(r) => ResponseKind::ListGroups(groups::list(conn, r)),
        RequestKind::DescribeGroups(r) => ResponseKind::DescribeGroups(groups::describe(conn, r)),
        RequestKind::DeleteGroups(r) => ResponseKind::DeleteGroups(groups::delete(conn, r).await),
        RequestKind::OffsetCommit(r) => ResponseKind::OffsetCommit(offsets::commit(conn, r).await),
        RequestKind::OffsetFetch(r) => ResponseKind::OffsetFetch(offsets::fetch(conn, r)),
        RequestKind::OffsetDelete(r) => ResponseKind::OffsetDelete(offsets::delete(conn, r).await),
        RequestKind::CreateTopics(r) => ResponseKind::CreateTopics(admin::create_topics(conn, r)),
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(admin::delete_topics(conn, r).await)
        }
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(admin::create_partitions(conn, r))
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(admin::describe_configs(conn, r))
        }
        RequestKind::AlterConfigs(r) => ResponseKind::AlterConfigs(admin::alter_configs(conn, r)),
        RequestKind::IncrementalAlterConfigs(r) => {
            ResponseKind::IncrementalAlterConfigs(admin::incremental_alter_configs(conn, r))
        }
        RequestKind::DescribeLogDirs(r) => {
            ResponseKind::DescribeLogDirs(admin::describe_log_dirs(conn, r))
        }
        RequestKind::DeleteRecords(r) => {
            ResponseKind::DeleteRecords(admin::delete_records(conn, r))
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(init_producer_id::handle(conn, r))
        }
        RequestKind::SaslHandshake(r) => ResponseKind::SaslHandshake(sasl::handshake(conn, r)),
        other => {
            return Err(format!(
                "no handler for {:?}",
                std::mem::discriminant(&other)
            ))
        }
    }))
}

/// How often retention runs over every stream.
pub const RETENTION_INTERVAL: Duration = Duration::from_secs(30);

/// What [`start`] leaves running: the streams, the door's stop switch, the door's task and
/// the streams' upkeep task (group session timeouts, retention).
pub type Started = (
    Streams,
    watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
    tokio::task::JoinHandle<()>,
);

/// Opens the streams (recovery) and starts serving the Kafka door on `listener`.
pub async fn start(
    config: &crate::config::ServerConfig,
    listener: TcpListener,
) -> anyhow::Result<Started> {
    use anyhow::Context;
    use ferry_broker::stream::StreamsConfig;
    let streams_config = StreamsConfig {
        default_durability: config.durability.to_log(),
        tail_cache: Some(ferry_log::TailCache::new(config.stream_cache_bytes)),
        ..StreamsConfig::new(&config.data_dir)
    };
    let dir = streams_config.dir.clone();
    let streams = tokio::task::spawn_blocking(move || Streams::open(streams_config))
        .await
        .context("opening streams panicked")?
        .with_context(|| format!("cannot open streams in {}", dir.display()))?;
    tracing::info!(streams = streams.names().len(), "streams ready");
    let door = Arc::new(KafkaDoor {
        streams: streams.clone(),
        settings: KafkaSettings {
            auto_create_topics: config.kafka_auto_create_topics,
            default_partitions: config.kafka_default_partitions,
        },
    });
    let (stop, stopped) = watch::channel(false);
    let server = tokio::spawn(serve(listener, door, stopped));
    let upkeep = tokio::spawn({
        let streams = streams.clone();
        async move {
            let tick = Duration::from_millis(ferry_broker::stream::group::TICK_INTERVAL_MS);
            let mut interval = tokio::time::interval(tick);
            let mut last_retention = std::time::Instant::now();
            loop {
                interval.tick().await;
                let now = streams.now_ms().max(0) as u64;
                streams.coordinator().tick(now);
                if streams.coordinator().has_unsaved_changes() {
                    let s = streams.clone();
                    let _ = tokio::task::spawn_blocking(move || s.coordinator().save()).await;
                }
                if last_retention.elapsed() >= RETENTION_INTERVAL {
                    last_retention = std::time::Instant::now();
                    let s = streams.clone();
                    let _ =
                        tokio::task::spawn_blocking(move || s.enforce_retention(s.now_ms())).await;
                }
            }
        }
    });
    Ok((streams, stop, server, upkeep))
}

/// Stops the Kafka door, answers waiting group calls and closes (flushes) every stream.
pub async fn stop(
    streams: Streams,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
    upkeep: tokio::task::JoinHandle<()>,
) {
    let _ = stop.send(true);
    streams.coordinator().shutdown();
    if tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .is_err()
    {
        tracing::warn!("kafka door did not drain in time");
    }
    upkeep.abort();
    match tokio::task::spawn_blocking(move || streams.close()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "closing streams failed"),
        Err(e) => tracing::warn!(error = %e, "closing streams panicked"),
    }
}

#[cfg(test)]
mod tests;

/// A stable topic id derived from the name (Metadata v10+ and CreateTopics v7 carry one).
pub fn topic_id(name: &str) -> uuid::Uuid {
    let mut a: u64 = 0xcbf2_9ce4_8422_2325;
    let mut b: u64 = 0x8422_2325_cbf2_9ce4;
    for byte in name.bytes() {
        a = (a ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        b = (b ^ u64::from(byte))
            .wrapping_mul(0x0000_0100_0000_01b3)
            .rotate_left(7);
    }
    uuid::Uuid::from_u64_pair(a, b | 1)
}
