#if canImport(Glibc)
import Glibc
#endif
import Sluice
import Synchronization

/// The `dns` scenario's zone and question: one A record asked for again and again, as a
/// server answering a steady mix sees it.
enum BenchZone {
    static let text = """
        $ORIGIN bench.test.
        $TTL 3600
        @    IN SOA ns1 hostmaster 1 7200 3600 1209600 300
             IN NS  ns1
        ns1  IN A   198.18.0.1
        www  IN A   198.18.0.80
             IN AAAA 2001:2::80

        """

    static let authority: DNSAuthority = {
        do {
            return DNSAuthority(zones: [try DNSZone(origin: DNSName("bench.test.")!, text: text)])
        } catch {
            fatalError("the bench zone does not parse: \(error)")
        }
    }()

    /// `www.bench.test. A` with EDNS(0), as dig sends it.
    static let query: [UInt8] = {
        var message = DNSMessage()
        message.header.id = 0xBE7C
        message.header.flags = DNSHeader.recursionDesired
        message.questions = [DNSQuestion(name: DNSName("www.bench.test.")!, type: .a)]
        message.edns = DNSEDNS(payloadSize: 1232)
        return message.encode()
    }()

    /// The query's frame on the wire: Ethernet, IPv4, UDP, the message.
    static var frameSize: Int { BenchRunner.headerBytes + query.count }
}

/// Knot DNS serving the bench zone in the server's namespace, for the `dns` scenario's
/// baseline: on sockets, or in its XDP mode on the server's interface.
final class KnotServer {
    let pid: pid_t
    let directory: String
    let interface: String?
    let namespace: String

    /// Starts knotd on `listen`, in XDP mode on `xdpInterface` when given, pinned to `cpu`.
    init(namespace: String, listen: IPEndpoint, xdpInterface: String?, workers: Int, cpu: Int?) throws {
        guard let knotd = findExecutable("knotd") else {
            throw RuntimeError("knotd is not installed (Debian's knot package; the README's commands install it)")
        }
        var template = Array("/tmp/sluice-bench-knot.XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw RuntimeError("mkdtemp: \(String(cString: strerror(errno)))") }
        directory = String(cString: made)
        let zone = directory + "/bench.test.zone"
        let xdp = xdpInterface.map { "xdp:\n    listen: \($0)@\(listen.port)\n    udp: on\n" } ?? ""
        let configuration = """
            server:
                listen: \(xdpInterface == nil ? "\(listen.address)@\(listen.port)" : "127.0.0.1@\(listen.port)")
                rundir: \(directory)
                udp-workers: \(workers)
                tcp-workers: 1
                background-workers: 1
            log:
              - target: stderr
                any: error
            database:
                storage: \(directory)
            zone:
              - domain: bench.test
                file: \(zone)
                journal-content: none
                semantic-checks: off
            \(xdp)
            """
        guard Self.write(BenchZone.text, to: zone), Self.write(configuration, to: directory + "/knot.conf") else {
            throw RuntimeError("cannot write the Knot configuration in \(directory)")
        }
        let log = open(directory + "/knot.log", O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
        defer { close(log) }
        var arguments = ["--net=/run/netns/\(namespace)"]
        if let cpu { arguments += ["taskset", "-c", "\(cpu)"] }
        arguments += [knotd, "-c", directory + "/knot.conf"]
        let child = try spawnProcess(findExecutable("nsenter") ?? "/usr/bin/nsenter", arguments, output: log).get()
        let path = directory
        Self.running.withLock { $0[child] = path }
        pid = child
        interface = xdpInterface
        self.namespace = namespace
        // Knot loads the zone and opens its sockets or XDP program within a second here.
        usleep(1_500_000)
        var status: Int32 = 0
        if waitpid(pid, &status, WNOHANG) == pid {
            let text = TextFile.read(directory + "/knot.log") ?? ""
            Self.running.withLock { _ = $0.removeValue(forKey: pid) }
            Self.run("/bin/rm", ["-rf", directory])
            throw RuntimeError("knotd exited at start: \(text.split(separator: "\n").suffix(3).joined(separator: "; "))")
        }
    }

    /// CPU time of the server, user and system, in nanoseconds.
    var cpuNanoseconds: UInt64 {
        guard let stat = TextFile.read("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return 0 }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let user = UInt64(fields[11]), let system = UInt64(fields[12]) else { return 0 }
        return (user + system) * 1_000_000_000 / UInt64(max(1, sysconf(Int32(_SC_CLK_TCK))))
    }

    /// The knotd processes started and not yet stopped, with their directories.
    static let running = Mutex<[pid_t: String]>([:])

    /// Kills every knotd still running and removes its files: for a run stopped by a signal, whose
    /// `stop()` never comes (their XDP programs go with the namespaces).
    static func killAll() {
        let servers = running.withLock { servers -> [pid_t: String] in
            let all = servers
            servers = [:]
            return all
        }
        for (pid, directory) in servers {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
            run("/bin/rm", ["-rf", directory])
        }
    }

    /// Stops knotd, waits for it, takes its XDP program off the interface and removes its files.
    func stop() {
        Self.running.withLock { _ = $0.removeValue(forKey: pid) }
        kill(pid, SIGTERM)
        var status: Int32 = 0
        for _ in 0..<50 where waitpid(pid, &status, WNOHANG) != pid { usleep(100_000) }
        if waitpid(pid, &status, WNOHANG) == 0 {
            kill(pid, SIGKILL)
            waitpid(pid, &status, 0)
        }
        if let interface, let ip = findExecutable("ip") {
            // A killed knotd leaves its program attached.
            Self.run(ip, ["-n", namespace, "link", "set", "dev", interface, "xdp", "off"])
        }
        Self.run("/bin/rm", ["-rf", directory])
    }

    /// Runs `executable` to its end, its output discarded.
    static func run(_ executable: String, _ arguments: [String]) {
        let null = open("/dev/null", O_WRONLY | O_CLOEXEC)
        defer { close(null) }
        guard case .success(let child) = spawnProcess(executable, arguments, output: null) else { return }
        var status: Int32 = 0
        waitpid(child, &status, 0)
    }

    static func write(_ text: String, to path: String) -> Bool {
        guard let file = fopen(path, "w") else { return false }
        defer { fclose(file) }
        return fputs(text, file) >= 0
    }
}
