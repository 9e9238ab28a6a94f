//! The `gatehouse` binary: see [`gatehouse::cli`].

/// mimalloc rather than the system allocator: a proxied request makes some ninety small
/// allocations (most of them in the HTTP engine), and glibc's malloc/free spent about a fifth
/// of the request's instructions on them (see [`gatehouse::allocator`]).
#[global_allocator]
static ALLOCATOR: gatehouse::allocator::Allocator = gatehouse::allocator::Allocator;

/// Runs before `main`, so before the first arena is reserved: mimalloc commits arena memory as
/// it is used (see [`gatehouse::allocator::commit_arenas_on_use`]).
#[cfg(target_os = "linux")]
#[used]
#[link_section = ".init_array"]
static COMMIT_ARENAS_ON_USE: extern "C" fn() = {
    extern "C" fn commit_arenas_on_use() {
        gatehouse::allocator::commit_arenas_on_use();
    }
    commit_arenas_on_use
};

fn main() {
    std::process::exit(gatehouse::cli::main());
}
