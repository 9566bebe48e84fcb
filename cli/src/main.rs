//! `drpc`: call, push, listen and benchmark drpc endpoints from a shell.
//!
//! ```text
//! drpc call tcp://127.0.0.1:9090 /math/add '{"a": 1, "b": 2}'
//! drpc push tcp://127.0.0.1:9090 /chat/say '"hello"' --meta user=ada
//! drpc stream tcp://127.0.0.1:9090 /ticks 10
//! seq 1 100 | drpc stream tcp://127.0.0.1:9090 /sum --kind client
//! drpc listen tcp://127.0.0.1:9090 --reply '{"ok": true}'
//! drpc bench tcp://127.0.0.1:9090 /math/add '{"a": 1, "b": 2}' -c 64 -z 10s
//! ```
//!
//! Install it with `cargo install --path cli`.

mod args;
mod bench;
mod body;
mod call;
mod connect;
mod ctl;
mod listen;
mod report;
mod stream;

use args::{Cli, Command};
use clap::Parser;
use std::process::ExitCode;

/// Writes `text` to standard output; a reader that went away (`| head`)
/// is not an error.
pub fn out(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Call(a) => call::call(a).await,
            Command::Push(a) => call::push(a).await,
            Command::Stream(a) => stream::stream(a).await,
            Command::Listen(a) => listen::listen(a).await,
            Command::Bench(a) => bench::bench(a).await,
            Command::Health(a) => call::health(a).await,
            Command::Ctl(a) => ctl::ctl(a).await,
        }
    });
    // A stream's reader of standard input may still be blocked in a read
    // nobody waits for: the runtime does not wait for it either.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
