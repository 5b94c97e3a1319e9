//! The `dealias` command line: one module per subcommand, each with its clap `Args` and a
//! `run` function. Everything below this module is the library, which neither prints nor
//! parses arguments.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod analyze;
pub mod compare;
pub mod inspect;
pub mod measure;
pub mod process;

/// Remove aliasing from neural guitar amp and pedal models (GuitarML, Neural Amp Modeler).
#[derive(Debug, Parser)]
#[command(name = "dealias", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show a model file's format, architecture, settings and metadata.
    Inspect(inspect::Args),
    /// Run a model over a mono WAV file.
    Process(process::Args),
    /// Measure a model's aliasing on the paper's sine set (ESR-S, NMR-S, figures).
    Measure(measure::Args),
    /// Compare a fine-tuned student with its teacher (the paper's Table 1 metrics).
    Compare(compare::Args),
    /// Measure the aliasing of a recorded or rendered sine response (WAV).
    Analyze(analyze::Args),
}

/// Parses the command line and runs the subcommand; errors are printed to stderr.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect(a) => inspect::run(a),
        Command::Process(a) => process::run(a),
        Command::Measure(a) => measure::run(a),
        Command::Compare(a) => compare::run(a),
        Command::Analyze(a) => analyze::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Prints a notice (something the user should know that is not an error).
pub(crate) fn notice(msg: &str) {
    eprintln!("note: {msg}");
}
