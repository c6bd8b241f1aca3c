//! The `uipath-gateway` binary. All the work is in the library.

fn main() -> std::process::ExitCode {
    uipath_gateway::cli::main()
}
