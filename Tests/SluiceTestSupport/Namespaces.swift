#if canImport(Glibc)
import Glibc
#endif
import CSluiceSystem

/// Runs `body` with the calling thread inside network namespace `name` (/run/netns/NAME),
/// then puts the thread back where it was, even on error.
///
/// Namespaces belong to threads, and anything created inside (sockets, AF_XDP sockets, the
/// interface lookups of libxdp) stays in that namespace afterwards, usable from any thread.
/// `body` must not suspend: the thread has to be the same when it returns.
public func withNetworkNamespace<R: ~Copyable>(_ name: String, _ body: () throws -> R) throws -> R {
    let original = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)
    guard original >= 0 else { throw ChildProcessError(message: "open own netns: errno \(errno)") }
    defer { close(original) }
    let target = open("/run/netns/\(name)", O_RDONLY | O_CLOEXEC)
    guard target >= 0 else { throw ChildProcessError(message: "open /run/netns/\(name): errno \(errno)") }
    defer { close(target) }
    guard sluice_enter_network_namespace(target) == 0 else { throw ChildProcessError(message: "setns \(name): errno \(errno)") }
    defer { precondition(sluice_enter_network_namespace(original) == 0, "could not return to the original namespace") }
    return try body()
}
