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

use clap::{Parser, Subcommand};

use client::{ApiClient, CliError};

/// Ferry: queues with SQS semantics, durable by default, in one binary.
#[derive(Debug, Parser)]
#[command(name = "ferry", version, propagate_version = true)]
struct Cli {
    /// Server URL for client commands.
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
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server. Settings come from ferry.toml, FERRY_* variables and flags (flags win).
    Serve(ferry_server::ServeArgs),
    /// Manage queues.
    #[command(subcommand)]
    Queue(commands::queue::QueueCommand),
    /// Send a message, or every line of a JSON-lines file.
    Send(commands::messages::SendArgs),
    /// Receive messages (and optionally delete them).
    Receive(commands::messages::ReceiveArgs),
    /// Show messages without receiving them.
    Peek(commands::messages::PeekArgs),
    /// Move the messages of a dead-letter queue back to their source (or --to a queue).
    Redrive(commands::redrive::RedriveArgs),
    /// Measure throughput and latency of a running server.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Serve(args) = cli.command {
        return serve::run(args);
    }
    match run_client(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn run_client(cli: Cli) -> Result<(), CliError> {
    if let Command::Bench(args) = cli.command {
        return bench::run(&cli.server, args, cli.json);
    }
    let client = ApiClient::new(&cli.server)?;
    match cli.command {
        Command::Queue(command) => commands::queue::run(&client, command, cli.json),
        Command::Send(args) => commands::messages::send(&client, args, cli.json),
        Command::Receive(args) => commands::messages::receive(&client, args, cli.json),
        Command::Peek(args) => commands::messages::peek(&client, args, cli.json),
        Command::Redrive(args) => commands::redrive::run(&client, args, cli.json),
        Command::Serve(_) | Command::Bench(_) => Ok(()),
    }
}
