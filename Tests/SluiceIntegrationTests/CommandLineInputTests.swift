#if canImport(Glibc)
import Glibc
#endif
import Sluice
import SluiceTestSupport
import Synchronization
import Testing

/// No input traps the command line: every bad number, range, size or address combination ends
/// in an error line and a usage exit, never a crash or an exhausted memory.
/// A zone file of the DNS tests.
let exampleZone = #filePath.replacing("SluiceIntegrationTests/CommandLineInputTests.swift", with: "SluiceDNSTests/Fixtures/example.test.zone")

@Suite struct CommandLineInputTests {
    static let refused: [[String]] = [
        ["udp-echo", "--listen", "127.0.0.1:0", "--duration", "nan"],
        ["udp-echo", "--listen", "127.0.0.1:0", "--duration", "inf"],
        ["udp-echo", "--listen", "127.0.0.1:0", "--duration", "-1"],
        ["udp-echo", "--listen", "127.0.0.1:0", "--stats-interval", "nan"],
        ["udp-echo", "--listen", "127.0.0.1:0", "--cpus", "3000000000"],
        ["udp-echo", "--listen", "127.0.0.1:0", "--cpus", "0-99999999999999999999"],
        ["udp-echo", "--listen", "127.0.0.1:0", "--cpus", "1-0"],
        ["udp-echo", "--listen", "127.0.0.1:0", "--cpus", ","],
        ["udp-echo", "--backend", "xdp", "--dev", "lo", "--listen", "127.0.0.1:9", "--queues", "0-4294967295"],
        ["udp-echo", "--backend", "xdp", "--dev", "lo", "--listen", "127.0.0.1:9", "--queues", "256"],
        ["udp-echo", "--backend", "pigeon", "--listen", "127.0.0.1:0"],
        ["udp-echo", "--backend", "xdp", "--dev", "lo", "--listen", "127.0.0.1:0"],
        ["udp-echo", "--backend", "tun", "--name", "sl9", "--address", "198.18.1.1/24", "--listen", "198.18.1.2:0"],
        ["udp-echo", "--listen", "127.0.0.1:0", "--trust-checksums"],
        ["udp-echo", "--backend", "tun", "--name", "sl9", "--address", "198.18.1.1/24", "--listen", "198.18.1.1:9000"],
        ["tun", "up", "--name", "sl9", "--mtu", "1279", "--address", "2001:2:1::1/64"],
        ["tun", "up", "--name", "a/b"],
        ["dns", "query", "example.test", "@::1%lo"],
        ["tls", "connect", "0.0.0.0:4433"],
        ["tcp-echo", "--listen", "127.0.0.1:0", "--metrics-listen", "[::ffff:127.0.0.1]:9464"],
        ["udp-echo", "--listen", "127.0.0.1:0", "--metrics-listen", "[fe80::1]:9464"],
        ["tls", "connect", "[::]:4433"],
        ["tls", "connect", "localhost:0"],
        ["tls", "connect", "localhost:+4433"],
        ["dns", "query", "example.test", "@[2001:2::1%lo]:5353"],
        ["tun", "up", "--name", "sl9", "--address", "::1/128"],
        ["tun", "up", "--name", "sl9", "--address", "ff02::5/64"],
        ["tun", "up", "--name", "sl9", "--address", "::/0"],
        ["tun", "up", "--name", "sl9", "--address", "198.18.1.1/24", "--address", "198.18.1.1/16"],
        ["udp-echo", "--backend", "tun", "--name", "sl9", "--address", "2001:2:1::1/64", "--address", "2001:2:1::1/64", "--listen", "[2001:2:1::2]:9000"],
        ["udp-echo", "--backend", "tap", "--name", "..", "--address", "198.18.1.1/24", "--listen", "198.18.1.2:9000"],
        // A name the kernel would number (h3%d: h30, h31, ...), and addresses no reply leaves from.
        ["tun", "up", "--name", "sl%d"],
        ["tun", "up", "--name", "sl9", "--tap", "--mtu", "65522"],
        ["udp-echo", "--backend", "tun", "--name", "sl%d", "--address", "198.18.1.1/24", "--listen", "198.18.1.2:9000"],
        ["udp-echo", "--backend", "tap", "--name", "sl9", "--address", "198.18.1.1/24", "--listen", "198.18.1.255:9000"],
        ["udp-echo", "--backend", "tap", "--name", "sl9", "--address", "198.18.1.1/24", "--listen", "255.255.255.255:9000"],
        ["udp-echo", "--backend", "tun", "--name", "sl9", "--address", "2001:2:1::1/64", "--listen", "[ff02::1]:9000"],
        ["udp-echo", "--listen", "127.0.0.1:0", "--socket-buffer", "-1"],
        ["udp-echo", "--listen", "127.0.0.1:0", "--socket-buffer", "99999999999999999999"],
        ["udp-client", "--target", "127.0.0.1:9", "--count", "0"],
        ["udp-client", "--target", "127.0.0.1:9", "--duration", "nan"],
        ["udp-client", "--target", "127.0.0.1:9", "--size", "2100", "--xdp-dev", "lo", "--source", "127.0.0.1:5"],
        ["udp-client", "--target", "[::1]:9", "--xdp-dev", "lo", "--source", "127.0.0.1:5"],
        ["udp-client", "--target", "[2001:2::3]:9", "--xdp-dev", "lo", "--source", "[::ffff:198.18.0.2]:5", "--destination-mac", "02:00:00:00:00:01"],
        ["udp-client", "--target", "198.18.0.3:9", "--xdp-dev", "lo", "--source", "198.18.0.2:0"],
        ["udp-client", "--target", "198.18.0.3:9", "--xdp-dev", "lo", "--source", "255.255.255.255:5"],
        ["udp-client", "--target", "[2001:2::3]:9", "--xdp-dev", "lo", "--source", "[2001:2::2]:5"],
        ["udp-client", "--target", "127.0.0.1:9", "--size", "65508"],
        ["udp-client", "--target", "127.0.0.1:9", "--window", "65537"],
        ["udp-client", "--target", "127.0.0.1:0"],
        ["udp-client", "--target", "0.0.0.0:9"],
        ["udp-client", "--target", "[::]:9"],
        ["udp-client", "--target", "127.0.0.1:9", "--source", "127.0.0.1:5"],
        ["udp-echo", "--listen", "[fe80::1]:9000"],
        ["udp-echo", "--listen", "127.0.0.1:0", "--mode", "generic"],
        ["udp-echo", "--backend", "uring", "--listen", "127.0.0.1:0", "--queues", "0"],
        ["dns", "serve", "--listen", "127.0.0.1:0", "--zone", #filePath, "--rrl-slip", "2"],
        ["dns", "serve", "--listen", "[::ffff:127.0.0.1]:5300", "--zone", #filePath],
        ["udp-client", "--target", "[fe80::2]:9"],
        ["tcp-echo", "--listen", "[febf::1]:7000"],
        ["tls", "serve", "--cert", "c", "--key", "k", "--listen", "[::ffff:127.0.0.1]:4433"],
        ["tcp-echo", "--listen", "127.0.0.1:0", "--duration", "nan"],
        ["bench", "--duration", "nan"],
        ["bench", "--backends", "socket,nope"],
        ["bench", "--scenarios", "echo,bad"],
        ["bench", "--backends", ","],
        ["bench", "--sizes", "64,,100"],
        ["bench", "--json", "/nonexistent/run.json"],
        ["bench", "--svg", "/nonexistent/run.svg"],
        ["top", "--interval", "0.1"],
        ["xdp", "load", "--dev", "lo", "--ports", "0-70000"],
        ["xdp", "load", "--dev", "lo", "--ports", "0"],
        ["dns", "serve", "--listen", "127.0.0.1:0", "--zone", ""],
        ["dns", "serve", "--listen", "127.0.0.1:0", "--zone", "=" + #filePath],
        ["dns", "serve", "--listen", "127.0.0.1:0", "--zone", "/dev/zero"],
        ["dns", "serve", "--listen", "127.0.0.1:0", "--zone", exampleZone, "--zone", "EXAMPLE.test.=" + exampleZone],
        ["tls", "connect", "127.0.0.1:9", "--sni", ""],
        ["tls", "connect", "127.0.0.1:9", "--sni", String(repeating: "a", count: 256)],
        ["tls", "connect", "127.0.0.1:9", "--sni", "bad name"],
        ["tls", "connect", "127.0.0.1:9", "--sni", "a..b"],
        ["tls", "connect", "127.0.0.1:9", "--sni", "127.0.0.1"],
        ["tls", "connect", "127.0.0.1:9", "--sni", "2130706433"],
        ["tls", "connect", "127.0.0.1:9", "--alpn", String(repeating: "h", count: 256)],
        ["tls", "connect", "127.0.0.1:9", "--alpn", ",h2"],
        ["tls", "serve", "--cert", "c", "--key", "k", "--listen", "127.0.0.1:0", "--alpn", "h2,,http/1.1"],
        ["tls", "serve", "--cert", "c", "--key", "k", "--listen", "127.0.0.1:0", "--client-cert", "requested"],
        ["tls", "serve", "--cert", "c", "--key", "k", "--listen", "127.0.0.1:0", "--client-ca", "a", "--client-cert", "maybe"],
        ["tls", "connect", "127.0.0.1:9", "--cert", "c"],
        ["dns", "query", "a..b", "@127.0.0.1:9"],
        ["dns", "query", String(repeating: "a", count: 64) + ".test", "@127.0.0.1:9"],
        ["netns", "up", "--suffix", "a/b"],
        ["netns", "down", "--suffix", ""],
        ["bench", "--suffix", "a/b"],
        ["bench", "--json", "/"],
        ["bench", "--svg", ""],
        ["tls", "connect", "127.0.0.1:9", "--key", "k"],
        ["tls", "serve", "--cert", "c", "--key", "k", "--listen", "127.0.0.1:0", "--alpn", "h2," + String(repeating: "h", count: 300)],
    ]

    @Test(arguments: CommandLineInputTests.refused)
    func badInputIsRefusedInOneLine(arguments: [String]) throws {
        let child = try ChildProcess(sluice: arguments)
        let status = child.waitForExit(timeout: .seconds(10))
        #expect(status == 64, "\(arguments): exit \(String(describing: status)), \(child.text)")
        let errors = child.text.split(separator: "\n").filter { $0.hasPrefix("Error:") }
        #expect(errors.count == 1, "\(arguments): \(child.text)")
    }

    @Test(arguments: ["", ".", "/tmp"])
    func aNetworkNamespaceThatIsNoneIsSaidSo(name: String) throws {
        let child = try ChildProcess(sluice: ["udp-echo", "--listen", "127.0.0.1:0", "--netns", name, "--duration", "1"])
        #expect(child.waitForExit(timeout: .seconds(10)) == 1, "\(child.text)")
        #expect(child.text.contains("give a name `ip netns list` shows, or the path of a namespace"), "\(child.text)")
    }

    /// A FIFO given for a file would hold its open (and the command) for ever: refused at once.
    @Test func aFIFOGivenForAFileIsRefusedAtOnce() throws {
        let fifo = "/tmp/sluice-fifo-\(getpid())"
        try #require(mkfifo(fifo, 0o600) == 0)
        defer { unlink(fifo) }
        let fixtures = #filePath.replacing("SluiceIntegrationTests/CommandLineInputTests.swift", with: "SluiceTLSTests/Fixtures/")
        let serve = ["tls", "serve", "--listen", "127.0.0.1:0", "--duration", "1"]
        for arguments in [["dns", "serve", "--listen", "127.0.0.1:0", "--duration", "1", "--zone", fifo],
                          ["dns", "serve", "--listen", "127.0.0.1:0", "--duration", "1", "--zone", "example.test.=" + fifo],
                          serve + ["--cert", fifo, "--key", fixtures + "server.key"],
                          serve + ["--cert", fixtures + "server.pem", "--key", fifo],
                          serve + ["--cert", fixtures + "server.pem", "--key", fixtures + "server.key", "--file", fifo],
                          ["tls", "connect", "127.0.0.1:9", "--ca", fifo],
                          ["tls", "connect", "127.0.0.1:9", "--session-in", fifo]] {
            let child = try ChildProcess(sluice: arguments)
            let status = child.waitForExit(timeout: .seconds(10))
            #expect(status != nil && status != 0, "\(arguments): \(child.text)")
            #expect(child.text.contains("a FIFO, not a regular file"), "\(arguments): \(child.text)")
        }
    }

    /// A negative number is a value out of range, not a missing value (ArgumentParser would take
    /// `-1` for a flag).
    @Test(arguments: [(["udp-echo", "--listen", "127.0.0.1:0", "--duration", "-1"], "--duration must be"),
                      (["udp-echo", "--listen", "127.0.0.1:0", "--socket-buffer", "-5"], "--socket-buffer must be"),
                      (["udp-echo", "--listen", "127.0.0.1:0", "--stats-interval", "-1"], "--stats-interval must be"),
                      (["top", "--count", "-3"], "--count must be"),
                      (["bench", "--sizes", "64,abc"], "values 60 to 1514"),
                      (["bench", "--json", "/nonexistent/run.json"], "cannot write --json /nonexistent/run.json: No such file or directory"),
                      (["tls", "serve", "--cert", "c", "--key", "k", "--listen", "127.0.0.1:0", "--key-update-after", "-1"],
                       "--key-update-after must be 0 or more"),
                      (["tls", "serve", "--cert", "c", "--key", "k", "--listen", "127.0.0.1:0", "--zero-copy-threshold", "-1"],
                       "--zero-copy-threshold must be 0 or more"),
                      (["tcp-echo", "--listen", "224.0.0.1:9000"], "224.0.0.1 is a group or broadcast address"),
                      (["udp-echo", "--listen", "127.0.0.1:0", "--metrics-listen", "255.255.255.255:9464"], "is a group or broadcast address"),
                      (["udp-echo", "--listen", "127.0.0.1:0", "--cpus", ""], "give at least one CPU"),
                      (["dns", "query", "x.test", "@nonexist.invalid"], "the name nonexist.invalid has no address")])
    func aNegativeNumberIsOutOfRange(arguments: [String], message: String) throws {
        let child = try ChildProcess(sluice: arguments)
        #expect(child.waitForExit(timeout: .seconds(10)) == 64, "\(child.text)")
        #expect(child.text.contains(message), "\(arguments): \(child.text)")
    }

    /// An error found while running (a zone file's line) is its message alone: the usage
    /// ArgumentParser would print there is the root command's.
    @Test func aZoneFilesErrorIsOneLineWithoutUsage() throws {
        let file = "/tmp/sluice-bad-\(getpid()).zone"
        let handle = fopen(file, "w")
        fputs("$ORIGIN bad.test.\n@ SOA ns h 1 2 3 4 5\n@ BOGUS x\n", handle)
        fclose(handle)
        defer { unlink(file) }
        let child = try ChildProcess(sluice: ["dns", "serve", "--listen", "127.0.0.1:0", "--zone", file])
        #expect(child.waitForExit(timeout: .seconds(10)) == 64, "\(child.text)")
        #expect(child.text.contains("zone file line 3") && !child.text.contains("Usage:"), "\(child.text)")
        let missing = try ChildProcess(sluice: ["dns", "serve", "--listen", "127.0.0.1:0", "--zone", file + ".gone"])
        #expect(missing.waitForExit(timeout: .seconds(10)) == 64, "\(missing.text)")
        #expect(missing.text.contains("cannot read zone file '\(file).gone': cannot open it: No such file or directory (errno 2)"), "\(missing.text)")
    }

    @Test func theLargestCountRunsForItsDurationInstead() throws {
        let child = try ChildProcess(sluice: ["udp-client", "--target", "127.0.0.1:9", "--count", "18446744073709551615",
                                              "--duration", "0.3"])
        // Nothing listens on port 9: every datagram lost, so status 1, as from ping.
        #expect(child.waitForExit(timeout: .seconds(10)) == 1, "\(child.text)")
        #expect(child.text.contains("sent ") && child.text.contains("100.00% lost"), "\(child.text)")
        #expect(child.text.contains("nothing listens on 127.0.0.1:9: its host answers ICMP port unreachable"), "\(child.text)")
    }

    /// A signal ends a client's run early with its report (it killed it without one; SIGQUIT
    /// printed a crash report and went on). Against a port nothing listens on, so the run is a
    /// window of datagrams every 100 ms, not a load on the machine the other tests share.
    @Test(arguments: [SIGINT, SIGTERM, SIGQUIT])
    func aSignalEndsAClientRunWithItsReport(signal: Int32) throws {
        let client = try ChildProcess(sluice: ["udp-client", "--target", "127.0.0.1:9", "--duration", "30"])
        // Once it has blocked the stop signals (its run takes them from then on), as /proc shows.
        for _ in 0..<500 {
            let status = (try? String(contentsOfFile: "/proc/\(client.pid)/status", encoding: .utf8)) ?? ""
            let blocked = status.split(separator: "\n").first { $0.hasPrefix("SigBlk:") }.flatMap { UInt64($0.dropFirst(7).trimmingCharacters(in: .whitespaces), radix: 16) }
            if let blocked, blocked & (1 << UInt64(signal - 1)) != 0 { break }
            usleep(10_000)
        }
        usleep(300_000)
        let clock = ContinuousClock()
        let start = clock.now
        // Nothing came back, so status 1, as from ping; but a report, and no crash.
        #expect(client.stop(signal: signal, timeout: .seconds(5)) == 1, "\(client.text)")
        #expect(clock.now - start < .seconds(2))
        #expect(client.text.contains("received, stopping") && client.text.contains("sent ") && client.text.contains("100.00% lost")
                    && !client.text.contains("crashed"), "\(client.text)")
    }

    /// The largest window of the largest datagrams takes no frame per datagram out (it took 16
    /// GiB, and half a minute to set up, for a run of half a second).
    @Test func theLargestWindowOfTheLargestDatagramsEndsOnTime() throws {
        let child = try ChildProcess(sluice: ["udp-client", "--target", "127.0.0.1:9", "--size", "65507", "--window", "65536",
                                              "--duration", "0.5"])
        #expect(child.waitForExit(timeout: .seconds(5)) == 1, "\(child.text)")
        #expect(child.text.contains("100.00% lost"), "\(child.text)")
    }

    /// A 2048-byte UMEM frame holds more than a 1400-byte link carries: the device would drop
    /// every frame without a word, so the client refuses the size, naming the largest that fits.
    @Test func anXDPPayloadOverTheDeviceMTUIsRefused() throws {
        let namespace = try ScratchNamespace(prefix: "slcli")
        let add = try ChildProcess("/usr/sbin/ip", ["-n", namespace.name, "link", "add", "d0", "mtu", "1400", "type", "veth",
                                                "peer", "name", "d1"])
        try #require(add.waitForExit() == 0, "\(add.text)")
        for (size, ipv6) in [(1373, false), (1353, true)] {
            let (source, target) = ipv6 ? ("[2001:2:5::1]:5000", "[2001:2:5::2]:9") : ("198.18.5.1:5000", "198.18.5.2:9")
            let child = try ChildProcess(sluice: ["udp-client", "--netns", namespace.name, "--xdp-dev", "d0", "--source", source,
                                                  "--target", target, "--destination-mac", "02:00:00:00:00:01",
                                                  "--size", "\(size)", "--count", "1"])
            #expect(child.waitForExit(timeout: .seconds(10)) == 1, "\(child.text)")
            #expect(child.text.contains("over the MTU of d0 (1400)") && child.text.contains("at most \(size - 1)"), "\(child.text)")
        }
    }

    /// The XDP client sends what `--count` says, not a batch of 32, and takes the next hop's MAC
    /// only from a complete ARP entry of its own interface: not the zeros of an unresolved one,
    /// nor an entry of another interface whose name begins the same.
    @Test func anXDPClientSendsItsCountToResolvedNeighboursOnly() throws {
        let namespace = try ScratchNamespace(prefix: "slcli")
        for command in [["link", "add", "d0", "type", "veth", "peer", "name", "d1"], ["link", "add", "d0x", "type", "veth", "peer", "name", "d1x"],
                        ["link", "set", "d0", "up"], ["link", "set", "d1", "up"], ["link", "set", "d0x", "up"], ["link", "set", "d1x", "up"],
                        ["address", "add", "198.18.5.1/24", "dev", "d0"], ["address", "add", "198.18.6.1/24", "dev", "d0x"],
                        ["neigh", "add", "198.18.5.8", "lladdr", "02:00:00:00:00:08", "dev", "d0x"]] {
            let ip = try ChildProcess("/usr/sbin/ip", ["-n", namespace.name] + command)
            try #require(ip.waitForExit() == 0, "\(command): \(ip.text)")
        }
        // An ARP request nobody answers leaves an entry with no MAC (flags 0x0, all zeros).
        let ping = try ChildProcess("/usr/sbin/ip", ["netns", "exec", namespace.name, "ping", "-c", "1", "-W", "1", "198.18.5.7"])
        _ = ping.waitForExit(timeout: .seconds(10))
        for target in ["198.18.5.7:9", "198.18.5.8:9"] {
            let child = try ChildProcess(sluice: ["udp-client", "--netns", namespace.name, "--xdp-dev", "d0", "--source", "198.18.5.1:5000",
                                                  "--target", target, "--count", "1"])
            #expect(child.waitForExit(timeout: .seconds(10)) == 1, "\(child.text)")
            #expect(child.text.contains("no neighbour entry for \(target.dropLast(2)) on d0"), "\(child.text)")
        }
        let counted = try ChildProcess(sluice: ["udp-client", "--netns", namespace.name, "--xdp-dev", "d0", "--source", "198.18.5.1:5000",
                                                "--target", "198.18.5.2:9", "--destination-mac", "02:00:00:00:00:01", "--count", "3"])
        #expect(counted.waitForExit(timeout: .seconds(10)) == 0, "\(counted.text)")
        #expect(counted.text.contains("sent 3 in"), "\(counted.text)")
    }

    /// A failure no command catches itself (entering --netns) is still the command's own line.
    @Test func aMissingNamespaceIsSaidByTheCommand() throws {
        for command in [["udp-echo", "--listen", "127.0.0.1:9000"], ["dns", "serve", "--listen", "127.0.0.1:5300", "--zone", exampleZone],
                        ["tls", "connect", "127.0.0.1:1"], ["tcp-echo", "--listen", "127.0.0.1:7000"]] {
            let child = try ChildProcess(sluice: command + ["--netns", "sluice-no-such-namespace"])
            #expect(child.waitForExit(timeout: .seconds(10)) == 1, "\(child.text)")
            let name = command.prefix { !$0.hasPrefix("-") && !$0.contains(":") }.joined(separator: " ")
            #expect(child.text.contains("sluice \(name): opening network namespace 'sluice-no-such-namespace'"), "\(child.text)")
        }
    }

    /// A reply through an XSK on lo reaches the kernel from this host's own address with no
    /// route attached, and IPv4 drops it as a martian: every request would go unanswered.
    @Test func theXDPBackendRefusesTheLoopbackDevice() throws {
        let namespace = try ScratchNamespace(prefix: "slcli")
        for command in [["udp-echo", "--listen", "127.0.0.1:9000"],
                        ["dns", "serve", "--listen", "127.0.0.1:5300", "--zone", exampleZone]] {
            let child = try ChildProcess(sluice: command + ["--backend", "xdp", "--dev", "lo", "--netns", namespace.name,
                                                            "--duration", "5", "--stats-interval", "0"])
            #expect(child.waitForExit(timeout: .seconds(10)) == 1, "\(child.text)")
            #expect(child.text.contains("lo is the loopback device") && child.text.contains("use --backend socket or uring"),
                    "\(child.text)")
        }
        let status = try ChildProcess(sluice: ["xdp", "status", "--netns", namespace.name])
        #expect(status.waitForExit() == 0)
        #expect(status.text.contains("no interface in this namespace has a sluice XDP program"), "nothing left behind: \(status.text)")
    }
}

/// `udp-client` counts every reply for what it is: duplicates, strays and late ones are told
/// apart from intact answers and never trap the client.
@Suite struct UDPLoadClientTests {
    @Test func duplicatesStraysAndLateRepliesAreCountedApart() throws {
        let socket = KernelUDPSocket(bind: IPEndpoint("127.0.0.1:0")!, receiveTimeout: .milliseconds(50))
        let target = socket.localEndpoint
        nonisolated(unsafe) let server = socket   // used by the echo thread alone from here on
        let stop = StopFlag()
        let echoer = try WorkerThread(name: "dup-echo") {
            var answered = 0
            while !stop.isSet {
                guard let request = server.receive() else { continue }
                server.send(request.bytes, to: request.from)
                server.send(request.bytes, to: request.from)          // a duplicate of every reply
                if answered % 10 == 0 {
                    var stray = request.bytes
                    stray.replaceSubrange(0..<8, with: withUnsafeBytes(of: UInt64(1 << 40).littleEndian, Array.init))
                    server.send(stray, to: request.from)              // numbered past anything sent
                }
                answered += 1
            }
        }
        defer {
            stop.set()
            echoer.join()
        }
        let report = try UDPLoadClient.run(target: target, payloadSize: 64, duration: .milliseconds(500), count: 200,
                                           window: 8)
        #expect(report.sent == 200)
        #expect(report.received == 200 && report.corrupt == 0, "\(report)")
        #expect(report.duplicates >= 150, "\(report)")
        #expect(report.strays >= 15, "\(report)")
        #expect(report.lossRatio == 0)
    }
}

/// A flag one thread raises and another reads.
final class StopFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    var isSet: Bool { flag.load(ordering: .acquiring) }
    func set() { flag.store(true, ordering: .releasing) }
}

/// One refused GSO send pauses GSO for a while, not for good; refusals back off.
@Suite struct SegmentationOffloadTests {
    @Test func aRefusalPausesThenGSOIsTriedAgain() {
        var gso = SegmentationOffload(configured: true)
        #expect(gso.isEnabled)
        let first = gso.refused()
        #expect(first, "the first refusal is the one to log")
        #expect(!gso.isEnabled)
        gso.noteSends(1023)
        #expect(!gso.isEnabled)
        gso.noteSends(1)
        #expect(gso.isEnabled, "tried again after 1024 datagrams")
        let second = gso.refused()
        #expect(!second, "later refusals are not logged again")
        gso.noteSends(2047)
        #expect(!gso.isEnabled, "the second pause is twice as long")
        gso.noteSends(1)
        #expect(gso.isEnabled && gso.refusals == 2)
        var off = SegmentationOffload(configured: false)
        off.noteSends(1 << 20)
        #expect(!off.isEnabled, "never on when not configured")
    }
}

/// Zone files as other servers read them: line ends from another system do not hide the `$ORIGIN`.
@Suite struct ZoneFileCommandTests {
    @Test func aZoneFileWithCRLFLineEndsIsServedUnderItsOrigin() throws {
        let path = "/tmp/sluice-crlf-\(getpid()).zone"
        let text = "$ORIGIN crlf.test.\r\n@ 3600 IN SOA ns1 hostmaster 1 2 3 4 5\r\n NS ns1\r\nns1 A 198.18.6.1\r\n"
        let file = try #require(fopen(path, "w"))
        fputs(text, file)
        fclose(file)
        defer { unlink(path) }
        let child = try ChildProcess(sluice: ["dns", "serve", "--listen", "127.0.0.1:0", "--zone", path, "--duration", "0.2",
                                              "--stats-interval", "0"])
        #expect(child.waitForExit(timeout: .seconds(20)) == 0, "\(child.text)")
        #expect(child.text.contains("authoritative for crlf.test."), "\(child.text)")
    }
}
