//! The `dealias` command-line tool (see [`dealias::cli`]).

fn main() -> std::process::ExitCode {
    dealias::cli::main()
}
