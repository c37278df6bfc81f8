#if canImport(Glibc)
import Glibc
#endif

/// A Linux capability (capabilities(7)) a packet path needs: what an error names when the
/// kernel refuses, and what a service keeps when it drops root.
public struct Capability: RawRepresentable, Hashable, Sendable, CustomStringConvertible, Comparable {
    /// The capability's number (`CAP_NET_ADMIN` is 12).
    public var rawValue: Int
    /// Its name, e.g. `"CAP_NET_ADMIN"`.
    public var name: String { Self.names[rawValue] ?? "CAP_\(rawValue)" }

    /// The capability numbered `rawValue`.
    public init(rawValue: Int) { self.rawValue = rawValue }

    /// Changing the group IDs.
    public static let setgid = Capability(rawValue: 6)
    /// Changing the user IDs.
    public static let setuid = Capability(rawValue: 7)
    /// Binding ports below 1024.
    public static let netBindService = Capability(rawValue: 10)
    /// Interfaces, addresses, routes, XDP attachment, TUN/TAP devices.
    public static let netAdmin = Capability(rawValue: 12)
    /// Raw and packet sockets, and AF_XDP sockets.
    public static let netRaw = Capability(rawValue: 13)
    /// Locking memory past RLIMIT_MEMLOCK (a large UMEM).
    public static let ipcLock = Capability(rawValue: 14)
    /// Namespaces (`setns`), and reaching BPF objects by id.
    public static let sysAdmin = Capability(rawValue: 21)
    /// The verifier's trust for tracing-like programs (pointer comparisons): XDP programs need it with CAP_BPF.
    public static let perfmon = Capability(rawValue: 38)
    /// Loading BPF programs and creating maps.
    public static let bpf = Capability(rawValue: 39)

    static let names = [6: "CAP_SETGID", 7: "CAP_SETUID", 10: "CAP_NET_BIND_SERVICE", 12: "CAP_NET_ADMIN", 13: "CAP_NET_RAW", 14: "CAP_IPC_LOCK",
                        21: "CAP_SYS_ADMIN", 38: "CAP_PERFMON", 39: "CAP_BPF"]

    public var description: String { name }

    public static func < (a: Capability, b: Capability) -> Bool { a.rawValue < b.rawValue }

    /// The capabilities in a `/proc/…/status` field such as `CapEff` of the calling thread;
    /// `nil` when it cannot be read.
    public static func set(_ field: String = "CapEff") -> Set<Capability>? {
        guard let file = fopen("/proc/thread-self/status", "r") else { return nil }
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 256)
        while fgets(&line, Int32(line.count), file) != nil {
            let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            guard text.hasPrefix(field + ":") else { continue }
            guard let mask = UInt64(text.dropFirst(field.count + 1).filter { !$0.isWhitespace }, radix: 16) else { return nil }
            return Set((0..<64).filter { mask & (1 << UInt64($0)) != 0 }.map { Capability(rawValue: $0) })
        }
        return nil
    }

    /// "needs CAP_NET_ADMIN and CAP_BPF; this process lacks CAP_BPF": what a refused call needs,
    /// and which of it the calling thread lacks (or that it lacks none, so something else refused).
    public static func requirement(_ needed: [Capability], for what: String) -> String {
        let text = "\(what) needs " + list(needed)
        guard let held = set() else { return text }
        let missing = needed.filter { !held.contains($0) }
        if missing.isEmpty {
            return text + "; this process holds them, so something else refuses (a seccomp filter, an LSM, or a user namespace)"
        }
        return text + "; this process lacks " + list(missing)
    }

    /// "CAP_A", "CAP_A and CAP_B", "CAP_A, CAP_B and CAP_C".
    public static func list(_ capabilities: [Capability]) -> String {
        let names = capabilities.map(\.name)
        guard names.count > 1 else { return names.first ?? "" }
        return names.dropLast().joined(separator: ", ") + " and " + names.last!
    }
}
