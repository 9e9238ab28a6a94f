//! The `gatehouse` binary: see [`gatehouse::cli`].

/// mimalloc rather than the system allocator: a proxied request makes some ninety small
/// allocations (most of them in the HTTP engine), and glibc's malloc/free spent about a fifth
/// of the request's instructions on them (see [`gatehouse::allocator`]).
#[global_allocator]
static ALLOCATOR: gatehouse::allocator::Allocator = gatehouse::allocator::Allocator;

fn main() {
    std::process::exit(gatehouse::cli::main());
}
