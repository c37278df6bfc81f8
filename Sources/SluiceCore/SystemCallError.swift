#if canImport(Glibc)
import Glibc
#endif
import SystemPackage

/// A failed system call, or a failed call into a library over one (libxdp, libbpf, liburing):
/// what was being done, the errno, and what the system needs for it to work.
///
/// Every Sluice module throws this one type, so errors pass up through ports, backends and the
/// runtime unchanged. Printed, it reads
/// "bind(198.18.0.1:53) failed: Address already in use (errno 98); another socket holds this address and port".
///
/// It lives in Core because ``Port``'s contract throws it; `SluiceSystem` adds the helper that
/// makes system calls and turns their failures into this error.
public struct SystemCallError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The part of the system a call belongs to: it picks the advice, and lets a tool add its own
    /// (a command-line tool names its flags; the library never does).
    public enum Subsystem: String, Sendable, Equatable, CaseIterable {
        /// Kernel sockets (UDP, TCP setup, socket options).
        case socket
        /// A port's packet I/O.
        case port
        /// XDP programs and BPF maps (libxdp, libbpf, bpf(2), netlink attach).
        case xdp
        /// AF_XDP sockets and their UMEM.
        case xsk
        /// io_uring rings.
        case uring
        /// TCP connections driven by a ring.
        case tcp
        /// Threads and CPU affinity.
        case thread
        /// Network namespaces.
        case namespace
        /// Memory: mmap, locked memory.
        case memory
        /// TUN and TAP devices.
        case tun
        /// rtnetlink: links, addresses, routes.
        case netlink
        /// Users, groups and capabilities of the process.
        case credentials
    }

    /// Where the call belongs.
    public var subsystem: Subsystem
    /// What was being done, e.g. `"bind(198.18.0.1:53)"` or `"attaching XDP to veth1"`.
    public var operation: String
    /// The errno, or `nil` when the failure came from no system call.
    public var errno: Errno?
    /// What the system needs for the call to work; empty when there is nothing useful to say.
    public var hint: String

    /// An error with its hint given.
    public init(_ subsystem: Subsystem, operation: String, errno: Errno?, hint: String) {
        self.subsystem = subsystem
        self.operation = operation
        self.errno = errno
        self.hint = hint
    }

    /// An error from a raw errno value (a negative one, as liburing and libbpf return, is
    /// negated; 0 means none). Without a `hint`, the advice for that errno in `subsystem` is used.
    public init(_ subsystem: Subsystem, operation: String, errno code: Int32, hint: String? = nil) {
        let positive = code < 0 ? -code : code
        let errno = positive == 0 ? nil : Errno(rawValue: positive)
        self.init(subsystem, operation: operation, errno: errno,
                  hint: hint ?? errno.map { Self.advice(for: $0, in: subsystem) } ?? "")
    }

    /// An errno value as a person reads it: "Network is unreachable (errno 101)".
    public static func describe(errno code: Int32) -> String { "\(String(cString: strerror(code))) (errno \(code))" }

    /// The raw errno value, 0 when there is none.
    public var code: Int32 { errno?.rawValue ?? 0 }

    public var description: String {
        var text = "\(operation) failed"
        if let errno { text += ": \(String(cString: strerror(errno.rawValue))) (errno \(errno.rawValue))" }
        if !hint.isEmpty { text += "; \(hint)" }
        return text
    }

    /// What the system needs when `errno` comes from a call in `subsystem`: capabilities,
    /// limits, kernel features. It names no tool's flags.
    public static func advice(for errno: Errno, in subsystem: Subsystem) -> String {
        switch (subsystem, errno) {
        case (.xdp, .notPermitted), (.xdp, .permissionDenied):
            return Capability.requirement([.netAdmin, .bpf, .perfmon], for: "loading and attaching an XDP program")
        case (.xsk, .notPermitted), (.xsk, .permissionDenied):
            return Capability.requirement([.netRaw], for: "an AF_XDP socket")
        case (.xdp, .noBufferSpace):
            return "BPF maps could not be allocated: the locked-memory limit (RLIMIT_MEMLOCK) is too low; raise it or hold CAP_IPC_LOCK"
        case (.xsk, .noBufferSpace), (.xsk, .noMemory), (.memory, .noBufferSpace):
            return "the UMEM could not be locked in memory (RLIMIT_MEMLOCK): raise the limit, hold CAP_IPC_LOCK, or use a smaller UMEM"
        case (.xdp, .noMemory), (.memory, .noMemory):
            return "the kernel is out of memory for this mapping, or RLIMIT_MEMLOCK is too low"
        case (.xdp, .operationNotSupportedByDevice), (.xdp, .noSuchAddressOrDevice), (.xsk, .operationNotSupportedByDevice), (.xsk, .noSuchAddressOrDevice):
            return "the interface does not exist in this network namespace (see `ip link`)"
        case (.xdp, .resourceBusy), (.xdp, .fileExists):
            return "another XDP program is attached to the interface"
        case (.xdp, .notSupported):
            return "the driver does not support this XDP mode; generic (skb) mode works on every interface"
        case (.xdp, .noSuchFileOrDirectory):
            return "the program, map or map entry was not found"
        case (.xdp, .invalidArgument):
            return "the kernel rejected the request: check the interface's MTU and the attach mode (generic works everywhere)"
        case (.xsk, .invalidArgument):
            return "the queue may be out of range for this interface (`ethtool -l`), or the frame size is not 2048 or 4096"
        case (.xsk, .addressFamilyNotSupported):
            return "this kernel has no AF_XDP (CONFIG_XDP_SOCKETS)"
        case (.xsk, .resourceBusy):
            return "another AF_XDP socket is bound to this interface and queue"
        case (.xsk, .notSupported):
            return "the driver does not support this bind mode (zero-copy needs driver support); copy mode works everywhere"
        case (.uring, .notPermitted), (.uring, .noFunction):
            return "io_uring is disabled here (kernel.io_uring_disabled or a seccomp sandbox)"
        case (.uring, .noMemory):
            return "not enough locked memory for the ring (RLIMIT_MEMLOCK); use fewer entries or raise the limit"
        case (.uring, .invalidArgument):
            return "this kernel does not accept the ring's setup flags or arguments; a plain ring needs the fewest features"
        case (.uring, .fileExists):
            return "a SINGLE_ISSUER ring was used from a thread other than the one that made it"
        case (.uring, .resourceBusy):
            return "the completion queue is full; drain completions more often or make the ring larger"
        case (.socket, .addressInUse), (.port, .addressInUse), (.tcp, .addressInUse):
            return "another socket holds this address and port"
        case (.socket, .permissionDenied), (.socket, .notPermitted), (.port, .permissionDenied), (.port, .notPermitted):
            return Capability.requirement([.netBindService], for: "a port below 1024")
        case (.socket, .addressNotAvailable), (.port, .addressNotAvailable), (.tcp, .addressNotAvailable):
            return "the address is not configured on any interface here: listen on 0.0.0.0 or [::], or add the address"
        case (.socket, .addressFamilyNotSupported), (.port, .addressFamilyNotSupported):
            return "this kernel has no support for the address family (IPv6 disabled?)"
        case (.tcp, .connectionRefused):
            return "nothing listens there"
        case (_, .tooManyOpenFiles), (_, .tooManyOpenFilesInSystem):
            return "too many open files: raise RLIMIT_NOFILE (ulimit -n)"
        case (.namespace, .noSuchFileOrDirectory):
            return "no such network namespace (see `ip netns list`)"
        case (.tun, .notPermitted), (.netlink, .notPermitted):
            return Capability.requirement([.netAdmin], for: subsystem == .tun ? "a TUN or TAP device" : "changing links, addresses and routes")
        case (.credentials, .notPermitted):
            return Capability.requirement([.setgid, .setuid], for: "changing to another user")
        case (.namespace, .notPermitted):
            return Capability.requirement([.sysAdmin], for: "entering a network namespace")
        case (.thread, .invalidArgument):
            return "that CPU is not in this process's affinity set"
        default:
            return ""
        }
    }
}
