#if canImport(Glibc)
import Glibc
#endif
import CSluiceSystem
import Synchronization

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

private let scratchNamespaceCounter = Atomic<Int>(0)

/// A network namespace of the test's own, loopback up, named `PREFIX<pid>n<count>` so parallel
/// runs never meet; deleted when released.
public final class ScratchNamespace: Sendable {
    /// Its name under /run/netns.
    public let name: String

    /// Creates it.
    public init(prefix: String) throws {
        name = "\(prefix)\(getpid() % 100_000)n\(scratchNamespaceCounter.add(1, ordering: .relaxed).newValue)"
        let add = try ChildProcess("/usr/sbin/ip", ["netns", "add", name])
        guard add.waitForExit() == 0 else { throw ChildProcessError(message: "ip netns add \(name): \(add.text)") }
        _ = try ChildProcess("/usr/sbin/ip", ["-n", name, "link", "set", "lo", "up"]).waitForExit()
    }

    deinit { _ = try? ChildProcess("/usr/sbin/ip", ["netns", "del", name]).waitForExit() }
}
