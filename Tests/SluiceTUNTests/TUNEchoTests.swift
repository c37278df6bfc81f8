#if canImport(Glibc)
import Glibc
#endif
import Sluice
import SluiceTestSupport
import Testing

/// `sluice udp-echo --backend tun` as a user runs it, in a namespace of the test's own, driven by
/// kernel UDP sockets: the kernel routes the listen address into the device, and the service
/// behind it answers.
@Suite(.serialized) struct TUNEchoTests {

    /// `kernel`: the kernel's address to give the device (`nil`: it exists and has its own).
    static func startServer(_ namespace: ScratchNamespace, device: String, kernel: String?, listen: String,
                            workers: Int = 1, kind: String = "tun") throws -> ChildProcess {
        let server = try ChildProcess(sluice: [
            "udp-echo", "--backend", kind, "--name", device, "--listen", listen, "--workers", "\(workers)",
            "--netns", namespace.name, "--duration", "60", "--stats-interval", "0",
        ] + (kernel.map { ["--address", $0] } ?? []))
        try #require(server.waitForLine(containing: "backend on") != nil, "\(server.text)")
        return server
    }

    @Test(arguments: [("198.18.1.1/24", "198.18.1.2", 1472), ("2001:2:1::1/64", "[2001:2:1::2]", 1452)])
    func echoesEveryDatagramThroughTheDevice(kernel: String, service: String, largest: Int) throws {
        let namespace = try ScratchNamespace(prefix: "sltun")
        let server = try Self.startServer(namespace, device: "sltun0", kernel: kernel, listen: "\(service):9000")
        let target = try #require(IPEndpoint("\(service):9000"))
        let kernelAddress = try #require(IPAddress(kernel.split(separator: "/")[0]))
        let client = try withNetworkNamespace(namespace.name) { KernelUDPSocket(bind: IPEndpoint(address: kernelAddress, port: 0)) }
        var random = TestBytes(seed: 16)
        var echoed = 0
        for round in 0..<300 {
            let size = round < 2 ? [0, largest][round] : Int(random.next() % UInt64(largest + 1))
            let payload = random.bytes(size)
            client.send(payload, to: target)
            let reply = client.receive()
            #expect(reply?.bytes == payload && reply?.from == target, "round \(round), \(size) bytes")
            if reply?.bytes != payload { break }
            echoed += 1
        }
        #expect(echoed == 300)
        #expect(server.stop() == 0)
        #expect(server.text.contains("sent 300,"), "\(server.text)")
        #expect(server.text.contains("frames: all returned to their pools"), "\(server.text)")
    }

    /// `ip link set … mtu` under a running host: replies are cut for the MTU the device has now.
    @Test func repliesFollowTheDevicesMTUAsItChanges() throws {
        let namespace = try ScratchNamespace(prefix: "sltun")
        let server = try Self.startServer(namespace, device: "sltun7", kernel: "198.18.1.1/24", listen: "198.18.1.2:9000")
        let target = try #require(IPEndpoint("198.18.1.2:9000"))
        let client = try withNetworkNamespace(namespace.name) { KernelUDPSocket(bind: IPEndpoint("198.18.1.1:0")!) }
        let payload = [UInt8](repeating: 0x5A, count: 3000)
        client.send(payload, to: target)
        #expect(client.receive()?.bytes == payload, "at 1500")
        let raise = try ChildProcess("/usr/sbin/ip", ["-n", namespace.name, "link", "set", "sltun7", "mtu", "9000"])
        #expect(raise.waitForExit() == 0, "\(raise.text)")
        usleep(1_100_000)   // the host looks once a second
        for _ in 0..<2 {
            client.send(payload, to: target)
            #expect(client.receive()?.bytes == payload, "at 9000")
        }
        #expect(server.stop() == 0)
        // The first reply in three fragments; once the host saw 9000 (at most a second after), whole.
        #expect(server.text.contains("fragmented_replies=1 ") || server.text.contains("fragmented_replies=1,")
                || server.text.contains("fragmented_replies=1\n"), "\(server.text)")
        #expect(server.text.contains("TUN, MTU 9000"), "the summary gives the MTU as it is now: \(server.text)")
    }

    /// As a kernel socket bound to the listen address: a datagram to the subnet's broadcast is
    /// not for it (one bound to 0.0.0.0 would take it; the device backends bind one address).
    @Test(arguments: ["tun", "tap"])
    func theSubnetBroadcastIsNotTheListenAddresss(kind: String) throws {
        let namespace = try ScratchNamespace(prefix: "sltun")
        let server = try Self.startServer(namespace, device: "sltun8", kernel: "198.18.1.1/24", listen: "198.18.1.2:9000", kind: kind)
        let client = try withNetworkNamespace(namespace.name) {
            KernelUDPSocket(bind: IPEndpoint("198.18.1.1:0")!, receiveTimeout: .milliseconds(500))
        }
        var on: Int32 = 1
        setsockopt(client.descriptor, SOL_SOCKET, SO_BROADCAST, &on, 4)
        #expect(client.send([1], to: IPEndpoint("198.18.1.255:9000")!) == 1)
        #expect(client.receive() == nil, "no reply to the broadcast")
        #expect(client.echoes([2], to: IPEndpoint("198.18.1.2:9000")!), "the listen address itself")
        #expect(server.stop() == 0)
        #expect(server.text.contains("not_local=1"), "\(server.text)")
    }

    /// A device set down refuses writes (EIO) as the kernel drops what a down interface would
    /// send: the ICMP time exceeded for a datagram whose other fragments never came, due while
    /// the device is down, is lost and counted, and the service goes on once it is up again.
    @Test func aDeviceSetDownLosesWhatItWouldSendAndTheServiceGoesOn() throws {
        let namespace = try ScratchNamespace(prefix: "sltun")
        let sysctl = try ChildProcess("/usr/sbin/ip", ["netns", "exec", namespace.name, "sysctl", "-qw", "net.ipv4.ipfrag_time=1"])
        #expect(sysctl.waitForExit() == 0, "\(sysctl.text)")
        let server = try Self.startServer(namespace, device: "sltun9", kernel: "198.18.1.1/24", listen: "198.18.1.2:9000")
        let target = IPEndpoint("198.18.1.2:9000")!
        // The first fragment of a UDP datagram, alone: IP_HDRINCL, MF set.
        var packet: [UInt8] = [0x45, 0, 0, 36, 0x12, 0x34, 0x20, 0x00, 64, 17, 0, 0, 198, 18, 1, 1, 198, 18, 1, 2]
        packet += [0x13, 0x88, 0x23, 0x28, 0, 100, 0, 0] + [UInt8](repeating: 9, count: 8)
        let sent = try withNetworkNamespace(namespace.name) { () -> Int in
            let raw = socket(AF_INET, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), Int32(IPPROTO_RAW))
            defer { close(raw) }
            return KernelSocketAddress.with(target, family: AF_INET) { sendto(raw, packet, packet.count, 0, $0, $1) }
        }
        #expect(sent == packet.count)
        usleep(100_000)
        let down = try ChildProcess("/usr/sbin/ip", ["-n", namespace.name, "link", "set", "sltun9", "down"])
        #expect(down.waitForExit() == 0, "\(down.text)")
        usleep(2_000_000)   // the reassembly times out, its ICMP error meets the device down
        let up = try ChildProcess("/bin/sh", ["-c", "ip -n \(namespace.name) link set sltun9 up && ip -n \(namespace.name) route replace 198.18.1.0/24 dev sltun9"])
        #expect(up.waitForExit() == 0, "\(up.text)")
        let client = try withNetworkNamespace(namespace.name) { KernelUDPSocket(bind: IPEndpoint("198.18.1.1:0")!) }
        #expect(client.echoes([3], to: target), "served again once up: \(server.text)")
        #expect(server.stop() == 0, "\(server.text)")
        #expect(server.text.contains("reassembly_timeouts=1"), "\(server.text)")
        #expect(server.text.contains("drop_tx=1"), "the lost ICMP error is counted: \(server.text)")
    }

    @Test func theDeviceDeletedUnderARunningWorkerStopsItWithAClearError() throws {
        let namespace = try ScratchNamespace(prefix: "sltun")
        let server = try Self.startServer(namespace, device: "sltun1", kernel: "198.18.1.1/24", listen: "198.18.1.2:9000")
        let delete = try ChildProcess("/usr/sbin/ip", ["-n", namespace.name, "link", "del", "sltun1"])
        #expect(delete.waitForExit() == 0, "\(delete.text)")
        let status = server.waitForExit(timeout: .seconds(5))
        #expect(status != nil && status != 0, "\(server.text)")
        #expect(server.text.contains("the device went away"), "\(server.text)")
        #expect(server.text.contains("frames: all returned to their pools"), "\(server.text)")
    }

    /// A listen address the kernel routes elsewhere (or nowhere) would leave the service waiting
    /// for nothing; one routed into the device from outside its prefix is served.
    @Test func aListenAddressIsServedOnlyWhenTheKernelRoutesItIntoTheDevice() throws {
        let namespace = try ScratchNamespace(prefix: "sltun")
        let refusals = [("198.18.2.2:9000", "no route to 198.18.2.2"), ("127.0.0.5:9000", "routes 127.0.0.5 to lo, not into sltun5"),
                        ("[2001:2:3::2]:9000", "no route to 2001:2:3::2")]
        for (listen, message) in refusals {
            let server = try ChildProcess(sluice: ["udp-echo", "--backend", "tun", "--name", "sltun5", "--listen", listen,
                                                   "--address", "198.18.1.1/24", "--address", "2001:2:1::1/64",
                                                   "--netns", namespace.name, "--duration", "5"])
            #expect(server.waitForExit(timeout: .seconds(10)) == 1, "\(listen): \(server.text)")
            #expect(server.text.contains(message), "\(listen): \(server.text)")
        }
        #expect(try !linkExists(namespace, "sltun5"), "a refused start leaves no device behind")
        let up = try ChildProcess(sluice: ["tun", "up", "--name", "sltun5", "--address", "198.18.1.1/24", "--netns", namespace.name])
        #expect(up.waitForExit() == 0, "\(up.text)")
        let route = try ChildProcess("/usr/sbin/ip", ["-n", namespace.name, "route", "add", "198.18.2.0/24", "dev", "sltun5"])
        #expect(route.waitForExit() == 0, "\(route.text)")
        let server = try Self.startServer(namespace, device: "sltun5", kernel: nil, listen: "198.18.2.2:9000")
        let client = try withNetworkNamespace(namespace.name) {
            KernelUDPSocket(bind: IPEndpoint(address: .v4(IPv4Address(198, 18, 1, 1)), port: 0))
        }
        client.send([1, 2, 3], to: try #require(IPEndpoint("198.18.2.2:9000")))
        #expect(client.receive()?.bytes == [1, 2, 3])
        #expect(server.stop() == 0, "\(server.text)")
        _ = try ChildProcess(sluice: ["tun", "down", "--name", "sltun5", "--netns", namespace.name]).waitForExit()
    }

    func linkExists(_ namespace: ScratchNamespace, _ device: String) throws -> Bool {
        try ChildProcess("/usr/sbin/ip", ["-n", namespace.name, "link", "show", "dev", device]).waitForExit() == 0
    }

    /// An address the kernel refuses (IPv6 turned off in the namespace) fails `tun up` and
    /// takes the device it made with it: no half-configured device for the next start to find.
    @Test func aDeviceThatFailsToBeSetUpIsNotLeftBehind() throws {
        let namespace = try ScratchNamespace(prefix: "sltun")
        let sysctl = try ChildProcess("/usr/sbin/ip", ["netns", "exec", namespace.name, "sysctl", "-qw",
                                                       "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"])
        try #require(sysctl.waitForExit() == 0, "\(sysctl.text)")
        let up = try ChildProcess(sluice: ["tun", "up", "--name", "sltun6", "--address", "198.18.1.1/24", "--address", "2001:2:1::1/64",
                                           "--netns", namespace.name])
        #expect(up.waitForExit() == 1 && up.text.contains("adding 2001:2:1::1/64"), "\(up.text)")
        #expect(try !linkExists(namespace, "sltun6"), "removed again")
    }

    @Test func aPersistentDeviceIsMadeServedAndRemoved() throws {
        let namespace = try ScratchNamespace(prefix: "sltun")
        let up = try ChildProcess(sluice: ["tun", "up", "--name", "sltun2", "--address", "198.18.1.1/24", "--netns", namespace.name])
        #expect(up.waitForExit() == 0, "\(up.text)")
        #expect(up.text.contains("sluice tun down --name sltun2 --netns \(namespace.name)"), "a hint that works: \(up.text)")
        #expect(try linkExists(namespace, "sltun2"), "the device outlives tun up")
        let upAgain = try ChildProcess(sluice: ["tun", "up", "--name", "sltun2", "--address", "198.18.1.1/24", "--netns", namespace.name])
        #expect(upAgain.waitForExit() == 1 && upAgain.text.contains("a device named sltun2 exists"), "as ip tuntap add: \(upAgain.text)")
        let server = try Self.startServer(namespace, device: "sltun2", kernel: nil, listen: "198.18.1.2:9000")
        let client = try withNetworkNamespace(namespace.name) {
            KernelUDPSocket(bind: IPEndpoint(address: .v4(IPv4Address(198, 18, 1, 1)), port: 0))
        }
        let target = try #require(IPEndpoint("198.18.1.2:9000"))
        client.send(Array("persistent".utf8), to: target)
        #expect(client.receive()?.bytes == Array("persistent".utf8))
        #expect(server.stop() == 0, "\(server.text)")
        #expect(try linkExists(namespace, "sltun2"), "a persistent device stays after its server")
        // A server's own --address on a device it found is taken back when it stops (it stayed).
        let second = try Self.startServer(namespace, device: "sltun2", kernel: "198.18.2.1/24", listen: "198.18.2.2:9000")
        #expect(second.stop() == 0, "\(second.text)")
        let addresses = try ChildProcess("/usr/sbin/ip", ["-n", namespace.name, "-br", "address", "show", "dev", "sltun2"])
        _ = addresses.waitForExit()
        #expect(addresses.text.contains("198.18.1.1/24") && !addresses.text.contains("198.18.2.1"), "\(addresses.text)")
        // As fresh: the server's offloads (partial checksums, super-packets) left with it.
        let features = try ChildProcess("/usr/sbin/ip", ["netns", "exec", namespace.name, "ethtool", "-k", "sltun2"])
        #expect(features.waitForExit() == 0)
        #expect(features.text.contains("tx-checksumming: off") && features.text.contains("tx-udp-segmentation: off"), "\(features.text)")
        let down = try ChildProcess(sluice: ["tun", "down", "--name", "sltun2", "--netns", namespace.name])
        #expect(down.waitForExit() == 0, "\(down.text)")
        #expect(try !linkExists(namespace, "sltun2"))
        let again = try ChildProcess(sluice: ["tun", "down", "--name", "sltun2", "--netns", namespace.name])
        #expect(again.waitForExit() == 1)
        #expect(again.text.contains("no device sltun2"), "\(again.text)")
        // Only TUN and TAP devices: a veth of the same name is left alone.
        #expect(try ChildProcess("/usr/sbin/ip", ["-n", namespace.name, "link", "add", "sltun2", "type", "veth", "peer", "name", "sltun3"]).waitForExit() == 0)
        let other = try ChildProcess(sluice: ["tun", "down", "--name", "sltun2", "--netns", namespace.name])
        #expect(other.waitForExit() == 1)
        #expect(other.text.contains("not a TUN or TAP device"), "\(other.text)")
        #expect(try linkExists(namespace, "sltun2"))
    }

    /// `ip` with `args` in the namespace; what it printed.
    @discardableResult
    func ip(_ namespace: ScratchNamespace, _ args: String...) throws -> String {
        let run = try ChildProcess("/usr/sbin/ip", ["-n", namespace.name] + args)
        #expect(run.waitForExit() == 0, "ip \(args): \(run.text)")
        return run.text
    }

    /// Echoes one datagram from `from` to `to` in `namespace`: whether it came back.
    func echoes(_ namespace: ScratchNamespace, from: IPAddress, to: String) throws -> Bool {
        let client = try withNetworkNamespace(namespace.name) { KernelUDPSocket(bind: IPEndpoint(address: from, port: 0)) }
        client.send(Array("found".utf8), to: try #require(IPEndpoint(to)))
        return client.receive()?.bytes == Array("found".utf8)
    }

    @Test func devicesMadeByIpTuntapAreServedAndLeftAsTheyWereFound() throws {
        let namespace = try ScratchNamespace(prefix: "sltun")
        try ip(namespace, "tuntap", "add", "dev", "sltun7", "mode", "tap", "user", "nobody")
        let before = try ip(namespace, "-d", "link", "show", "dev", "sltun7")
        #expect(before.contains("state DOWN") && before.contains("vnet_hdr off"), "\(before)")
        let server = try Self.startServer(namespace, device: "sltun7", kernel: "198.18.1.1/24", listen: "198.18.1.2:9000", kind: "tap")
        #expect(try echoes(namespace, from: .v4(IPv4Address(198, 18, 1, 1)), to: "198.18.1.2:9000"))
        #expect(server.stop() == 0, "\(server.text)")
        // Down again, no virtio-net header, its owner, none of the server's address (all were changed while it ran).
        let after = try ip(namespace, "-d", "address", "show", "dev", "sltun7")
        #expect(after.contains("state DOWN") && after.contains("vnet_hdr off") && after.contains("user nobody")
                    && !after.contains("198.18.1.1"), "\(after)")
        // So too by a server that became another user: it keeps CAP_NET_ADMIN for it.
        let dropped = try ChildProcess(sluice: ["udp-echo", "--backend", "tap", "--name", "sltun7", "--listen", "198.18.1.2:9000",
                                                "--address", "198.18.1.1/24", "--user", "nobody", "--netns", namespace.name,
                                                "--duration", "60", "--stats-interval", "0"])
        try #require(dropped.waitForLine(containing: "capabilities: CAP_NET_ADMIN") != nil, "\(dropped.text)")
        #expect(try echoes(namespace, from: .v4(IPv4Address(198, 18, 1, 1)), to: "198.18.1.2:9000"))
        #expect(dropped.stop() == 0, "\(dropped.text)")
        let afterDropped = try ip(namespace, "-d", "address", "show", "dev", "sltun7")
        #expect(afterDropped.contains("state DOWN") && afterDropped.contains("vnet_hdr off") && !afterDropped.contains("198.18.1.1"),
                "\(afterDropped)")
        // A multi-queue device takes one worker's queue as well as several.
        try ip(namespace, "tuntap", "add", "dev", "sltun8", "mode", "tun", "multi_queue")
        let single = try Self.startServer(namespace, device: "sltun8", kernel: "198.18.2.1/24", listen: "198.18.2.2:9000")
        #expect(try echoes(namespace, from: .v4(IPv4Address(198, 18, 2, 1)), to: "198.18.2.2:9000"))
        #expect(single.stop() == 0, "\(single.text)")
        #expect(try ip(namespace, "-d", "link", "show", "dev", "sltun8").contains("multi_queue"))
    }

    /// The usual way to use TAP: a port of a bridge that holds the kernel's address. The served
    /// address is reached through the bridge, no route into the TAP device needed.
    @Test func aTAPDeviceInABridgeIsServedThroughIt() throws {
        let namespace = try ScratchNamespace(prefix: "sltun")
        try ip(namespace, "link", "add", "slbr9", "type", "bridge")
        try ip(namespace, "address", "add", "198.18.40.1/24", "dev", "slbr9")
        try ip(namespace, "link", "set", "slbr9", "up")
        try ip(namespace, "tuntap", "add", "dev", "sltun9", "mode", "tap")
        try ip(namespace, "link", "set", "sltun9", "master", "slbr9")
        let server = try Self.startServer(namespace, device: "sltun9", kernel: nil, listen: "198.18.40.2:9000", kind: "tap")
        #expect(try echoes(namespace, from: .v4(IPv4Address(198, 18, 40, 1)), to: "198.18.40.2:9000"))
        #expect(server.stop() == 0, "\(server.text)")
    }

    /// A multi-queue device takes any number of queues, and the kernel spreads flows over all of
    /// them: a second server on a device another one serves is refused, not handed some of its flows.
    @Test func aSecondServerOnADeviceInUseIsRefused() throws {
        let namespace = try ScratchNamespace(prefix: "sltun")
        let server = try Self.startServer(namespace, device: "sltun6", kernel: "198.18.1.1/24", listen: "198.18.1.2:9000", workers: 2)
        let second = try ChildProcess(sluice: ["udp-echo", "--backend", "tun", "--name", "sltun6", "--listen", "198.18.1.3:9000",
                                               "--workers", "2", "--netns", namespace.name, "--duration", "5"])
        #expect(second.waitForExit(timeout: .seconds(10)) == 1, "\(second.text)")
        #expect(second.text.contains("another sluice process serves sltun6"), "\(second.text)")
        #expect(server.stop() == 0, "\(server.text)")
    }

    @Test func aMissingAddressOrNameIsAClearError() throws {
        let noAddress = try ChildProcess(sluice: ["udp-echo", "--backend", "tun", "--name", "x", "--listen", "198.18.1.2:9000"])
        #expect(noAddress.waitForExit() != 0)
        #expect(noAddress.text.contains("needs the kernel's address on it"), "\(noAddress.text)")
        let badPrefix = try ChildProcess(sluice: ["udp-echo", "--backend", "tun", "--name", "x", "--address", "198.18.1.1/33",
                                                  "--listen", "198.18.1.2:9000"])
        #expect(badPrefix.waitForExit() != 0)
        #expect(badPrefix.text.contains("not an address with a prefix length"), "\(badPrefix.text)")
    }
}
