//! The `gatehouse` binary: see [`gatehouse::cli`].

fn main() {
    std::process::exit(gatehouse::cli::main());
}
