#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Sluice
import SluiceDNS
import Synchronization

/// A flag one thread sets and another polls.
final class StopFlag: Sendable {
    private let value = Atomic<Bool>(false)
    var isSet: Bool { value.load(ordering: .acquiring) }
    func set() { value.store(true, ordering: .releasing) }
}

struct DNSCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dns", abstract: "Serve DNS zones authoritatively on any backend, and resolve names.",
        subcommands: [DNSServe.self, DNSQuery.self])
}

struct DNSServe: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Answer DNS queries for zones read from RFC 1035 zone files, on any backend.",
        discussion: """
            Each --zone is a zone file; its origin is the file's $ORIGIN, or the name given as \
            ORIGIN=FILE. Queries for names in no zone are REFUSED. A zone file that does not load is \
            said at start and its names answered SERVFAIL, as Knot does, while the other zones are \
            served (when none loads, dns serve stops). SIGHUP reads the zone files again, each on its \
            own: one that no longer loads keeps what it served before; SIGINT, SIGTERM and SIGQUIT stop it.
            """)

    @Option(help: "A zone file, or ORIGIN=FILE (repeatable).")
    var zone: [String] = []

    @Option(parsing: .unconditional, help: "Response rate limiting: answers per second per client prefix (/24, /56) and answer; off when not given.")
    var rrlLimit: Int?

    @Option(parsing: .unconditional, help: "With --rrl-limit: every how many limited answers one goes out truncated (0: drop them all). (default: 1)")
    var rrlSlip: Int?

    @Option(help: "The name server identifier sent to queries with an NSID option (RFC 5001); '' for none. (default: the host's name, as Knot sends)")
    var nsid: String?

    @Option(help: "The answer to CHAOS TXT queries for id.server and hostname.bind; '' refuses them. (default: the host's name, as Knot answers)")
    var identity: String?

    @Option(name: .customLong("server-version"), help: "The answer to CHAOS TXT queries for version.server and version.bind; '' refuses them. (default: Sluice and its version)")
    var serverVersion: String?

    @OptionGroup var options: ServeOptions

    func validate() throws {
        guard !zone.isEmpty else { throw ValidationError("dns serve needs at least one --zone FILE") }
        if let rrlLimit { guard (1...1_000_000).contains(rrlLimit) else { throw ValidationError("--rrl-limit must be 1 to 1000000") } }
        if let rrlSlip {
            guard rrlLimit != nil else { throw ValidationError("--rrl-slip is for --rrl-limit") }
            guard (0...100).contains(rrlSlip) else { throw ValidationError("--rrl-slip must be 0 to 100") }
        }
        for (flag, value) in [("--nsid", nsid), ("--identity", identity), ("--server-version", serverVersion)] {
            guard (value?.utf8.count ?? 0) <= 512 else { throw ValidationError("\(flag) takes at most 512 bytes") }
        }
    }

    /// The zone file of every `--zone`, each origin once (as Knot refuses a domain configured
    /// twice: which file answered would be chance).
    func zoneFiles() throws -> [ZoneFile] {
        let files = try zone.map(ZoneFile.init)
        var origins: Set<String> = []
        for file in files where !origins.insert(file.origin.description.lowercased()).inserted {
            throw ValidationError("two --zone files for \(file.origin): each origin once")
        }
        return files
    }

    /// The authority over the zones that loaded; the origins of those that did not answer SERVFAIL.
    static func authority(_ files: [ZoneFile], _ zones: [DNSZone?]) -> DNSAuthority {
        DNSAuthority(zones: zones.compactMap { $0 }, unloaded: zip(files, zones).filter { $0.1 == nil }.map(\.0.origin))
    }

    static func serial(_ zone: DNSZone) -> String {
        guard case let .soa(_, _, serial, _, _, _, _) = zone.soa.data else { return "\(zone.origin)" }
        return "\(zone.origin) serial \(serial)"
    }

    func run() throws {
        let files = try zoneFiles()
        // Each zone on its own, as Knot loads them: one that does not load is answered SERVFAIL
        // while the others are served; with none loaded there is nothing to serve.
        var zones: [DNSZone?] = []
        var failures: [(origin: DNSName, error: String)] = []
        for file in files {
            do { zones.append(try Self.load(file)) } catch {
                zones.append(nil)
                failures.append((file.origin, "\(error)"))
            }
        }
        guard zones.contains(where: { $0 != nil }) else { throw ValidationError(failures.map(\.error).joined(separator: "\n")) }
        for failure in failures {
            writeToStandardError("sluice dns serve: \(failure.error); \(failure.origin) answered SERVFAIL until a reload loads it\n")
        }
        let authority = Self.authority(files, zones)
        let source = DNSAuthoritySource(authority)
        let names = zones.compactMap { $0?.origin.description }.joined(separator: ", ")
            + (authority.unloaded.isEmpty ? "" : " (\(authority.unloaded.map(\.description).joined(separator: ", ")) not loaded)")
        let configuration = try options.configuration()
        let host = Self.hostName()
        let identity = DNSServerIdentity(nsid: Array((nsid ?? host).utf8), name: Array((self.identity ?? host).utf8),
                                         version: Array((serverVersion ?? "Sluice \(SluiceVersion.current)").utf8))
        // TCP on the same address, for answers truncated over UDP (RFC 7766), on a thread of its own.
        let stop = StopFlag()
        let report = Mutex<Result<DNSTCPReport, SystemCallError>?>(nil)
        let listen = configuration.listen
        let tcpMetrics = PublishedMetrics()
        let listening = StopFlag()
        let tcp = try WorkerThread(name: "sluice-dns-tcp") {
            let result = Result { () throws(SystemCallError) in
                try DNSTCPServer.run(listen: listen, authority: authority, reloadingFrom: source, identity: identity, metrics: tcpMetrics,
                                     ready: { _ in listening.set() },
                                     shouldStop: { stop.isSet })
            }
            report.withLock { $0 = result }
        }
        // Bound before the UDP side starts (and before --user drops what binding port 53 takes).
        for _ in 0..<10_000 where !listening.isSet && report.withLock({ $0 }) == nil { usleep(1000) }
        // Said as soon as the UDP side is up (a TUN or TAP service's address is not the kernel's to
        // bind, say): a client that gets a truncated answer will find no TCP. A UDP side that
        // fails to start says only why.
        let failedAtStart = if case .failure(let error)? = report.withLock({ $0 }) { error } else { SystemCallError?.none }
        let sayNoTCP = {
            guard let failedAtStart else { return }
            // Behind a device the address is the service's own, not the kernel's: no kernel TCP there.
            let why = configuration.backend.isDevice && failedAtStart.code == EADDRNOTAVAIL
                ? "\(listen.address) is behind the \(configuration.backend.rawValue) device, where the kernel's TCP cannot listen"
                : "\(failedAtStart)"
            writeToStandardError("sluice dns serve: no DNS over TCP on \(listen): \(why); answers truncated over UDP cannot be had over TCP\n")
        }
        let json = options.report.json
        let stopTCP = {
            stop.set()
            tcp.join()
            switch report.withLock({ $0 }) {
            case .success(let tcp)?: if !json { print(tcp.summaryLine) }
            case .failure(let error)? where failedAtStart == nil:
                writeToStandardError("sluice dns serve: no DNS over TCP on \(listen): \(error)\n")
            default: break
            }
        }
        let slip = rrlSlip ?? 1
        let limiter = rrlLimit.map { DNSRateLimiter(responsesPerSecond: $0, slip: slip) }
        let what = "authoritative for \(names), " + (failedAtStart == nil ? "TCP too" : "UDP only")
            + (rrlLimit.map { ", rate limit \($0)/s slip \(slip)" } ?? "")
        do {
            // SIGHUP reloads each zone, as Knot's and NSD's do; a zone file that no longer loads
            // keeps what its zone served, and says which file and line.
            let hangup = { () -> String in
                var reloaded: [String] = []
                var kept: [String] = []
                for (index, file) in files.enumerated() {
                    do {
                        let zone = try Self.load(file)
                        zones[index] = zone
                        reloaded.append(Self.serial(zone))
                    } catch {
                        let still = zones[index].map { "\(Self.serial($0)) still served" } ?? "\(file.origin) still SERVFAIL"
                        kept.append("\(error) (\(still))")
                    }
                }
                source.publish(Self.authority(files, zones))
                return "sluice dns serve: SIGHUP: " + (reloaded.isEmpty ? "no zone reloaded" : "zones reloaded (\(reloaded.joined(separator: ", ")))")
                    + kept.map { "; not reloaded: \($0)" }.joined()
            }
            try options.serve("dns serve", what: what, configuration: configuration, metrics: [tcpMetrics], started: sayNoTCP,
                              stopping: stopTCP, hangup: hangup) { _ in
                DNSService(source: source, rateLimiter: limiter, identity: identity)
            }
        } catch {
            // The server never started: the TCP side still has to stop, with no summary of its own.
            if !stop.isSet {
                stop.set()
                tcp.join()
            }
            throw error
        }
    }

    /// The host's name as Knot finds it for its NSID: the canonical name of `gethostname()`, or
    /// that name alone when it does not resolve.
    static func hostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "" }
        let host = String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_DGRAM.rawValue)
        hints.ai_flags = AI_CANONNAME
        var info: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, "domain", &hints, &info) == 0, let first = info else { return host }
        defer { freeaddrinfo(first) }
        return first.pointee.ai_canonname.map { String(cString: $0) } ?? host
    }

    /// Why `path` cannot be read as a file: the errno of opening it, or what it is instead.
    static func unreadable(_ path: String) -> String { RegularFile.problem(path) ?? "cannot read it" }

    /// One `--zone`: the file, and the origin its zone keeps from start to stop.
    struct ZoneFile {
        let path: String
        let origin: DNSName

        /// `FILE` or `ORIGIN=FILE`: the origin is the given one, or the file's first `$ORIGIN`
        /// (so the file must be readable at start).
        init(_ argument: String) throws {
            let parts = argument.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            path = parts.count == 2 ? parts[1] : parts[0]
            guard !path.isEmpty else { throw ValidationError("give a zone file: --zone FILE or --zone ORIGIN=FILE") }
            if parts.count == 2 {
                guard !parts[0].isEmpty, let given = DNSName(parts[0].hasSuffix(".") ? parts[0] : parts[0] + ".") else {
                    throw ValidationError("bad zone origin \(parts[0])")
                }
                origin = given
                return
            }
            guard let text = TextFile.read(path) else { throw ValidationError("cannot read zone file '\(path)': \(unreadable(path))") }
            guard let line = DNSServe.firstLine(of: text, where: { $0.uppercased().hasPrefix("$ORIGIN") }),
                  let name = line.split(whereSeparator: \.isWhitespace).dropFirst().first, let origin = DNSName(name) else {
                throw ValidationError("\(path) has no $ORIGIN: give it as ORIGIN=\(path)")
            }
            self.origin = origin
        }
    }

    /// The first line of `text` that `matches`, looked at one by one: splitting a zone of
    /// 200,000 records whole to find its `$ORIGIN` took a twentieth of its load.
    static func firstLine(of text: String, where matches: (Substring) -> Bool) -> Substring? {
        var rest = Substring(text)
        while !rest.isEmpty {
            let end = rest.firstIndex(where: \.isNewline) ?? rest.endIndex
            if matches(rest[..<end]) { return rest[..<end] }
            rest = end == rest.endIndex ? "" : rest[rest.index(after: end)...]
        }
        return nil
    }

    /// Reads and parses the zone of `file`, saying what was left out of it.
    static func load(_ file: ZoneFile) throws -> DNSZone {
        let (path, origin) = (file.path, file.origin)
        guard let text = TextFile.read(path) else { throw ValidationError("cannot read zone file '\(path)': \(unreadable(path))") }
        let zone: DNSZone
        do {
            let directory = path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
            zone = try DNSZone(origin: origin, text: text, directory: path.hasPrefix("/") && directory.isEmpty ? "/" : directory.isEmpty ? "." : directory,
                               include: TextFile.read)
        } catch {
            throw ValidationError("\(path): \(error)")
        }
        if let first = zone.namesOutside.first {
            writeToStandardError("sluice dns serve: \(path): records of \(zone.namesOutside.count) name(s) outside \(origin) left out (\(first) first)\n")
        }
        if let first = zone.mixedTTLOwners.first {
            writeToStandardError("sluice dns serve: \(path): records of one set with different TTLs at \(zone.mixedTTLOwners.count) name(s) "
                                 + "(\(first) first); each set takes its last record's, as Knot does\n")
        }
        if let first = zone.misplacedSOAOwners.first {
            writeToStandardError("sluice dns serve: \(path): SOA records below the apex left out (\(first) first), as Knot leaves them\n")
        }
        return zone
    }
}

struct DNSQuery: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "query",
        abstract: "Resolve a name as a stub resolver does and print the answer like dig +short (or in full).",
        discussion: "Uses /etc/hosts and /etc/resolv.conf (with LOCALDOMAIN and RES_OPTIONS from the environment), or only @SERVER when given; retries over TCP when an answer is truncated.")

    @Argument(help: "The name to resolve and its record type (A, AAAA, MX, TXT, …, or TYPEnnn; the class IN may come too), and @SERVER or @SERVER:PORT (an address, fe80::53%eth0 with its zone, [IPv6]:PORT, or a host name) anywhere among them, as dig takes them.")
    var arguments: [String]

    @Flag(help: "Print the whole answer: response code, answer and authority sections, where it came from.")
    var full = false

    @Option(name: .customShort("p"), parsing: .unconditional, help: ArgumentHelp("The servers' port, as dig's -p (53, or the port of @SERVER:PORT, when not given).", valueName: "port"))
    var port: UInt16?

    @Option(help: "Enter this network namespace (/run/netns/NAME) first, with setns().")
    var netns: String?

    func validate() throws {
        _ = try parsed()
        if port == 0 { throw ValidationError("-p 0 is not a port: give 1-65535") }
    }

    /// The name, the type and the server among the arguments, as dig reads them: the first
    /// @SERVER counts, the class IN may come along, and the type may come before the name.
    func parsed() throws -> (name: String, type: DNSRecordType, server: (IPEndpoint, zone: String?)?) {
        var server: (IPEndpoint, zone: String?)?
        var words: [String] = []
        for argument in arguments {
            guard argument.hasPrefix("@") else {
                words.append(argument)
                continue
            }
            let given = Self.server(String(argument.dropFirst()))
            guard let given, given.0.address != .v4(.any), given.0.address != .v6(.any), given.0.port != 0 else {
                // A well-formed host name that did not resolve is said as that, as dig says it.
                let host = String(argument.dropFirst().split(separator: ":", maxSplits: 1).first ?? "")
                if !host.isEmpty, IPAddress(host) == nil, TLSConnect.isHostName(host) {
                    throw ValidationError("bad server \(argument): the name \(host) has no address (the system's resolver found none)")
                }
                throw ValidationError("bad server \(argument): give @ADDRESS, @ADDRESS:PORT ([IPv6]:PORT, fe80::1%eth0) or a host name")
            }
            // As dig: a zone is for a link-local address (glibc's getaddrinfo takes no other).
            if argument.contains("%"), given.zone == nil, IPAddress(argument.dropFirst().split(separator: "%")[0].trimmingPrefix("[")) != nil {
                throw ValidationError("bad server \(argument): a zone (%interface) is only for a link-local address, as dig takes it")
            }
            if server == nil { server = given }
        }
        // ANY is the type here, as dig and kdig take it (the class ANY is asked by no stub).
        if words.count > 1, let index = words.firstIndex(where: { ["IN", "CH", "CHAOS", "HS", "HESIOD"].contains($0.uppercased()) }) {
            guard words[index].uppercased() == "IN" else { throw ValidationError("only the class IN is asked: not \(words[index])") }
            words.remove(at: index)
        }
        if words.count == 2, DNSRecordType(words[0]) != nil, DNSRecordType(words[1]) == nil { words.swapAt(0, 1) }
        guard let name = words.first else { throw ValidationError("give the name to resolve") }
        guard !name.isEmpty else { throw ValidationError("'' is not a domain name: give a name, or . for the root") }
        guard words.count <= 2 else { throw ValidationError("one name and one type: \(words[2]) is extra") }
        guard words.count == 2 else { return (name, .a, server) }
        guard let type = DNSRecordType(words[1]) else { throw ValidationError("unknown record type \(words[1])") }
        return (name, type, server)
    }

    /// The server of `@text`: an address (an IPv6 one with its zone, `fe80::53%eth0`), an
    /// address and port (`[IPv6]:PORT`), or a host name (port 53 unless `:PORT` follows it),
    /// looked up as dig looks it up.
    static func server(_ text: String) -> (IPEndpoint, zone: String?)? {
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            let rest = text[text.index(after: close)...]
            let port = rest.isEmpty ? 53 : rest.hasPrefix(":") ? UInt16(rest.dropFirst()) : nil
            guard let port, let (endpoint, zone) = DNSResolverConfiguration.server(text[text.index(after: text.startIndex)..<close]) else {
                return nil
            }
            return (IPEndpoint(address: endpoint.address, port: port), zone)
        }
        if let given = DNSResolverConfiguration.server(Substring(text)) { return given }
        if let endpoint = IPEndpoint(text) { return (endpoint, nil) }
        guard !text.isEmpty, !text.contains("[") else { return nil }
        return TLSConnect.resolve(text.contains(":") ? text : text + ":53").first.map { ($0, nil) }
    }

    func run() throws {
        if let netns { try NetworkNamespace.enter(netns) }
        let (name, type, server) = try parsed()
        let resolver: DNSStubResolver
        var configuration: DNSResolverConfiguration
        if let (endpoint, zone) = server {
            configuration = DNSResolverConfiguration()
            configuration.servers = [endpoint]
            configuration.serverZones[endpoint] = zone
            configuration.timeout = .seconds(2)
        } else {
            configuration = .system()
        }
        if let port {
            let zones = configuration.serverZones
            configuration.serverZones = [:]
            configuration.servers = configuration.servers.map { server in
                let moved = IPEndpoint(address: server.address, port: port)
                configuration.serverZones[moved] = zones[server]
                return moved
            }
        }
        resolver = DNSStubResolver(configuration: configuration)
        let resolution: DNSResolution
        do {
            resolution = try resolver.resolveBlocking(name, type)
        } catch DNSResolverError.badName(let text) {
            // A mistake in the command line, said as one (dig exits 1 here: it has no usage status).
            throw ValidationError("\(text) is not a domain name: labels of 1 to 63 bytes, 255 bytes in all; internationalized labels as IDNA 2008 allows them, xn-- ones in valid Punycode")
        } catch {
            writeToStandardError("sluice dns query: \(error)\n")
            throw ExitCode(2)
        }
        if full {
            let source = switch resolution.source {
            case let .server(endpoint, overTCP): "\(endpoint) over \(overTCP ? "TCP" : "UDP")"
            case .cache: "the cache"
            case .hosts: "/etc/hosts"
            }
            print(";; \(resolution.name) \(resolution.type): \(resolution.responseCode), from \(source)")
            if !resolution.answers.isEmpty { print(";; ANSWER"); resolution.answers.forEach { print($0) } }
            if !resolution.authority.isEmpty { print(";; AUTHORITY"); resolution.authority.forEach { print($0) } }
        } else {
            resolution.chainAnswers.forEach { print($0.dataText) }
        }
    }
}
