//! `ferry bench kafka`: produce throughput through the Kafka door, then a cold consume of
//! everything produced.
//!
//! ```text
//! prepare:  DeleteTopics T, CreateTopics T (--partitions)
//! produce:  --producers connections; each keeps --inflight Produce requests (acks=all) in
//!           flight, every request one batch of --batch-bytes per partition
//! consume:  --consumers connections split the partitions and Fetch from their first offsets
//!           (ListOffsets earliest) up to the end offsets (latest) taken when consuming starts
//! check:    the partitions hold at least the records acknowledged; the consume read them all
//! ```
//!
//! `--consume-only` skips prepare, produce and check: it times the consume of an existing
//! topic, whose partitions it learns from Metadata.
//!
//! The producer is lean on purpose, so that the broker is what is measured: each partition's
//! batch is encoded once (uncompressed, record values of `--size` bytes), and every send copies
//! it, restamps its timestamps with the current time and recomputes its CRC, as a client that
//! encoded it afresh would send it. The consumer counts records from the batch headers without
//! decoding them. librdkafka's own figures (confluent-kafka, kcat) are measured by
//! `tests/clients/kafka/bench_kafka.py`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use hdrhistogram::Histogram;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Semaphore};

use ferry_broker::stream::batch::{encode_records, NewRecord};

use super::{
    emit, histogram, ms, nothing_done, BenchArgs, Percentiles, Shared, MEASURING, STOPPED,
};
use crate::client::CliError;

const PRODUCE_VERSION: i16 = 9;
const FETCH_VERSION: i16 = 12;
const LIST_OFFSETS_VERSION: i16 = 7;
const METADATA_VERSION: i16 = 9;
/// ListOffsets timestamps: a partition's end, and its first offset.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const CREATE_TOPICS_VERSION: i16 = 5;
const DELETE_TOPICS_VERSION: i16 = 5;
/// Kafka error code of a topic that does not exist (DeleteTopics of a missing topic).
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
/// Bytes a Fetch asks for per partition, and in all.
const FETCH_PARTITION_BYTES: i32 = 4 << 20;
const FETCH_MAX_BYTES: i32 = 16 << 20;
/// Larger than any answer the bench asks for.
const MAX_FRAME: usize = 256 << 20;
/// Byte positions in a v2 record batch.
const BATCH_LENGTH_AT: usize = 8;
const LAST_OFFSET_DELTA_AT: usize = 23;
const FIRST_TIMESTAMP_AT: usize = 27;
const MAX_TIMESTAMP_AT: usize = 35;
const RECORDS_COUNT_AT: usize = 57;
const BATCH_HEADER: usize = 61;

/// The result of a kafka run; `--json` prints it as one line.
#[derive(Debug, Serialize)]
pub struct KafkaReport {
    pub target: &'static str,
    pub producers: usize,
    pub consumers: usize,
    pub partitions: u32,
    pub size: u32,
    pub records_per_batch: usize,
    pub inflight: u32,
    pub duration_s: f64,
    /// Acknowledged (acks=all: durable) records per second in the measurement window.
    pub produced_per_sec: f64,
    /// The same in MB/s of record values (10^6 bytes).
    pub produced_mb_per_sec: f64,
    pub produced: u64,
    /// Acknowledged over the whole run, warm-up included.
    pub total_produced: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Per Produce request.
    pub produce_latency_us: Percentiles,
    /// Records read by the cold consume, and how fast.
    pub consumed: u64,
    pub consume_s: f64,
    pub consumed_per_sec: f64,
    pub consumed_mb_per_sec: f64,
    /// The partitions held every acknowledged record and the consume read them all.
    pub check_ok: bool,
}

/// The result of a `--consume-only` run; `--json` prints it as one line.
#[derive(Debug, Serialize)]
pub struct ConsumeReport {
    pub target: &'static str,
    pub topic: String,
    pub partitions: u32,
    pub consumers: usize,
    pub consumed: u64,
    pub consume_s: f64,
    pub consumed_per_sec: f64,
    /// MB/s (10^6 bytes) of stored record batches, headers included.
    pub consumed_batch_mb_per_sec: f64,
    /// The partitions' end offsets minus their first offsets when consuming started.
    pub held: u64,
}

pub fn run(
    runtime: &tokio::runtime::Runtime,
    args: &BenchArgs,
    json_output: bool,
) -> Result<(), CliError> {
    if args.consume_only {
        let report = runtime.block_on(consume_only(args))?;
        emit(&report, json_output, || print_consume_report(&report));
        if report.consumed == 0 {
            return Err(CliError::Other(format!(
                "topic {} holds no records to consume",
                args.topic
            )));
        }
        return Ok(());
    }
    let report = runtime.block_on(drive(args))?;
    emit(&report, json_output, || print_report(&report, args));
    if report.produced == 0 {
        return Err(nothing_done(
            "no record was acknowledged",
            report.first_error.as_deref(),
        ));
    }
    if !report.check_ok {
        return Err(CliError::Other(
            "the consume did not read back every acknowledged record".into(),
        ));
    }
    Ok(())
}

/// The run's first connection: failing to open it is "cannot connect" (exit code 3).
async fn connect(addr: &str) -> Result<Connection, CliError> {
    Connection::open(addr).await.map_err(|e| CliError::Connect {
        server: addr.to_string(),
        reason: format!("{e:#}"),
    })
}

async fn drive(args: &BenchArgs) -> Result<KafkaReport, CliError> {
    let addr = args.bootstrap.as_str();
    let mut admin = connect(addr).await?;
    prepare(
        &mut admin,
        &args.topic,
        args.partitions,
        &args.topic_configs,
    )
    .await
    .map_err(|e| CliError::Other(format!("preparing topic {}: {e:#}", args.topic)))?;
    let per_batch = (args.batch_bytes as usize / args.size as usize).max(1);
    let value = Bytes::from(vec![b'x'; args.size as usize]);
    let records: Vec<NewRecord> = (0..per_batch)
        .map(|_| NewRecord {
            value: Some(value.clone()),
            ..Default::default()
        })
        .collect();
    let template = encode_records(&records, now_ms())
        .map_err(|e| CliError::Other(format!("encoding a record batch: {e}")))?;

    let shared = Arc::new(Shared::new());
    let window = Arc::new(AtomicU64::new(0));
    let total = Arc::new(AtomicU64::new(0));
    let empty = histogram()?;
    let mut producers = Vec::new();
    for _ in 0..args.producers {
        let conn = Connection::open(addr)
            .await
            .map_err(|e| CliError::Other(format!("{e:#}")))?;
        producers.push(tokio::spawn(produce(
            conn,
            ProduceSetup {
                topic: args.topic.clone(),
                partitions: args.partitions,
                inflight: args.inflight as usize,
                template: template.clone(),
                records: per_batch as u64 * args.partitions as u64,
            },
            shared.clone(),
            (window.clone(), total.clone()),
            empty.clone(),
        )));
    }
    let elapsed = shared.run_window(args.warmup, args.duration).await;
    let mut latency = empty.clone();
    for p in producers {
        if let Ok(h) = p.await {
            let _ = latency.add(&h);
        }
    }
    let produced = window.load(Ordering::SeqCst);
    let total_produced = total.load(Ordering::SeqCst);

    let consumed = cold_consume(addr, &args.topic, args.partitions, args.consumers)
        .await
        .map_err(|e| CliError::Other(format!("consuming {}: {e:#}", args.topic)))?;
    let mb = |records: f64| records * args.size as f64 / 1e6;
    let c = &shared.counters;
    Ok(KafkaReport {
        target: "kafka",
        producers: args.producers,
        consumers: args.consumers,
        partitions: args.partitions,
        size: args.size,
        records_per_batch: per_batch,
        inflight: args.inflight,
        duration_s: elapsed,
        produced_per_sec: produced as f64 / elapsed,
        produced_mb_per_sec: mb(produced as f64) / elapsed,
        produced,
        total_produced,
        errors: c.errors.load(Ordering::SeqCst),
        first_error: shared.first_error.lock().ok().and_then(|e| e.clone()),
        produce_latency_us: Percentiles::of(&latency),
        consumed: consumed.records,
        consume_s: consumed.seconds,
        consumed_per_sec: consumed.records as f64 / consumed.seconds,
        consumed_mb_per_sec: mb(consumed.records as f64) / consumed.seconds,
        check_ok: consumed.held >= total_produced && consumed.records == consumed.held,
    })
}

async fn consume_only(args: &BenchArgs) -> Result<ConsumeReport, CliError> {
    let addr = args.bootstrap.as_str();
    let mut conn = connect(addr).await?;
    let failed = |e: anyhow::Error| CliError::Other(format!("consuming {}: {e:#}", args.topic));
    let partitions = partition_count(&mut conn, &args.topic)
        .await
        .map_err(failed)?;
    let consumed = cold_consume(addr, &args.topic, partitions, args.consumers)
        .await
        .map_err(failed)?;
    Ok(ConsumeReport {
        target: "kafka-consume",
        topic: args.topic.clone(),
        partitions,
        consumers: args.consumers.clamp(1, partitions as usize),
        consumed: consumed.records,
        consume_s: consumed.seconds,
        consumed_per_sec: consumed.records as f64 / consumed.seconds,
        consumed_batch_mb_per_sec: consumed.bytes as f64 / 1e6 / consumed.seconds,
        held: consumed.held,
    })
}

/// The number of partitions of `topic` (Metadata).
async fn partition_count(conn: &mut Connection, topic: &str) -> anyhow::Result<u32> {
    let mut wanted = metadata_request::MetadataRequestTopic::default();
    wanted.name = Some(topic_name(topic));
    let mut req = MetadataRequest::default();
    req.topics = Some(vec![wanted]);
    req.allow_auto_topic_creation = false;
    let r: MetadataResponse = conn.call(ApiKey::Metadata, METADATA_VERSION, &req).await?;
    let t = r
        .topics
        .first()
        .ok_or_else(|| anyhow!("Metadata: no answer for the topic"))?;
    match t.error_code {
        0 if t.partitions.is_empty() => bail!("Metadata: the topic has no partitions"),
        0 => Ok(t.partitions.len() as u32),
        UNKNOWN_TOPIC_OR_PARTITION => {
            bail!("the topic does not exist (UNKNOWN_TOPIC_OR_PARTITION)")
        }
        code => bail!("Metadata: error {code}"),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// One Kafka connection: framed requests with increasing correlation ids.
struct Connection {
    socket: TcpStream,
    correlation: i32,
}

impl Connection {
    async fn open(addr: &str) -> anyhow::Result<Connection> {
        let socket = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to the Kafka door at {addr}"))?;
        socket.set_nodelay(true)?;
        Ok(Connection {
            socket,
            correlation: 0,
        })
    }

    async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &Req,
    ) -> anyhow::Result<Resp> {
        self.correlation = self.correlation.wrapping_add(1);
        let correlation = self.correlation;
        let frame = request_frame(key, version, correlation, req)?;
        self.socket.write_all(&frame).await?;
        let mut body = read_frame(&mut self.socket).await?;
        decode_response(&mut body, key, version, correlation)
    }
}

async fn read_frame<R: AsyncReadExt + Unpin>(socket: &mut R) -> anyhow::Result<Bytes> {
    let len = socket.read_i32().await.context("reading a response")? as usize;
    if len > MAX_FRAME {
        bail!("response of {len} bytes");
    }
    let mut buf = BytesMut::zeroed(len);
    socket.read_exact(&mut buf).await?;
    Ok(buf.freeze())
}

fn decode_response<Resp: Decodable>(
    body: &mut Bytes,
    key: ApiKey,
    version: i16,
    correlation: i32,
) -> anyhow::Result<Resp> {
    let header = ResponseHeader::decode(body, key.response_header_version(version))?;
    if header.correlation_id != correlation {
        bail!(
            "response {} to request {correlation}",
            header.correlation_id
        );
    }
    Resp::decode(body, version)
}

/// Deletes the topic if it exists and creates it with `partitions`.
async fn prepare(
    conn: &mut Connection,
    topic: &str,
    partitions: u32,
    configs: &[(String, String)],
) -> anyhow::Result<()> {
    let mut delete = DeleteTopicsRequest::default();
    delete.topic_names = vec![topic_name(topic)];
    delete.timeout_ms = 30_000;
    let r: DeleteTopicsResponse = conn
        .call(ApiKey::DeleteTopics, DELETE_TOPICS_VERSION, &delete)
        .await?;
    for t in &r.responses {
        if t.error_code != 0 && t.error_code != UNKNOWN_TOPIC_OR_PARTITION {
            bail!("DeleteTopics: error {}", t.error_code);
        }
    }
    let mut creatable = create_topics_request::CreatableTopic::default();
    creatable.name = topic_name(topic);
    creatable.num_partitions = partitions as i32;
    creatable.replication_factor = 1;
    creatable.configs = configs
        .iter()
        .map(|(k, v)| {
            let mut c = create_topics_request::CreatableTopicConfig::default();
            c.name = StrBytes::from_string(k.clone());
            c.value = Some(StrBytes::from_string(v.clone()));
            c
        })
        .collect();
    let mut create = CreateTopicsRequest::default();
    create.topics = vec![creatable];
    create.timeout_ms = 30_000;
    let r: CreateTopicsResponse = conn
        .call(ApiKey::CreateTopics, CREATE_TOPICS_VERSION, &create)
        .await?;
    for t in &r.topics {
        if t.error_code != 0 {
            bail!(
                "CreateTopics: error {} {}",
                t.error_code,
                t.error_message.as_deref().unwrap_or("")
            );
        }
    }
    Ok(())
}

struct ProduceSetup {
    topic: String,
    partitions: u32,
    inflight: usize,
    /// One encoded batch; every send restamps a copy.
    template: Bytes,
    /// Records per request (one batch per partition).
    records: u64,
}

/// A copy of `template` with its timestamps set to `now` and its CRC recomputed.
fn restamp(template: &Bytes, now: i64) -> Bytes {
    let mut b = BytesMut::from(&template[..]);
    b[FIRST_TIMESTAMP_AT..FIRST_TIMESTAMP_AT + 8].copy_from_slice(&now.to_be_bytes());
    b[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&now.to_be_bytes());
    ferry_broker::stream::batch::reseal(&mut b);
    b.freeze()
}

/// A request in flight: its correlation id, when it was sent, whether it counts in the
/// window, and its slot in the in-flight limit (released with it).
type InFlight = (i32, Instant, bool, tokio::sync::OwnedSemaphorePermit);

/// Sends Produce requests until stopped, with up to `inflight` unanswered; returns the
/// per-request latency histogram.
async fn produce(
    conn: Connection,
    setup: ProduceSetup,
    shared: Arc<Shared>,
    (window, total): (Arc<AtomicU64>, Arc<AtomicU64>),
    latency: Histogram<u64>,
) -> Histogram<u64> {
    let Connection {
        socket,
        mut correlation,
    } = conn;
    let (mut reader, mut writer) = socket.into_split();
    let slots = Arc::new(Semaphore::new(setup.inflight));
    let (sent_tx, mut sent_rx) = mpsc::unbounded_channel::<InFlight>();
    let records = setup.records;
    let answers = {
        let shared = shared.clone();
        let mut latency = latency.clone();
        tokio::spawn(async move {
            while let Some((id, start, counted, _slot)) = sent_rx.recv().await {
                let result = async {
                    let mut body = read_frame(&mut reader).await?;
                    let r: ProduceResponse =
                        decode_response(&mut body, ApiKey::Produce, PRODUCE_VERSION, id)?;
                    for t in &r.responses {
                        for p in &t.partition_responses {
                            if p.error_code != 0 {
                                bail!("partition {}: error {}", p.index, p.error_code);
                            }
                        }
                    }
                    Ok(())
                }
                .await;
                match result {
                    Ok(()) => {
                        let _ = latency.record(start.elapsed().as_micros().max(1) as u64);
                        total.fetch_add(records, Ordering::Relaxed);
                        if counted {
                            window.fetch_add(records, Ordering::Relaxed);
                        }
                    }
                    Err(e) => {
                        shared.error(e);
                        return latency;
                    }
                }
            }
            latency
        })
    };
    loop {
        let phase = shared.phase();
        if phase == STOPPED {
            break;
        }
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        if answers.is_finished() {
            break;
        }
        // One fresh batch per request, the same for every partition (the broker patches
        // the base offset into its own copy).
        let batch = restamp(&setup.template, now_ms());
        let mut topic = produce_request::TopicProduceData::default();
        topic.name = topic_name(&setup.topic);
        topic.partition_data = (0..setup.partitions)
            .map(|p| {
                let mut d = produce_request::PartitionProduceData::default();
                d.index = p as i32;
                d.records = Some(batch.clone());
                d
            })
            .collect();
        let mut req = ProduceRequest::default();
        req.acks = -1;
        req.timeout_ms = 30_000;
        req.topic_data = vec![topic];
        correlation = correlation.wrapping_add(1);
        let frame = match request_frame(ApiKey::Produce, PRODUCE_VERSION, correlation, &req) {
            Ok(f) => f,
            Err(e) => {
                shared.error(e);
                break;
            }
        };
        let counted = phase == MEASURING;
        if sent_tx
            .send((correlation, Instant::now(), counted, slot))
            .is_err()
        {
            break;
        }
        if let Err(e) = writer.write_all(&frame).await {
            shared.error(e.into());
            break;
        }
    }
    drop(sent_tx);
    match answers.await {
        Ok(h) => h,
        Err(e) => {
            shared.error(anyhow!("answer reader: {e}"));
            latency
        }
    }
}

/// One request, length-prefixed.
fn request_frame<Req: Encodable>(
    key: ApiKey,
    version: i16,
    correlation: i32,
    req: &Req,
) -> anyhow::Result<BytesMut> {
    let mut header = RequestHeader::default();
    header.request_api_key = key as i16;
    header.request_api_version = version;
    header.correlation_id = correlation;
    header.client_id = Some(StrBytes::from_static_str("ferry-bench"));
    let mut frame = BytesMut::new();
    frame.put_i32(0);
    header.encode(&mut frame, key.request_header_version(version))?;
    req.encode(&mut frame, version)?;
    let len = (frame.len() - 4) as i32;
    frame[..4].copy_from_slice(&len.to_be_bytes());
    Ok(frame)
}

/// What a cold consume read.
struct Consumed {
    records: u64,
    /// Bytes of the record batches read.
    bytes: u64,
    seconds: f64,
    /// Records the partitions held when it started (end minus first offsets).
    held: u64,
}

/// Reads every partition from its first offset to the end offset it had at the start, with
/// `consumers` connections splitting the partitions.
async fn cold_consume(
    addr: &str,
    topic: &str,
    partitions: u32,
    consumers: usize,
) -> anyhow::Result<Consumed> {
    let mut conn = Connection::open(addr).await?;
    let firsts = list_offsets(&mut conn, topic, partitions, EARLIEST).await?;
    let ends = list_offsets(&mut conn, topic, partitions, LATEST).await?;
    let held: u64 = ends
        .iter()
        .zip(&firsts)
        .map(|(&e, &f)| (e - f) as u64)
        .sum();
    let consumers = consumers.clamp(1, partitions as usize);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..consumers {
        let mine: Vec<(i32, i64, i64)> = (0..partitions as usize)
            .filter(|p| p % consumers == c)
            .map(|p| (p as i32, firsts[p], ends[p]))
            .collect();
        let conn = Connection::open(addr).await?;
        tasks.push(tokio::spawn(fetch_all(conn, topic.to_string(), mine)));
    }
    let (mut records, mut bytes) = (0, 0);
    for t in tasks {
        let (r, b) = t.await.map_err(|e| anyhow!("consumer: {e}"))??;
        records += r;
        bytes += b;
    }
    Ok(Consumed {
        records,
        bytes,
        seconds: start.elapsed().as_secs_f64(),
        held,
    })
}

/// Each partition's offset for `timestamp` (ListOffsets; [`LATEST`]: its end, [`EARLIEST`]: its
/// first offset).
async fn list_offsets(
    conn: &mut Connection,
    topic: &str,
    partitions: u32,
    timestamp: i64,
) -> anyhow::Result<Vec<i64>> {
    let mut t = list_offsets_request::ListOffsetsTopic::default();
    t.name = topic_name(topic);
    t.partitions = (0..partitions)
        .map(|p| {
            let mut lp = list_offsets_request::ListOffsetsPartition::default();
            lp.partition_index = p as i32;
            lp.timestamp = timestamp;
            lp
        })
        .collect();
    let mut req = ListOffsetsRequest::default();
    req.replica_id = BrokerId(-1);
    req.topics = vec![t];
    let r: ListOffsetsResponse = conn
        .call(ApiKey::ListOffsets, LIST_OFFSETS_VERSION, &req)
        .await?;
    let mut ends = vec![0; partitions as usize];
    for p in r.topics.iter().flat_map(|t| &t.partitions) {
        if p.error_code != 0 {
            bail!(
                "ListOffsets partition {}: error {}",
                p.partition_index,
                p.error_code
            );
        }
        ends[p.partition_index as usize] = p.offset;
    }
    Ok(ends)
}

/// Fetches `partitions` (index, first offset, end offset) from their first offsets to their
/// ends; returns the records and the bytes of record batches read.
async fn fetch_all(
    mut conn: Connection,
    topic: String,
    mut next: Vec<(i32, i64, i64)>,
) -> anyhow::Result<(u64, u64)> {
    let (mut read, mut bytes) = (0u64, 0u64);
    loop {
        let wanted: Vec<fetch_request::FetchPartition> = next
            .iter()
            .filter(|(_, at, end)| at < end)
            .map(|&(p, at, _)| {
                let mut fp = fetch_request::FetchPartition::default();
                fp.partition = p;
                fp.fetch_offset = at;
                fp.partition_max_bytes = FETCH_PARTITION_BYTES;
                fp
            })
            .collect();
        if wanted.is_empty() {
            return Ok((read, bytes));
        }
        let mut ft = fetch_request::FetchTopic::default();
        ft.topic = topic_name(&topic);
        ft.partitions = wanted;
        let mut req = FetchRequest::default();
        req.replica_id = BrokerId(-1);
        req.max_wait_ms = 500;
        req.min_bytes = 1;
        req.max_bytes = FETCH_MAX_BYTES;
        req.topics = vec![ft];
        let r: FetchResponse = conn.call(ApiKey::Fetch, FETCH_VERSION, &req).await?;
        for p in r.responses.iter().flat_map(|t| &t.partitions) {
            if p.error_code != 0 {
                bail!(
                    "Fetch partition {}: error {}",
                    p.partition_index,
                    p.error_code
                );
            }
            let Some(slot) = next.iter_mut().find(|n| n.0 == p.partition_index) else {
                continue;
            };
            let counted = count_records(p.records.as_ref(), slot.2)?;
            read += counted.records;
            bytes += counted.bytes;
            let last = counted.last;
            if let Some(last) = last {
                slot.1 = last + 1;
            }
        }
    }
}

/// The whole batches of a Fetch answer that start below a partition's end.
struct Counted {
    records: u64,
    bytes: u64,
    /// The last offset of the last whole batch.
    last: Option<i64>,
}

/// Counts the whole batches of `data` (records and bytes of those below `end`).
fn count_records(data: Option<&Bytes>, end: i64) -> anyhow::Result<Counted> {
    let Some(data) = data else {
        return Ok(Counted {
            records: 0,
            bytes: 0,
            last: None,
        });
    };
    let mut rest = &data[..];
    let (mut records, mut bytes, mut last) = (0u64, 0u64, None);
    while rest.len() >= BATCH_HEADER {
        let base = (&rest[..8]).get_i64();
        let length = (&rest[BATCH_LENGTH_AT..]).get_i32() as usize;
        if rest.len() < 12 + length {
            break; // a partial batch at the end of the answer
        }
        let delta = (&rest[LAST_OFFSET_DELTA_AT..]).get_i32() as i64;
        let count = (&rest[RECORDS_COUNT_AT..]).get_i32();
        if base < end {
            records += count.max(0) as u64;
            bytes += 12 + length as u64;
        }
        last = Some(base + delta);
        rest = &rest[12 + length..];
    }
    Ok(Counted {
        records,
        bytes,
        last,
    })
}

fn print_consume_report(r: &ConsumeReport) {
    println!(
        "ferry bench kafka --consume-only: topic {}, {} partitions, {} consumer connections",
        r.topic, r.partitions, r.consumers
    );
    println!(
        "  cold consume  {:>12.0} records/s  {:>8.1} MB/s of batches  ({} records in {:.2}s; the partitions held {})",
        r.consumed_per_sec, r.consumed_batch_mb_per_sec, r.consumed, r.consume_s, r.held
    );
}

fn print_report(r: &KafkaReport, args: &BenchArgs) {
    println!(
        "ferry bench kafka: {} producer connections x {} requests in flight, acks=all, {} partitions, {}-byte records, {} per batch ({} per request), {:.1}s measured after {:.1}s warmup, topic {}",
        r.producers,
        r.inflight,
        r.partitions,
        r.size,
        r.records_per_batch,
        r.records_per_batch as u64 * r.partitions as u64,
        r.duration_s,
        args.warmup.as_secs_f64(),
        args.topic,
    );
    println!(
        "  produced      {:>12.0} records/s  {:>8.1} MB/s  ({} records acknowledged)",
        r.produced_per_sec, r.produced_mb_per_sec, r.produced
    );
    let p = &r.produce_latency_us;
    println!(
        "  produce latency (per request) p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
        ms(p.p50),
        ms(p.p90),
        ms(p.p99),
        ms(p.p999),
        ms(p.max)
    );
    println!(
        "  cold consume  {:>12.0} records/s  {:>8.1} MB/s  ({} records in {:.2}s, {} consumer connections)",
        r.consumed_per_sec, r.consumed_mb_per_sec, r.consumed, r.consume_s, r.consumers.min(r.partitions as usize)
    );
    if r.check_ok {
        println!(
            "  check         the partitions held all {} acknowledged records and the consume read them all",
            r.total_produced
        );
    } else {
        println!(
            "  check         MISMATCH: {} acknowledged, {} read back",
            r.total_produced, r.consumed
        );
    }
    if r.errors > 0 {
        println!(
            "  errors        {} (first: {})",
            r.errors,
            r.first_error.as_deref().unwrap_or("?")
        );
    }
}
