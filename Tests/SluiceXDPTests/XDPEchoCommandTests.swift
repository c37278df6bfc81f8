#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Sluice
import SluiceTestSupport
import Testing

/// `sluice udp-echo --backend xdp` as a user runs it, with kernel UDP sockets in the peer namespace.
@Suite(.serialized) struct XDPEchoCommandTests {
    func topology(queues: Int = 1, keepSenderChecksumOffload: Bool = false) throws -> TestTopology {
        var configuration = TestTopology.Configuration()
        configuration.suffix = "e\(getpid() % 10000)n\(fixtureCounter.add(1, ordering: .relaxed).newValue)"
        configuration.queues = queues
        configuration.disableSenderChecksumOffload = !keepSenderChecksumOffload
        return try TestTopology(configuration)
    }

    /// A kernel UDP socket in the client's namespace, and the echo on port 7000, over IPv6 or IPv4.
    func echoClient(of topology: TestTopology, ipv6: Bool, receiveTimeout: Duration = .seconds(2)) throws -> (KernelUDPSocket, IPEndpoint) {
        let (local, remote): (IPAddress, IPAddress) = ipv6
            ? (.v6(topology.clientIPv6), .v6(topology.serverIPv6)) : (.v4(topology.clientIPv4), .v4(topology.serverIPv4))
        let client = try withNetworkNamespace(topology.clientNamespace) {
            KernelUDPSocket(bind: IPEndpoint(address: local, port: 0), receiveTimeout: receiveTimeout)
        }
        return (client, IPEndpoint(address: remote, port: 7000))
    }

    /// Pins the server interface's MAC for `address` in the client's neighbour table, so frames
    /// for the address keep coming after the server deletes it.
    func keepNeighbour(_ address: IPv4Address, of topology: TestTopology) throws {
        let show = try ChildProcess("/usr/sbin/ip", ["-n", topology.serverNamespace, "-o", "link", "show", "dev", topology.serverInterface])
        _ = show.waitForExit()
        let words = show.text.split(separator: " ")
        let mac = try #require(words.firstIndex(of: "link/ether").map { words[$0 + 1] }, "\(show.text)")
        let pin = shell("ip -n \(topology.clientNamespace) neigh replace \(address) lladdr \(mac) dev \(topology.clientInterface) nud permanent")
        #expect(pin.status == 0, "\(pin.output)")
    }

    func xdpAttached(_ topology: TestTopology) throws -> Bool {
        let show = try ChildProcess("/usr/sbin/ip", ["-n", topology.serverNamespace, "-d", "link", "show", "dev", topology.serverInterface])
        _ = show.waitForExit()
        return show.text.contains("prog/xdp")
    }

    @Test(arguments: [XDPAttachMode.generic, .native])
    func echoesIPv4AndIPv6AndCleansUpOnSIGTERM(mode: XDPAttachMode) throws {
        let topology = try topology()
        defer { topology.destroy() }
        // [::] takes both families, as a dual-stack kernel socket would; 0.0.0.0 would be IPv4 only.
        let server = try ChildProcess(sluice: [
            "udp-echo", "--backend", "xdp", "--dev", topology.serverInterface, "--netns", topology.serverNamespace,
            "--listen", "[::]:7000", "--mode", mode.rawValue, "--duration", "60", "--stats-interval", "0",
        ])
        #expect(server.waitForLine(containing: "backend on") != nil, "\(server.text)")
        #expect(try xdpAttached(topology))
        var random = TestBytes(seed: 5)
        for ipv6 in [false, true] {
            let (client, target) = try echoClient(of: topology, ipv6: ipv6)
            for _ in 0..<300 {
                let payload = random.bytes(Int(random.next() % (ipv6 ? 1453 : 1473)))
                client.send(payload, to: target)
                let reply = client.receive()
                #expect(reply?.bytes == payload && reply?.from == target)
                if reply?.bytes != payload { break }
            }
        }
        #expect(server.stop(signal: SIGTERM) == 0)
        #expect(server.text.contains("frames: all returned to their pools"), "\(server.text)")
        #expect(server.text.contains("received 600 datagrams"), "\(server.text)")
        // veth takes native XDP: a silent fallback to generic would make this case the other one.
        #expect(server.text.contains("\(mode.rawValue) XDP, copy"), "attached in \(mode.rawValue) mode: \(server.text)")
        #expect(!server.text.contains("using generic"), "\(server.text)")
        #expect(try !xdpAttached(topology), "the program is detached after SIGTERM")
    }

    /// A veth peer as `ip link add` makes it (tx checksum offload on) sends UDP checksums that
    /// hold only the pseudo-header's sum; the kernel takes them, and so must the echo, in both
    /// modes and families, answering with checksums the peer's kernel accepts.
    @Test(arguments: [XDPAttachMode.generic, .native])
    func answersAPeerThatLeavesChecksumsToOffload(mode: XDPAttachMode) throws {
        let topology = try topology(keepSenderChecksumOffload: true)
        defer { topology.destroy() }
        let server = try ChildProcess(sluice: [
            "udp-echo", "--backend", "xdp", "--dev", topology.serverInterface, "--netns", topology.serverNamespace,
            "--listen", "[::]:7000", "--mode", mode.rawValue, "--duration", "60", "--stats-interval", "0",
        ])
        #expect(server.waitForLine(containing: "backend on") != nil, "\(server.text)")
        var random = TestBytes(seed: 6)
        for ipv6 in [false, true] {
            let (client, target) = try echoClient(of: topology, ipv6: ipv6, receiveTimeout: .seconds(1))
            for _ in 0..<50 {
                let payload = random.bytes(Int(random.next() % 1400))
                client.send(payload, to: target)
                let reply = client.receive()
                #expect(reply?.bytes == payload && reply?.from == target, "\(ipv6 ? "IPv6" : "IPv4"): \(server.text)")
                if reply?.bytes != payload { break }
            }
        }
        #expect(server.stop(signal: SIGTERM) == 0)
        #expect(server.text.contains("received 100 datagrams") && !server.text.contains("bad_checksum"), "\(server.text)")
    }

    @Test func exitsByItselfAndDetaches() throws {
        let topology = try topology()
        defer { topology.destroy() }
        let server = try ChildProcess(sluice: [
            "udp-echo", "--backend", "xdp", "--dev", topology.serverInterface, "--netns", topology.serverNamespace,
            "--listen", "0.0.0.0:7000", "--mode", "generic", "--duration", "0.5", "--stats-interval", "0",
        ])
        #expect(server.waitForExit() == 0, "\(server.text)")
        #expect(try !xdpAttached(topology))
    }

    /// A hangup (the terminal closed) stops the server as SIGTERM does, and output to a reader
    /// that went away does not kill it: either way the program leaves the interface.
    @Test func aHangupOrAClosedOutputPipeLeavesNoProgramBehind() throws {
        let topology = try topology()
        defer { topology.destroy() }
        let arguments = ["udp-echo", "--backend", "xdp", "--dev", topology.serverInterface, "--netns", topology.serverNamespace,
                         "--listen", "0.0.0.0:7000", "--mode", "generic"]
        let server = try ChildProcess(sluice: arguments + ["--duration", "60", "--stats-interval", "0"])
        #expect(server.waitForLine(containing: "backend on") != nil, "\(server.text)")
        #expect(server.stop(signal: SIGHUP) == 0, "\(server.text)")
        #expect(server.text.contains("SIGHUP received, stopping"), "\(server.text)")
        #expect(try !xdpAttached(topology))
        let piped = try ChildProcess("/bin/sh", ["-c", "\(SluiceExecutable.path) \(arguments.joined(separator: " ")) --duration 2 --stats-interval 0.2 | head -1"])
        _ = piped.waitForExit()
        #expect(piped.text.contains("backend on"), "\(piped.text)")
        #expect(try !xdpAttached(topology), "left attached after writing to a closed pipe: \(piped.text)")
    }

    /// Datagrams the sender fragments (IPv4 over 1472 bytes, IPv6 over 1452 on a 1500-byte link)
    /// are passed by the program to the kernel, which reassembles them for the backend's kernel
    /// socket: every one comes back intact, as from a kernel socket server.
    @Test func fragmentedDatagramsAreServedThroughTheKernelSocket() throws {
        let topology = try topology()
        defer { topology.destroy() }
        let server = try ChildProcess(sluice: [
            "udp-echo", "--backend", "xdp", "--dev", topology.serverInterface, "--netns", topology.serverNamespace,
            "--listen", "[::]:7000", "--mode", "generic", "--duration", "60", "--stats-interval", "0",
        ])
        #expect(server.waitForLine(containing: "backend on") != nil, "\(server.text)")
        var random = TestBytes(seed: 15)
        var sent = 0
        for ipv6 in [false, true] {
            let (client, target) = try echoClient(of: topology, ipv6: ipv6, receiveTimeout: .seconds(3))
            let edge = ipv6 ? 1453 : 1473
            for size in [edge, edge + 1, 3000, 9000, 30000, 65000, 65507] + (0..<8).map({ _ in edge + Int(random.next() % 64000) }) {
                let payload = random.bytes(size)
                client.send(payload, to: target)
                sent += 1
                let reply = client.receive()
                #expect(reply?.bytes == payload && reply?.from == target, "\(ipv6 ? "IPv6" : "IPv4") \(size) bytes")
            }
        }
        #expect(server.stop(signal: SIGTERM) == 0)
        #expect(server.text.contains("via kernel socket (fragments and whatever the program passes): \(sent) datagrams"),
                "\(server.text)")
        #expect(server.text.contains("frames: all returned to their pools"), "\(server.text)")
    }

    /// `udp-echo --backend xdp` on the topology's server side, listening on 0.0.0.0:7000 with
    /// `options`, once it says it is serving.
    func serve(_ topology: TestTopology, _ options: [String]) throws -> ChildProcess {
        let server = try ChildProcess(sluice: [
            "udp-echo", "--backend", "xdp", "--dev", topology.serverInterface, "--netns", topology.serverNamespace,
            "--listen", "0.0.0.0:7000", "--duration", "60", "--stats-interval", "0",
        ] + options)
        try #require(server.waitForLine(containing: "backend on") != nil, "\(server.text)")
        return server
    }

    /// Starts `udp-echo --backend xdp` (generic) and checks one datagram comes back.
    func startEcho(_ topology: TestTopology, statsInterval: String = "0") throws -> (ChildProcess, KernelUDPSocket, IPEndpoint) {
        let server = try ChildProcess(sluice: [
            "udp-echo", "--backend", "xdp", "--dev", topology.serverInterface, "--netns", topology.serverNamespace,
            "--listen", "0.0.0.0:7000", "--mode", "generic", "--duration", "60", "--stats-interval", statsInterval,
        ])
        #expect(server.waitForLine(containing: "backend on") != nil, "\(server.text)")
        let client = try withNetworkNamespace(topology.clientNamespace) {
            KernelUDPSocket(bind: IPEndpoint(address: .v4(topology.clientIPv4), port: 0), receiveTimeout: .milliseconds(500))
        }
        let target = IPEndpoint(address: .v4(topology.serverIPv4), port: 7000)
        client.send([1], to: target)
        #expect(client.receive()?.bytes == [1], "\(server.text)")
        return (server, client, target)
    }

    /// Native mode that the driver refuses for the link as it is (veth: ERANGE while the peer's
    /// MTU is past a page) falls back to generic, said in one line, as the help promises.
    @Test func nativeRefusedForThePeersMTUFallsBackToGeneric() throws {
        let topology = try topology()
        defer { topology.destroy() }
        let raise = try ChildProcess("/usr/sbin/ip", ["-n", topology.clientNamespace, "link", "set", topology.clientInterface, "mtu", "9000"])
        #expect(raise.waitForExit() == 0, "\(raise.text)")
        let server = try serve(topology, ["--mode", "native"])
        #expect(server.text.contains("native XDP refused by the driver; using generic (skb) mode"), "\(server.text)")
        let (client, target) = try echoClient(of: topology, ipv6: false)
        client.send([4], to: target)
        #expect(client.receive()?.bytes == [4], "\(server.text)")
        #expect(server.stop() == 0)
    }

    /// veth refuses native XDP (ENOSPC) while it has fewer receive queues than its peer transmit
    /// queues: a driver refusal like the others, so generic is used, as the help says.
    @Test func nativeRefusedForThePeersQueuesFallsBackToGeneric() throws {
        let topology = try topology(queues: 2)
        defer { topology.destroy() }
        let fewer = shell("ip netns exec \(topology.serverNamespace) ethtool -L \(topology.serverInterface) rx 1")
        #expect(fewer.status == 0, "\(fewer.output)")
        let server = try serve(topology, ["--mode", "native", "--queues", "0"])
        #expect(server.text.contains("native XDP refused by the driver; using generic (skb) mode"), "\(server.text)")
        let (client, target) = try echoClient(of: topology, ipv6: false)
        client.send([4], to: target)
        #expect(client.receive()?.bytes == [4], "\(server.text)")
        #expect(server.stop() == 0)
    }

    /// Queues of the interface this server leaves to its kernel socket are named at start, with
    /// the option that takes them all.
    @Test func queuesLeftToTheKernelSocketAreSaid() throws {
        let topology = try topology(queues: 2)
        defer { topology.destroy() }
        let server = try serve(topology, ["--queues", "0", "--mode", "generic"])
        #expect(server.text.contains("has 2 receive queues and this server takes 1: what arrives on queue(s) 1 goes through its kernel socket (--queues 0-1"),
                "\(server.text)")
        #expect(server.stop() == 0)
    }

    /// On a wildcard a reply comes from the address the request was sent to: to a second address
    /// on the interface (added, as `ip address add` does, without a broadcast, which glibc then
    /// reports as its own broadcast) it came from the first, and the peer threw it away.
    @Test func aWildcardAnswersFromTheAddressAsked() throws {
        let topology = try topology()
        defer { topology.destroy() }
        let second = IPv4Address(rawValue: topology.serverIPv4.rawValue &+ 100)
        let add = try ChildProcess("/usr/sbin/ip", ["-n", topology.serverNamespace, "address", "add", "\(second)/24",
                                                    "dev", topology.serverInterface])
        #expect(add.waitForExit() == 0, "\(add.text)")
        let (server, client, _) = try startEcho(topology)
        let target = IPEndpoint(address: .v4(second), port: 7000)
        client.send([3], to: target)
        let reply = client.receive()
        #expect(reply?.bytes == [3] && reply?.from == target, "\(String(describing: reply)): \(server.text)")
        #expect(server.stop() == 0)
    }

    /// An address deleted from the interface while the server runs is not answered any more,
    /// as the kernel stops delivering it to a wildcard socket; the others still are.
    @Test func anAddressDeletedUnderARunningServerIsNoLongerAnswered() throws {
        let topology = try topology()
        defer { topology.destroy() }
        let second = IPv4Address(rawValue: topology.serverIPv4.rawValue &+ 100)
        func ip(_ arguments: [String]) throws {
            let command = try ChildProcess("/usr/sbin/ip", arguments)
            #expect(command.waitForExit() == 0, "ip \(arguments): \(command.text)")
        }
        try ip(["-n", topology.serverNamespace, "address", "add", "\(second)/24", "dev", topology.serverInterface])
        let (server, client, first) = try startEcho(topology)
        let target = IPEndpoint(address: .v4(second), port: 7000)
        client.send([3], to: target)
        #expect(client.receive()?.bytes == [3], "\(server.text)")
        try ip(["-n", topology.serverNamespace, "address", "del", "\(second)/24", "dev", topology.serverInterface])
        try keepNeighbour(second, of: topology)
        usleep(1_500_000)
        client.send([4], to: target)
        #expect(client.receive() == nil, "answered for an address the host no longer has: \(server.text)")
        client.send([5], to: first)
        #expect(client.receive()?.bytes == [5], "\(server.text)")
        #expect(server.stop() == 0)
        // Left to the kernel by the program (to forward, or to drop), not taken and dropped here.
        #expect(server.text.contains("not ours 1") && !server.text.contains("not_local"), "\(server.text)")
    }

    /// A listen address deleted from the interface under a running server is not answered any
    /// more, as the kernel refuses datagrams for an address it no longer has (the program
    /// steers by the listener, so the stage refuses them, counted as not local); added back, it is.
    @Test func aListenAddressDeletedUnderARunningServerIsNotAnsweredUntilItIsBack() throws {
        let topology = try topology()
        defer { topology.destroy() }
        let server = try launch(topology, listen: "\(topology.serverIPv4):7000", queue: 0)
        try #require(server.waitForLine(containing: "backend on") != nil, "\(server.text)")
        let (client, target) = try echoClient(of: topology, ipv6: false, receiveTimeout: .milliseconds(500))
        client.send([1], to: target)
        #expect(client.receive()?.bytes == [1], "\(server.text)")
        try keepNeighbour(topology.serverIPv4, of: topology)
        #expect(shell("ip -n \(topology.serverNamespace) address del \(topology.serverIPv4)/24 dev \(topology.serverInterface)").status == 0)
        usleep(1_500_000)
        client.send([2], to: target)
        #expect(client.receive() == nil, "answered for an address the host no longer has: \(server.text)")
        #expect(server.text.contains("\(topology.serverIPv4) is not on it"), "\(server.text)")
        #expect(shell("ip -n \(topology.serverNamespace) address add \(topology.serverIPv4)/24 dev \(topology.serverInterface)").status == 0)
        usleep(1_500_000)
        client.send([3], to: target)
        #expect(client.receive()?.bytes == [3], "\(server.text)")
        #expect(server.stop() == 0, "\(server.text)")
        #expect(server.text.contains("drops: not_local=1"), "\(server.text)")
    }

    /// An interface renamed under a running server is the same interface (its index, program and
    /// sockets stay): the server follows it and goes on answering, where it stopped with
    /// "No such device" and said the interface had left.
    @Test func aRenamedInterfaceIsFollowed() throws {
        let topology = try topology()
        defer { topology.destroy() }
        let (server, client, target) = try startEcho(topology)
        let renamed = "r" + topology.serverInterface.prefix(14)
        #expect(shell("ip -n \(topology.serverNamespace) link set dev \(topology.serverInterface) name \(renamed)").status == 0)
        defer { _ = shell("ip -n \(topology.serverNamespace) link set dev \(renamed) name \(topology.serverInterface)") }
        usleep(1_500_000)
        client.send([2], to: target)
        #expect(client.receive()?.bytes == [2], "\(server.text)")
        #expect(server.text.contains("\(topology.serverInterface) is now named \(renamed): following it"), "\(server.text)")
        #expect(server.stop() == 0, "\(server.text)")
        #expect(!server.text.contains("left this network namespace"), "\(server.text)")
    }

    /// A program `sluice xdp load` attached stays until `sluice xdp unload`, ports or none: a
    /// server that joined it and left took it away when no ports were set.
    @Test func aProgramFromXDPLoadStaysWhenTheLastServerLeaves() throws {
        let topology = try topology()
        defer { topology.destroy() }
        let load = try ChildProcess(sluice: ["xdp", "load", "--dev", topology.serverInterface, "--netns", topology.serverNamespace,
                                             "--mode", "generic"])
        #expect(load.waitForExit() == 0, "\(load.text)")
        // Asked again for another mode and build: said, not silently dropped.
        let again = try ChildProcess(sluice: ["xdp", "load", "--dev", topology.serverInterface, "--netns", topology.serverNamespace,
                                              "--mode", "native", "--frags"])
        #expect(again.waitForExit() == 0, "\(again.text)")
        #expect(again.text.contains("stays as it is: it runs in generic (skb) mode, not native, and it is not the multi-buffer (frags) build"),
                "\(again.text)")
        let (server, client, target) = try startEcho(topology)
        client.send([2], to: target)
        #expect(client.receive()?.bytes == [2], "\(server.text)")
        #expect(server.stop() == 0, "\(server.text)")
        #expect(try xdpAttached(topology), "the program xdp load attached was taken away by a server: \(server.text)")
        let unload = try ChildProcess(sluice: ["xdp", "unload", "--dev", topology.serverInterface, "--netns", topology.serverNamespace])
        #expect(unload.waitForExit() == 0, "\(unload.text)")
        #expect(try !xdpAttached(topology))
    }

    /// What the kernel drops at the XSK (here: the worker stopped, its rings full) is a drop in
    /// the summary's drops line too, not only on its xsk line, and in the progress lines while
    /// it runs: "drops: none" and "drops 0" mean none.
    @Test func dropsAtTheSocketAreDropsInTheSummary() throws {
        let topology = try topology()
        defer { topology.destroy() }
        let (server, client, target) = try startEcho(topology, statsInterval: "0.2")
        kill(server.pid, SIGSTOP)
        // More than the RX ring (2048 descriptors) and the fill ring's frames hold.
        for _ in 0..<6000 { client.send([2], to: target) }
        kill(server.pid, SIGCONT)
        usleep(600_000)
        let progress = server.text.split(separator: "\n").filter { $0.hasPrefix("rx ") && $0.contains(" drops ") }
        let lastDrops = progress.last.flatMap { Int($0.split(separator: " ").last ?? "") }
        #expect((lastDrops ?? 0) > 0, "the progress lines count the socket's drops: \(server.text)")
        #expect(server.stop(signal: SIGTERM) == 0)
        let lines = server.text.split(separator: "\n")
        let drops = try #require(lines.first { $0.hasPrefix("  drops: ") }, "\(server.text)")
        let xsk = try #require(lines.first { $0.hasPrefix("  xsk: ") }, "\(server.text)")
        #expect(!xsk.contains("rx_dropped 0, rx_ring_full 0"), "nothing dropped at the socket: \(server.text)")
        #expect(drops.contains("xsk_rx_ring_full=") || drops.contains("xsk_no_fill-ring_frame="), "\(server.text)")
    }

    /// How long `server` takes to exit by itself after `fault`, and its status.
    func exitAfter(_ fault: String, _ server: ChildProcess) -> (status: Int32?, seconds: Double) {
        let clock = ContinuousClock()
        let start = clock.now
        _ = shell(fault)
        let status = server.waitForExit(timeout: .seconds(10))
        let elapsed = clock.now - start
        return (status, Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
    }

    /// Starts an echo, applies `fault` (a shell command for its topology), and expects the worker
    /// to stop by itself within 3 s with a non-zero status, saying `message` (and, with
    /// `framesBack`, with every frame home).
    func expectStop(after fault: (TestTopology) -> String, saying message: String, framesBack: Bool = true,
                    sourceLocation: SourceLocation = #_sourceLocation) throws {
        let topology = try topology()
        defer { topology.destroy() }
        let (server, _, _) = try startEcho(topology)
        let (status, seconds) = exitAfter(fault(topology), server)
        #expect(status != nil && status != 0, "exit \(String(describing: status)): \(server.text)", sourceLocation: sourceLocation)
        #expect(seconds < 3, "took \(seconds) s", sourceLocation: sourceLocation)
        #expect(server.text.contains(message), "\(server.text)", sourceLocation: sourceLocation)
        if framesBack {
            #expect(server.text.contains("frames: all returned to their pools"), "\(server.text)", sourceLocation: sourceLocation)
        }
    }

    @Test func theInterfaceDeletedUnderARunningWorkerStopsItWithAClearError() throws {
        try expectStop(after: { "ip -n \($0.serverNamespace) link del \($0.serverInterface)" }, saying: "deleted or moved")
    }

    /// Moved to another namespace, the interface keeps its program, which this process can no
    /// longer reach: the stop says so, and how to remove it there.
    @Test func theInterfaceMovedUnderARunningWorkerStopsItAndSaysWhereItsProgramStays() throws {
        let elsewhere = try ScratchNamespace(prefix: "slmv")
        try expectStop(after: { "ip -n \($0.serverNamespace) link set \($0.serverInterface) netns \(elsewhere.name)" },
                       saying: "if it was moved, not deleted, its XDP program is still attached")
    }

    @Test func theProgramRemovedUnderARunningWorkerStopsItWithAClearError() throws {
        try expectStop(after: { "ip -n \($0.serverNamespace) link set dev \($0.serverInterface) xdpgeneric off" },
                       saying: "XDP program that feeds this socket was removed")
    }

    /// Another program attached in its place (`ip -force`) starves the socket as surely as none.
    @Test func theProgramReplacedUnderARunningWorkerStopsItWithAClearError() throws {
        let directory = "/tmp/sluice-xdp-pass-\(getpid())"
        defer { _ = shell("rm -rf \(directory)") }
        let built = shell("mkdir -p \(directory) && printf '%s\\n' '#include <linux/bpf.h>' "
            + "'__attribute__((section(\"xdp\"), used)) int pass(struct xdp_md *c) { return XDP_PASS; }' "
            + "'char _license[] __attribute__((section(\"license\"), used)) = \"GPL\";' > \(directory)/pass.c "
            + "&& clang -O2 -target bpf -I/usr/include/$(uname -m)-linux-gnu -c \(directory)/pass.c -o \(directory)/pass.o")
        try #require(built.status == 0, "\(built.output)")
        try expectStop(after: { "ip -n \($0.serverNamespace) -force link set dev \($0.serverInterface) xdpgeneric obj \(directory)/pass.o sec xdp" },
                       saying: "replaced the one that feeds this socket", framesBack: false)
    }

    /// `sluice xdp unload` leaves a program running servers steer through alone, unless forced.
    @Test func unloadRefusesWhileAServerUsesTheProgram() throws {
        let topology = try topology()
        defer { topology.destroy() }
        let (server, client, target) = try startEcho(topology)
        let unload = ["xdp", "unload", "--dev", topology.serverInterface, "--netns", topology.serverNamespace]
        let refused = try ChildProcess(sluice: unload)
        #expect(refused.waitForExit() == 1, "\(refused.text)")
        #expect(refused.text.contains("running sluice servers steer 0.0.0.0:7000"), "\(refused.text)")
        client.send([2], to: target)
        #expect(client.receive()?.bytes == [2], "still served: \(server.text)")
        let (status, _) = exitAfter("\(SluiceExecutable.path) \(unload.joined(separator: " ")) --force", server)
        #expect(status != nil && status != 0, "forced: \(server.text)")
    }

    /// SIGTERM while `udp-client` keeps the worker busy: exit status 0 within the timeout, every
    /// frame back, the program it attached gone.
    @Test func stopsCleanlyUnderFullLoad() throws {
        let topology = try topology()
        defer { topology.destroy() }
        let (server, _, target) = try startEcho(topology)
        let load = try ChildProcess(sluice: [
            "udp-client", "--netns", topology.clientNamespace, "--target", target.description, "--window", "512",
            "--size", "200", "--duration", "20"])
        defer { _ = load.stop(signal: SIGKILL) }
        usleep(1_500_000)
        #expect(load.isRunning, "\(load.text)")
        #expect(server.stop(signal: SIGTERM, timeout: .seconds(10)) == 0, "\(server.text)")
        #expect((datagramsReceived(in: server.text) ?? 0) > 1000, "not under load: \(server.text)")
        #expect(server.text.contains("frames: all returned to their pools"), "\(server.text)")
        #expect(try !xdpAttached(topology), "the program it attached is still there")
        // What the program put in the RX ring before the stop was taken and counted: the redirect
        // to the socket ends first, then the ring is drained (it was left to close with it).
        func count(_ pattern: String) -> Int? { capturedNumber(pattern, in: server.text) }
        let redirected = try #require(count(#"redirected (\d+)"#), "\(server.text)")
        let taken = try #require(count(#"per worker: 0: received (\d+)"#), "\(server.text)")
        let lost = (count(#"rx_dropped (\d+)"#) ?? 0) + (count(#"rx_ring_full (\d+)"#) ?? 0) + (count(#"rx_invalid (\d+)"#) ?? 0)
        #expect(taken + lost == redirected, "\(server.text)")
    }

    @Test func theLinkDownThenUpIsWaitedOut() throws {
        let topology = try topology()
        defer { topology.destroy() }
        let (server, client, target) = try startEcho(topology)
        _ = shell("ip -n \(topology.serverNamespace) link set dev \(topology.serverInterface) down")
        usleep(1_500_000)
        #expect(server.isRunning, "a link going down is not a failure: \(server.text)")
        _ = shell("ip -n \(topology.serverNamespace) link set dev \(topology.serverInterface) up")
        #expect(client.echoes([2], to: target), "echo after the link came back: \(server.text)")
        #expect(server.stop() == 0, "\(server.text)")
        #expect(server.text.contains("frames: all returned to their pools"), "\(server.text)")
    }

    /// A server that attached the program leaves it when another process steers a port through
    /// it meanwhile (`sluice xdp load --ports`); `xdp load` keeps it, ports or none, until `xdp unload`.
    @Test func theProgramStaysWhileAnotherProcessUsesIt() throws {
        let topology = try topology()
        defer { topology.destroy() }
        let (server, _, _) = try startEcho(topology)
        let load = try ChildProcess(sluice: ["xdp", "load", "--dev", topology.serverInterface, "--netns",
                                             topology.serverNamespace, "--mode", "generic", "--ports", "7000,9000"])
        #expect(load.waitForExit() == 0, "\(load.text)")
        #expect(server.stop() == 0, "\(server.text)")
        #expect(try xdpAttached(topology), "port 9000 is still steered by another process's request")
        let status = try ChildProcess(sluice: ["xdp", "status", "--dev", topology.serverInterface, "--netns",
                                               topology.serverNamespace])
        #expect(status.waitForExit() == 0 && status.text.contains("ports: 7000, 9000") && status.text.contains("listeners: none"),
                "the server took back only its own listener: \(status.text)")

        // With no port steered, a server that joins and leaves it leaves it too.
        let clear = try ChildProcess(sluice: ["xdp", "load", "--dev", topology.serverInterface, "--netns",
                                              topology.serverNamespace, "--mode", "generic", "--ports", ""])
        #expect(clear.waitForExit() == 0, "\(clear.text)")
        let (second, _, _) = try startEcho(topology)
        #expect(second.stop() == 0, "\(second.text)")
        // Its one datagram, not the first server's too, which the program counted before.
        #expect(second.text.contains("xdp program: redirected 1,"), "this run's verdicts: \(second.text)")
        #expect(try xdpAttached(topology), "xdp load keeps the program: \(second.text)")
        let unload = try ChildProcess(sluice: ["xdp", "unload", "--dev", topology.serverInterface, "--netns", topology.serverNamespace])
        #expect(unload.waitForExit() == 0, "\(unload.text)")
        #expect(try !xdpAttached(topology), "xdp unload removes it")
    }

    /// A second process binding the queue a running server holds: EBUSY from the kernel, named in
    /// one line, a non-zero exit within seconds, and nothing taken from the first server (its
    /// program, its steering and its traffic stay), which then stops cleanly with every frame back.
    @Test func aSecondProcessOnTheSameQueueFailsClearlyAndLeavesTheFirstServing() throws {
        let topology = try topology()
        defer { topology.destroy() }
        let (server, client, target) = try startEcho(topology)
        let second = try ChildProcess(sluice: [
            "udp-echo", "--backend", "xdp", "--dev", topology.serverInterface, "--netns", topology.serverNamespace,
            "--listen", "0.0.0.0:7001", "--queues", "0", "--mode", "generic", "--duration", "60", "--stats-interval", "0",
        ])
        let status = second.waitForExit(timeout: .seconds(15))
        #expect(status != nil && status != 0, "\(second.text)")
        #expect(second.text.contains("another AF_XDP socket is bound to this interface and queue"), "\(second.text)")
        #expect(try xdpAttached(topology), "the failed start took the first server's program with it")
        client.send([2], to: target)
        #expect(client.receive()?.bytes == [2], "the first server stopped answering: \(server.text)")
        #expect(server.stop() == 0, "\(server.text)")
        #expect(server.text.contains("frames: all returned"), "\(server.text)")
    }

    /// Two servers on one interface, each on its own queue and port: a datagram for one never
    /// reaches the other, whichever queue the veth hands it to (the other server's XSK may hold
    /// it): a kernel socket on port 7000 never sees port 7001's traffic either.
    @Test func eachServerGetsOnlyItsOwnListenersTraffic() throws {
        let topology = try topology(queues: 2)
        defer { topology.destroy() }
        func start(_ port: Int, queue: Int, responder: String) throws -> ChildProcess {
            let server = try ChildProcess(sluice: [
                "udp-echo", "--backend", "xdp", "--dev", topology.serverInterface, "--netns", topology.serverNamespace,
                "--listen", "0.0.0.0:\(port)", "--queues", "\(queue)", "--responder", responder, "--mode", "generic",
                "--duration", "60", "--stats-interval", "0",
            ])
            try #require(server.waitForLine(containing: "backend on") != nil, "\(server.text)")
            return server
        }
        let echo = try start(7000, queue: 0, responder: "echo")
        let discard = try start(7001, queue: 1, responder: "discard")
        let clients = try (0..<16).map { _ in
            try withNetworkNamespace(topology.clientNamespace) {
                KernelUDPSocket(bind: IPEndpoint(address: .v4(topology.clientIPv4), port: 0), receiveTimeout: .milliseconds(300))
            }
        }
        for (i, client) in clients.enumerated() {
            client.send([UInt8(i)], to: IPEndpoint(address: .v4(topology.serverIPv4), port: 7001))
            #expect(client.receive() == nil, "the echo on port 7000 answered a datagram for port 7001")
            client.send([UInt8(i)], to: IPEndpoint(address: .v4(topology.serverIPv4), port: 7000))
            #expect(client.receive()?.bytes == [UInt8(i)])
        }
        #expect(discard.stop() == 0, "\(discard.text)")
        #expect(echo.stop() == 0, "\(echo.text)")
        #expect(discard.text.contains("received 16 datagrams"), "\(discard.text)")
        #expect(echo.text.contains("received 16 datagrams"), "\(echo.text)")
        #expect(try !xdpAttached(topology), "the last user out removes the program")
    }

    /// A server on `listen` and `queue` of a two-queue topology, not yet waited for.
    func launch(_ topology: TestTopology, listen: String, queue: Int) throws -> ChildProcess {
        try ChildProcess(sluice: [
            "udp-echo", "--backend", "xdp", "--dev", topology.serverInterface, "--netns", topology.serverNamespace,
            "--listen", listen, "--queues", "\(queue)", "--mode", "generic", "--duration", "60", "--stats-interval", "0",
        ])
    }

    /// Attaching or joining the program and adding a listener happen whole under the listener
    /// lock: two servers starting at once both come up (the second joins the program the first
    /// attached, where it was told to force a replacement of "another" program), and a server
    /// starting as the last one stops keeps the program (the last one out detached it under it).
    @Test func serversStartingAndStoppingTogetherShareTheProgram() throws {
        let topology = try topology(queues: 2)
        defer { topology.destroy() }
        for _ in 0..<4 {
            let first = try launch(topology, listen: "0.0.0.0:7000", queue: 0)
            let second = try launch(topology, listen: "0.0.0.0:7001", queue: 1)
            #expect(first.waitForLine(containing: "backend on") != nil, "\(first.text)")
            #expect(second.waitForLine(containing: "backend on") != nil, "\(second.text)")
            #expect(first.stop() == 0 && second.stop() == 0, "\(first.text)\n\(second.text)")
        }
        for delay: UInt32 in [0, 20_000, 50_000, 80_000] {
            let leaving = try launch(topology, listen: "0.0.0.0:7000", queue: 0)
            try #require(leaving.waitForLine(containing: "backend on") != nil, "\(leaving.text)")
            kill(leaving.pid, SIGTERM)
            usleep(delay)
            let arriving = try launch(topology, listen: "0.0.0.0:7001", queue: 1)
            let client = try withNetworkNamespace(topology.clientNamespace) {
                KernelUDPSocket(bind: IPEndpoint(address: .v4(topology.clientIPv4), port: 0), receiveTimeout: .milliseconds(300))
            }
            #expect(arriving.waitForLine(containing: "backend on") != nil, "\(arriving.text)")
            #expect(leaving.waitForExit() == 0, "\(leaving.text)")
            usleep(300_000)
            #expect(arriving.isRunning, "the last server out detached the program the next one joined: \(arriving.text)")
            client.send([7], to: IPEndpoint(address: .v4(topology.serverIPv4), port: 7001))
            #expect(client.receive()?.bytes == [7], "\(arriving.text)")
            #expect(arriving.stop() == 0, "\(arriving.text)")
        }
        #expect(try !xdpAttached(topology))
    }

    /// `sluice xdp load --ports` steers a port on every address to any socket on the queue, but
    /// a server's own listen address on it still goes only to that server's socket: a datagram
    /// for one server arriving on the other's queue goes through its own kernel socket, never
    /// into the other's. And `xdp unload` sees those servers and refuses to pull the program.
    @Test func aPortFromXDPLoadStillGivesEachServerItsOwnAddress() throws {
        let topology = try topology(queues: 2)
        defer { topology.destroy() }
        let second = IPv4Address(198, 18, 0, 11)
        #expect(shell("ip -n \(topology.serverNamespace) addr add \(second)/24 dev \(topology.serverInterface)").status == 0)
        let load = try ChildProcess(sluice: ["xdp", "load", "--dev", topology.serverInterface, "--netns", topology.serverNamespace,
                                             "--ports", "7000", "--mode", "generic"])
        #expect(load.waitForExit() == 0, "\(load.text)")
        let servers = [try launch(topology, listen: "\(topology.serverIPv4):7000", queue: 0),
                       try launch(topology, listen: "\(second):7000", queue: 1)]
        for server in servers { try #require(server.waitForLine(containing: "backend on") != nil, "\(server.text)") }
        let clients = try (0..<16).map { _ in
            try withNetworkNamespace(topology.clientNamespace) {
                KernelUDPSocket(bind: IPEndpoint(address: .v4(topology.clientIPv4), port: 0), receiveTimeout: .milliseconds(500))
            }
        }
        for (i, client) in clients.enumerated() {
            for address in [topology.serverIPv4, second] {
                let target = IPEndpoint(address: .v4(address), port: 7000)
                client.send([UInt8(i)], to: target)
                let reply = client.receive()
                #expect(reply?.bytes == [UInt8(i)] && reply?.from == target, "\(String(describing: reply))")
            }
        }
        let unload = try ChildProcess(sluice: ["xdp", "unload", "--dev", topology.serverInterface, "--netns", topology.serverNamespace])
        #expect(unload.waitForExit() == 1, "\(unload.text)")
        #expect(unload.text.contains("running sluice servers steer"), "\(unload.text)")
        for server in servers {
            #expect(server.stop() == 0, "\(server.text)")
            #expect(server.text.contains("received 16 datagrams") && server.text.contains("drops: none"), "\(server.text)")
        }
        #expect(try xdpAttached(topology), "the ports xdp load set keep the program")
    }

    /// The kernel socket a server will hold is the test of its address: with a wildcard server
    /// running on the port, a server for one address fails before it steers a single frame of
    /// the running server's to itself.
    @Test func anAddressARunningWildcardServerHoldsIsRefusedBeforeSteering() throws {
        let topology = try topology(queues: 2)
        defer { topology.destroy() }
        let wildcard = try launch(topology, listen: "0.0.0.0:7000", queue: 0)
        try #require(wildcard.waitForLine(containing: "backend on") != nil, "\(wildcard.text)")
        let refused = try launch(topology, listen: "\(topology.serverIPv4):7000", queue: 1)
        #expect(refused.waitForExit(timeout: .seconds(10)) == 1, "\(refused.text)")
        #expect(refused.text.contains("bind(\(topology.serverIPv4):7000) failed: Address already in use"), "\(refused.text)")
        #expect(!refused.text.contains("zero-copy") && !refused.text.contains("backend on"), "it got as far as its sockets: \(refused.text)")
        #expect(try xdpAttached(topology))
        #expect(wildcard.stop() == 0, "\(wildcard.text)")
    }

    /// A link MTU past what an XSK frame holds (1792 bytes of a 2048-byte UMEM frame): the
    /// longer frames are passed, and the server's kernel socket answers them, where the XSK
    /// dropped every one; also after the MTU is raised under the running server.
    @Test func framesLongerThanAnXSKFrameGoThroughTheKernelSocket() throws {
        let topology = try topology()
        defer { topology.destroy() }
        func mtu(_ value: Int) {
            for (namespace, interface) in [(topology.serverNamespace, topology.serverInterface),
                                           (topology.clientNamespace, topology.clientInterface)] {
                #expect(shell("ip -n \(namespace) link set dev \(interface) mtu \(value)").status == 0)
            }
        }
        let (server, client, target) = try startEcho(topology)
        mtu(3000)
        usleep(1_500_000)   // the server reads the interface again once a second
        for size in [100, 1700, 1800, 2900] {
            let payload = [UInt8](repeating: UInt8(size & 0xFF), count: size)
            client.send(payload, to: target)
            #expect(client.receive()?.bytes == payload, "\(size) bytes: \(server.text)")
        }
        #expect(server.stop() == 0, "\(server.text)")
        #expect(server.text.contains("too large 2"), "\(server.text)")
        #expect(server.text.contains("via kernel socket (fragments and whatever the program passes): 2 datagrams"), "\(server.text)")
        #expect(server.text.contains("rx_dropped 0"), "\(server.text)")
    }

    /// A server killed with SIGKILL cannot take back its listener; the next one on the address
    /// takes it over, and removes the program when it stops.
    @Test func aKilledServersListenerIsTakenOverAndRemoved() throws {
        let topology = try topology()
        defer { topology.destroy() }
        let (killed, _, _) = try startEcho(topology)
        #expect(killed.stop(signal: SIGKILL) == 128 + SIGKILL)
        #expect(try xdpAttached(topology), "nothing ran to remove the program")
        let status = try ChildProcess(sluice: ["xdp", "status", "--dev", topology.serverInterface, "--netns", topology.serverNamespace])
        #expect(status.waitForExit() == 0 && status.text.contains("(pid \(killed.pid) exited: abandoned;"), "\(status.text)")
        let (server, client, target) = try startEcho(topology)
        client.send([9], to: target)
        #expect(client.receive()?.bytes == [9])
        #expect(server.stop() == 0, "\(server.text)")
        #expect(try !xdpAttached(topology), "the killed server's listener kept the program attached")
    }

    /// Processes change a port's listeners one at a time, under a lock that needs no file (so a
    /// dynamic user under ProtectSystem=strict takes it too): a server waits while another holds it.
    @Test func listenersChangeUnderALockEveryProcessTakes() throws {
        let topology = try topology()
        defer { topology.destroy() }
        let held = try withNetworkNamespace(topology.serverNamespace) { try AbstractSocketName.claim("sluice-xdp/listeners") }
        let server = try ChildProcess(sluice: [
            "udp-echo", "--backend", "xdp", "--dev", topology.serverInterface, "--netns", topology.serverNamespace,
            "--listen", "\(topology.serverIPv4):7000", "--mode", "generic", "--duration", "60", "--stats-interval", "0",
        ])
        usleep(500_000)
        #expect(!server.text.contains("backend on"), "started while another process held the lock: \(server.text)")
        close(held)
        #expect(server.waitForLine(containing: "backend on") != nil, "\(server.text)")
        #expect(server.stop() == 0)
        #expect(!server.text.contains("without the lock"), "\(server.text)")
    }

    @Test func twoQueuesTwoWorkers() throws {
        let topology = try topology(queues: 2)
        defer { topology.destroy() }
        let server = try serve(topology, ["--queues", "0-1", "--mode", "generic"])
        let clients = try (0..<16).map { _ in
            try withNetworkNamespace(topology.clientNamespace) { KernelUDPSocket(bind: IPEndpoint(address: .v4(topology.clientIPv4), port: 0)) }
        }
        let target = IPEndpoint(address: .v4(topology.serverIPv4), port: 7000)
        for (i, client) in clients.enumerated() {
            client.send([UInt8(i)], to: target)
            #expect(client.receive()?.bytes == [UInt8(i)])
        }
        // Bursts on both queues, each echoed at once: the second queue's socket shares the first's
        // UMEM and its copy mode, and a copy-mode socket is woken until its TX ring is sent (a
        // socket taken for zero-copy was woken once, and the rest waited for the next traffic).
        for client in clients {
            var timeout = timeval(tv_sec: 0, tv_usec: 1000)
            setsockopt(client.descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            // Room for a whole burst of replies while the clients before it are read: with the
            // default buffer a slow reader's socket dropped the tail (RcvbufErrors).
            var bytes: Int32 = 4 << 20
            setsockopt(client.descriptor, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, socklen_t(MemoryLayout<Int32>.size))
            for n in 0..<200 { client.send([UInt8(n)], to: target) }
        }
        var missing = [Int](repeating: 200, count: clients.count)
        let clock = ContinuousClock()
        // A stranded reply waited for the next traffic; two seconds leave room for a build under AddressSanitizer.
        let deadline = clock.now + .seconds(2)
        while missing.contains(where: { $0 > 0 }), clock.now < deadline {
            for (i, client) in clients.enumerated() where missing[i] > 0 {
                while missing[i] > 0, client.receive() != nil { missing[i] -= 1 }
            }
        }
        #expect(server.stop() == 0)
        // Under load the kernel may still drop a burst's datagrams on the way in or out: the veth
        // whose peer's backlog was full counts them as its TX drops, the XSK those its rings had
        // no room for, a client socket those past its buffer. A reply stranded on a TX ring is
        // counted nowhere: missing replies must all be drops the kernel counted.
        let lost = missing.reduce(0, +)
        if lost > 0 {
            func transmitDrops(_ namespace: String, _ interface: String) -> Int {
                let stats = shell("ip -n \(namespace) -s -j link show dev \(interface)").output
                return (try? JSONSerialization.jsonObject(with: Data(stats.utf8)) as? [[String: Any]])?.first
                    .flatMap { ($0["stats64"] as? [String: Any])?["tx"] as? [String: Any] }?["dropped"] as? Int ?? 0
            }
            func count(_ pattern: String) -> Int { capturedNumber(pattern, in: server.text) ?? 0 }
            // The clients' sockets too (Udp RcvbufErrors in their namespace).
            let snmp = shell("ip netns exec \(topology.clientNamespace) cat /proc/net/snmp").output.split(separator: "\n")
                .filter { $0.hasPrefix("Udp:") }.map { $0.split(separator: " ") }
            let receiveBufferErrors = snmp.count == 2 ? zip(snmp[0], snmp[1]).first { $0.0 == "RcvbufErrors" }.flatMap { Int($0.1) } ?? 0 : 0
            let counted = transmitDrops(topology.serverNamespace, topology.serverInterface)
                + transmitDrops(topology.clientNamespace, topology.clientInterface)
                + count(#"rx_dropped (\d+)"#) + count(#"rx_ring_full (\d+)"#) + receiveBufferErrors
            #expect(counted >= lost, "replies missing 2 s after the bursts, per client: \(missing); drops counted: \(counted): \(server.text)")
        }
        // One worker per queue, and one on the kernel socket.
        #expect(server.text.contains("3 worker(s)") && server.text.contains("frames: all returned"), "\(server.text)")
        #expect(server.text.contains("generic XDP, copy,"), "both sockets copy mode, as the kernel bound them: \(server.text)")
    }

    @Test func clearErrors() throws {
        let topology = try topology()
        defer { topology.destroy() }
        let missing = try ChildProcess(sluice: ["udp-echo", "--backend", "xdp", "--dev", "nosuchdev0", "--netns", topology.serverNamespace,
                                                 "--listen", "0.0.0.0:7000"])
        #expect(missing.waitForExit() != 0)
        #expect(missing.text.contains("nosuchdev0"), "\(missing.text)")
        let queue = try ChildProcess(sluice: ["udp-echo", "--backend", "xdp", "--dev", topology.serverInterface, "--netns",
                                               topology.serverNamespace, "--listen", "0.0.0.0:7000", "--queues", "5", "--mode", "generic"])
        #expect(queue.waitForExit() != 0)
        #expect(queue.text.contains("has 1 receive queue(s)") && queue.text.contains("no queue 5"), "\(queue.text)")
        #expect(!queue.text.contains("zero-copy"), "the reason first, no side effect of it: \(queue.text)")
        #expect(try !xdpAttached(topology), "a failed start leaves no program behind")
        let unprivileged = try ChildProcess("/usr/bin/nsenter", [
            "--net=/run/netns/\(topology.serverNamespace)", "/usr/bin/setpriv",
            "--reuid", "65534", "--regid", "65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all",
            SluiceExecutable.path, "udp-echo", "--backend", "xdp", "--dev", topology.serverInterface, "--listen", "0.0.0.0:7000",
            "--mode", "generic",
        ])
        #expect(unprivileged.waitForExit() != 0)
        #expect(unprivileged.text.contains("this process lacks CAP_NET_ADMIN, CAP_BPF and CAP_PERFMON"), "\(unprivileged.text)")
        #expect(unprivileged.text.contains("--backend socket"), "udp-echo has another backend to offer: \(unprivileged.text)")
        // `xdp load` has no backend to pick: its error offers none.
        let load = try ChildProcess("/usr/bin/setpriv", [
            "--reuid", "65534", "--regid", "65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all",
            SluiceExecutable.path, "xdp", "load", "--dev", "lo", "--mode", "generic",
        ])
        #expect(load.waitForExit() != 0)
        #expect(load.text.contains("CAP_BPF") && !load.text.contains("--backend"), "\(load.text)")
    }
}
