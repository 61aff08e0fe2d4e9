//! `ferry`: the server (`ferry serve`), the CLI (`ferry queue …`, `ferry send …`) and the load
//! generator (`ferry bench`) in one binary.
//!
//! Exit codes: 0 success; 1 the server answered with an error (printed as `error: Code:
//! message`) or failed to start; 2 usage or configuration error; 3 the server cannot be reached.

mod bench;
mod client;
mod commands;
mod output;
mod serve;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use client::{ApiClient, CliError};

/// The server allocates per request (bodies, JSON, receipt handles) on several threads;
/// mimalloc's thread-local free lists make that markedly cheaper than glibc malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Ferry: queues with SQS semantics, durable by default, in one binary.
#[derive(Debug, Parser)]
#[command(name = "ferry", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Options of every client command (not of `serve`).
#[derive(Debug, Args)]
struct ClientArgs {
    /// Server URL.
    #[arg(
        long,
        global = true,
        env = "FERRY_SERVER",
        default_value = "http://127.0.0.1:7070"
    )]
    server: String,
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Args)]
struct QueueArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: commands::queue::QueueCommand,
}

#[derive(Debug, Args)]
struct StreamArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: commands::stream::StreamCommand,
}

#[derive(Debug, Args)]
struct TopicArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: commands::topic::TopicCommand,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server. Settings come from ferry.toml, FERRY_* variables and flags (flags win).
    Serve(ferry_server::ServeArgs),
    /// Manage queues.
    Queue(QueueArgs),
    /// Manage streams (partitioned logs, also served over the Kafka protocol), produce and consume.
    Stream(StreamArgs),
    /// Manage topics (publish/subscribe with SNS filter policies), subscribe and publish.
    Topic(TopicArgs),
    /// Send a message, or every line of a JSON-lines file.
    Send {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        args: commands::messages::SendArgs,
    },
    /// Receive messages (and optionally delete them).
    Receive {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        args: commands::messages::ReceiveArgs,
    },
    /// Show messages without receiving them.
    Peek {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        args: commands::messages::PeekArgs,
    },
    /// Move the messages of a dead-letter queue back to their source (or --to a queue).
    Redrive {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        args: commands::redrive::RedriveArgs,
    },
    /// Measure throughput and latency of a running server.
    Bench {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        args: bench::BenchArgs,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Serve(args) = cli.command {
        return serve::run(args);
    }
    match run_client(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn run_client(command: Command) -> Result<(), CliError> {
    let connect = |c: &ClientArgs| ApiClient::new(&c.server);
    match command {
        Command::Queue(q) => commands::queue::run(&connect(&q.client)?, q.command, q.client.json),
        Command::Stream(s) => commands::stream::run(
            &connect(&s.client)?,
            &s.client.server,
            s.command,
            s.client.json,
        ),
        Command::Topic(t) => commands::topic::run(&connect(&t.client)?, t.command, t.client.json),
        Command::Send { client, args } => {
            commands::messages::send(&connect(&client)?, args, client.json)
        }
        Command::Receive { client, args } => {
            commands::messages::receive(&connect(&client)?, args, client.json)
        }
        Command::Peek { client, args } => {
            commands::messages::peek(&connect(&client)?, args, client.json)
        }
        Command::Redrive { client, args } => {
            commands::redrive::run(&connect(&client)?, args, client.json)
        }
        Command::Bench { client, args } => bench::run(&client.server, args, client.json),
        Command::Serve(_) => Ok(()),
    }
}
