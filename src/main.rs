//! The `payhook` binary: parse, load config, dispatch; nothing else.
#![forbid(unsafe_code)]

fn main() {
    std::process::exit(payhook::cli::main());
}
