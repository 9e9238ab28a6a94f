//! The `gatehouse` binary: see [`gatehouse::cli`].

/// mimalloc rather than the system allocator: a proxied request makes some ninety small
/// allocations (most of them in the HTTP engine), and glibc's malloc/free spent about a fifth
/// of the request's instructions on them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(gatehouse::cli::main());
}
