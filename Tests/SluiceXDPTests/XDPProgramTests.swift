#if canImport(Glibc)
import Glibc
#endif
import SluicePackets
import SluiceTestSupport
import SluiceCore
import SluiceSystem
import SluiceXDP
import Testing

// MARK: - Helpers (namespaces, threads, shell)

/// Runs a shell command; returns its exit status (nil on timeout) and everything it printed.
@discardableResult
func shell(_ command: String, timeout: Duration = .seconds(20)) -> (status: Int32?, output: String) {
    guard let child = try? ChildProcess("/bin/sh", ["-c", command]) else { return (nil, "could not start /bin/sh") }
    let status = child.waitForExit(timeout: timeout)
    return (status, child.text)
}

/// Something a fresh thread runs.
private protocol ThreadBody: AnyObject { func run() }

/// A closure, its namespace and its result, handed to a fresh pthread.
private final class NamespaceThread<T>: ThreadBody, @unchecked Sendable {
    let namespace: String
    let body: () throws -> T
    var result: Result<T, any Error>?

    init(namespace: String, body: @escaping () throws -> T) {
        self.namespace = namespace
        self.body = body
    }

    func run() {
        do {
            try NetworkNamespace.enter(namespace)
            result = .success(try body())
        } catch {
            result = .failure(error)
        }
    }
}

/// Runs `body` on a fresh thread that has entered network namespace `namespace` (namespaces
/// belong to threads, so the test's own thread stays where it is) and waits for it.
func inNamespace<T>(_ namespace: String, _ body: () throws -> T) throws -> T {
    try withoutActuallyEscaping(body) { escapable in
        let box = NamespaceThread(namespace: namespace, body: escapable)
        let context = Unmanaged.passRetained(box as AnyObject).toOpaque()
        var thread = pthread_t()
        let created = pthread_create(&thread, nil, { raw in
            let object = Unmanaged<AnyObject>.fromOpaque(raw!).takeRetainedValue()
            (object as! any ThreadBody).run()
            return nil
        }, context)
        precondition(created == 0, "pthread_create: \(created)")
        pthread_join(thread, nil)
        return try box.result!.get()
    }
}

/// Unique names for this run: the process id and a counter.
enum TestNames {
    private static let counter = Counter()
    private final class Counter: @unchecked Sendable {
        private var value = 0
        private var lock = pthread_mutex_t()
        init() { pthread_mutex_init(&lock, nil) }
        func next() -> Int {
            pthread_mutex_lock(&lock)
            defer { pthread_mutex_unlock(&lock) }
            value += 1
            return value
        }
    }

    static func next() -> String { "\(getpid() % 100_000)x\(counter.next())" }
}

/// Two network namespaces, A (198.18.0.1 on `deviceA`) and B (198.18.0.2 on `deviceB`), joined
/// by a veth pair; deleted again when released, whatever the test did.
final class NamespacePair {
    let a: String
    let b: String
    let deviceA: String
    let deviceB: String

    /// - Parameter staticNeighbours: pin each side's neighbour entry, so ARP is not needed.
    init(staticNeighbours: Bool = true) throws {
        let suffix = TestNames.next()
        a = "sxpa\(suffix)"
        b = "sxpb\(suffix)"
        deviceA = "xa\(suffix)"
        deviceB = "xb\(suffix)"
        var script = """
            set -e
            ip netns add \(a)
            ip netns add \(b)
            ip link add \(deviceA) netns \(a) type veth peer name \(deviceB) netns \(b)
            ip -n \(a) addr add 198.18.0.1/24 dev \(deviceA)
            ip -n \(b) addr add 198.18.0.2/24 dev \(deviceB)
            ip -n \(a) link set lo up
            ip -n \(b) link set lo up
            ip -n \(a) link set \(deviceA) up
            ip -n \(b) link set \(deviceB) up
            nsenter --net=/run/netns/\(a) ethtool -K \(deviceA) tx off >/dev/null
            nsenter --net=/run/netns/\(b) ethtool -K \(deviceB) tx off >/dev/null

            """
        if staticNeighbours {
            script += """
                MA=$(ip netns exec \(a) cat /sys/class/net/\(deviceA)/address)
                MB=$(ip netns exec \(b) cat /sys/class/net/\(deviceB)/address)
                ip -n \(a) neigh replace 198.18.0.2 lladdr $MB dev \(deviceA) nud permanent
                ip -n \(b) neigh replace 198.18.0.1 lladdr $MA dev \(deviceB) nud permanent

                """
        }
        let (status, output) = shell(script)
        guard status == 0 else {
            shell("ip netns del \(a) 2>/dev/null; ip netns del \(b) 2>/dev/null")
            throw ChildProcessError(message: "namespace setup failed (\(String(describing: status))): \(output)")
        }
    }

    deinit {
        shell("ip netns del \(a) 2>/dev/null; ip netns del \(b) 2>/dev/null")
    }

    /// `ip -d link show` of B's device.
    var linkB: String { shell("ip -n \(b) -d link show dev \(deviceB)").output }

    /// Sends `count` datagrams from A to 198.18.0.2:`port` and returns how many a kernel socket
    /// bound to that port in B received.
    func deliver(count: Int, toPort port: UInt16) throws -> Int {
        let receiver = try inNamespace(b) { KernelUDPSocket(bind: IPEndpoint("198.18.0.2:\(port)")!, receiveTimeout: .seconds(2)) }
        let sender = try inNamespace(a) { KernelUDPSocket(bind: IPEndpoint("198.18.0.1:0")!) }
        let target = IPEndpoint("198.18.0.2:\(port)")!
        for index in 0..<count { sender.send([0x53, 0x4C, UInt8(index & 0xFF)] + [UInt8](repeating: 7, count: 40), to: target) }
        var received = 0
        while received < count, let datagram = receiver.receive() {
            if datagram.bytes.count == 43 { received += 1 }
        }
        return received
    }
}

/// Attaches a tiny XDP_PASS program that is not sluice's ("other_pass", generic mode) to
/// `device` in `namespace`: compiled with clang into a temporary directory, removed afterwards.
func attachForeignProgram(namespace: String, device: String) throws {
    let directory = "/tmp/sluice-xdp-foreign-\(TestNames.next())"
    defer { shell("rm -rf \(directory)") }
    let source = """
        #include <linux/bpf.h>
        #define SEC(name) __attribute__((section(name), used))
        SEC("xdp") int other_pass(struct xdp_md *ctx) { return XDP_PASS; }
        char _license[] SEC("license") = "GPL";
        """
    let (status, output) = shell("""
        set -e
        mkdir -p \(directory)
        cat > \(directory)/pass.bpf.c <<'EOF'
        \(source)
        EOF
        CLANG=$(command -v clang-14 || command -v clang)
        $CLANG -O2 -g -target bpf -I/usr/include/$(uname -m)-linux-gnu -c \(directory)/pass.bpf.c -o \(directory)/pass.bpf.o
        ip -n \(namespace) link set dev \(device) xdpgeneric obj \(directory)/pass.bpf.o sec xdp
        """)
    guard status == 0 else { throw ChildProcessError(message: "attaching the foreign XDP program failed: \(output)") }
}

// MARK: - Library tests

@Suite(.serialized) struct XDPProgramTests {
    @Test func thePackageEmbedsEveryProgramAndEachOpens() throws {
        #expect(Set(BPFObject.embeddedNames) == ["xsk_redirect", "xsk_redirect_frags", "udp_drop"])
        for (name, program) in [("xsk_redirect", "sluice_xsk_redirect"), ("xsk_redirect_frags", "sluice_xsk_redirect_frags"),
                                ("udp_drop", "sluice_udp_drop")] {
            let opened = try BPFObject.open(named: name, programName: program)
            defer { opened.close() }
            #expect(opened.object != nil, "\(name) comes from the embedded bytes, not a file")
        }
        #expect(throws: SystemCallError.self) { try BPFObject.open(named: "xsk_redirect", programName: "no_such_program") }
        #expect(throws: SystemCallError.self) { try BPFObject.open(named: "no_such_object", programName: "x") }
    }

    @Test(arguments: XDPAttachMode.allCases)
    func attachesInEachModeWithPortsAndDetachesCleanly(mode: XDPAttachMode) throws {
        let pair = try NamespacePair()
        let device = pair.deviceB
        let id = try inNamespace(pair.b) { () throws -> UInt32 in
            let program = try XDPProgram.attach(to: device, mode: mode)
            #expect(program.mode == mode)
            #expect(program.interfaceName == device)
            #expect(program.interfaceIndex > 0)
            #expect(program.programID != 0)
            #expect(!program.wasAlreadyAttached)
            #expect(program.xsksMapDescriptor >= 0)
            #expect(try program.ports == [])
            try program.setPort(9000)
            try program.setPort(53)
            try program.setPort(65535)
            #expect(try program.ports == [53, 9000, 65535])
            try program.setPort(65535, enabled: false)
            #expect(try program.ports == [53, 9000])
            _ = try program.verdicts()

            // Found again from scratch, as another process would, with the same maps.
            let found = try #require(try XDPProgram.attached(on: device))
            #expect(found.programID == program.programID)
            #expect(found.mode == mode)
            #expect(try found.ports == [53, 9000])
            return program.programID
        }
        let link = pair.linkB
        #expect(link.contains("prog/xdp id \(id)"), "\(link)")
        #expect(link.contains(mode == .native ? " xdp " : " xdpgeneric "), "\(link)")

        try inNamespace(pair.b) { () throws in
            #expect(try XDPProgram.detach(from: device))
            #expect(try XDPProgram.attached(on: device) == nil)
            #expect(try XDPProgram.detach(from: device) == false)
        }
        let after = pair.linkB
        #expect(!after.contains("prog/xdp"), "\(after)")
    }

    @Test func attachIsIdempotentAndInstanceDetachRemovesIt() throws {
        let pair = try NamespacePair()
        let device = pair.deviceB
        try inNamespace(pair.b) {
            let first = try XDPProgram.attach(to: device, mode: .native)
            try first.setPort(9000)
            let second = try XDPProgram.attach(to: device, mode: .native)
            #expect(second.programID == first.programID)
            #expect(second.wasAlreadyAttached)
            // A different mode still returns the program that is there.
            let third = try XDPProgram.attach(to: device, mode: .generic)
            #expect(third.programID == first.programID)
            #expect(third.mode == .native)
            #expect(try third.ports == [9000])
            try second.detach()
            #expect(try XDPProgram.attached(on: device) == nil)
            try first.detach()   // already gone: nothing to do
        }
        #expect(!pair.linkB.contains("prog/xdp"))
    }

    @Test func theMultiBufferBuildAttachesToo() throws {
        let pair = try NamespacePair()
        let device = pair.deviceB
        let program = try inNamespace(pair.b) { () throws -> XDPProgram in
            let program = try XDPProgram.attach(to: device, mode: .generic, frags: true)
            #expect(program.mode == .generic)
            try program.setPort(4242)
            #expect(try XDPProgram.attached(on: device)?.programID == program.programID)
            return program
        }
        // Traffic crosses the frags program while it is attached: steered port, no socket, so
        // each datagram is counted and passed on to the kernel's socket.
        #expect(try pair.deliver(count: 3, toPort: 4242) == 3)
        let verdicts = try inNamespace(pair.b) { try program.verdicts() }
        #expect(verdicts.passedNoSocket == 3, "\(verdicts)")
        try inNamespace(pair.b) { try program.detach() }
    }

    @Test func nativeFallsBackToGenericWhereTheDriverRefuses() throws {
        // Loopback has no native XDP support.
        let pair = try NamespacePair()
        try inNamespace(pair.b) {
            let program = try XDPProgram.attach(to: "lo", mode: .native)
            #expect(program.mode == .generic)
            #expect(try XDPProgram.attached(on: "lo")?.mode == .generic)
            try program.detach()
            #expect(try XDPProgram.attached(on: "lo") == nil)
        }
    }

    @Test func aForeignProgramIsRefusedWithoutForceAndReplacedWithIt() throws {
        let pair = try NamespacePair()
        let device = pair.deviceB
        try attachForeignProgram(namespace: pair.b, device: device)
        #expect(pair.linkB.contains("prog/xdp"))
        try inNamespace(pair.b) {
            #expect(try XDPProgram.attached(on: device) == nil)
            #expect(try XDPProgram.detach(from: device) == false)
            let foreign = try #require(try XDPProgram.foreignProgram(on: device))
            #expect(foreign.name == "other_pass")
            #expect(foreign.mode == .generic)
            do throws(SystemCallError) {
                _ = try XDPProgram.attach(to: device, mode: .generic)
                Issue.record("attach over a foreign program should fail without force")
            } catch {
                #expect(error.code == EBUSY)
                #expect(error.description.contains("attach with force: true to replace it"), "\(error)")
                #expect(error.description.contains("other_pass"), "\(error)")
                #expect(error.description.contains("attaching XDP to \(device) failed"), "\(error)")
            }
            let program = try XDPProgram.attach(to: device, mode: .native, force: true)
            #expect(program.mode == .native)
            #expect(try XDPProgram.foreignProgram(on: device) == nil)
            #expect(try XDPProgram.attached(on: device)?.programID == program.programID)
        }
        let link = pair.linkB
        #expect(link.contains("sluice_xsk_redi") && !link.contains("other_pass"), "\(link)")
    }

    @Test func aMissingInterfaceIsAClearError() throws {
        let pair = try NamespacePair()
        try inNamespace(pair.b) {
            for attempt in 0..<3 {
                do throws(SystemCallError) {
                    switch attempt {
                    case 0: _ = try XDPProgram.attach(to: "nosuchif0")
                    case 1: _ = try XDPProgram.attached(on: "nosuchif0")
                    default: _ = try XDPProgram.detach(from: "nosuchif0")
                    }
                    Issue.record("attempt \(attempt) should fail")
                } catch {
                    #expect(error.code == ENODEV)
                    #expect(error.description.contains("finding interface nosuchif0 failed"), "\(error)")
                    #expect(error.description.contains("ip link"), "\(error)")
                }
            }
        }
    }

    @Test func aMissingNamespaceIsAClearError() {
        do {
            _ = try inNamespace("sxp-no-such-namespace") { 0 }
            Issue.record("entering a missing namespace should fail")
        } catch let error as SystemCallError {
            #expect(error.code == ENOENT)
            #expect(error.description.contains("sxp-no-such-namespace"), "\(error)")
            #expect(error.description.contains("ip netns"), "\(error)")
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    @Test func socketMapRejectsNonXSKDescriptors() throws {
        let pair = try NamespacePair()
        let device = pair.deviceB
        try inNamespace(pair.b) {
            let program = try XDPProgram.attach(to: device, mode: .generic)
            let udp = KernelUDPSocket(bind: IPEndpoint("198.18.0.2:0")!)
            do throws(SystemCallError) {
                try program.insertSocket(udp.descriptor, queue: 0)
                Issue.record("a UDP socket must not go into the XSKMAP")
            } catch {
                #expect(error.description.contains("xsks_map"), "\(error)")
                #expect(error.errno != nil)
            }
            try program.removeSocket(queue: 0)
            try program.detach()
        }
    }

    @Test(arguments: XDPAttachMode.allCases)
    func verdictCountersMoveAndTheKernelStillGetsItsTraffic(mode: XDPAttachMode) throws {
        let pair = try NamespacePair()
        let device = pair.deviceB
        let program = try inNamespace(pair.b) { () throws -> XDPProgram in
            let program = try XDPProgram.attach(to: device, mode: mode)
            try program.setPort(9000)
            return program
        }
        // Port 9000 is steered but no socket is bound: passed, counted pass_no_socket, delivered.
        #expect(try pair.deliver(count: 10, toPort: 9000) == 10)
        var verdicts = try program.verdicts()
        #expect(verdicts.passedNoSocket >= 10, "\(verdicts)")
        #expect(verdicts.redirected == 0, "\(verdicts)")
        // Another port: counted pass_port, delivered.
        #expect(try pair.deliver(count: 7, toPort: 9001) == 7)
        verdicts = try program.verdicts()
        #expect(verdicts.passedPort >= 7, "\(verdicts)")
        // A group destination on a steered port is the kernel's (it knows the groups joined):
        // counted pass_not_ours, not steered.
        #expect(shell("ip -n \(pair.a) route add 224.0.0.0/4 dev \(pair.deviceA)").status == 0)
        let sender = try inNamespace(pair.a) { KernelUDPSocket(bind: IPEndpoint("198.18.0.1:0")!) }
        for _ in 0..<5 { sender.send([1, 2, 3], to: IPEndpoint("224.0.0.1:9000")!) }
        usleep(200_000)
        let before = verdicts
        verdicts = try program.verdicts()
        #expect(verdicts.passedNotOurs - before.passedNotOurs == 5 && verdicts.passedNoSocket == before.passedNoSocket, "\(verdicts)")
        // ICMP: counted pass_not_udp, answered.
        let ping = shell("ip netns exec \(pair.a) ping -c 3 -i 0.2 -W 2 198.18.0.2")
        #expect(ping.status == 0, "\(ping.output)")
        verdicts = try program.verdicts()
        #expect(verdicts.passedNotUDP >= 3, "\(verdicts)")
        #expect(verdicts.passedMalformed == 0 && verdicts.passedFragment == 0, "\(verdicts)")
        try inNamespace(pair.b) { try program.detach() }
    }

    @Test func arpStillResolvesWithTheProgramAttached() throws {
        let pair = try NamespacePair(staticNeighbours: false)
        let device = pair.deviceB
        let program = try inNamespace(pair.b) { () throws -> XDPProgram in
            let program = try XDPProgram.attach(to: device, mode: .native)
            try program.setPort(9000)
            return program
        }
        #expect(try pair.deliver(count: 5, toPort: 9000) == 5)
        let verdicts = try program.verdicts()
        #expect(verdicts.passedNotUDP >= 1, "ARP should be passed and counted: \(verdicts)")
        #expect(verdicts.passedNoSocket >= 5, "\(verdicts)")
        let neighbours = shell("ip -n \(pair.a) neigh show dev \(pair.deviceA)").output
        #expect(neighbours.contains("198.18.0.2") && !neighbours.contains("PERMANENT"), "\(neighbours)")
    }

    // MARK: - CLI

    /// Runs `sluice` with `arguments`; returns exit status and output.
    func sluice(_ arguments: [String]) throws -> (status: Int32?, output: String) {
        let child = try ChildProcess(sluice: arguments)
        let status = child.waitForExit(timeout: .seconds(30))
        return (status, child.text)
    }

    @Test func cliLoadsShowsAndUnloadsInANamespace() throws {
        let pair = try NamespacePair()
        let target = ["--dev", pair.deviceB, "--netns", pair.b]
        var run = try sluice(["xdp", "status"] + target)
        #expect(run.status == 0 && run.output.contains("no XDP program attached"), "\(run.output)")

        run = try sluice(["xdp", "load", "--mode", "generic", "--ports", "53,9000"] + target)
        #expect(run.status == 0, "\(run.output)")
        #expect(run.output.contains("attached to \(pair.deviceB) in generic (skb) mode"), "\(run.output)")
        #expect(run.output.contains("53, 9000"), "\(run.output)")
        #expect(!run.output.contains("libbpf:") && !run.output.contains("libxdp:"), "log noise: \(run.output)")
        #expect(pair.linkB.contains("prog/xdp"))

        // Traffic while loaded by another process: the counters move.
        #expect(try pair.deliver(count: 4, toPort: 9000) == 4)

        run = try sluice(["xdp", "status"] + target)
        #expect(run.status == 0, "\(run.output)")
        #expect(run.output.contains("mode generic"), "\(run.output)")
        #expect(run.output.contains("ports: 53, 9000"), "\(run.output)")
        #expect(run.output.contains("passed_no_socket 4,"), "the 4 datagrams to a port with no socket: \(run.output)")
        let idLine = try #require(run.output.split(separator: "\n").first { $0.contains("program id") })
        #expect(pair.linkB.contains("prog/xdp id \(idLine.split(separator: " ")[5].filter(\.isNumber))"), "\(idLine)")

        // Loading again keeps the program and replaces the port set.
        run = try sluice(["xdp", "load", "--ports", "9002,9000-9002,53"] + target)
        #expect(run.status == 0 && run.output.contains("already attached"), "\(run.output)")
        // Each port once, in order, runs of three or more as a range.
        #expect(run.output.contains("steered UDP ports now: 53, 9000-9002\n"), "\(run.output)")
        run = try sluice(["xdp", "status"] + target)
        #expect(run.output.contains("ports: 53, 9000-9002\n"), "\(run.output)")

        run = try sluice(["xdp", "unload"] + target)
        #expect(run.status == 0 && run.output.contains("detached program"), "\(run.output)")
        #expect(!pair.linkB.contains("prog/xdp"))

        run = try sluice(["xdp", "unload"] + target)
        #expect(run.status == 0 && run.output.contains("nothing to unload"), "\(run.output)")
        run = try sluice(["xdp", "status"] + target)
        #expect(run.status == 0 && run.output.contains("no XDP program attached"), "\(run.output)")
    }

    @Test func cliNativeLoadKeepsPingWorking() throws {
        let pair = try NamespacePair()
        let target = ["--dev", pair.deviceB, "--netns", pair.b]
        var run = try sluice(["xdp", "load", "--ports", "9000"] + target)
        #expect(run.status == 0 && run.output.contains("native mode"), "\(run.output)")
        let ping = shell("ip netns exec \(pair.a) ping -c 2 -i 0.2 -W 2 198.18.0.2")
        #expect(ping.status == 0, "\(ping.output)")
        run = try sluice(["xdp", "status"] + target)
        #expect(run.output.contains("mode native"), "\(run.output)")
        run = try sluice(["xdp", "unload"] + target)
        #expect(run.status == 0, "\(run.output)")
    }

    @Test func cliErrorsAreClear() throws {
        let pair = try NamespacePair()
        var run = try sluice(["xdp", "load", "--dev", "nosuchif0", "--netns", pair.b, "--ports", "9000"])
        #expect(run.status == 1, "\(run.output)")
        #expect(run.output.contains("finding interface nosuchif0 failed"), "\(run.output)")
        #expect(run.output.contains("ip link"), "\(run.output)")

        run = try sluice(["xdp", "status", "--dev", pair.deviceB, "--netns", "sxp-no-such-namespace"])
        #expect(run.status == 1, "\(run.output)")
        #expect(run.output.contains("sxp-no-such-namespace") && run.output.contains("ip netns"), "\(run.output)")

        run = try sluice(["xdp", "load", "--dev", pair.deviceB, "--netns", pair.b, "--ports", "70000"])
        #expect(run.status != 0 && run.output.contains("bad port list"), "\(run.output)")

        // A foreign program: refused without --force, replaced with it.
        try attachForeignProgram(namespace: pair.b, device: pair.deviceB)
        run = try sluice(["xdp", "load", "--dev", pair.deviceB, "--netns", pair.b, "--mode", "generic"])
        #expect(run.status == 1 && run.output.contains("pass --force to replace it"), "\(run.output)")
        #expect(!run.output.contains("force: true") && run.output.components(separatedBy: "--force").count == 2, "said once: \(run.output)")
        run = try sluice(["xdp", "unload", "--dev", pair.deviceB, "--netns", pair.b])
        #expect(run.status == 0 && run.output.contains("nothing to unload"), "\(run.output)")
        #expect(pair.linkB.contains("other_pass"))
        run = try sluice(["xdp", "load", "--dev", pair.deviceB, "--netns", pair.b, "--mode", "generic", "--force"])
        #expect(run.status == 0 && run.output.contains("attached"), "\(run.output)")
        #expect(pair.linkB.contains("sluice_xsk_redi"))
    }
}

/// Steering by listen address: the program takes a listener's own address and port (or its
/// family's addresses for a wildcard), and leaves the host's other addresses to the kernel.
@Suite(.serialized) struct XDPListenerTests {
    @Test func aListenerSteersOnlyItsAddressAndAWildcardItsFamilies() throws {
        let pair = try NamespacePair()
        let device = pair.deviceB
        let program = try inNamespace(pair.b) { () throws -> XDPProgram in
            let program = try XDPProgram.attach(to: device, mode: .generic)
            try program.setListener(IPEndpoint("198.18.0.9:4242")!)   // another address of the same port
            return program
        }
        defer { try? inNamespace(pair.b) { try program.detach() } }
        // To 198.18.0.2: not the listener's address, so the kernel's, counted as not steered.
        #expect(try pair.deliver(count: 3, toPort: 4242) == 3)
        var verdicts = try inNamespace(pair.b) { try program.verdicts() }
        #expect(verdicts.passedPort == 3 && verdicts.passedNoSocket == 0, "\(verdicts)")

        // The listener's own address: steered (no socket on the queue, so passed and counted so).
        try inNamespace(pair.b) { try program.setListener(IPEndpoint("198.18.0.2:4242")!) }
        #expect(try pair.deliver(count: 3, toPort: 4242) == 3)
        verdicts = try inNamespace(pair.b) { try program.verdicts() }
        #expect(verdicts.passedNoSocket == 3, "\(verdicts)")

        // Three addresses on one port: the program compares one directly ("198.18.0.10" sorts
        // first) and finds the others in its hash map; removing one leaves the rest steered.
        try inNamespace(pair.b) { try program.setListener(IPEndpoint("198.18.0.10:4242")!) }
        #expect(try pair.deliver(count: 3, toPort: 4242) == 3)
        try inNamespace(pair.b) { try program.setListener(IPEndpoint("198.18.0.10:4242")!, enabled: false) }
        #expect(try pair.deliver(count: 2, toPort: 4242) == 2)
        verdicts = try inNamespace(pair.b) { try program.verdicts() }
        #expect(verdicts.passedNoSocket == 8 && verdicts.passedPort == 3, "\(verdicts)")

        // An IPv6 wildcard takes IPv4 too (dual-stack); removing it and the address stops it all.
        try inNamespace(pair.b) {
            try program.setListener(IPEndpoint("198.18.0.2:4242")!, enabled: false)
            try program.setListener(IPEndpoint("[::]:4242")!)
        }
        #expect(try inNamespace(pair.b) { try program.listeners }.map(\.description).sorted()
                == ["0.0.0.0:4242", "198.18.0.9:4242", "[::]:4242"].sorted())
        #expect(try pair.deliver(count: 2, toPort: 4242) == 2)
        verdicts = try inNamespace(pair.b) { try program.verdicts() }
        #expect(verdicts.passedNoSocket == 10, "\(verdicts)")
    }
}
