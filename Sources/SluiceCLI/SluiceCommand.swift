#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import CSluiceSystem
import Sluice

@main
struct SluiceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sluice",
        abstract: "User-space packet processing on Linux: UDP, DNS and TLS services over AF_XDP, io_uring, kernel sockets and TUN/TAP devices.",
        version: SluiceVersion.current,
        subcommands: [UDPEcho.self, UDPClient.self, TCPEcho.self, DNSCommand.self, Bench.self, NetnsCommand.self, XDPCommand.self, TUNCommand.self, TLSCommand.self, Top.self]
    )

    static func main() {
        // Output to a reader that went away (`| head -1`) must not kill a server before it
        // detaches its XDP program: the write fails instead, and the server runs on until told.
        signal(SIGPIPE, SIG_IGN)
        var command: any ParsableCommand
        do {
            command = try parseAsRoot()
        } catch {
            exit(withError: error)
        }
        do {
            try command.run()
            if outputLost() { Glibc.exit(1) }
        } catch let error as ValidationError {
            // Found while running (a zone file's line, say): the message alone; the usage
            // ArgumentParser would add here is the root command's, which helps no one.
            writeToStandardError("Error: \(error.message)\n")
            _ = outputLost()
            Glibc.exit(ExitCode.validationFailure.rawValue)
        } catch let error as SystemCallError {
            // Not caught closer (entering --netns, say): the command's own line, as every other failure.
            let name = commandPath(of: type(of: command)).map { "sluice \($0)" } ?? "sluice"
            writeToStandardError("\(name): \(error.terminalDescription)\n")
            _ = outputLost()
            Glibc.exit(1)
        } catch {
            _ = outputLost()
            exit(withError: error)
        }
    }

    /// "dns serve" for the `serve` under `dns`: the words that run `command`.
    static func commandPath(of command: any ParsableCommand.Type,
                            under parents: [any ParsableCommand.Type] = configuration.subcommands) -> String? {
        for parent in parents {
            let name = parent.configuration.commandName ?? "\(parent)".lowercased()
            if parent == command { return name }
            if let rest = commandPath(of: command, under: parent.configuration.subcommands) { return "\(name) \(rest)" }
        }
        return nil
    }

    /// A summary lost to a full disk or a reader gone must not pass for success: standard output
    /// is flushed, and a write that failed is said on standard error (a run that succeeded then
    /// exits with status 1, as coreutils do).
    static func outputLost() -> Bool {
        guard sluice_flush_stdout() != 0 else { return false }
        let code = errno
        let reason = code == 0 ? "a write failed: a full disk, or a reader that went away" : "\(String(cString: strerror(code))) (errno \(code))"
        writeToStandardError("sluice: writing standard output failed (\(reason)); what it said is lost\n")
        return true
    }
}

extension IPEndpoint: ExpressibleByArgument {
    public init?(argument: String) { self.init(argument) }
}

extension Backend: ExpressibleByArgument {}
extension XSKBindMode: ExpressibleByArgument {}

/// What `udp-echo` answers with.
enum Responder: String, ExpressibleByArgument, CaseIterable {
    /// Every datagram back, byte for byte.
    case echo
    /// sockperf's server protocol, for `sockperf ping-pong` and `throughput`.
    case sockperf
    /// Nothing: count and drop (receive-only measurements).
    case discard
}

/// Parses lists such as "1", "0,1", "0-3" or "53,9000-9003" of `what` (CPUs, queues, ports),
/// each value in `range`, at most `limit` values in all.
func parseNumberList<T: FixedWidthInteger>(_ text: String, of what: String, in range: ClosedRange<T> = T.min...T.max,
                                           limit: Int = 1024, allowsEmpty: Bool = false) throws -> [T] {
    guard allowsEmpty || !text.isEmpty else { throw ValidationError("give at least one \(what): an empty \(what) list means nothing") }
    guard let values = NumberList.parse(text, in: range, limit: limit) else {
        throw ValidationError("bad \(what) list '\(text)': use forms like \(range.lowerBound) or \(range.lowerBound),\(range.lowerBound + 1) "
                              + "or \(range.lowerBound)-\(range.lowerBound + 3), values \(range.lowerBound) to "
                              + "\(range.upperBound), at most \(limit) of them")
    }
    return values
}

/// Checks a number of seconds from the command line: finite, within `range`.
func checkSeconds(_ value: Double, _ flag: String, in range: ClosedRange<Double>, orNever: Bool = false) throws {
    guard value.isFinite, range.contains(value) || orNever && value == 0 else {
        throw ValidationError("\(flag) must be a number of seconds from \(range.lowerBound) to \(range.upperBound)"
                              + (orNever ? ", or 0 for never" : ""))
    }
}

/// Refuses IPv6 addresses a socket cannot take as written here: a link-local one needs an
/// interface (a scope), which this address syntax does not carry, so the kernel says only "Invalid
/// argument"; an IPv4-mapped one is an IPv4 address, refused by the IPv6-only socket it would get.
func checkUsableAddress(_ endpoint: IPEndpoint, _ flag: String) throws {
    guard case .v6(let address) = endpoint.address else { return }
    if address.isLinkLocal {
        throw ValidationError("\(flag): \(address) is link-local and needs an interface, which Sluice cannot take; use a global address or [::]")
    }
    if let v4 = address.mappedIPv4 {
        throw ValidationError("\(flag): \(address) is IPv4-mapped; give the IPv4 address \(v4) itself")
    }
}

/// ``checkUsableAddress(_:_:)``, and a TCP listener's rule: one host's address (a group or a
/// broadcast address takes no connection, though the kernel lets a socket bind it).
func checkStreamAddress(_ endpoint: IPEndpoint, _ flag: String) throws {
    try checkUsableAddress(endpoint, flag)
    if endpoint.address.isMulticastOrBroadcast {
        throw ValidationError("\(flag): \(endpoint.address) is a group or broadcast address, which no TCP connection reaches; give one of this host's addresses, or 0.0.0.0 or [::]")
    }
}

extension Duration {
    /// A number of seconds the command line checked with ``checkSeconds(_:_:in:)``.
    init(checkedSeconds seconds: Double) { self = .nanoseconds(Int64(seconds * 1e9)) }
}

/// The CPUs this machine has, for checking `--cpus`.
let onlineCPUs = Int(sysconf(Int32(_SC_NPROCESSORS_CONF)))

struct UDPEcho: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "udp-echo", abstract: "Serve UDP echo: every datagram goes back to its sender, byte for byte.")

    @Option(help: "What to answer: echo (every datagram back), sockperf (sockperf's server protocol) or discard (drop all).")
    var responder: Responder = .echo

    @OptionGroup var options: ServeOptions

    func run() throws {
        let what = "\(responder.rawValue) responder"
        switch responder {
        case .echo: try options.serve("udp-echo", what: what) { _ in UDPEchoService() }
        case .sockperf: try options.serve("udp-echo", what: what) { _ in SockperfService() }
        case .discard: try options.serve("udp-echo", what: what) { _ in UDPDiscardService() }
        }
    }
}

/// How a UDP service is served: the backend and its options, workers, duration, progress. Shared
/// by `udp-echo` and `dns serve`.
struct ServeOptions: ParsableArguments {
    @Option(help: "Backend: \(UDPBackendRegistry.all.map { "\($0.name) (\($0.summary))" }.joined(separator: "; ")).")
    var backend: Backend = .socket

    @Option(help: "Address and port to listen on: 198.18.0.1:9000, [2001:2::1]:9000, [::]:9000 (dual-stack).")
    var listen: IPEndpoint

    @Option(parsing: .unconditional, help: "Worker threads (each with its own SO_REUSEPORT socket).")
    var workers: Int = 1

    @Option(help: "CPUs to pin workers to, e.g. 1 or 0-1.")
    var cpus: String?

    @Flag(help: "Send equal-size replies to one peer as one UDP GSO send.")
    var gso = false

    @Flag(help: "Receive coalesced datagrams (UDP GRO) and split them.")
    var gro = false

    @Option(parsing: .unconditional, help: "socket and uring backends: SO_RCVBUF and SO_SNDBUF in bytes (0: the kernel's default, net.core.rmem_default).")
    var socketBuffer: Int = 4 << 20

    @Flag(help: "uring backend: submission-queue polling by a kernel thread (IORING_SETUP_SQPOLL).")
    var sqpoll = false

    @Flag(help: "uring backend: run completions only when the worker waits (SINGLE_ISSUER|DEFER_TASKRUN).")
    var deferTaskrun = false

    @Option(parsing: .unconditional, help: "Stop by itself after this many seconds (default: run until SIGINT/SIGTERM).")
    var duration: Double?

    @Option(help: "xdp backend: the interface to serve.")
    var dev: String?

    @Option(help: "xdp backend: receive queues, one worker each, e.g. 0 or 0-1. (default: 0)")
    var queues: String?

    @Option(help: "xdp backend: native or generic XDP (native falls back to generic when refused). (default: native)")
    var mode: XDPAttachMode?

    @Option(help: "xdp backend: automatic, zero-copy or copy. (default: automatic)")
    var bind: XSKBindMode?

    @Flag(help: "xdp backend: replace a foreign XDP program on the interface.")
    var force = false

    @Flag(help: "xdp backend: take IPv4 header and UDP checksums as valid without summing them (a NIC that verifies them in hardware).")
    var trustChecksums = false

    @Option(help: "tun and tap backends: the device's name, e.g. sl0 (made for the run, gone after it).")
    var name: String?

    @Option(help: "tun and tap backends: the kernel's address on the device with its prefix, e.g. 198.18.1.1/24 or 2001:2:1::1/64 (repeatable); --listen is an address behind it.")
    var address: [String] = []

    @Flag(help: "tun and tap backends: no virtio-net header (no checksum or segmentation offloads): every packet whole.")
    var noOffloads = false

    @Option(help: "Enter this network namespace (/run/netns/NAME) first, with setns().")
    var netns: String?

    @Option(parsing: .unconditional, help: "Print a progress line every this many seconds (0: none).")
    var statsInterval: Double = 1

    @OptionGroup var report: ReportOptions

    @OptionGroup var privileges: PrivilegeOptions

    func validate() throws {
        guard UDPBackendRegistry.backend(named: backend.rawValue) != nil else {
            throw ValidationError("no backend '\(backend)'; pick one of \(UDPBackendRegistry.names.joined(separator: ", "))")
        }
        guard workers >= 1 && workers <= 256 else { throw ValidationError("--workers must be 1 to 256") }
        try checkUsableAddress(listen, "--listen")
        if let duration { try checkSeconds(duration, "--duration", in: 0.001...31_536_000) }
        try checkSeconds(statsInterval, "--stats-interval", in: 0...86_400)
        if let cpus { let _: [Int] = try parseNumberList(cpus, of: "CPU", in: 0...max(onlineCPUs - 1, 0)) }
        if let queues { let _: [UInt32] = try parseNumberList(queues, of: "queue", in: 0...255) }
        if backend == .xdp, dev == nil { throw ValidationError("--backend xdp needs --dev IF") }
        if backend != .xdp, dev != nil || queues != nil || mode != nil || bind != nil || force {
            throw ValidationError("--dev, --queues, --mode, --bind and --force are for --backend xdp")
        }
        if backend == .xdp || backend.isDevice, listen.port == 0 {
            throw ValidationError("--backend \(backend) needs a --listen port other than 0 (only a kernel socket picks one)")
        }
        if backend != .xdp, trustChecksums { throw ValidationError("--trust-checksums is for --backend xdp (the kernel verifies the other backends')") }
        if backend.isDevice {
            guard let name, isDeviceName(name) else { throw ValidationError("--backend \(backend) needs --name NAME (\(deviceNameRule))") }
            let prefixes = try parsePrefixes(address)
            // Packets to the kernel's own address stay in the kernel: none would reach the device.
            if prefixes.contains(where: { $0.address == listen.address }) {
                throw ValidationError("--listen \(listen.address) is the kernel's address on the device; listen on another address behind it, e.g. the next one in its prefix")
            }
            // A service is one host behind the device: no reply leaves from a group or broadcast
            // address (RFC 1122 3.2.1.3), and the kernel keeps its subnets' broadcasts.
            let subnetBroadcasts = prefixes.compactMap { prefix -> IPAddress? in
                guard case .v4(let own) = prefix.address, prefix.prefixLength < 31 else { return nil }
                return .v4(IPv4Address(rawValue: own.rawValue | UInt32.max >> UInt32(prefix.prefixLength)))
            }
            if listen.address.isMulticastOrBroadcast || subnetBroadcasts.contains(listen.address) {
                throw ValidationError("--listen \(listen.address) is a group or broadcast address: listen on a host's address behind the device")
            }
        } else if name != nil || !address.isEmpty || noOffloads {
            throw ValidationError("--name, --address and --no-offloads are for --backend tun and tap")
        }
        if backend != .uring, sqpoll || deferTaskrun { throw ValidationError("--sqpoll and --defer-taskrun are for --backend uring") }
        if sqpoll && deferTaskrun { throw ValidationError("pick one of --sqpoll and --defer-taskrun") }
        guard (0...(1 << 30)).contains(socketBuffer) else { throw ValidationError("--socket-buffer must be 0 to 1073741824 bytes") }
        if backend == .uring, gro { throw ValidationError("--gro is for --backend socket (the uring backend receives datagrams one by one)") }
    }

    /// The server's configuration, after entering `--netns`.
    func configuration() throws -> UDPServerConfiguration {
        // Progress lines must show as they happen even when stdout is a pipe.
        sluice_line_buffer_stdout()
        if let netns { try NetworkNamespace.enter(netns) }
        var configuration = UDPServerConfiguration(listen: listen)
        configuration.logger = .terminal
        configuration.backend = backend
        configuration.workers = workers
        configuration.cpus = try cpus.map { try parseNumberList($0, of: "CPU", in: 0...max(onlineCPUs - 1, 0)) } ?? []
        configuration.segmentationOffload = gso
        configuration.receiveOffload = gro
        configuration.socketBufferBytes = socketBuffer == 0 ? nil : socketBuffer
        if sqpoll { configuration.uringMode = .submissionPolling(idle: .milliseconds(100), cpu: nil) }
        if deferTaskrun { configuration.uringMode = .deferTaskRun }
        if let dev {
            var xdp = XDPBackendConfiguration(interface: dev)
            if let queues { xdp.queues = try parseNumberList(queues, of: "queue", in: 0...255) }
            if let mode { xdp.attachMode = mode }
            if let bind { xdp.bindMode = bind }
            xdp.force = force
            xdp.verifiesChecksums = !trustChecksums
            configuration.xdp = xdp
        }
        if backend.isDevice, let name {
            var tun = TUNBackendConfiguration(name: name)
            tun.addresses = try parsePrefixes(address)
            tun.queues = workers
            if noOffloads { tun.offloads = nil }
            configuration.tun = tun
        }
        return configuration
    }

    /// Serves what `makeService` makes under `command`'s name, `what` saying what it answers
    /// with; prints the start line, progress and the summary. With `--metrics-listen`, serves
    /// the server's metrics and those of `metrics` meanwhile; with `--json`, the summary takes
    /// theirs too, after `stopping` (which ends what publishes them).
    func serve<Service: UDPService>(_ command: String, what: String, configuration given: UDPServerConfiguration? = nil,
                                    metrics: [any MetricsSource] = [], started: () -> Void = {}, stopping: () -> Void = {},
                                    hangup: (() -> String)? = nil, _ makeService: @escaping @Sendable (Int) -> Service) throws {
        let configuration = try given ?? configuration()
        // A TUN or TAP device that was there before is left as found at the end, which takes CAP_NET_ADMIN.
        let foundDevice = configuration.tun.map { if_nametoindex($0.name) != 0 } ?? false
        let say = report.say
        let export = try MetricsExport.start(report.metricsListen, service: command, sources: metrics, namespace: netns, say: say)
        defer { export?.close() }
        let server = try reportingRuntimeErrors(command) { try UDPServer(configuration: configuration, makeService: makeService) }
        export?.reporter.add(server)
        // The XDP backend's kernel-socket worker (what the program passes) is a worker too.
        let workerCount = "\(server.states.count) worker(s)" + (backend == .xdp ? " (one on the kernel socket)" : "")
        say("sluice \(command): \(backend.rawValue) backend on \(server.boundEndpoint), \(workerCount), "
            + what + (gso ? ", GSO" : "") + (gro ? ", GRO" : ""))
        started()
        do {
            try privileges.dropAfterSetup(command, keeping: backend == .xdp || foundDevice ? [.netAdmin] : [], say: say)
        } catch {
            server.stop()
            throw error
        }
        defer {
            stopping()
            if report.json {
                var snapshot = MetricsSnapshot()
                server.collectMetrics(into: &snapshot)
                for source in metrics + [ProcessMetrics(service: command)] { source.collectMetrics(into: &snapshot) }
                let failure = server.states.first { $0.currentPhase == .failed }?.failure
                try? printJSON(ServerSummary(
                    command: command, endpoint: server.boundEndpoint, backend: backend.rawValue, mode: server.backend.modeDescription,
                    seconds: server.seconds, metrics: snapshot, framesBalanced: server.workerReports.allSatisfy { $0.frames.isBalanced },
                    failure: failure.map { "\($0)" }))
            } else {
                print(server.summary())
            }
        }
        try reportingRuntimeErrors(command) {
            try server.runBlocking(
                for: duration.map { Duration(checkedSeconds: $0) },
                progressInterval: statsInterval > 0 ? Duration(checkedSeconds: statsInterval) : nil,
                progress: say, hangup: hangup)
        }
    }
}

struct UDPClient: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "udp-client",
        abstract: "Drive a UDP echo server with numbered datagrams for a bounded time and check every reply byte.")

    @Option(help: "The echo server, e.g. 198.18.0.1:9000.")
    var target: IPEndpoint

    @Option(parsing: .unconditional, help: "Payload bytes per datagram (0 to 65507).")
    var size: Int = 64

    @Option(parsing: .unconditional, help: "Seconds to run.")
    var duration: Double = 3

    @Option(parsing: .unconditional, help: "Stop after this many datagrams.")
    var count: UInt64?

    @Option(parsing: .unconditional, help: "Most datagrams in flight without a reply (1 to 65536).")
    var window: Int = 256

    @Flag(help: "Open loop: send flat out with sendmmsg and expect no replies (for discard servers).")
    var flood = false

    @Option(help: "Open loop through an AF_XDP socket on this interface instead of a kernel socket (needs --source).")
    var xdpDev: String?

    @Option(help: "With --xdp-dev: the source address and port to put in the datagrams.")
    var source: IPEndpoint?

    @Option(help: "With --xdp-dev: the next hop's MAC (default: the ARP table entry of the target).")
    var destinationMac: String?

    @Option(help: "Enter this network namespace (/run/netns/NAME) first, with setns().")
    var netns: String?

    @Flag(help: "Print the report as one JSON object (schema: Benchmarks/sluice-udp-client.schema.json).")
    var json = false

    func validate() throws {
        guard (0...65507).contains(size) else { throw ValidationError("--size must be 0 to 65507") }
        try checkSeconds(duration, "--duration", in: 0.001...3600)
        guard (1...65536).contains(window) else { throw ValidationError("--window must be 1 to 65536 datagrams") }
        guard target.port != 0 else { throw ValidationError("--target needs a port other than 0") }
        try checkUsableAddress(target, "--target")
        if target.address == target.address.unspecified || target.address.isMulticastOrBroadcast {
            throw ValidationError("--target must be one host's unicast address, not \(target.address)")
        }
        if xdpDev != nil, source == nil { throw ValidationError("--xdp-dev needs --source ADDR:PORT") }
        if xdpDev == nil, source != nil || destinationMac != nil {
            throw ValidationError("--source and --destination-mac are for --xdp-dev (a kernel socket picks its own)")
        }
        if let source {
            try checkUsableAddress(source, "--source")
            guard source.port != 0 else { throw ValidationError("--source needs a port other than 0") }
            if source.address == source.address.unspecified || source.address.isMulticastOrBroadcast {
                throw ValidationError("--source must be a unicast address of this host, not \(source.address)")
            }
            guard source.address.family == target.address.family else {
                throw ValidationError("--source and --target must both be IPv4 or both IPv6")
            }
        }
        if xdpDev != nil, destinationMac == nil, target.address.family == AF_INET6 {
            throw ValidationError("--xdp-dev with an IPv6 --target needs --destination-mac (the next hop's MAC is looked up in the ARP table, IPv4 only)")
        }
        if xdpDev != nil {
            // One 2048-byte UMEM frame holds the whole Ethernet frame.
            let largest = XDPTrafficGenerator.largestPayload(ipv6: target.address.family == AF_INET6)
            guard size <= largest else { throw ValidationError("--size with --xdp-dev must be 0 to \(largest) (one 2048-byte frame)") }
        }
        if let count, count == 0 { throw ValidationError("--count must be at least 1") }
        if let destinationMac, MACAddress(destinationMac) == nil { throw ValidationError("bad --destination-mac") }
    }

    func run() throws {
        sluice_line_buffer_stdout()
        if let netns { try NetworkNamespace.enter(netns) }
        // SIGINT, SIGTERM, SIGQUIT end the run early, with its report (they killed it without one).
        let stop = stopCondition(duration: nil) { writeToStandardError($0 + "\n") }
        if let xdpDev, let source {
            var configuration = XDPTrafficGenerator.Configuration(interface: xdpDev, source: source, destination: target)
            configuration.destinationMAC = destinationMac.flatMap { MACAddress($0) }
            configuration.payloadSize = size
            configuration.duration = Duration(checkedSeconds: duration)
            configuration.count = count
            let report: UDPLoadReport
            do { report = try XDPTrafficGenerator.run(configuration, shouldStop: stop) } catch let error as SystemCallError {
                // The servers' advice names --backend, which this command has not.
                let instead = "or leave out --xdp-dev: the kernel socket needs none of them"
                writeToStandardError("sluice udp-client: \(error.terminalDescription(withoutBackend: instead))\n")
                throw ExitCode(1)
            }
            if json { try printJSON(ClientReport(target: target, path: "xdp", report: report)) } else {
                print("sluice udp-client → \(target) via AF_XDP on \(xdpDev): \(report)")
            }
            return
        }
        let report = try UDPLoadClient.run(
            target: target, payloadSize: size, duration: Duration(checkedSeconds: duration), count: count,
            window: flood ? nil : window, shouldStop: stop)
        if json { try printJSON(ClientReport(target: target, path: "socket", report: report)) } else {
            print("sluice udp-client → \(target): \(report)")
        }
        if report.corrupt > 0 { throw ExitCode(2) }
        // Nothing came back: as ping, a non-zero status for scripts, and why when the kernel says.
        if !flood, report.received == 0 {
            if portUnreachable(target) {
                writeToStandardError("sluice udp-client: nothing listens on \(target): its host answers ICMP port unreachable\n")
            }
            throw ExitCode(1)
        }
    }
}

/// `udp-client --json`: the report with its rates, snake_case keys.
struct ClientReport: Encodable {
    var target: String
    /// "socket" (a kernel UDP socket) or "xdp" (an AF_XDP socket, open loop).
    var path: String
    var openLoop: Bool
    var payloadSize: Int
    var seconds: Double
    var sent: UInt64
    var received: UInt64
    var corrupt: UInt64
    var duplicates: UInt64
    var strays: UInt64
    var late: UInt64
    var sendRate: Double
    var replyRate: Double
    var lossRatio: Double
    var senderCpuNanoseconds: UInt64?

    init(target: IPEndpoint, path: String, report: UDPLoadReport) {
        self.target = "\(target)"
        self.path = path
        openLoop = report.openLoop
        payloadSize = report.payloadSize
        seconds = report.seconds
        sent = report.sent
        received = report.received
        corrupt = report.corrupt
        duplicates = report.duplicates
        strays = report.strays
        late = report.late
        sendRate = report.sendRate
        replyRate = report.replyRate
        lossRatio = report.openLoop ? 0 : report.lossRatio
        senderCpuNanoseconds = report.senderCPUNanoseconds
    }
}

/// An address with its prefix length, e.g. `198.18.1.1/24` or `2001:2:1::1/64`.
func parsePrefix(_ text: String) throws -> (address: IPAddress, prefixLength: Int) {
    let parts = text.split(separator: "/", omittingEmptySubsequences: false)
    guard parts.count == 2, let address = IPAddress(parts[0]), let length = Int(parts[1]),
          (0...(address.family == AF_INET ? 32 : 128)).contains(length) else {
        throw ValidationError("'\(text)' is not an address with a prefix length, like 198.18.1.1/24 or 2001:2:1::1/64")
    }
    // What the kernel would refuse on a device ("Cannot assign requested address"), said before it is made.
    if address == address.unspecified || address.isMulticastOrBroadcast || address == .v6(.loopback) {
        throw ValidationError("--address \(address) is no address of a device: give a unicast one, like 198.18.1.1/24 or 2001:2:1::1/64")
    }
    if case .v6(let v6) = address, let v4 = v6.mappedIPv4 {
        throw ValidationError("--address \(address) is IPv4-mapped; give the IPv4 address \(v4) itself")
    }
    return (address, length)
}

/// Whether `name` names a TUN or TAP device as given: one the kernel takes, and no `%` (a `%d`
/// would have the kernel number the device, under a name the command never sees).
func isDeviceName(_ name: String) -> Bool { TUNDevice.isValidName(name) && !name.contains("%") }

/// ``isDeviceName(_:)`` in words, for its error.
let deviceNameRule = "1 to 15 bytes, none of them '/', ':', '%' or white space, and not '.' or '..'"

/// Each `--address`, an address given twice refused: with the same prefix `ip address add` would
/// refuse it ("File exists"), with another it would be a second subnet for one address.
func parsePrefixes(_ texts: [String]) throws -> [(address: IPAddress, prefixLength: Int)] {
    var prefixes: [(address: IPAddress, prefixLength: Int)] = []
    for text in texts {
        let prefix = try parsePrefix(text)
        guard !prefixes.contains(where: { $0.address == prefix.address }) else {
            throw ValidationError("--address \(prefix.address) is given twice")
        }
        prefixes.append(prefix)
    }
    return prefixes
}

/// What a serving command asks between polls: true once `duration` seconds have passed or SIGINT,
/// SIGTERM, SIGHUP or SIGQUIT came (said in one line, through `say`: stderr under `--json`). With
/// `hangup`, SIGHUP only says that line and serving goes on (a reload hook sending it out of
/// habit must not take a server down, with an exit status that tells systemd all is well).
func stopCondition(duration: Double?, hangup: String? = nil, say: @escaping (String) -> Void = { print($0) }) -> () -> Bool {
    let signals = SignalWaiter(SignalWaiter.stopping)
    let clock = ContinuousClock()
    let deadline = duration.map { clock.now + Duration(checkedSeconds: $0) }
    return {
        if let deadline, clock.now >= deadline { return true }
        if let signal = signals.wait(for: .zero) {
            if signal == SIGHUP, let hangup {
                say(hangup)
                return false
            }
            say("sluice: \(SignalWaiter.name(signal)) received, stopping")
            return true
        }
        return false
    }
}
