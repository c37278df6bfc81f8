#if canImport(Glibc)
import Glibc
#endif
import CSluiceSystem
import SluicePackets
import Synchronization

/// Two network namespaces joined by a veth pair, for tests, demos and benchmarks: names carry a per-run suffix.
///
/// ```
///  sluice-s<suffix>                          sluice-c<suffix>
///  ss<suffix> 198.18.0.1/24 2001:2::1/64 <==> sc<suffix> 198.18.0.2/24 2001:2::2/64
/// ```
///
/// The server end is where a service under test runs (and where XDP programs attach); the client
/// end is the load generator's. Addresses come from the benchmarking ranges 198.18.0.0/15 and
/// 2001:2::/48 and exist only inside the two namespaces. Needs CAP_SYS_ADMIN and CAP_NET_ADMIN, `ip`
/// (iproute2) and `ethtool`.
public final class TestTopology: @unchecked Sendable {
    /// How to build the topology.
    public struct Configuration: Sendable {
        /// Appended to every name so parallel runs do not collide: letters, digits, `-` and `_`,
        /// at most 13 characters (interface names are limited to 15). Defaults to this process's id.
        public var suffix: String
        /// TX and RX queues on each veth end (`numtxqueues`/`numrxqueues`), e.g. one per worker.
        public var queues: Int
        /// Turns transmit checksum offload off on the client (sender) end (`ethtool -K sc<suffix> tx off`):
        /// otherwise veth hands the server frames with partial checksums, which AF_XDP and TUN
        /// readers see as bad UDP checksums.
        public var disableSenderChecksumOffload: Bool
        /// Installs permanent neighbour entries (ARP and NDP) for the peer on both ends, so
        /// resolution keeps working when an XDP program takes ARP or NDP frames away.
        public var staticNeighbours: Bool
        /// Two existing interfaces joined by a link (two NIC ports cabled to each other, or a veth
        /// pair) to use instead of a new veth pair: `server` moves into the server's namespace
        /// and `client` into the client's, and both move back to the initial namespace (down,
        /// without addresses) when the topology is destroyed. `queues` and the checksum setting
        /// do not apply to them.
        public var devices: (server: String, client: String)?

        /// A configuration; every argument has a default.
        public init(suffix: String = "\(getpid())", queues: Int = 1, disableSenderChecksumOffload: Bool = true,
                    staticNeighbours: Bool = true, devices: (server: String, client: String)? = nil) {
            self.suffix = suffix
            self.queues = queues
            self.disableSenderChecksumOffload = disableSenderChecksumOffload
            self.staticNeighbours = staticNeighbours
            self.devices = devices
        }
    }

    /// The configuration it was built with.
    public let configuration: Configuration
    /// The server's namespace, `sluice-s<suffix>`.
    public let serverNamespace: String
    /// The client's namespace, `sluice-c<suffix>`.
    public let clientNamespace: String
    /// The server's interface (in `serverNamespace`): the veth end `ss<suffix>`, or the device given.
    public let serverInterface: String
    /// The client's interface (in `clientNamespace`): the veth end `sc<suffix>`, or the device given.
    public let clientInterface: String
    /// The server's IPv4 address, 198.18.0.1/24.
    public let serverIPv4 = IPv4Address(198, 18, 0, 1)
    /// The client's IPv4 address, 198.18.0.2/24.
    public let clientIPv4 = IPv4Address(198, 18, 0, 2)
    /// The server's IPv6 address, 2001:2::1/64 (no duplicate address detection: usable at once).
    public let serverIPv6 = IPv6Address(groups: [0x2001, 2, 0, 0, 0, 0, 0, 1])
    /// The client's IPv6 address, 2001:2::2/64.
    public let clientIPv6 = IPv6Address(groups: [0x2001, 2, 0, 0, 0, 0, 0, 2])
    /// The prefix length of the IPv4 subnet.
    public static let ipv4PrefixLength = 24
    /// The prefix length of the IPv6 subnet.
    public static let ipv6PrefixLength = 64
    /// The server end's MAC address.
    public let serverMAC: MACAddress
    /// The client end's MAC address.
    public let clientMAC: MACAddress

    private struct State {
        var destroyed = false
        var kept = false
    }
    private let state = Mutex(State())

    /// Creates it (removing leftovers with the same names first).
    ///
    /// Uses `ip` (iproute2) and `ethtool`; an error says which command failed, with its output,
    /// and which capabilities are needed. A failure part way removes what was made.
    public init(_ configuration: Configuration = .init()) throws(TopologyError) {
        try Self.validate(suffix: configuration.suffix)
        guard (1...1024).contains(configuration.queues) else {
            throw TopologyError("queues must be 1 to 1024, not \(configuration.queues)")
        }
        let names = Self.names(suffix: configuration.suffix)
        self.configuration = configuration
        serverNamespace = names.serverNamespace
        clientNamespace = names.clientNamespace
        serverInterface = configuration.devices?.server ?? names.serverInterface
        clientInterface = configuration.devices?.client ?? names.clientInterface
        if let devices = configuration.devices {
            for device in [devices.server, devices.client] where access("/sys/class/net/\(device)", F_OK) != 0 {
                throw TopologyError("no interface \(device) in this namespace: check the name with `ip link`")
            }
            guard devices.server != devices.client else { throw TopologyError("the two devices must differ") }
        }

        Self.destroy(suffix: configuration.suffix)
        do {
            let q = String(configuration.queues)
            let (s, c, sif, cif) = (serverNamespace, clientNamespace, serverInterface, clientInterface)
            try Self.ip(["netns", "add", s])
            try Self.ip(["netns", "add", c])
            if configuration.devices != nil {
                try Self.ip(["link", "set", "dev", sif, "netns", s])
                try Self.ip(["link", "set", "dev", cif, "netns", c])
            } else {
                try Self.ip(["link", "add", sif, "numtxqueues", q, "numrxqueues", q, "netns", s, "type", "veth",
                             "peer", "name", cif, "numtxqueues", q, "numrxqueues", q, "netns", c])
            }
            let v4 = "/\(Self.ipv4PrefixLength)", v6 = "/\(Self.ipv6PrefixLength)"
            try Self.ip(["-n", s, "addr", "add", "\(serverIPv4)\(v4)", "dev", sif])
            try Self.ip(["-n", c, "addr", "add", "\(clientIPv4)\(v4)", "dev", cif])
            try Self.ip(["-n", s, "addr", "add", "\(serverIPv6)\(v6)", "dev", sif, "nodad"])
            try Self.ip(["-n", c, "addr", "add", "\(clientIPv6)\(v6)", "dev", cif, "nodad"])
            for (namespace, interface) in [(s, sif), (c, cif)] {
                try Self.ip(["-n", namespace, "link", "set", "lo", "up"])
                try Self.ip(["-n", namespace, "link", "set", interface, "up"])
            }
            serverMAC = try Self.mac(namespace: s, interface: sif)
            clientMAC = try Self.mac(namespace: c, interface: cif)
            if configuration.staticNeighbours {
                for (namespace, interface, peer, mac) in [(s, sif, "\(clientIPv4)", clientMAC), (c, cif, "\(serverIPv4)", serverMAC),
                                                          (s, sif, "\(clientIPv6)", clientMAC), (c, cif, "\(serverIPv6)", serverMAC)] {
                    try Self.ip(["-n", namespace, "neigh", "replace", peer, "lladdr", "\(mac)", "dev", interface,
                                 "nud", "permanent"])
                }
            }
            if configuration.disableSenderChecksumOffload && configuration.devices == nil {
                // `ip netns exec` runs it with execvp: pass the full path, /usr/sbin may not be on PATH.
                let ethtool = findExecutable("ethtool") ?? "ethtool"
                try Self.ip(["netns", "exec", c, ethtool, "-K", cif, "tx", "off"], tool: "ethtool")
            }
        } catch {
            Self.destroy(suffix: configuration.suffix)
            throw error
        }
    }

    /// Makes the server a router for `prefix` (an IPv4 prefix such as 198.18.200.0/24 that lies
    /// behind a device on the server, a TUN device say): forwarding on in the server's namespace,
    /// and a route through the server in the client's. Idempotent.
    public func routeThroughServer(_ prefix: String) throws(TopologyError) {
        try Self.ip(["netns", "exec", serverNamespace, findExecutable("sysctl") ?? "sysctl", "-qw", "net.ipv4.ip_forward=1"],
                    tool: "sysctl")
        try Self.ip(["-n", clientNamespace, "route", "replace", prefix, "via", "\(serverIPv4)"])
    }

    deinit {
        if !state.withLock({ $0.kept }) { destroy() }
    }

    /// Removes both namespaces (which removes the veth pair). Idempotent; also called by deinit.
    ///
    /// Sockets still open in a namespace keep it (and its interfaces) alive, unnamed, until they close.
    public func destroy() {
        let first = state.withLock { s in
            defer { s.destroyed = true }
            return !s.destroyed
        }
        if first { Self.destroy(suffix: configuration.suffix) }
    }

    /// Leaves the topology in place (no destroy on deinit), for `sluice netns up`.
    public func keep() {
        state.withLock { $0.kept = true }
    }

    /// Whether a topology (either of its namespaces) with this suffix exists.
    public static func exists(suffix: String) -> Bool {
        guard (try? validate(suffix: suffix)) != nil else { return false }
        let n = names(suffix: suffix)
        return access("/run/netns/\(n.serverNamespace)", F_OK) == 0 || access("/run/netns/\(n.clientNamespace)", F_OK) == 0
    }

    /// Removes the topology with this suffix, whatever is left of it; does nothing if there is
    /// none. Interfaces it borrowed (``Configuration/devices``) go back to the initial namespace.
    public static func destroy(suffix: String) {
        guard (try? validate(suffix: suffix)) != nil else { return }
        let n = names(suffix: suffix)
        for namespace in [n.serverNamespace, n.clientNamespace] where access("/run/netns/\(namespace)", F_OK) == 0 {
            // Deleting the namespace would destroy a borrowed veth pair; move every interface
            // that is not ours back first (a NIC would come back by itself, a veth would not).
            let links = runCommand(["ip", "-n", namespace, "-o", "link", "show"])
            for line in links.output.split(separator: "\n") {
                // "2: name@peer: <FLAGS> ...": the name is the second field, before any '@'.
                let fields = line.split(separator: " ")
                guard fields.count > 1 else { continue }
                let name = String(fields[1].dropLast().split(separator: "@").first ?? "")
                guard !name.isEmpty, name != "lo", name != n.serverInterface, name != n.clientInterface else { continue }
                // An interrupted run may have left an XDP program on it: it must not go back with one.
                for mode in ["xdpgeneric", "xdpdrv"] {
                    _ = runCommand(["ip", "-n", namespace, "link", "set", "dev", name, mode, "off"])
                }
                _ = runCommand(["ip", "-n", namespace, "link", "set", "dev", name, "down"])
                _ = runCommand(["ip", "-n", namespace, "link", "set", "dev", name, "netns", "1"])
            }
            _ = runCommand(["ip", "netns", "del", namespace])
        }
        // A creation that failed before moving the veth ends into their namespaces leaves them here.
        // Only veth ends are removed: an interface of the same name that is not one is not ours.
        for interface in [n.serverInterface, n.clientInterface] where access("/sys/class/net/\(interface)", F_OK) == 0 {
            let details = runCommand(["ip", "-d", "link", "show", "dev", interface])
            if details.status == 0, details.output.contains("veth") {
                _ = runCommand(["ip", "link", "del", interface])
            }
        }
    }

    /// Runs `body` on a fresh thread that has entered the network namespace `name` (from
    /// `/run/netns`) with `setns(CLONE_NEWNET)`, and returns its result.
    ///
    /// Namespaces belong to threads, so the caller's thread is never moved. Sockets created
    /// inside stay in that namespace and can be used from any thread afterwards.
    public static func run<T: Sendable>(inNamespace name: String, _ body: @Sendable () throws -> T) throws -> T {
        guard !name.isEmpty, !name.contains("/") else { throw TopologyError("bad namespace name '\(name)'") }
        let path = "/run/netns/\(name)"
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw TopologyError("cannot open \(path): \(String(cString: strerror(errno))) (is there a namespace '\(name)'? `ip netns list`)")
        }
        defer { close(descriptor) }
        let box = ResultBox<T>()
        try withoutActuallyEscaping(body) { body in
            let unchecked = UncheckedSendable(body)
            let thread: WorkerThread
            do {
                thread = try WorkerThread(name: "netns-\(name)") {
                    if sluice_enter_network_namespace(descriptor) != 0 {
                        let reason = String(cString: strerror(errno))
                        box.result = .failure(TopologyError(
                            "setns(\(path), CLONE_NEWNET) failed: \(reason); "
                                + Capability.requirement([.sysAdmin], for: "entering a namespace")))
                        return
                    }
                    box.result = Result { try unchecked.value() }
                }
            } catch {
                throw TopologyError("\(error)")
            }
            // Joined before `body` leaves this scope, so it never really escapes.
            thread.join()
        }
        return try box.result!.get()
    }

    // MARK: - Internals

    private final class ResultBox<T>: @unchecked Sendable {
        var result: Result<T, any Error>?
    }

    private struct UncheckedSendable<V>: @unchecked Sendable {
        let value: V
        init(_ value: V) { self.value = value }
    }

    static func names(suffix: String)
        -> (serverNamespace: String, clientNamespace: String, serverInterface: String, clientInterface: String) {
        ("sluice-s\(suffix)", "sluice-c\(suffix)", "ss\(suffix)", "sc\(suffix)")
    }

    /// Throws unless `suffix` makes valid namespace and interface names: 1 to 13 letters, digits, `-` or `_`.
    public static func validate(suffix: String) throws(TopologyError) {
        guard !suffix.isEmpty, suffix.utf8.count <= 13,
              suffix.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7A) || $0 == 0x2D || $0 == 0x5F })
        else {
            throw TopologyError("bad suffix '\(suffix)': use 1 to 13 letters, digits, '-' or '_' (interface names are at most 15 characters)")
        }
    }

    /// Runs `ip` with `arguments`; throws with the command and its output when it fails.
    private static func ip(_ arguments: [String], tool: String = "ip") throws(TopologyError) {
        _ = try ipOutput(arguments, tool: tool)
    }

    private static func ipOutput(_ arguments: [String], tool: String = "ip") throws(TopologyError) -> String {
        let argv = ["ip"] + arguments
        let (status, output) = runCommand(argv)
        guard status != 0 else { return output }
        let command = argv.joined(separator: " ")
        let trimmed = output.split(separator: "\n").joined(separator: "; ")
        var message = "`\(command)` failed (exit status \(status))" + (trimmed.isEmpty ? "" : ": \(trimmed)")
        if status == 127 || output.contains("exec of") {
            message += "; is \(tool) installed? (Debian: apt-get install \(tool == "ip" ? "iproute2" : tool))"
        }
        message += "; " + Capability.requirement([.sysAdmin, .netAdmin], for: "building the test topology")
        throw TopologyError(message, command: argv, status: status, output: output)
    }

    /// The MAC address of `interface` in `namespace`, from `ip -o link show`.
    private static func mac(namespace: String, interface: String) throws(TopologyError) -> MACAddress {
        let output = try ipOutput(["-n", namespace, "-o", "link", "show", "dev", interface])
        let words = output.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\\" })
        guard let index = words.firstIndex(of: "link/ether"), index + 1 < words.count,
              let mac = MACAddress(words[index + 1]) else {
            throw TopologyError("no MAC address for \(interface) in \(namespace) in: \(output)")
        }
        return mac
    }
}

/// Building, entering or removing a `TestTopology` failed.
public struct TopologyError: Error, CustomStringConvertible, Sendable {
    /// What went wrong and what to do about it.
    public var description: String
    /// The command that failed, if one did.
    public var command: [String]?
    /// Its exit status (127: could not be started).
    public var status: Int32?
    /// What it printed (standard output and error).
    public var output: String?

    /// Creates an error with its message and, optionally, the failed command.
    public init(_ description: String, command: [String]? = nil, status: Int32? = nil, output: String? = nil) {
        self.description = description
        self.command = command
        self.status = status
        self.output = output
    }
}

/// Runs `argv` (the first element found on PATH or in the sbin/bin directories) and waits for it.
///
/// Returns the exit status (128 + signal for a signal, 127 if it could not be started) and what
/// it printed on standard output and error together. Spawned with `posix_spawn`, an empty signal
/// mask and default signal handlers: callers may block signals (workers, test runners), and a
/// child must not inherit that.
func runCommand(_ argv: [String]) -> (status: Int32, output: String) {
    precondition(!argv.isEmpty)
    guard let executable = findExecutable(argv[0]) else {
        return (127, "\(argv[0]): not found on PATH or in /usr/sbin, /sbin, /usr/bin, /bin")
    }
    // A socket pair made close-on-exec atomically, so children other threads spawn meanwhile
    // do not inherit the write end (and keep it open past our child's exit).
    var pipeEnds: [Int32] = [-1, -1]
    guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pipeEnds) == 0 else {
        return (127, "socketpair: \(String(cString: strerror(errno)))")
    }
    let (readEnd, writeEnd) = (pipeEnds[0], pipeEnds[1])

    let spawned = spawnProcess(executable, Array(argv.dropFirst()), output: writeEnd)
    close(writeEnd)
    let child: pid_t
    switch spawned {
    case .success(let pid): child = pid
    case .failure(let error):
        close(readEnd)
        return (127, error.description)
    }

    // Read to end of file first (the child may print more than a pipe holds), then reap.
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let count = buffer.withUnsafeMutableBytes { read(readEnd, $0.baseAddress, $0.count) }
        if count > 0 {
            bytes += buffer[0..<count]
        } else if count < 0 && errno == EINTR {
            continue
        } else {
            break
        }
    }
    close(readEnd)
    var status: Int32 = 0
    while waitpid(child, &status, 0) < 0 {
        guard errno == EINTR else { return (127, "waitpid: \(String(cString: strerror(errno)))") }
    }
    let exit = status & 0x7F == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
    return (exit, String(decoding: bytes, as: UTF8.self))
}

/// The path of `name`: itself if it has a slash, else the first executable of that name on PATH
/// or in the system directories (`ip` and `ethtool` live in /usr/sbin, often not on a user's PATH).
public func findExecutable(_ name: String) -> String? {
    if name.contains("/") { return access(name, X_OK) == 0 ? name : nil }
    let path = getenv("PATH").map { String(cString: $0) } ?? ""
    let directories = path.split(separator: ":").map(String.init) + ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
    for directory in directories where !directory.isEmpty {
        let candidate = directory + "/" + name
        if access(candidate, X_OK) == 0 { return candidate }
    }
    return nil
}
